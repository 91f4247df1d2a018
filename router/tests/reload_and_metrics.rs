//! The router while it runs, over the four test subgraphs: a subgraph's deploy recomposed by
//! polling (a broken one keeping the last good supergraph), and the metrics it counts.

mod common;

use common::{FAILING, Federation};
use serde_json::json;

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
