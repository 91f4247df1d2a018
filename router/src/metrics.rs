//! The router's own series, beside what every service exports (`keygraph_kernel::metrics`),
//! served together at `GET /metrics`. The names are those the router has always exported.

use std::sync::Arc;
use std::time::Duration;

use keygraph_kernel::metrics::{Histograms, Labels, latency_histogram, status_class};
use prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge};

pub struct Metrics {
    service: Arc<keygraph_kernel::metrics::Metrics>,
    requests: Family<Labels, Counter>,
    duration: Histograms,
    graphql_errors: Counter,
    subgraphs: Family<Labels, Counter>,
    plans_cached: Gauge,
    supergraph_ready: Gauge,
    shared_counters_unavailable: Family<Labels, Counter>,
}

static ROUTER: std::sync::OnceLock<Arc<Metrics>> = std::sync::OnceLock::new();

impl Metrics {
    /// The router's series in this process (registered once into the router's metrics).
    pub fn shared() -> Arc<Metrics> {
        ROUTER
            .get_or_init(|| Arc::new(Self::new(keygraph_kernel::metrics::Metrics::of("router"))))
            .clone()
    }

    /// The router's series, registered into `service` (the router's metrics).
    pub fn new(service: Arc<keygraph_kernel::metrics::Metrics>) -> Self {
        let metrics = Self {
            requests: Family::default(),
            duration: Histograms::new_with_constructor(latency_histogram as fn() -> _),
            graphql_errors: Counter::default(),
            subgraphs: Family::default(),
            plans_cached: Gauge::default(),
            supergraph_ready: Gauge::default(),
            shared_counters_unavailable: Family::default(),
            service,
        };
        let service = &metrics.service;
        service.register(
            "keygraph_router_requests",
            "GraphQL HTTP requests by status class",
            metrics.requests.clone(),
        );
        service.register(
            "keygraph_router_request_duration_seconds",
            "Time to answer a GraphQL HTTP request",
            metrics.duration.clone(),
        );
        service.register(
            "keygraph_router_graphql_errors",
            "Errors returned in GraphQL responses",
            metrics.graphql_errors.clone(),
        );
        service.register(
            "keygraph_router_subgraph_requests",
            "Requests to subgraphs by outcome",
            metrics.subgraphs.clone(),
        );
        service.register(
            "keygraph_router_query_plans_cached",
            "Query plans in the cache",
            metrics.plans_cached.clone(),
        );
        service.register(
            "keygraph_router_supergraph_ready",
            "Whether a supergraph is being served",
            metrics.supergraph_ready.clone(),
        );
        service.register(
            "keygraph_router_shared_counters_unavailable",
            "Rate-limit decisions taken without Redis (it failed or was resting), as redis.when_unavailable says",
            metrics.shared_counters_unavailable.clone(),
        );
        metrics
    }

    /// One `/graphql` request answered with `status` after `elapsed`.
    pub fn record_request(&self, status: u16, elapsed: Duration) {
        let labels = vec![("status", status_class(status).to_owned())];
        self.requests.get_or_create(&labels).inc();
        self.duration
            .get_or_create(&Vec::new())
            .observe(elapsed.as_secs_f64());
    }

    /// An operation of `kind` answered with errors of these codes (subgraph and router
    /// errors alike).
    pub fn record_operation(&self, kind: &str, codes: &[Option<String>]) {
        self.graphql_errors.inc_by(codes.len() as u64);
        self.service
            .graphql_operation(kind, codes.iter().map(Option::as_deref));
    }

    /// One request to a subgraph: it answered with a GraphQL response, or it did not.
    pub fn record_subgraph(&self, subgraph: &str, answered: bool) {
        let outcome = if answered { "answered" } else { "failed" };
        self.subgraphs
            .get_or_create(&vec![
                ("subgraph", subgraph.to_owned()),
                ("outcome", outcome.to_owned()),
            ])
            .inc();
    }

    /// Everything, as OpenMetrics text; `plans` is the plan cache's size now, `unavailable`
    /// the shared counters' decisions without Redis so far.
    pub fn render(
        &self,
        plans: usize,
        supergraph_ready: bool,
        shared: bool,
        unavailable: u64,
    ) -> String {
        self.plans_cached
            .set(i64::try_from(plans).unwrap_or(i64::MAX));
        self.supergraph_ready.set(i64::from(supergraph_ready));
        let counter = self
            .shared_counters_unavailable
            .get_or_create(&vec![("shared", shared.to_string())]);
        counter.inc_by(unavailable.saturating_sub(counter.get()));
        self.service.render()
    }
}

/// The `extensions.code` of an error, if it has one.
pub fn error_code(error: &serde_json::Value) -> Option<String> {
    error
        .get("extensions")
        .and_then(|e| e.get("code"))
        .and_then(|c| c.as_str())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_land_in_their_class_and_buckets() {
        let metrics = Metrics::new(keygraph_kernel::metrics::Metrics::of("router-unit-test"));
        metrics.record_request(200, Duration::from_millis(3));
        metrics.record_request(400, Duration::from_millis(300));
        metrics.record_subgraph("products", true);
        metrics.record_subgraph("products", false);
        metrics.record_operation("query", &[Some("UNAUTHENTICATED".into())]);
        let text = metrics.render(2, true, false, 3);
        for expected in [
            r#"keygraph_router_requests_total{service="router-unit-test",status="2xx"} 1"#,
            r#"keygraph_router_requests_total{service="router-unit-test",status="4xx"} 1"#,
            r#"keygraph_router_request_duration_seconds_count{service="router-unit-test"} 2"#,
            r#"keygraph_router_subgraph_requests_total{service="router-unit-test",subgraph="products",outcome="failed"} 1"#,
            r#"keygraph_router_query_plans_cached{service="router-unit-test"} 2"#,
            r#"keygraph_router_supergraph_ready{service="router-unit-test"} 1"#,
            r#"keygraph_router_graphql_errors_total{service="router-unit-test"} 1"#,
            r#"keygraph_graphql_errors_total{service="router-unit-test",code="UNAUTHENTICATED"} 1"#,
            r#"keygraph_router_shared_counters_unavailable_total{service="router-unit-test",shared="false"} 3"#,
        ] {
            assert!(text.contains(expected), "{expected} missing from:\n{text}");
        }
    }

    #[test]
    fn error_codes_stay_a_small_set() {
        let code =
            |v: serde_json::Value| keygraph_kernel::metrics::code_label(error_code(&v).as_deref());
        assert_eq!(
            code(serde_json::json!({ "extensions": { "code": "FORBIDDEN" } })),
            "FORBIDDEN"
        );
        assert_eq!(code(serde_json::json!({ "message": "x" })), "NONE");
        assert_eq!(
            code(serde_json::json!({ "extensions": { "code": "user@example.com" } })),
            "OTHER"
        );
    }
}
