//! The HTTP shell: health, request ids, and graceful shutdown that lets in-flight requests finish.

use std::{sync::Arc, time::Duration};

use axum::{Router, routing::get};
use keygraph_kernel::{
    config::Config,
    http::{self, ReadinessCheck, Shutdown},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_requests_then_stops() {
    let app = Router::new().route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(400)).await;
            "done"
        }),
    );
    let config = Config::from_sources(None, Vec::new()).expect("defaults");
    let ready: ReadinessCheck = Arc::new(|| Box::pin(async { false }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (trigger, shutdown) = Shutdown::new();
    let server = tokio::spawn(async move {
        let addresses = http::ClientAddresses::for_edge(&config.http).expect("addresses");
        http::serve(
            "probe",
            listener,
            app,
            &config.http,
            addresses,
            ready,
            shutdown,
        )
        .await
    });

    let client = reqwest::Client::new();
    let unready = client
        .get(format!("{base}/health/ready"))
        .send()
        .await
        .expect("ready");
    assert_eq!(unready.status(), 503, "readiness reflects the probe");
    let live = client
        .get(format!("{base}/health/live"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .expect("live");
    assert_eq!(live.status(), 200);
    assert_eq!(
        live.headers()["x-request-id"],
        "abc-123",
        "a valid incoming request id is kept"
    );

    let in_flight = tokio::spawn({
        let client = client.clone();
        let base = base.clone();
        async move {
            client
                .get(format!("{base}/slow"))
                .send()
                .await?
                .text()
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    trigger.trigger();
    assert_eq!(
        in_flight
            .await
            .expect("join")
            .expect("in-flight request completes"),
        "done"
    );
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server stops after draining")
        .expect("join")
        .expect("clean stop");
    assert!(
        reqwest::Client::new()
            .get(format!("{base}/health/live"))
            .send()
            .await
            .is_err(),
        "no new connections after shutdown"
    );
}
