//! One request, one trace: a real OTLP/HTTP receiver in the test takes what the services
//! export, and one `me { email roles { name } permissions }` through the router must come
//! back as one trace with spans from the router, identity and authz, every parent link
//! pointing at a span of the trace, and no secret in any attribute. Through the `keygraph`
//! binary: all services in one process (as `cargo run`), and one process per service (as
//! compose runs them).

mod common;
mod harness;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::{Router, body::Bytes, extract::State, http::StatusCode, routing::post};
use harness::{ADMIN_EMAIL, ADMIN_PASSWORD, Stack, Topology, data};
use keygraph_kernel::testing::Backend;
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest, common::v1::any_value, trace::v1::Span,
};
use prost::Message as _;
use serde_json::json;

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN: &str = "b7ad6b7169203331";

/// A span as received: the service that exported it, and the span.
#[derive(Clone)]
struct Received {
    service: String,
    span: Span,
}

type Spans = Arc<Mutex<Vec<Received>>>;

/// Listens for OTLP/HTTP on a loopback port; what it receives lands in the returned list.
async fn otlp_receiver() -> (String, Spans) {
    async fn export(State(spans): State<Spans>, body: Bytes) -> StatusCode {
        let Ok(request) = ExportTraceServiceRequest::decode(body) else {
            return StatusCode::BAD_REQUEST;
        };
        let mut spans = spans.lock().expect("spans");
        for resource_spans in request.resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| a.value.as_ref())
                .and_then(|v| match &v.value {
                    Some(any_value::Value::StringValue(s)) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    spans.push(Received {
                        service: service.clone(),
                        span,
                    });
                }
            }
        }
        StatusCode::OK
    }
    let spans = Spans::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the receiver");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let app = Router::new()
        .route("/v1/traces", post(export))
        .with_state(spans.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, spans)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn string_values(span: &Span) -> Vec<String> {
    let mut values = vec![span.name.clone()];
    let attributes = span
        .attributes
        .iter()
        .chain(span.events.iter().flat_map(|e| &e.attributes));
    for attribute in attributes {
        values.push(attribute.key.clone());
        if let Some(any_value::Value::StringValue(s)) =
            attribute.value.as_ref().and_then(|v| v.value.as_ref())
        {
            values.push(s.clone());
        }
    }
    values
}

async fn one_request_is_one_trace(backend: Backend, topology: Topology) {
    let (receiver, spans) = otlp_receiver().await;
    let Some(stack) = Stack::start_with(
        backend,
        topology,
        &[
            ("KEYGRAPH__TELEMETRY__ENDPOINT", receiver.as_str()),
            ("KEYGRAPH__TELEMETRY__BATCH_DELAY_MS", "100"),
        ],
    )
    .await
    else {
        return;
    };
    let (access, refresh) = stack.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let me: serde_json::Value = reqwest::Client::new()
        .post(&stack.graphql)
        .bearer_auth(&access)
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
        .json(&json!({ "query": "{ me { email roles { name } permissions } }" }))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON");
    assert_eq!(data(&me)["me"]["email"], ADMIN_EMAIL, "{me}");

    // Spans arrive in batches; wait until the three services have reported this trace.
    let wanted: HashSet<&str> = ["keygraph-router", "keygraph-identity", "keygraph-authz"].into();
    let deadline = Instant::now() + Duration::from_secs(20);
    let trace = loop {
        let trace: Vec<Received> = spans
            .lock()
            .expect("spans")
            .iter()
            .filter(|r| hex(&r.span.trace_id) == TRACE_ID)
            .cloned()
            .collect();
        let services: HashSet<&str> = trace.iter().map(|r| r.service.as_str()).collect();
        if wanted.is_subset(&services) {
            // A moment more for the last batches of the other spans.
            tokio::time::sleep(Duration::from_millis(500)).await;
            break spans
                .lock()
                .expect("spans")
                .iter()
                .filter(|r| hex(&r.span.trace_id) == TRACE_ID)
                .cloned()
                .collect::<Vec<_>>();
        }
        assert!(
            Instant::now() < deadline,
            "services in the trace: {services:?}; want {wanted:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // Parent links: each span's parent is the caller's span or another span of the trace.
    let ids: HashSet<String> = trace.iter().map(|r| hex(&r.span.span_id)).collect();
    let mut by_name: HashMap<&str, Vec<&Received>> = HashMap::new();
    for received in &trace {
        let parent = hex(&received.span.parent_span_id);
        assert!(
            parent == CALLER_SPAN || ids.contains(&parent),
            "{} `{}` has parent {parent}, not in the trace",
            received.service,
            received.span.name
        );
        by_name
            .entry(received.span.name.as_str())
            .or_default()
            .push(received);
    }
    let roots: Vec<_> = trace
        .iter()
        .filter(|r| hex(&r.span.parent_span_id) == CALLER_SPAN)
        .collect();
    assert_eq!(roots.len(), 1, "one span continues the caller's");
    assert_eq!(roots[0].service, "keygraph-router");
    assert_eq!(roots[0].span.name, "POST /graphql");
    for name in [
        "query",
        "graphql prepare",
        "graphql execute",
        "fetch identity",
        "fetch authz",
    ] {
        assert!(
            by_name.contains_key(name),
            "no `{name}` span; spans: {:?}",
            by_name.keys().collect::<Vec<_>>()
        );
    }
    // The subgraphs' request spans are children of the router's fetches.
    for (service, fetch) in [
        ("keygraph-identity", "fetch identity"),
        ("keygraph-authz", "fetch authz"),
    ] {
        let fetches: HashSet<String> = by_name[fetch]
            .iter()
            .map(|r| hex(&r.span.span_id))
            .collect();
        assert!(
            trace.iter().any(|r| r.service == service
                && r.span.name == "POST /graphql"
                && fetches.contains(&hex(&r.span.parent_span_id))),
            "{service}'s request is not a child of `{fetch}`"
        );
    }
    assert!(
        trace
            .iter()
            .any(|r| r.service == "keygraph-identity" && r.span.name.starts_with("sea_orm")),
        "identity's statements have spans"
    );

    // Nothing secret in anything exported, in this trace or any other (the login's).
    let everything = spans.lock().expect("spans").clone();
    for received in &everything {
        for value in string_values(&received.span) {
            for secret in [ADMIN_PASSWORD, access.as_str(), refresh.as_str(), "Bearer "] {
                assert!(
                    !value.contains(secret),
                    "{} `{}` exports a secret: {value}",
                    received.service,
                    received.span.name
                );
            }
        }
    }
}

#[tokio::test]
async fn one_request_is_one_trace_embedded_on_sqlite() {
    one_request_is_one_trace(Backend::Sqlite, Topology::Embedded).await;
}

#[tokio::test]
async fn one_request_is_one_trace_across_processes_on_postgres() {
    one_request_is_one_trace(Backend::Postgres, Topology::Separate).await;
}
