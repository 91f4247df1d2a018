//! Prometheus metrics of the router, served at `GET /metrics` (text exposition format 0.0.4).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the request duration histogram.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
pub struct Metrics {
    /// By status class: 1xx..5xx at index 0..4.
    requests: [AtomicU64; 5],
    buckets: [AtomicU64; BUCKETS.len()],
    duration_micros: AtomicU64,
    graphql_errors: AtomicU64,
    /// Per subgraph: (answered, failed).
    subgraphs: Mutex<BTreeMap<String, (u64, u64)>>,
}

impl Metrics {
    /// One `/graphql` request answered with `status` after `elapsed`.
    pub fn record_request(&self, status: u16, elapsed: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.requests[class].fetch_add(1, Ordering::Relaxed);
        let seconds = elapsed.as_secs_f64();
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.duration_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Errors in a response (subgraph and router errors alike).
    pub fn record_graphql_errors(&self, count: usize) {
        self.graphql_errors
            .fetch_add(count as u64, Ordering::Relaxed);
    }

    /// One request to a subgraph: it answered with a GraphQL response, or it did not.
    pub fn record_subgraph(&self, subgraph: &str, answered: bool) {
        let mut subgraphs = self
            .subgraphs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = subgraphs.entry(subgraph.to_owned()).or_default();
        if answered {
            entry.0 += 1;
        } else {
            entry.1 += 1;
        }
    }

    /// The text exposition; `plans` is the plan cache's current size.
    pub fn render(&self, plans: usize, supergraph_ready: bool) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP keygraph_router_requests_total GraphQL HTTP requests by status class."
        );
        let _ = writeln!(out, "# TYPE keygraph_router_requests_total counter");
        for (i, counter) in self.requests.iter().enumerate() {
            let _ = writeln!(
                out,
                "keygraph_router_requests_total{{status=\"{}xx\"}} {}",
                i + 1,
                counter.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP keygraph_router_request_duration_seconds Time to answer a GraphQL HTTP request."
        );
        let _ = writeln!(
            out,
            "# TYPE keygraph_router_request_duration_seconds histogram"
        );
        let total: u64 = self
            .requests
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum();
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            let _ = writeln!(
                out,
                "keygraph_router_request_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "keygraph_router_request_duration_seconds_bucket{{le=\"+Inf\"}} {total}"
        );
        let _ = writeln!(
            out,
            "keygraph_router_request_duration_seconds_sum {}",
            self.duration_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "keygraph_router_request_duration_seconds_count {total}"
        );
        let _ = writeln!(
            out,
            "# HELP keygraph_router_graphql_errors_total Errors returned in GraphQL responses."
        );
        let _ = writeln!(out, "# TYPE keygraph_router_graphql_errors_total counter");
        let _ = writeln!(
            out,
            "keygraph_router_graphql_errors_total {}",
            self.graphql_errors.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP keygraph_router_subgraph_requests_total Requests to subgraphs by outcome."
        );
        let _ = writeln!(
            out,
            "# TYPE keygraph_router_subgraph_requests_total counter"
        );
        let subgraphs = self
            .subgraphs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (name, (answered, failed)) in subgraphs.iter() {
            let _ = writeln!(
                out,
                "keygraph_router_subgraph_requests_total{{subgraph=\"{name}\",outcome=\"answered\"}} {answered}"
            );
            let _ = writeln!(
                out,
                "keygraph_router_subgraph_requests_total{{subgraph=\"{name}\",outcome=\"failed\"}} {failed}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP keygraph_router_query_plans_cached Query plans in the cache."
        );
        let _ = writeln!(out, "# TYPE keygraph_router_query_plans_cached gauge");
        let _ = writeln!(out, "keygraph_router_query_plans_cached {plans}");
        let _ = writeln!(
            out,
            "# HELP keygraph_router_supergraph_ready Whether a supergraph is being served."
        );
        let _ = writeln!(out, "# TYPE keygraph_router_supergraph_ready gauge");
        let _ = writeln!(
            out,
            "keygraph_router_supergraph_ready {}",
            u8::from(supergraph_ready)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_land_in_their_class_and_buckets() {
        let metrics = Metrics::default();
        metrics.record_request(200, Duration::from_millis(3));
        metrics.record_request(400, Duration::from_millis(300));
        metrics.record_subgraph("products", true);
        metrics.record_subgraph("products", false);
        let text = metrics.render(2, true);
        assert!(
            text.contains("keygraph_router_requests_total{status=\"2xx\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("keygraph_router_requests_total{status=\"4xx\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("keygraph_router_request_duration_seconds_bucket{le=\"0.005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("keygraph_router_request_duration_seconds_bucket{le=\"0.5\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("keygraph_router_request_duration_seconds_bucket{le=\"+Inf\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("subgraph=\"products\",outcome=\"failed\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("keygraph_router_query_plans_cached 2"),
            "{text}"
        );
    }
}
