//! Prometheus metrics of every service, served at its `/metrics` (OpenMetrics text).
//!
//! Each service has one [`Metrics`] ([`Metrics::of`]); every series carries a `service`
//! label, so the five services of the embedded default stay apart on one dashboard. The
//! kernel records what all services share (HTTP, GraphQL, the database, the outbox, the
//! revocation list); services add their own series with [`Metrics::register`].
//! `docs/metrics.md` lists them all.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use prometheus_client::{
    encoding::text::encode,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::{Metric, Registry},
};
use sea_orm::{DatabaseConnection, DbBackend};

/// Label pairs of one series.
pub type Labels = Vec<(&'static str, String)>;

/// A family of histograms, each with the latency buckets below.
pub type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

/// Seconds: 0.5 ms to about 16 s, doubling.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// A gauge of seconds (or any fraction).
pub type SecondsGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// The OpenMetrics content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

pub struct Metrics {
    registry: Mutex<Registry>,
    http_requests: Family<Labels, Counter>,
    http_duration: Histograms,
    graphql_operations: Family<Labels, Counter>,
    graphql_errors: Family<Labels, Counter>,
    db_statements: Histograms,
    db_statement_errors: Family<Labels, Counter>,
    db_connections: Family<Labels, Gauge>,
    db_max_connections: Gauge,
    outbox_backlog: Gauge,
    outbox_oldest: SecondsGauge,
    relay_lag: Histogram,
    relay_failures: Counter,
    revocations_age: SecondsGauge,
    sign_ins: Family<Labels, Counter>,
    throttled: Family<Labels, Counter>,
    refresh_reuse: Counter,
    revocation_lists: Mutex<Vec<crate::token::RevocationsAge>>,
    databases: Mutex<Vec<(u64, DatabaseConnection)>>,
    before_render: Mutex<Vec<Box<dyn Fn() + Send + Sync>>>,
}

static BY_SERVICE: OnceLock<Mutex<HashMap<String, Arc<Metrics>>>> = OnceLock::new();

impl Metrics {
    /// The metrics of `service` in this process (made on first use).
    pub fn of(service: &str) -> Arc<Metrics> {
        let all = BY_SERVICE.get_or_init(Mutex::default);
        let mut all = all
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        all.entry(service.to_owned())
            .or_insert_with(|| Arc::new(Metrics::new(service)))
            .clone()
    }

    fn new(service: &str) -> Self {
        let mut registry = Registry::with_labels(
            [(
                std::borrow::Cow::Borrowed("service"),
                std::borrow::Cow::Owned(service.to_owned()),
            )]
            .into_iter(),
        );
        let histograms = || Histograms::new_with_constructor(latency_histogram as fn() -> _);
        let mut metrics = Self {
            http_requests: Family::default(),
            http_duration: histograms(),
            graphql_operations: Family::default(),
            graphql_errors: Family::default(),
            db_statements: histograms(),
            db_statement_errors: Family::default(),
            db_connections: Family::default(),
            db_max_connections: Gauge::default(),
            outbox_backlog: Gauge::default(),
            outbox_oldest: SecondsGauge::default(),
            relay_lag: latency_histogram(),
            relay_failures: Counter::default(),
            revocations_age: SecondsGauge::default(),
            sign_ins: Family::default(),
            throttled: Family::default(),
            refresh_reuse: Counter::default(),
            revocation_lists: Mutex::default(),
            databases: Mutex::default(),
            before_render: Mutex::default(),
            registry: Mutex::new(Registry::default()),
        };
        registry.register(
            "keygraph_http_requests",
            "HTTP requests answered, by route and status class",
            metrics.http_requests.clone(),
        );
        registry.register(
            "keygraph_http_request_duration_seconds",
            "Time to answer an HTTP request, by route and status class",
            metrics.http_duration.clone(),
        );
        registry.register(
            "keygraph_graphql_operations",
            "GraphQL operations executed, by kind",
            metrics.graphql_operations.clone(),
        );
        registry.register(
            "keygraph_graphql_errors",
            "Errors in GraphQL responses, by extensions.code",
            metrics.graphql_errors.clone(),
        );
        registry.register(
            "keygraph_db_statement_duration_seconds",
            "Time a database statement took, by kind and table",
            metrics.db_statements.clone(),
        );
        registry.register(
            "keygraph_db_statement_errors",
            "Database statements that failed, by kind and table",
            metrics.db_statement_errors.clone(),
        );
        registry.register(
            "keygraph_db_pool_connections",
            "Connections of the database pool, by state (idle, in_use)",
            metrics.db_connections.clone(),
        );
        registry.register(
            "keygraph_db_pool_max_connections",
            "The most connections the database pool opens",
            metrics.db_max_connections.clone(),
        );
        registry.register(
            "keygraph_outbox_backlog_events",
            "Audit events in the outbox not yet delivered to audit",
            metrics.outbox_backlog.clone(),
        );
        registry.register(
            "keygraph_outbox_oldest_event_age_seconds",
            "Age of the oldest undelivered outbox event (0 when none waits)",
            metrics.outbox_oldest.clone(),
        );
        registry.register(
            "keygraph_outbox_relay_lag_seconds",
            "Time from an event's commit to audit confirming it",
            metrics.relay_lag.clone(),
        );
        registry.register(
            "keygraph_outbox_relay_failures",
            "Batches audit did not confirm (it was down or refused them)",
            metrics.relay_failures.clone(),
        );
        registry.register(
            "keygraph_revocation_list_age_seconds",
            "Seconds since the list of ended sessions was last loaded from auth",
            metrics.revocations_age.clone(),
        );
        registry.register(
            "keygraph_sign_ins",
            "Sign-in attempts, by outcome (succeeded, failed, unverified, throttled)",
            metrics.sign_ins.clone(),
        );
        registry.register(
            "keygraph_throttled_attempts",
            "Password attempts refused by the throttle before any check, by action",
            metrics.throttled.clone(),
        );
        registry.register(
            "keygraph_refresh_reuse_detected",
            "Spent refresh tokens presented again (their sessions were ended)",
            metrics.refresh_reuse.clone(),
        );
        registry.register(
            "keygraph_build_info",
            "Always 1; the version in its label",
            build_info(),
        );
        metrics.registry = Mutex::new(registry);
        metrics
    }

    /// Adds a service's own series.
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .register(name, help, metric);
    }

    /// Runs `refresh` before every rendering (gauges read from elsewhere).
    pub fn before_render(&self, refresh: impl Fn() + Send + Sync + 'static) {
        self.before_render
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Box::new(refresh));
    }

    /// The OpenMetrics text of every series.
    pub fn render(&self) -> String {
        self.refresh_pools();
        let ages = {
            let mut lists = self
                .revocation_lists
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // Verifiers that are gone (their service stopped) leave the list.
            let mut ages = Vec::new();
            lists.retain(|list| match list.get() {
                Some(age) => {
                    ages.extend(age);
                    true
                }
                None => false,
            });
            ages.into_iter().max()
        };
        if let Some(age) = ages {
            self.revocations_age.set(age.as_secs_f64());
        }
        for refresh in self
            .before_render
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            refresh();
        }
        let mut out = String::new();
        let registry = self
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &registry);
        out
    }

    /// One HTTP request answered.
    pub fn http_request(&self, route: &str, status: u16, elapsed: Duration) {
        let labels = vec![
            ("route", route.to_owned()),
            ("status", status_class(status).to_owned()),
        ];
        self.http_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        self.http_requests.get_or_create(&labels).inc();
    }

    /// One GraphQL operation executed, and the codes of the errors it answered with.
    /// `error_codes`: each error's `extensions.code`, `None` when it has none; they are
    /// counted under [`code_label`].
    pub fn graphql_operation<'a>(
        &self,
        kind: &str,
        error_codes: impl Iterator<Item = Option<&'a str>>,
    ) {
        self.graphql_operations
            .get_or_create(&vec![("kind", kind.to_owned())])
            .inc();
        for code in error_codes {
            self.graphql_errors
                .get_or_create(&vec![("code", code_label(code))])
                .inc();
        }
    }

    /// One database statement finished.
    pub fn statement(&self, operation: &str, table: &str, elapsed: Duration, failed: bool) {
        let labels = vec![
            ("operation", operation.to_owned()),
            ("table", table.to_owned()),
        ];
        self.db_statements
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        // The error series of every statement seen exists (at 0 until one fails), so an
        // error rate divides by what ran.
        let errors = self.db_statement_errors.get_or_create(&labels);
        if failed {
            errors.inc();
        }
    }

    /// Watches `db`'s pool (size, idle) for the pool gauges while the returned guard lives.
    pub fn watch_pool(self: &Arc<Self>, db: &DatabaseConnection) -> PoolWatch {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.databases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((id, db.clone()));
        PoolWatch {
            metrics: self.clone(),
            id,
        }
    }

    fn refresh_pools(&self) {
        let databases = self
            .databases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (mut size, mut idle, mut max) = (0i64, 0i64, 0i64);
        for (_, db) in databases.iter() {
            let (s, i, m) = match db.get_database_backend() {
                DbBackend::Postgres => {
                    let pool = db.get_postgres_connection_pool();
                    (
                        pool.size(),
                        pool.num_idle(),
                        pool.options().get_max_connections(),
                    )
                }
                DbBackend::Sqlite => {
                    let pool = db.get_sqlite_connection_pool();
                    (
                        pool.size(),
                        pool.num_idle(),
                        pool.options().get_max_connections(),
                    )
                }
                _ => continue,
            };
            size += i64::from(s);
            idle += i64::try_from(i).unwrap_or(i64::MAX);
            max += i64::from(m);
        }
        if databases.is_empty() {
            return;
        }
        self.db_connections
            .get_or_create(&vec![("state", "idle".to_owned())])
            .set(idle);
        self.db_connections
            .get_or_create(&vec![("state", "in_use".to_owned())])
            .set((size - idle).max(0));
        self.db_max_connections.set(max);
    }

    /// The outbox holds `backlog` undelivered events, the oldest this old.
    pub fn outbox(&self, backlog: u64, oldest: Option<Duration>) {
        self.outbox_backlog
            .set(i64::try_from(backlog).unwrap_or(i64::MAX));
        self.outbox_oldest
            .set(oldest.map_or(0.0, |age| age.as_secs_f64()));
    }

    /// Audit confirmed an event committed `lag` ago.
    pub fn relayed(&self, lag: Duration) {
        self.relay_lag.observe(lag.as_secs_f64());
    }

    /// A batch was not confirmed.
    pub fn relay_failed(&self) {
        self.relay_failures.inc();
    }

    /// A sign-in attempt ended with `outcome`.
    pub fn sign_in(&self, outcome: &'static str) {
        self.sign_ins
            .get_or_create(&vec![("outcome", outcome.to_owned())])
            .inc();
    }

    /// The throttle refused a password attempt of `action` (`sign_in`, `change_password`).
    pub fn throttled(&self, action: &'static str) {
        self.throttled
            .get_or_create(&vec![("action", action.to_owned())])
            .inc();
    }

    /// A spent refresh token came back.
    pub fn refresh_reuse_detected(&self) {
        self.refresh_reuse.inc();
    }

    /// Reports the age of a verifier's list of ended sessions while the verifier lives.
    pub fn watch_revocations(&self, list: crate::token::RevocationsAge) {
        self.revocation_lists
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(list);
    }
}

/// Keeps a database pool in its service's gauges until dropped (the service stopped):
/// the metrics never keep a pool, and its connections, open.
pub struct PoolWatch {
    metrics: Arc<Metrics>,
    id: u64,
}

impl Drop for PoolWatch {
    fn drop(&mut self) {
        self.metrics
            .databases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|(id, _)| *id != self.id);
    }
}

/// An error's `extensions.code` as a label: a code-like value, `OTHER` for anything else
/// (labels stay few), `NONE` when there is none.
pub fn code_label(code: Option<&str>) -> String {
    match code {
        None => "NONE".into(),
        Some(code)
            if !code.is_empty()
                && code.len() <= 48
                && code.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') =>
        {
            code.to_owned()
        }
        Some(_) => "OTHER".into(),
    }
}

/// `2xx`, `4xx`, ...
pub fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

fn build_info() -> prometheus_client::metrics::info::Info<Vec<(&'static str, String)>> {
    prometheus_client::metrics::info::Info::new(vec![(
        "version",
        env!("CARGO_PKG_VERSION").to_owned(),
    )])
}

/// A counter family with one label, for services' own series.
pub fn counter_family() -> Family<Labels, Counter> {
    Family::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_carry_the_service_and_their_labels() {
        let metrics = Metrics::of("metrics-unit-test");
        metrics.http_request("/graphql", 200, Duration::from_millis(3));
        metrics.http_request("/graphql", 503, Duration::from_millis(3));
        metrics.graphql_operation("query", [Some("UNAUTHENTICATED")].into_iter());
        metrics.statement("SELECT", "users", Duration::from_millis(1), false);
        let text = metrics.render();
        for expected in [
            r#"keygraph_http_requests_total{service="metrics-unit-test",route="/graphql",status="2xx"} 1"#,
            r#"keygraph_http_requests_total{service="metrics-unit-test",route="/graphql",status="5xx"} 1"#,
            r#"keygraph_graphql_operations_total{service="metrics-unit-test",kind="query"} 1"#,
            r#"keygraph_graphql_errors_total{service="metrics-unit-test",code="UNAUTHENTICATED"} 1"#,
            r#"keygraph_db_statement_duration_seconds_count{service="metrics-unit-test",operation="SELECT",table="users"} 1"#,
            "# EOF",
        ] {
            assert!(text.contains(expected), "{expected} missing from:\n{text}");
        }
    }

    /// A pool watched for the gauges is let go with its watch: the metrics never keep a
    /// stopped service's connections open (they did, and test runs ran out of them).
    #[tokio::test]
    async fn a_watched_pool_is_let_go_with_its_watch() {
        let metrics = Metrics::of("metrics-pool-test");
        let db = sea_orm::Database::connect("sqlite::memory:")
            .await
            .expect("sqlite");
        let watch = metrics.watch_pool(&db);
        assert!(
            metrics
                .render()
                .contains(r#"keygraph_db_pool_max_connections{service="metrics-pool-test"}"#)
        );
        let held = || {
            metrics
                .databases
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .len()
        };
        assert_eq!(held(), 1);
        drop(watch);
        assert_eq!(held(), 0, "the metrics hold no pool once the watch is gone");
    }
}
