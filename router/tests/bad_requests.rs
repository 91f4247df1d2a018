//! Requests the router cannot run, over the four test subgraphs: bodies that are not JSON,
//! missing queries, invalid documents and variables, unknown operations, mutations over GET,
//! and documents over the depth, token and alias limits, each answered with a clear error.

mod common;

use common::Federation;
use serde_json::json;

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
