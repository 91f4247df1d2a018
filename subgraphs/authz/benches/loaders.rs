//! What the DataLoaders save: `_entities` for many users selecting `roles { permissions { code } }`,
//! answered by authz over HTTP with the loaders batching a level's keys (up to `MAX_BATCH`)
//! and with batches of one key (a statement per item, as a naive look-up does), side by side.
//!
//!     cargo bench -p keygraph-authz --bench loaders [-- --users 100 --iterations 200]
//!
//! Runs on SQLite, and on Postgres too when `TEST_DATABASE_URL` is set.

use std::time::{Duration, Instant};

use chrono::Utc;
use keygraph_authz::{
    MAX_BATCH,
    entity::{role, role_permission, user_role},
};
use keygraph_kernel::{
    config::Config,
    http,
    internal::LocalServices,
    testing::{
        Backend, INTERNAL_TOKEN, StatementLog, TestDatabase, TestServer, TestSigner, test_config,
    },
};
use sea_orm::{ActiveModelTrait, DatabaseConnection, Set};
use serde_json::{Value, json};
use uuid::Uuid;

const QUERY: &str = "query($r: [_Any!]!) { _entities(representations: $r) { ... on User { id roles { name permissions { code } } } } }";

struct Options {
    users: usize,
    iterations: usize,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    Options {
        users: value("--users", 100),
        iterations: value("--iterations", 200),
    }
}

struct Measured {
    statements: usize,
    latencies: Vec<Duration>,
}

impl Measured {
    fn percentile(&self, p: f64) -> f64 {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted.get(index).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    }

    fn mean(&self) -> f64 {
        let total: Duration = self.latencies.iter().sum();
        total.as_secs_f64() * 1000.0 / self.latencies.len().max(1) as f64
    }
}

async fn seed(db: &DatabaseConnection, users: usize) -> Vec<Uuid> {
    let mut roles = Vec::new();
    for (name, codes) in [
        ("bench-a", ["identity.user.read", "identity.user.update"]),
        ("bench-b", ["authz.role.read", "authz.role.*"]),
        ("bench-c", ["audit.event.read", "*"]),
    ] {
        let id = Uuid::now_v7();
        role::ActiveModel {
            id: Set(id),
            name: Set(name.into()),
            description: Set(String::new()),
            built_in: Set(false),
            created_at: Set(Utc::now()),
            updated_at: Set(Utc::now()),
        }
        .insert(db)
        .await
        .expect("seed role");
        for code in codes {
            role_permission::ActiveModel {
                role_id: Set(id),
                permission_code: Set(code.into()),
                granted_by: Set(None),
                granted_at: Set(Utc::now()),
            }
            .insert(db)
            .await
            .expect("seed grant");
        }
        roles.push(id);
    }
    let mut ids = Vec::with_capacity(users);
    for _ in 0..users {
        let user = Uuid::now_v7();
        for role in &roles {
            user_role::ActiveModel {
                user_id: Set(user),
                role_id: Set(*role),
                granted_by: Set(None),
                granted_at: Set(Utc::now()),
            }
            .insert(db)
            .await
            .expect("seed user role");
        }
        ids.push(user);
    }
    ids
}

/// One authz service whose loaders ask for at most `max_batch` keys per statement, on its
/// own pool so its statements count alone.
async fn serve(config: &Config, max_batch: usize) -> (TestServer, StatementLog) {
    let mut db = keygraph_authz::connect(config).await.expect("database");
    let log = StatementLog::attach(&mut db);
    let service = keygraph_authz::build_with(
        config,
        db,
        INTERNAL_TOKEN,
        &LocalServices::default(),
        max_batch,
    )
    .await
    .expect("authz");
    let server = TestServer::start(
        "authz",
        service.router,
        config,
        http::database_readiness(service.db),
        TestServer::shutdown_pair(),
    )
    .await;
    (server, log)
}

async fn run(
    server: &TestServer,
    log: &StatementLog,
    variables: &Value,
    token: &str,
    users: usize,
) -> (Duration, usize) {
    let before = log.len();
    let started = Instant::now();
    let answer = server.gql(QUERY, variables.clone(), Some(token)).await;
    let elapsed = started.elapsed();
    let entities = answer.data()["_entities"].as_array().map_or(0, Vec::len);
    assert_eq!(entities, users, "every user answered");
    (elapsed, log.len() - before)
}

async fn bench(backend: Backend, options: &Options) -> Option<Vec<(String, Measured)>> {
    let database = TestDatabase::new(backend, "authz")?;
    let data = tempfile::tempdir().expect("data dir");
    let signer = TestSigner::default();
    let mut config = test_config(data.path(), &signer);
    config.authz.database_url = Some(database.url.clone());
    config.authz.schema = database.schema.clone();
    config.log.filter = "error".into();

    let (batched, batched_log) = serve(&config, MAX_BATCH).await;
    let (per_item, per_item_log) = serve(&config, 1).await;
    let seed_db = keygraph_authz::connect(&config).await.expect("database");
    let users = seed(&seed_db, options.users).await;
    let variables = json!({ "r": users.iter().map(|u| json!({ "__typename": "User", "id": u })).collect::<Vec<_>>() });
    let codes: Vec<&str> = keygraph_kernel::permissions::CATALOG
        .iter()
        .map(|(c, _)| *c)
        .collect();
    let token = signer.token(Uuid::now_v7(), &codes);

    let mut results = vec![
        (
            "loaders".to_owned(),
            Measured {
                statements: 0,
                latencies: Vec::new(),
            },
        ),
        (
            "per-item".to_owned(),
            Measured {
                statements: 0,
                latencies: Vec::new(),
            },
        ),
    ];
    for round in 0..options.iterations + 10 {
        // Alternate so both see the same conditions; the first rounds warm up.
        for (i, (server, log)) in [(&batched, &batched_log), (&per_item, &per_item_log)]
            .into_iter()
            .enumerate()
        {
            let (elapsed, statements) = run(server, log, &variables, &token, options.users).await;
            if round >= 10 {
                results[i].1.latencies.push(elapsed);
                results[i].1.statements = statements;
            }
        }
    }
    Some(results)
}

fn main() {
    let options = options();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "authz `_entities` for {} users selecting roles {{ permissions {{ code }} }} (3 roles of 2 grants each), {} requests each over loopback HTTP",
        options.users, options.iterations
    );
    println!(
        "{:<9} {:<9} {:>16} {:>9} {:>9} {:>9}",
        "backend", "lookup", "statements/query", "p50 ms", "p99 ms", "mean ms"
    );
    for (name, backend) in [("sqlite", Backend::Sqlite), ("postgres", Backend::Postgres)] {
        let Some(results) = runtime.block_on(bench(backend, &options)) else {
            println!("{name:<9} (skipped: TEST_DATABASE_URL is not set)");
            continue;
        };
        for (lookup, measured) in &results {
            println!(
                "{:<9} {:<9} {:>16} {:>9.2} {:>9.2} {:>9.2}",
                name,
                lookup,
                measured.statements,
                measured.percentile(0.5),
                measured.percentile(0.99),
                measured.mean()
            );
        }
        let speedup = results[1].1.percentile(0.5) / results[0].1.percentile(0.5).max(f64::EPSILON);
        println!("{name:<9} loaders answer {speedup:.1}x faster at p50");
    }
}
