//! Internal calls: over HTTP, or into the router of a service registered in this process, with
//! the same token check, the same answers and the same errors either way.

use std::net::SocketAddr;

use axum::{
    Json, Router,
    extract::Path,
    http::StatusCode,
    routing::{delete, get, post},
};
use keygraph_kernel::internal::{
    InternalCallError, InternalClient, InternalToken, LocalServices, protect,
};
use serde_json::{Value, json};

const TOKEN: &str = "internal-token-for-these-tests-0123456789";

/// `GET /internal/echo/{name}`, `POST /internal/echo` (answers the body), `DELETE` of a
/// missing resource (404) and of a failing one (500), behind the internal token.
fn service() -> Router {
    let routes = Router::new()
        .route(
            "/internal/echo/{name}",
            get(|Path(name): Path<String>| async move {
                if name == "nobody" {
                    Err(StatusCode::NOT_FOUND)
                } else {
                    Ok(Json(json!({ "name": name })))
                }
            }),
        )
        .route(
            "/internal/echo",
            post(|Json(body): Json<Value>| async move { Json(json!({ "got": body })) }),
        )
        .route("/internal/gone", delete(|| async { StatusCode::NOT_FOUND }))
        .route(
            "/internal/broken",
            delete(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "the disk is full") }),
        );
    protect(routes, InternalToken::new(TOKEN))
}

/// A loopback address nothing listens on: a call that reaches it over HTTP fails.
async fn vacant_addr() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    listener.local_addr().expect("addr")
}

async fn exercise(client: &InternalClient) {
    let found: Option<Value> = client.get_json("/internal/echo/ada").await.expect("get");
    assert_eq!(found, Some(json!({ "name": "ada" })));
    let missing: Option<Value> = client.get_json("/internal/echo/nobody").await.expect("404");
    assert_eq!(missing, None, "a 404 is no resource, not an error");
    let echoed: Value = client
        .post_json("/internal/echo", &json!({ "n": 1 }))
        .await
        .expect("post");
    assert_eq!(echoed, json!({ "got": { "n": 1 } }));
    client
        .delete("/internal/gone")
        .await
        .expect("a missing resource counts as deleted");
    match client.delete("/internal/broken").await {
        Err(InternalCallError::Status { status, body, .. }) => {
            assert_eq!(status, 500);
            assert_eq!(body, "the disk is full");
        }
        other => panic!("expected the 500 with its body, got {other:?}"),
    }
    let wrong: Result<Value, _> = client.post_json("/internal/echo/ada", &json!({})).await;
    assert!(
        matches!(wrong, Err(InternalCallError::Status { status: 405, .. })),
        "{wrong:?}"
    );
}

#[tokio::test]
async fn calls_a_registered_service_in_process_and_others_over_http() {
    let local = LocalServices::default();
    let addr = vacant_addr().await;
    local.register(addr, service());

    // In process: nothing listens on `addr`, so these answers come from the router itself.
    for base in [
        format!("http://{addr}"),
        format!("http://localhost:{}/", addr.port()),
    ] {
        let client = InternalClient::new(&base, TOKEN)
            .expect("client")
            .with_local(&local);
        exercise(&client).await;
    }

    // The token is checked in process as over HTTP.
    let intruder = InternalClient::new(&format!("http://{addr}"), "not-the-token")
        .expect("client")
        .with_local(&local);
    match intruder.get_json::<Value>("/internal/echo/ada").await {
        Err(InternalCallError::Status { status, body, .. }) => {
            assert_eq!(status, 401);
            assert!(body.contains("internal service token"), "{body}");
        }
        other => panic!("expected 401, got {other:?}"),
    }

    // Once the service is gone from the process, calls go over HTTP, and there is nobody.
    local.unregister(addr);
    let client = InternalClient::new(&format!("http://{addr}"), TOKEN)
        .expect("client")
        .with_local(&local);
    let gone = client.get_json::<Value>("/internal/echo/ada").await;
    assert!(
        matches!(gone, Err(InternalCallError::Unreachable { .. })),
        "{gone:?}"
    );
}

#[tokio::test]
async fn over_http_the_answers_are_the_same() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, service()).await });
    // Registered elsewhere only: this client's base is not in process.
    let local = LocalServices::default();
    local.register(vacant_addr().await, service());
    let client = InternalClient::new(&base, TOKEN)
        .expect("client")
        .with_local(&local);
    exercise(&client).await;
}
