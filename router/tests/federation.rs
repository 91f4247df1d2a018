//! The router over four test subgraphs, over real HTTP: planning, execution, merging, errors.

mod common;

use std::sync::atomic::Ordering;

use common::{FAILING, Federation, HANGING, UP};
use serde_json::json;

#[tokio::test]
async fn entity_chains_requires_and_provides_cross_subgraphs() {
    let fed = Federation::start().await;
    let query = "{ topProducts(first: 2) { name shippingEstimate inStock reviews { body author { username name } } } }";
    let response = fed.query(query, json!({})).await;
    assert_eq!(
        response,
        json!({ "data": { "topProducts": [
            { "name": "Table", "shippingEstimate": 50, "inStock": true, "reviews": [
                { "body": "Love it", "author": { "username": "@ada", "name": "Ada" } },
                { "body": "Sturdy", "author": { "username": "@alan", "name": "Alan" } } ] },
            { "name": "Couch", "shippingEstimate": 0, "inStock": false, "reviews": [
                { "body": "Too expensive", "author": { "username": "@alan", "name": "Alan" } } ] }
        ] } })
    );
    insta::assert_json_snapshot!("plan_entity_chain", fed.plan(query));
}

#[tokio::test]
async fn one_request_per_fetch_node_with_deduplicated_representations() {
    let fed = Federation::start().await;
    let before: Vec<usize> = fed
        .subgraphs
        .values()
        .map(|s| s.requests.load(Ordering::SeqCst))
        .collect();
    // Four reviews by two authors: accounts gets one request with two representations.
    let response = fed
        .query("{ latestReviews { author { name } } }", json!({}))
        .await;
    assert_eq!(
        response["data"]["latestReviews"],
        json!([{ "author": { "name": "Ada" } }, { "author": { "name": "Alan" } }, { "author": { "name": "Ada" } }, { "author": { "name": "Alan" } }])
    );
    let after: Vec<usize> = fed
        .subgraphs
        .values()
        .map(|s| s.requests.load(Ordering::SeqCst))
        .collect();
    let delta: Vec<usize> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    // BTreeMap order: accounts, inventory, products, reviews.
    assert_eq!(delta, vec![1, 0, 0, 1]);
}

#[tokio::test]
async fn aliases_fragments_variables_typename_skip_and_include() {
    let fed = Federation::start().await;
    let query = r#"
        query Shop($n: Int, $withPrice: Boolean!, $noName: Boolean = false) {
          first: topProducts(first: $n) { ...Basics price @include(if: $withPrice) }
          again: topProducts(first: 1) { __typename name @skip(if: $noName) ... on Product { label: name } }
        }
        fragment Basics on Product { upc productName: name }
    "#;
    let response = fed
        .query(query, json!({ "n": 1, "withPrice": false }))
        .await;
    assert_eq!(
        response,
        json!({ "data": {
            "first": [{ "upc": "1", "productName": "Table" }],
            "again": [{ "__typename": "Product", "name": "Table", "label": "Table" }]
        } })
    );
    let response = fed
        .query(query, json!({ "n": 1, "withPrice": true, "noName": true }))
        .await;
    assert_eq!(
        response["data"]["first"],
        json!([{ "upc": "1", "productName": "Table", "price": 899 }])
    );
    assert_eq!(
        response["data"]["again"],
        json!([{ "__typename": "Product", "label": "Table" }])
    );
}

#[tokio::test]
async fn unions_and_interfaces_resolve_by_typename() {
    let fed = Federation::start().await;
    let response = fed
        .query(
            "{ media { __typename ... on Book { title pages } ... on Movie { title minutes } } titled { title ... on Movie { minutes } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        response,
        json!({ "data": {
            "media": [{ "__typename": "Book", "title": "Dune", "pages": 412 }, { "__typename": "Movie", "title": "Alien", "minutes": 117 }],
            "titled": [{ "title": "Heat", "minutes": 170 }, { "title": "Emma" }]
        } })
    );
}

#[tokio::test]
async fn fields_of_a_narrowed_interface_field_type_are_valid_below_it() {
    let fed = Federation::start().await;
    // `Book.sequel: Book!` narrows `Titled.sequel: Titled!`: `pages` is a Book field.
    let response = fed
        .query(
            "{ titled { ... on Book { sequel { title pages } } ... on Movie { sequel { minutes } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        response,
        json!({ "data": { "titled": [
            { "sequel": { "minutes": 170 } },
            { "sequel": { "title": "Emma II", "pages": 237 } }
        ] } })
    );
}

#[tokio::test]
async fn an_entity_fetch_under_a_type_condition_asks_only_for_that_type() {
    let fed = Federation::start().await;
    // `rating` lives in reviews, for movies only: the books in the list get no call.
    let response = fed
        .query(
            "{ media { ... on Movie { title rating } ... on Book { title } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        response,
        json!({ "data": { "media": [{ "title": "Dune" }, { "title": "Alien", "rating": 5 }] } })
    );
    let representations = fed.subgraphs["reviews"].last_variables()["representations"].clone();
    assert_eq!(
        representations,
        json!([{ "__typename": "Movie", "id": "m1" }])
    );
}

#[tokio::test]
async fn requires_of_a_field_with_arguments_gets_its_own_value_beside_the_clients() {
    let fed = Federation::start().await;
    // inventory requires `priceIn(currency: "EUR")`; the client asks for the USD price.
    let response = fed
        .query(
            r#"{ topProducts(first: 2) { upc priceIn(currency: "USD") shippingEstimateEur } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        response,
        json!({ "data": { "topProducts": [
            { "upc": "1", "priceIn": 899, "shippingEstimateEur": 17 },
            { "upc": "2", "priceIn": 1299, "shippingEstimateEur": 25 }
        ] } })
    );
}

#[tokio::test]
async fn subgraph_errors_keep_client_paths_and_nulls_propagate() {
    let fed = Federation::start().await;
    // Root fetch: accounts fails `nickname` (String!) for user 2; the nullable list item goes null.
    let response = fed.query("{ users { name nickname } }", json!({})).await;
    assert_eq!(
        response["data"],
        json!({ "users": [{ "name": "Ada", "nickname": "nick-Ada" }, null] })
    );
    assert_eq!(
        response["errors"].as_array().map(Vec::len),
        Some(1),
        "{response}"
    );
    assert_eq!(
        response["errors"][0]["path"],
        json!(["users", 1, "nickname"])
    );
    assert_eq!(response["errors"][0]["message"], "nickname lookup failed");
    assert_eq!(
        response["errors"][0]["extensions"]["serviceName"],
        "accounts"
    );

    // Entity fetch: the `_entities` path is rewritten to where the author sits in the response.
    // `author`, the list items and `latestReviews` are all non-null, so the null reaches `data`.
    let response = fed
        .query("{ latestReviews { body author { nickname } } }", json!({}))
        .await;
    assert_eq!(response["data"], json!(null));
    let paths: Vec<_> = response["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["path"].clone())
        .collect();
    assert!(
        paths.contains(&json!(["latestReviews", 1, "author", "nickname"])),
        "{response}"
    );
}

#[tokio::test]
async fn a_failing_subgraph_leaves_the_rest_of_the_data() {
    let fed = Federation::start().await;
    fed.set_mode("inventory", FAILING);
    let response = fed
        .query("{ topProducts(first: 2) { name inStock } }", json!({}))
        .await;
    assert_eq!(
        response["data"],
        json!({ "topProducts": [{ "name": "Table", "inStock": null }, { "name": "Couch", "inStock": null }] })
    );
    assert_eq!(
        response["errors"][0]["extensions"]["code"], "SUBGRAPH_UNAVAILABLE",
        "{response}"
    );
    assert!(
        response["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("inventory"),
        "{response}"
    );

    // A hanging subgraph is cut off at its timeout (1 s here), not waited for.
    fed.set_mode("inventory", HANGING);
    let started = std::time::Instant::now();
    let response = fed
        .query("{ topProducts(first: 1) { name inStock } }", json!({}))
        .await;
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(
        response["data"],
        json!({ "topProducts": [{ "name": "Table", "inStock": null }] })
    );
    assert!(
        response["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("within 1s"),
        "{response}"
    );

    fed.set_mode("inventory", UP);
    let response = fed
        .query("{ topProducts(first: 1) { name inStock } }", json!({}))
        .await;
    assert_eq!(
        response,
        json!({ "data": { "topProducts": [{ "name": "Table", "inStock": true }] } })
    );
}

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
async fn requires_scopes_is_enforced_at_the_router() {
    let fed = Federation::start().await;
    let query = "{ topProducts(first: 1) { name cost } }";
    let response = fed.query(query, json!({})).await;
    assert_eq!(response["data"], json!(null));
    assert_eq!(
        response["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{response}"
    );
    let user = uuid_v7();
    let without = fed.signer.token(user, &["identity.user.read"]);
    let answer = fed.query_as(query, &without).await;
    answer.expect_error("FORBIDDEN", "billing.read");
    let with = fed.signer.token(user, &["billing.*"]);
    let answer = fed.query_as(query, &with).await;
    assert_eq!(
        answer.data(),
        &json!({ "topProducts": [{ "name": "Table", "cost": 400 }] })
    );
    // A token that is refused (stale, ended, forged) does not sink the request: what needs no
    // token runs, and what needs one says why the token was refused.
    let answer = fed
        .query_as("{ topProducts(first: 1) { name } }", "not-a-token")
        .await;
    assert_eq!(
        answer.data(),
        &json!({ "topProducts": [{ "name": "Table" }] })
    );
    let answer = fed.query_as(query, "not-a-token").await;
    answer.expect_error("UNAUTHENTICATED", "the access token sent was refused");
    assert_eq!(answer.0["errors"][0]["extensions"]["reason"], "malformed");
    let mut claims = fed.signer.claims(user, &["billing.*"]);
    claims.exp = claims.iat - 120;
    let expired = fed.signer.sign(&claims);
    let answer = fed.query_as(query, &expired).await;
    assert_eq!(
        answer.0["errors"][0]["extensions"]["reason"], "expired",
        "{}",
        answer.0
    );
}

/// Access refusals are request errors (nothing ran): 200 for `application/json`, 401 or 403
/// for `application/graphql-response+json`, as the GraphQL over HTTP spec has it; and never
/// a 401 for a stale token on an operation that needs none.
#[tokio::test]
async fn access_refusals_follow_graphql_over_http_status_codes() {
    let fed = Federation::start().await;
    let url = format!("{}/graphql", fed.router.base);
    let post = |query: &'static str, token: Option<String>, accept: &'static str| {
        let mut request = fed
            .router
            .http
            .post(&url)
            .header("accept", accept)
            .json(&json!({ "query": query }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let guarded = "{ topProducts(first: 1) { cost } }";
    let reader = fed.signer.token(uuid_v7(), &["identity.user.read"]);
    for (token, graphql_response, json) in [
        (None, 401, 200),
        (Some("stale".to_owned()), 401, 200),
        (Some(reader), 403, 200),
    ] {
        let response = post(guarded, token.clone(), "application/graphql-response+json")
            .await
            .expect("request");
        assert_eq!(response.status(), graphql_response, "{token:?}");
        let body: serde_json::Value = response.json().await.expect("json");
        assert!(body.get("data").is_none(), "nothing ran: {body}");
        let response = post(guarded, token.clone(), "application/json")
            .await
            .expect("request");
        assert_eq!(response.status(), json, "{token:?}");
    }
    let response = post(
        "{ topProducts(first: 1) { name } }",
        Some("stale".to_owned()),
        "application/graphql-response+json",
    )
    .await
    .expect("request");
    assert_eq!(response.status(), 200);
}

/// Browsers: preflights are answered (never 405); in development any localhost origin is
/// allowed, other origins only when configured; in production only configured ones.
#[tokio::test]
async fn cors_allows_localhost_in_development_and_answers_preflights() {
    async fn preflight(base: &str, origin: &str) -> reqwest::Response {
        reqwest::Client::new()
            .request(reqwest::Method::OPTIONS, format!("{base}/graphql"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type, authorization",
            )
            .send()
            .await
            .expect("preflight")
    }
    let allowed = |response: &reqwest::Response| {
        response
            .headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let development = Federation::start_with(|config| {
        config.router.cors.allowed_origins = vec!["https://app.example.com".into()];
    })
    .await;
    let base = &development.router.base;
    for origin in [
        "http://localhost:5173",
        "http://127.0.0.1:3000",
        "http://[::1]:8080",
        "http://localhost",
        "https://app.example.com",
    ] {
        let response = preflight(base, origin).await;
        assert!(
            response.status().is_success(),
            "{origin}: {}",
            response.status()
        );
        assert_eq!(allowed(&response).as_deref(), Some(origin));
        let methods = response
            .headers()
            .get("access-control-allow-methods")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(methods.contains("POST"), "{methods}");
    }
    for origin in [
        "https://evil.example",
        "http://localhost.evil.example",
        "http://localhost:5173.evil.example",
        "https://localhost:5173",
    ] {
        let response = preflight(base, origin).await;
        assert!(
            response.status().is_success(),
            "{origin}: {}",
            response.status()
        );
        assert_eq!(allowed(&response), None, "{origin}");
    }
    let response = development
        .router
        .http
        .post(format!("{base}/graphql"))
        .header("origin", "http://localhost:5173")
        .json(&json!({ "query": "{ __typename }" }))
        .send()
        .await
        .expect("request");
    assert_eq!(allowed(&response).as_deref(), Some("http://localhost:5173"));

    let production = Federation::start_with(|config| {
        config.router.cors.allow_localhost = Some(false);
    })
    .await;
    let response = preflight(&production.router.base, "http://localhost:5173").await;
    assert!(response.status().is_success(), "{}", response.status());
    assert_eq!(allowed(&response), None);
}

fn uuid_v7() -> uuid::Uuid {
    uuid::Uuid::now_v7()
}

#[tokio::test]
async fn bad_requests_get_clear_errors() {
    let fed = Federation::start().await;
    let url = format!("{}/graphql", fed.router.base);
    let http = &fed.router.http;
    let post = |body: &'static str| {
        http.post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    let response = post("{not json").await.expect("request");
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.expect("json");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("not valid JSON"),
        "{body}"
    );

    let response = post(r#"{"variables": {}}"#).await.expect("request");
    assert_eq!(response.status(), 400);

    let response = fed.query("{ topProducts { nope } }", json!({})).await;
    assert!(response.get("data").is_none(), "{response}");
    assert!(
        response["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("nope"),
        "{response}"
    );
    assert!(response["errors"][0]["locations"].is_array(), "{response}");

    let response = fed
        .query(
            "query($n: Int) { topProducts(first: $n) { name } }",
            json!({ "n": "two" }),
        )
        .await;
    assert!(
        response["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("n"),
        "{response}"
    );

    let response = http
        .post(&url)
        .json(&json!({ "query": "query A { me { id } }", "operationName": "B" }))
        .send()
        .await
        .expect("request");
    let body: serde_json::Value = response.json().await.expect("json");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("B"),
        "{body}"
    );

    // A spec-following client gets 400 for a request that cannot run.
    let response = http
        .post(&url)
        .header("accept", "application/graphql-response+json")
        .json(&json!({ "query": "{ nope }" }))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 400);

    let response = http
        .get(format!("{url}?query=mutation%20%7B%20x%20%7D"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 405);
    let response = http
        .get(format!("{url}?query=%7B%20me%20%7B%20name%20%7D%20%7D"))
        .send()
        .await
        .expect("request");
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body, json!({ "data": { "me": { "name": "Ada" } } }));

    let deep = format!("{{{}id{}}}", "me{".repeat(60), "}".repeat(60));
    let response = fed.query(&deep, json!({})).await;
    assert!(
        response["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("50 levels"),
        "{response}"
    );
    let long = format!("{{ me {{ {} }} }}", "id ".repeat(20_000));
    let response = fed.query(&long, json!({})).await;
    assert!(
        response["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("tokens"),
        "{response}"
    );

    let many_aliases = format!(
        "{{ {} }}",
        (0..40)
            .map(|i| format!("a{i}: me {{ id }}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let response = fed.query(&many_aliases, json!({})).await;
    assert!(
        response["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("aliases"),
        "{response}"
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

#[tokio::test]
async fn a_changed_subgraph_is_recomposed_and_a_broken_one_keeps_the_last_good_graph() {
    let fed = Federation::start_polling(1).await;
    let query = "{ featured { name } }";
    let before = fed.query(query, json!({})).await;
    assert!(
        before["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("featured"),
        "{before}"
    );

    fed.subgraphs["products"].replace(common::ProductsQueryV2);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let answer = fed.query(query, json!({})).await;
        if answer == json!({ "data": { "featured": { "name": "Chair" } } }) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not recomposed: {answer}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let graph = fed.state.graph().expect("graph");

    // A deploy that does not compose: the router keeps serving the last good supergraph.
    fed.subgraphs["products"].replace(common::ProductsQueryBroken);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let current = fed.state.graph().expect("graph");
    assert!(
        std::sync::Arc::ptr_eq(&graph, &current),
        "a broken composition replaced the graph"
    );
    let answer = fed
        .query("{ topProducts(first: 1) { name } }", json!({}))
        .await;
    assert_eq!(
        answer,
        json!({ "data": { "topProducts": [{ "name": "Table" }] } })
    );
}

#[tokio::test]
async fn unmatched_fragments_leave_empty_objects_and_variable_defaults_apply() {
    let fed = Federation::start().await;
    // The Movie matches no fragment: the spec answers `{}`, not null.
    let response = fed
        .query(
            "{ media { ... on Book { pages } } titled { title } }",
            json!({}),
        )
        .await;
    assert_eq!(
        response,
        json!({ "data": {
            "media": [{ "pages": 412 }, {}],
            "titled": [{ "title": "Heat" }, { "title": "Emma" }]
        } })
    );
    // A variable's default counts where the client sent none, in @skip as everywhere.
    let response = fed
        .query(
            "query($skip: Boolean = true) { me { name @skip(if: $skip) id } }",
            json!({}),
        )
        .await;
    assert_eq!(response, json!({ "data": { "me": { "id": "1" } } }));
}

#[tokio::test]
async fn authorization_request_id_and_traceparent_reach_the_subgraphs() {
    let fed = Federation::start().await;
    let token = fed.signer.token(uuid_v7(), &[]);
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let response = fed
        .router
        .http
        .post(format!("{}/graphql", fed.router.base))
        .bearer_auth(&token)
        .header("x-request-id", "req-abc-123")
        .header("traceparent", traceparent)
        .json(&json!({ "query": "{ latestReviews { author { name } } }" }))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    // Both the root fetch (reviews) and the entity fetch (accounts) carried them.
    for subgraph in ["reviews", "accounts"] {
        let headers = fed.subgraphs[subgraph]
            .last_headers
            .lock()
            .expect("headers")
            .clone();
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        assert_eq!(
            header("authorization"),
            Some(format!("Bearer {token}")),
            "{subgraph}"
        );
        assert_eq!(
            header("x-request-id").as_deref(),
            Some("req-abc-123"),
            "{subgraph}"
        );
        assert_eq!(
            header("traceparent").as_deref(),
            Some(traceparent),
            "{subgraph}"
        );
    }
}

#[tokio::test]
async fn plans_for_unions_and_requires_are_stable() {
    let fed = Federation::start().await;
    insta::assert_json_snapshot!(
        "plan_union_fragments",
        fed.plan("{ media { __typename ... on Book { title } ... on Movie { minutes } } }")
    );
    insta::assert_json_snapshot!(
        "plan_requires_skip",
        fed.plan(
            "query($skip: Boolean!) { topProducts { name shippingEstimate @skip(if: $skip) } }"
        )
    );
    let graph = fed.state.graph().expect("graph");
    let cached = graph.cached_plans();
    fed.plan("{ media { __typename ... on Book { title } ... on Movie { minutes } } }");
    assert_eq!(
        graph.cached_plans(),
        cached,
        "the same document is planned once"
    );
}

#[tokio::test]
async fn fragments_on_a_union_apply_where_the_value_is_that_union() {
    let fed = Federation::start().await;
    let query = "{ media { ...Item } more: media { ... on Media { ... on Movie { minutes } } } } \
                 fragment Item on Media { __typename ... on Book { title } }";
    let response = fed.query(query, json!({})).await;
    assert_eq!(
        response,
        json!({ "data": {
            "media": [{ "__typename": "Book", "title": "Dune" }, { "__typename": "Movie" }],
            "more": [{}, { "minutes": 117 }]
        } })
    );
    // Validation still speaks of the document as written.
    let response = fed
        .query(
            "{ media { ...Item } } fragment Item on Media { nope }",
            json!({}),
        )
        .await;
    assert!(
        response["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("nope"),
        "{response}"
    );
}

#[tokio::test]
async fn metrics_count_requests_and_subgraph_calls() {
    let fed = Federation::start().await;
    let metrics = || async {
        fed.router
            .http
            .get(format!("{}/metrics", fed.router.base))
            .send()
            .await
            .expect("request")
            .text()
            .await
            .expect("text")
    };
    // The router's series are the process's: other tests' requests count too, so what
    // this one adds is compared.
    let value = |text: &str, series: &str| -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0.0)
    };
    let before = metrics().await;
    fed.query("{ topProducts(first: 1) { name inStock } }", json!({}))
        .await;
    fed.set_mode("inventory", FAILING);
    fed.query("{ topProducts(first: 1) { name inStock } }", json!({}))
        .await;
    let after = metrics().await;
    for (series, added) in [
        (
            r#"keygraph_router_requests_total{service="router",status="2xx"}"#,
            2.0,
        ),
        (
            r#"keygraph_router_subgraph_requests_total{service="router",subgraph="products",outcome="answered"}"#,
            2.0,
        ),
        (
            r#"keygraph_router_subgraph_requests_total{service="router",subgraph="inventory",outcome="answered"}"#,
            1.0,
        ),
        (
            r#"keygraph_router_subgraph_requests_total{service="router",subgraph="inventory",outcome="failed"}"#,
            1.0,
        ),
        (
            r#"keygraph_router_graphql_errors_total{service="router"}"#,
            1.0,
        ),
        (
            r#"keygraph_graphql_operations_total{service="router",kind="query"}"#,
            2.0,
        ),
    ] {
        assert!(
            value(&after, series) - value(&before, series) >= added,
            "{series} did not grow by {added}:\n{after}"
        );
    }
    assert_eq!(
        value(
            &after,
            r#"keygraph_router_supergraph_ready{service="router"}"#
        ),
        1.0,
        "{after}"
    );
    assert!(
        after.contains(
            "keygraph_http_requests_total{service=\"router\",route=\"/graphql\",status=\"2xx\"}"
        ),
        "{after}"
    );
}

/// The router's error shapes are part of its contract: a change shows up as snapshot drift.
#[tokio::test]
async fn error_shapes_are_stable() {
    let fed = Federation::start().await;
    let cases = [
        ("syntax_error", "{ me { id }", json!({})),
        ("unknown_field", "{ me { nope } }", json!({})),
        (
            "wrong_variable_type",
            "query($n: Int) { topProducts(first: $n) { name } }",
            json!({ "n": "two" }),
        ),
        (
            "missing_variable",
            "query($n: Int!) { topProducts(first: $n) { name } }",
            json!({}),
        ),
        (
            "several_operations",
            "query A { me { id } } query B { me { id } }",
            json!({}),
        ),
        (
            "conflicting_fields",
            "{ topProducts(first: 1) { name } topProducts(first: 2) { name } }",
            json!({}),
        ),
        (
            "unauthenticated",
            "{ topProducts(first: 1) { name cost } }",
            json!({}),
        ),
        (
            "subgraph_error_in_a_list",
            "{ users { name nickname } }",
            json!({}),
        ),
    ];
    let mut answers = serde_json::Map::new();
    for (name, query, variables) in cases {
        answers.insert(name.to_owned(), fed.query(query, variables).await);
    }
    let deep = format!(
        "{{ titled {{ {} title {} }} }}",
        "sequel { ".repeat(20),
        "} ".repeat(20)
    );
    answers.insert("too_deep".to_owned(), fed.query(&deep, json!({})).await);
    let too_many_fields = keygraph_kernel::testing::fragment_fan(10, "__typename");
    answers.insert(
        "too_many_fields".to_owned(),
        fed.query(&too_many_fields, json!({})).await,
    );
    let aliases: String = (0..31).map(|i| format!(" a{i}: __typename")).collect();
    answers.insert(
        "too_many_aliases".to_owned(),
        fed.query(&format!("{{{aliases} }}"), json!({})).await,
    );
    answers.insert(
        "too_many_directives".to_owned(),
        fed.query(
            &format!("{{ __typename {} }}", "@skip(if: false) ".repeat(51)),
            json!({}),
        )
        .await,
    );
    answers.insert(
        "too_many_tokens".to_owned(),
        fed.query(
            &format!("{{ {} }}", "__typename ".repeat(20_000)),
            json!({}),
        )
        .await,
    );
    insta::assert_json_snapshot!("error_shapes", answers);
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
