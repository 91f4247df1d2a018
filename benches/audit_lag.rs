//! Relay lag under load: the `keygraph` binary (embedded: every service in one process) on
//! SQLite and, when `TEST_DATABASE_URL` is set, on Postgres, with clients signing in as fast
//! as they can. Every sign-in writes `auth.login.succeeded` into auth's outbox; the relay
//! carries it to audit. For each round the lag of every such event, `receivedAt` minus
//! `occurredAt` (commit in auth to stored in audit), gives p50, p99 and the maximum, printed
//! with the ratio of p99 to the target of 1 s. Rounds alternate between the backends.
//!
//!     cargo bench --bench audit_lag [-- --seconds 5 --rounds 3 --clients 8]

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/harness/mod.rs"]
mod harness;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use harness::{ADMIN_PASSWORD, Stack, Topology, data};
use keygraph_kernel::testing::Backend;
use serde_json::json;

const ADMIN_EMAIL: &str = "admin@keygraph.localhost";
const LOGIN: &str = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { ... on AuthPayload { accessToken } } }";
const TARGET_P99_MS: f64 = 1000.0;

fn arg(flag: &str, default: u64) -> u64 {
    let mut args = std::env::args().skip_while(|a| a != flag);
    args.next();
    args.next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
        .max(1)
}

async fn admin_token(stack: &Stack) -> String {
    let answer = stack
        .gql(
            LOGIN,
            json!({ "e": ADMIN_EMAIL, "p": ADMIN_PASSWORD }),
            None,
        )
        .await;
    data(&answer)["login"]["accessToken"]
        .as_str()
        .expect("token")
        .to_owned()
}

/// Signs in with `clients` clients at once for `duration`; the sign-ins that succeeded.
async fn load(stack: &Stack, clients: u64, duration: Duration) -> u64 {
    let started = Instant::now();
    let counts = futures::future::join_all((0..clients).map(|_| async move {
        let mut n = 0;
        while started.elapsed() < duration {
            let answer = stack
                .gql(
                    LOGIN,
                    json!({ "e": ADMIN_EMAIL, "p": ADMIN_PASSWORD }),
                    None,
                )
                .await;
            if answer.get("errors").is_none() {
                n += 1;
            }
        }
        n
    }))
    .await;
    counts.into_iter().sum()
}

/// Lags (ms) of the sign-ins that occurred since `since`, once all `expected` have arrived.
async fn lags(stack: &Stack, token: &str, since: DateTime<Utc>, expected: u64) -> Vec<f64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let filter = json!({ "action": "auth.login.succeeded", "since": since });
    loop {
        let counted = stack
            .gql(
                "query($f: AuditEventFilter) { auditEvents(first: 0, filter: $f) { totalCount } }",
                json!({ "f": filter }),
                Some(token),
            )
            .await;
        let total = data(&counted)["auditEvents"]["totalCount"]
            .as_u64()
            .unwrap_or(0);
        if total >= expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{total} of {expected} events arrived"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut lags = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = stack
            .gql(
                "query($f: AuditEventFilter, $a: String) { auditEvents(first: 100, after: $a, filter: $f) { pageInfo { hasNextPage endCursor } edges { node { occurredAt receivedAt } } } }",
                json!({ "f": filter, "a": after }),
                Some(token),
            )
            .await;
        let page = &data(&page)["auditEvents"];
        for edge in page["edges"].as_array().into_iter().flatten() {
            let time = |field: &str| {
                edge["node"][field]
                    .as_str()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&Utc))
                    .expect("a time")
            };
            let lag = time("receivedAt") - time("occurredAt");
            lags.push(lag.num_microseconds().unwrap_or(0) as f64 / 1000.0);
        }
        if page["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = page["pageInfo"]["endCursor"].as_str().map(str::to_owned);
    }
    lags
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or(0.0)
}

fn main() {
    let seconds = Duration::from_secs(arg("--seconds", 5));
    let rounds = arg("--rounds", 3);
    let clients = arg("--clients", 8);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let settings = [
            ("KEYGRAPH__LOG__FILTER", "error"),
            ("KEYGRAPH__ROUTER__RATE_LIMIT__PER_ADDRESS__MUTATION", "1000000"),
            ("KEYGRAPH__ROUTER__RATE_LIMIT__PER_ADDRESS__QUERY", "1000000"),
            ("KEYGRAPH__ROUTER__RATE_LIMIT__PER_USER__QUERY", "1000000"),
        ];
        let mut stacks = Vec::new();
        for (name, backend) in [("sqlite", Backend::Sqlite), ("postgres", Backend::Postgres)] {
            match Stack::start_with(backend, Topology::Embedded, &settings).await {
                Some(stack) => {
                    let token = admin_token(&stack).await;
                    stacks.push((name, stack, token));
                }
                None => println!("(TEST_DATABASE_URL is not set: SQLite only)"),
            }
        }
        println!(
            "relay lag, commit in auth to stored in audit: {clients} clients signing in for {}s per round, {rounds} rounds",
            seconds.as_secs()
        );
        let mut pooled: Vec<Vec<f64>> = vec![Vec::new(); stacks.len()];
        for round in 1..=rounds {
            for (i, (name, stack, token)) in stacks.iter().enumerate() {
                let since = Utc::now();
                let logins = load(stack, clients, seconds).await;
                let mut lags = lags(stack, token, since, logins).await;
                lags.sort_by(f64::total_cmp);
                let p99 = percentile(&lags, 0.99);
                println!(
                    "round {round}: {name:>8} {:>5} events ({:.0} sign-ins/s)  p50 {:>6.1} ms  p99 {:>6.1} ms  max {:>6.1} ms  p99/target {:.2}",
                    lags.len(),
                    logins as f64 / seconds.as_secs_f64(),
                    percentile(&lags, 0.5),
                    p99,
                    lags.last().copied().unwrap_or(0.0),
                    p99 / TARGET_P99_MS
                );
                pooled[i].extend(lags);
            }
        }
        println!("pooled (target p99 under {TARGET_P99_MS:.0} ms):");
        for ((name, _, _), mut lags) in stacks.iter().zip(pooled) {
            lags.sort_by(f64::total_cmp);
            println!(
                "  {name:>8} {:>6} events  p50 {:>6.1} ms  p99 {:>6.1} ms  max {:>6.1} ms  p99/target {:.2}",
                lags.len(),
                percentile(&lags, 0.5),
                percentile(&lags, 0.99),
                lags.last().copied().unwrap_or(0.0),
                percentile(&lags, 0.99) / TARGET_P99_MS
            );
        }
    });
}
