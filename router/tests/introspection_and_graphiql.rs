//! What the router shows of its schema, over the four test subgraphs: introspection of the API
//! schema only (GraphiQL's full query included), the GraphiQL page and its headers, and the
//! production posture that hides both and puts `/metrics` behind the internal token.

mod common;

use std::sync::atomic::Ordering;

use common::Federation;
use serde_json::json;

#[tokio::test]
async fn introspection_shows_the_api_schema_only() {
    let fed = Federation::start().await;
    let response = fed
        .query(
            "{ __schema { types { name } queryType { fields { name } } } }",
            json!({}),
        )
        .await;
    let names: Vec<&str> = response["data"]["__schema"]["types"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for hidden in [
        "_Any",
        "_Entity",
        "_Service",
        "join__Graph",
        "join__FieldSet",
        "link__Import",
    ] {
        assert!(!names.contains(&hidden), "{hidden} is visible: {names:?}");
    }
    for visible in ["Product", "User", "Review", "Media", "Titled"] {
        assert!(names.contains(&visible), "{visible} is missing: {names:?}");
    }
    let roots: Vec<&str> = response["data"]["__schema"]["queryType"]["fields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert!(
        !roots.contains(&"_entities") && !roots.contains(&"_service"),
        "{roots:?}"
    );
    // Introspection is answered by the router: no subgraph is asked.
    let before: usize = fed
        .subgraphs
        .values()
        .map(|s| s.requests.load(Ordering::SeqCst))
        .sum();
    let response = fed
        .query(
            "{ __type(name: \"Product\") { fields { name } } }",
            json!({}),
        )
        .await;
    assert!(
        response["data"]["__type"]["fields"]
            .as_array()
            .is_some_and(|f| f.len() > 5),
        "{response}"
    );
    let after: usize = fed
        .subgraphs
        .values()
        .map(|s| s.requests.load(Ordering::SeqCst))
        .sum();
    assert_eq!(before, after);

    // Introspection beside data, and inside a fragment on the root type.
    let response = fed
        .query(
            "query($t: String!) { me { name } ...Intro } \
             fragment Intro on Query { kind: __type(name: $t) { name } }",
            json!({ "t": "Review" }),
        )
        .await;
    assert_eq!(
        response,
        json!({ "data": { "me": { "name": "Ada" }, "kind": { "name": "Review" } } })
    );
}

#[tokio::test]
async fn graphiql_is_served_from_the_router_itself() {
    let fed = Federation::start().await;
    let http = &fed.router.http;
    let page = http
        .get(format!("{}/graphql", fed.router.base))
        .header("accept", "text/html")
        .send()
        .await
        .expect("request");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("text");
    for asset in [
        "/graphiql/graphiql.min.js",
        "/graphiql/react.production.min.js",
        "/graphiql/init.js",
    ] {
        assert!(html.contains(asset), "{asset} not referenced");
        let response = http
            .get(format!("{}{asset}", fed.router.base))
            .send()
            .await
            .expect("asset");
        assert_eq!(response.status(), 200, "{asset}");
    }
    assert!(
        !html.contains("https://"),
        "the page must not load anything from the internet"
    );
}

/// GraphiQL's schema query: graphql-js' full introspection query, fragments and all.
#[tokio::test]
async fn graphiqls_introspection_query_is_answered() {
    let fed = Federation::start().await;
    let response = fed
        .query(include_str!("introspection.graphql"), json!({}))
        .await;
    assert!(response.get("errors").is_none(), "{response}");
    let schema = &response["data"]["__schema"];
    assert_eq!(schema["queryType"]["name"], "Query");
    let product = schema["types"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["name"] == "Product")
        .cloned()
        .unwrap_or_default();
    assert_eq!(product["kind"], "OBJECT", "{response}");
    assert!(
        product["fields"].as_array().is_some_and(|f| !f.is_empty()),
        "{product}"
    );
}

/// What production mode resolves to (see the config's unit tests): no GraphiQL, no
/// introspection, and `/metrics` behind the internal token.
#[tokio::test]
async fn the_production_posture_hides_the_schema_the_page_and_the_metrics() {
    let fed = Federation::start_with(|config| {
        config.router.graphiql = Some(false);
        config.router.introspection = false;
        config.router.metrics.require_token = Some(true);
    })
    .await;
    let http = &fed.router.http;
    let page = http
        .get(format!("{}/graphql", fed.router.base))
        .header("accept", "text/html")
        .send()
        .await
        .expect("request");
    assert_eq!(page.status(), 400, "no GraphiQL page");
    let refused = fed
        .query(include_str!("introspection.graphql"), json!({}))
        .await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "INTROSPECTION_DISABLED",
        "{refused}"
    );
    assert!(refused.get("data").is_none(), "{refused}");
    let hidden = fed
        .query("{ __type(name: \"Product\") { name } }", json!({}))
        .await;
    assert_eq!(
        hidden["errors"][0]["extensions"]["code"],
        "INTROSPECTION_DISABLED"
    );
    let typename = fed.query("{ __typename }", json!({})).await;
    assert_eq!(typename["data"]["__typename"], "Query", "{typename}");

    let metrics = format!("{}/metrics", fed.router.base);
    let anonymous = http.get(&metrics).send().await.expect("metrics");
    assert_eq!(anonymous.status(), 401);
    let internal = http
        .get(&metrics)
        .bearer_auth(keygraph_kernel::testing::INTERNAL_TOKEN)
        .send()
        .await
        .expect("metrics");
    assert_eq!(internal.status(), 200);
    assert!(
        internal
            .text()
            .await
            .expect("text")
            .contains("keygraph_router_")
    );
}

#[tokio::test]
async fn graphiql_is_framed_by_nobody_and_keeps_no_token() {
    let fed = Federation::start().await;
    let http = &fed.router.http;
    let page = http
        .get(format!("{}/graphql", fed.router.base))
        .header("accept", "text/html")
        .send()
        .await
        .expect("request");
    let headers = page.headers();
    let policy = headers["content-security-policy"].to_str().expect("ascii");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    let init = http
        .get(format!("{}/graphiql/init.js", fed.router.base))
        .send()
        .await
        .expect("init.js")
        .text()
        .await
        .expect("text");
    assert!(init.contains("shouldPersistHeaders: false"), "{init}");
    assert!(!init.contains("shouldPersistHeaders: true"));
    // Development mode: the metrics are open on the router's port.
    let metrics = http
        .get(format!("{}/metrics", fed.router.base))
        .send()
        .await
        .expect("metrics");
    assert_eq!(metrics.status(), 200);
}
