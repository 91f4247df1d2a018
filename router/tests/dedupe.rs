//! Identical requests in flight at the same moment share one execution: subgraph requests of
//! queries by default, client requests when configured; never across different tokens, never
//! for mutations or different variables.

mod common;

use std::sync::atomic::Ordering;

use common::{Federation, SLOW};
use serde_json::json;

const QUERY: &str = "{ topProducts(first: 2) { upc name } }";

/// Sends `requests` at once (each with its token, if any) and answers how many requests the
/// products subgraph got meanwhile, with the answers.
async fn at_once(
    fed: &Federation,
    requests: Vec<(&str, serde_json::Value, Option<String>)>,
) -> (usize, Vec<serde_json::Value>) {
    let products = &fed.subgraphs["products"].requests;
    let before = products.load(Ordering::SeqCst);
    let answers = futures::future::join_all(requests.iter().map(|(query, variables, token)| {
        fed.router.gql(query, variables.clone(), token.as_deref())
    }))
    .await;
    (
        products.load(Ordering::SeqCst) - before,
        answers.into_iter().map(|a| a.0).collect(),
    )
}

fn uuid_v7() -> uuid::Uuid {
    uuid::Uuid::now_v7()
}

#[tokio::test]
async fn identical_subgraph_requests_in_flight_share_one_answer() {
    let fed = Federation::start().await;
    fed.set_mode("products", SLOW);
    let (sent, answers) = at_once(&fed, vec![(QUERY, json!({}), None); 5]).await;
    assert_eq!(
        sent, 1,
        "five identical queries in flight, one subgraph request"
    );
    for answer in &answers {
        assert_eq!(
            answer,
            &json!({ "data": { "topProducts": [
                { "upc": "1", "name": "Table" },
                { "upc": "2", "name": "Couch" },
            ] } })
        );
    }
    // Different tokens never share: each caller's request goes out with its own.
    let (one, other) = (
        fed.signer.token(uuid_v7(), &[]),
        fed.signer.token(uuid_v7(), &[]),
    );
    let (sent, _) = at_once(
        &fed,
        vec![
            (QUERY, json!({}), Some(one.clone())),
            (QUERY, json!({}), Some(one)),
            (QUERY, json!({}), Some(other)),
        ],
    )
    .await;
    assert_eq!(sent, 2, "two tokens, two subgraph requests");
    // Nor do different variables.
    let query = "query($n: Int) { topProducts(first: $n) { upc } }";
    let (sent, _) = at_once(
        &fed,
        vec![
            (query, json!({ "n": 1 }), None),
            (query, json!({ "n": 2 }), None),
        ],
    )
    .await;
    assert_eq!(sent, 2);
}

#[tokio::test]
async fn subgraph_requests_go_out_one_each_when_sharing_is_off() {
    let fed = Federation::start_with(|config| config.router.dedupe.subgraph_requests = false).await;
    fed.set_mode("products", SLOW);
    let (sent, _) = at_once(&fed, vec![(QUERY, json!({}), None); 3]).await;
    assert_eq!(sent, 3);
}

#[tokio::test]
async fn identical_client_requests_in_flight_share_one_answer_when_configured() {
    let fed = Federation::start_with(|config| {
        config.router.dedupe.client_requests = true;
        config.router.dedupe.subgraph_requests = false;
    })
    .await;
    fed.set_mode("products", SLOW);
    let (sent, answers) = at_once(&fed, vec![(QUERY, json!({}), None); 4]).await;
    assert_eq!(sent, 1, "four identical requests, one execution");
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    assert!(answers[0]["data"]["topProducts"].is_array(), "{answers:?}");
    let (sent, _) = at_once(
        &fed,
        vec![
            (QUERY, json!({}), Some(fed.signer.token(uuid_v7(), &[]))),
            (QUERY, json!({}), Some(fed.signer.token(uuid_v7(), &[]))),
        ],
    )
    .await;
    assert_eq!(sent, 2, "two tokens, two executions");
    // A later request runs anew.
    let (sent, _) = at_once(&fed, vec![(QUERY, json!({}), None)]).await;
    assert_eq!(sent, 1);
}
