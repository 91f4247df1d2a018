//! One request to a subgraph: the body (the fetch's document, the client's variables it uses,
//! representations), the headers passed on (token, request id, trace context, the client's
//! address with the router's proof), identical queries in flight sharing one request, and the
//! answer read into the merged data's sources, or a `SUBGRAPH_UNAVAILABLE` error saying why
//! none came. A subgraph's own errors are given the client's paths and its name.

use std::sync::PoisonError;
use std::time::Duration;

use bytes::Bytes;
use keygraph_kernel::ErrorCode;
use keygraph_kernel::token::{ISSUED_TOKENS_HEADER, IssuedTokens};
use serde_json::{Map, Value as Json, json};
use tracing::Instrument as _;

use super::Execution;
use crate::inflight::Inflight;
use crate::json::{self, Sources, Value};

/// Headers passed on to every subgraph request.
#[derive(Debug, Clone, Default)]
pub struct Forwarded {
    pub authorization: Option<String>,
    pub request_id: String,
    /// Whether the client sent `request_id` (otherwise the router made it up).
    pub request_id_from_client: bool,
    pub traceparent: Option<String>,
    /// The client's address, stated for subgraphs with the router's proof.
    pub client_address: Option<String>,
}

/// Where a subgraph lives and how long one request to it may take.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub url: reqwest::Url,
    pub timeout: Duration,
}

/// How the router reaches subgraphs: the pooled HTTP client, where outcomes are counted, and
/// the requests in flight (when identical ones share one).
#[derive(Clone)]
pub struct SubgraphClient {
    pub http: reqwest::Client,
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    pub inflight: Option<std::sync::Arc<Inflight<SubgraphRequestKey, Fetched>>>,
}

/// What makes two subgraph requests the same: where they go, what they send, and every
/// header that can change the answer or that the client asked to be passed on.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SubgraphRequestKey {
    service: String,
    body: Bytes,
    authorization: Option<String>,
    traceparent: Option<String>,
    request_id: Option<String>,
}

/// A subgraph's answer as it came, or why none came.
#[derive(Clone)]
pub enum Fetched {
    Answer {
        status: u16,
        body: Bytes,
        /// Tokens the subgraph issued (it signed someone in), from its response header.
        issued: Option<IssuedTokens>,
    },
    TimedOut,
    Failed {
        broke_off: bool,
    },
}

impl Execution<'_> {
    /// The request body for a subgraph: the document, the client's variables it uses, and
    /// `extra` variables already written as JSON (representations).
    pub(super) fn body(
        &self,
        document: &str,
        usages: Option<&std::collections::BTreeSet<String>>,
        extra: &[(&str, &[Vec<u8>])],
    ) -> Vec<u8> {
        let size: usize = extra
            .iter()
            .flat_map(|(_, items)| items.iter().map(|i| i.len() + 1))
            .sum();
        let mut out = Vec::with_capacity(document.len() + size + 64);
        out.extend_from_slice(b"{\"query\":");
        json::write_str(&mut out, document.as_bytes());
        out.extend_from_slice(b",\"variables\":{");
        let mut first = true;
        let mut separate = |out: &mut Vec<u8>| {
            if !first {
                out.push(b',');
            }
            first = false;
        };
        for name in usages.into_iter().flatten() {
            if let Some(value) = self.variables.get(name) {
                separate(&mut out);
                json::write_str(&mut out, name.as_bytes());
                out.push(b':');
                json::write_serde(&mut out, value);
            }
        }
        for (name, items) in extra {
            separate(&mut out);
            json::write_str(&mut out, name.as_bytes());
            out.extend_from_slice(b":[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(item);
            }
            out.push(b']');
        }
        out.extend_from_slice(b"}}");
        out
    }

    pub(super) async fn send(
        &self,
        service: &str,
        body: Vec<u8>,
    ) -> Result<SubgraphResponse, Json> {
        let unavailable = |message: String| {
            self.run.client.metrics.record_subgraph(service, false);
            json!({
                "message": message,
                "extensions": { "code": ErrorCode::SubgraphUnavailable.as_str(), "serviceName": service }
            })
        };
        let Some(endpoint) = self.run.graph.endpoint(service) else {
            return Err(unavailable(format!(
                "subgraph `{service}` has no URL configured"
            )));
        };
        let forwarded = &self.run.forwarded;
        // Variables hold representations and client input: debug level only.
        tracing::debug!(service, body = %String::from_utf8_lossy(&body), "subgraph request");
        let body = Bytes::from(body);
        let mut headers = forwarded.clone();
        if let Some((_, issued)) = &*self.issued.lock().unwrap_or_else(PoisonError::into_inner) {
            headers.authorization = Some(format!("Bearer {}", issued.access));
        }
        let span = tracing::info_span!(
            "subgraph fetch",
            otel.name = %format!("fetch {service}"),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            subgraph.name = service,
            status = tracing::field::Empty,
        );
        // With traces on, the subgraph's span is a child of this fetch; otherwise the
        // client's own `traceparent` goes on as it came.
        if let Some(traceparent) = keygraph_kernel::telemetry::traceparent(&span) {
            headers.traceparent = Some(traceparent);
        }
        let request = fetch(
            self.run.client.http.clone(),
            endpoint.clone(),
            headers,
            body.clone(),
            service.to_owned(),
        );
        let fetched = match (&self.run.client.inflight, self.run.is_query) {
            (Some(inflight), true) => {
                let key = SubgraphRequestKey {
                    service: service.to_owned(),
                    body,
                    authorization: forwarded.authorization.clone(),
                    traceparent: forwarded.traceparent.clone(),
                    request_id: forwarded
                        .request_id_from_client
                        .then(|| forwarded.request_id.clone()),
                };
                inflight.run(key, || request).instrument(span.clone()).await
            }
            _ => request.instrument(span.clone()).await,
        };
        match &fetched {
            Fetched::Answer { status, .. } => {
                span.record("status", status);
                if *status >= 500 {
                    span.record("otel.status_code", "ERROR");
                }
            }
            Fetched::TimedOut | Fetched::Failed { .. } => {
                span.record("otel.status_code", "ERROR");
            }
        }
        let (status, body) = match fetched {
            Fetched::Answer {
                status,
                body,
                issued,
            } => {
                // Only a mutation signs someone in; a query's answer may be shared.
                if let Some(issued) = issued
                    && !self.run.is_query
                {
                    *self.issued.lock().unwrap_or_else(PoisonError::into_inner) =
                        Some((service.to_owned(), issued));
                }
                (status, body)
            }
            Fetched::TimedOut => {
                return Err(unavailable(format!(
                    "subgraph `{service}` did not answer within {}s",
                    endpoint.timeout.as_secs()
                )));
            }
            Fetched::Failed { broke_off } => {
                return Err(unavailable(format!(
                    "subgraph `{service}` {}",
                    if broke_off {
                        "broke off its answer"
                    } else {
                        "is unreachable"
                    }
                )));
            }
        };
        self.received
            .fetch_add(body.len(), std::sync::atomic::Ordering::Relaxed);
        let parsed = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            SubgraphResponse::parse(body, &mut state.sources)
        };
        match parsed {
            Some(parsed) if parsed.data.is_some() || !parsed.errors.is_empty() => {
                self.run.client.metrics.record_subgraph(service, true);
                Ok(parsed)
            }
            _ => {
                tracing::warn!(
                    service,
                    status,
                    "subgraph answered without a GraphQL response"
                );
                Err(unavailable(format!(
                    "subgraph `{service}` answered HTTP {status} without a GraphQL response"
                )))
            }
        }
    }
}

/// One subgraph request, owning what it needs (so requests in flight can share it).
async fn fetch(
    http: reqwest::Client,
    endpoint: Endpoint,
    forwarded: Forwarded,
    body: Bytes,
    service: String,
) -> Fetched {
    let mut request = http
        .post(endpoint.url)
        .timeout(endpoint.timeout)
        .header(reqwest::header::ACCEPT, "application/json")
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("x-request-id", &forwarded.request_id)
        .body(body);
    if let Some(authorization) = &forwarded.authorization {
        request = request.header(reqwest::header::AUTHORIZATION, authorization);
    }
    if let Some(traceparent) = &forwarded.traceparent {
        request = request.header("traceparent", traceparent);
    }
    if let Some(address) = &forwarded.client_address {
        request = request.header(keygraph_kernel::address::CLIENT_ADDRESS_HEADER, address);
    }
    let failed = |e: reqwest::Error, broke_off: bool| {
        tracing::warn!(service, error = %e, "subgraph request failed");
        if e.is_timeout() {
            Fetched::TimedOut
        } else {
            Fetched::Failed { broke_off }
        }
    };
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) => return failed(e, false),
    };
    let status = response.status().as_u16();
    let issued = response
        .headers()
        .get(ISSUED_TOKENS_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(IssuedTokens::parse);
    match response.bytes().await {
        Ok(body) => Fetched::Answer {
            status,
            body,
            issued,
        },
        Err(e) => failed(e, true),
    }
}

/// A subgraph's answer: its data (null counts as none) and errors.
pub(super) struct SubgraphResponse {
    pub(super) data: Option<Value>,
    pub(super) errors: Vec<Json>,
}

impl SubgraphResponse {
    /// `None` when the body is not a JSON object.
    fn parse(body: Bytes, sources: &mut Sources) -> Option<SubgraphResponse> {
        let Ok(Value::Object(members)) = sources.parse(body) else {
            return None;
        };
        let mut response = SubgraphResponse {
            data: None,
            errors: Vec::new(),
        };
        for (key, value) in members {
            if sources.is(key, "data") && !value.is_null() {
                response.data = Some(value);
            } else if sources.is(key, "errors")
                && let Value::Array(errors) = value
            {
                response.errors = errors.iter().map(|e| e.to_serde(sources)).collect();
            }
        }
        Some(response)
    }
}

/// A subgraph's error as the client sees it: its path in the client's response, the subgraph
/// named, locations (which point into the subgraph query) dropped.
pub(super) fn subgraph_error(
    error: Json,
    service: &str,
    rewrite_path: impl Fn(&[Json]) -> Option<Vec<Json>>,
) -> Json {
    let Json::Object(mut error) = error else {
        return json!({ "message": format!("subgraph `{service}` answered a malformed error"), "extensions": { "serviceName": service } });
    };
    let mut out = Map::new();
    let message = error
        .remove("message")
        .filter(Json::is_string)
        .unwrap_or_else(|| Json::String(format!("subgraph `{service}` reported an error")));
    out.insert("message".into(), message);
    if let Some(Json::Array(path)) = error.remove("path")
        && let Some(path) = rewrite_path(&path)
    {
        out.insert("path".into(), Json::Array(path));
    }
    let mut extensions = match error.remove("extensions") {
        Some(Json::Object(extensions)) => extensions,
        _ => Map::new(),
    };
    extensions
        .entry("serviceName")
        .or_insert_with(|| Json::String(service.to_owned()));
    out.insert("extensions".into(), Json::Object(extensions));
    Json::Object(out)
}
