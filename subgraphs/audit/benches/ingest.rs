//! Audit ingest rate: batches of 100 events posted to the audit service's internal endpoint
//! over loopback HTTP, as the relays of separate service processes send them (three at a
//! time: identity's, authz's and auth's), into a SQLite file and, when `TEST_DATABASE_URL`
//! is set, into Postgres. Rounds alternate between the backends; each round's rate is
//! printed with its ratio to the target of 10,000 events/s, then the pooled figures.
//!
//!     cargo bench -p keygraph-audit --bench ingest [-- --batches 40 --rounds 5]

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::Utc;
use keygraph_kernel::testing::{
    Backend, INTERNAL_TOKEN, TestDatabase, TestServer, TestSigner, test_config,
};
use serde_json::{Value, json};
use uuid::Uuid;

const TARGET: f64 = 10_000.0;
const BATCH: usize = 100;
const RELAYS: usize = 3;

fn arg(flag: &str, default: usize) -> usize {
    let mut args = std::env::args().skip_while(|a| a != flag);
    args.next();
    args.next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
        .max(1)
}

/// An outbox event the size of a real one (a sign-in: actor, session, request, address).
fn event(i: usize) -> Value {
    json!({
        "id": Uuid::now_v7(),
        "occurredAt": Utc::now(),
        "actorId": Uuid::now_v7(),
        "action": "auth.login.succeeded",
        "targetType": "session",
        "targetId": Uuid::now_v7().to_string(),
        "outcome": "success",
        "metadata": { "method": "password", "n": i },
        "requestId": Uuid::new_v4().simple().to_string(),
        "clientAddress": "127.0.0.2",
    })
}

struct Target {
    server: TestServer,
    _database: TestDatabase,
    _data: tempfile::TempDir,
}

async fn start(backend: Backend) -> Option<Target> {
    let database = TestDatabase::new(backend, "audit")?;
    let data = tempfile::tempdir().ok()?;
    let signer = TestSigner::new("bench");
    let mut config = test_config(data.path(), &signer);
    config.audit.database_url = Some(database.url.clone());
    config.audit.schema = database.schema.clone();
    config.audit.signing_key = Some("AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=".into());
    config.log.filter = "error".into();
    let service = keygraph_audit::build(&config, INTERNAL_TOKEN)
        .await
        .expect("audit service");
    let server = TestServer::start(
        "audit",
        service.router,
        &config,
        Arc::new(|| Box::pin(async { true })),
        TestServer::shutdown_pair(),
    )
    .await;
    Some(Target {
        server,
        _database: database,
        _data: data,
    })
}

/// Events per second for `batches` batches per relay, `RELAYS` relays at once.
async fn round(target: &Target, batches: usize) -> f64 {
    let prepared: Vec<Vec<Value>> = (0..RELAYS)
        .map(|relay| {
            (0..batches)
                .map(|b| {
                    let service = ["identity", "authz", "auth"][relay];
                    json!({
                        "service": service,
                        "events": (0..BATCH).map(|i| event(b * BATCH + i)).collect::<Vec<_>>(),
                    })
                })
                .collect()
        })
        .collect();
    let url = format!("{}/internal/events", target.server.base);
    let started = Instant::now();
    futures::future::join_all(prepared.into_iter().map(|batches| {
        let http = target.server.http.clone();
        let url = url.clone();
        async move {
            for batch in batches {
                let answer: Value = http
                    .post(&url)
                    .bearer_auth(INTERNAL_TOKEN)
                    .json(&batch)
                    .send()
                    .await
                    .expect("send")
                    .json()
                    .await
                    .expect("receipt");
                assert_eq!(answer["stored"], BATCH, "{answer}");
            }
        }
    }))
    .await;
    (RELAYS * batches * BATCH) as f64 / started.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn main() {
    let batches = arg("--batches", 40);
    let rounds = arg("--rounds", 5);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut targets = vec![("sqlite", start(Backend::Sqlite).await.expect("sqlite"))];
        if let Some(postgres) = start(Backend::Postgres).await {
            targets.push(("postgres", postgres));
        } else {
            println!("(TEST_DATABASE_URL is not set: SQLite only)");
        }
        println!(
            "audit ingest: {RELAYS} relays at once, batches of {BATCH}, {batches} batches each per round, {rounds} rounds"
        );
        let mut rates: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
        // One warm-up round each: connections, prepared statements, file growth.
        for (_, target) in &targets {
            round(target, batches.min(5)).await;
        }
        for r in 0..rounds {
            for (i, (name, target)) in targets.iter().enumerate() {
                let rate = round(target, batches).await;
                println!(
                    "round {}: {name:>8} {rate:>9.0} events/s  ({:.2}x the target)",
                    r + 1,
                    rate / TARGET
                );
                rates[i].push(rate);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        println!("pooled medians (target {TARGET:.0} events/s):");
        for ((name, _), rates) in targets.iter().zip(rates) {
            let m = median(rates);
            println!("  {name:>8} {m:>9.0} events/s  {:.2}x", m / TARGET);
        }
    });
}
