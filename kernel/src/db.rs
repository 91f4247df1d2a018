//! Database connections: one pool per service, on Postgres (a schema per service, pinned in
//! `search_path`) or SQLite (a file per service). Migrations run at start-up.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseConnectionType,
    DatabaseTransaction, DbBackend, DbErr, SqliteTransactionMode, Statement, TransactionOptions,
    TransactionTrait,
};
use sea_orm_migration::MigratorTrait;

use crate::config::{PoolConfig, is_sql_identifier};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{service} database at {url} still unreachable after {waited_secs}s: {source}")]
    Unreachable {
        service: String,
        url: String,
        waited_secs: u64,
        source: DbErr,
    },
    #[error("{service} database: cannot prepare schema `{schema}`: {source}")]
    Schema {
        service: String,
        schema: String,
        source: DbErr,
    },
    #[error("{service} database: migrations failed: {source}")]
    Migration { service: String, source: DbErr },
    #[error("{service} database: cannot create {path} or its directory: {source}")]
    Directory {
        service: String,
        path: String,
        source: std::io::Error,
    },
    #[error("{service} database: `{schema}` is not a valid schema name")]
    SchemaName { service: String, schema: String },
}

/// Where and how one service connects.
#[derive(Debug, Clone)]
pub struct DatabaseTarget<'a> {
    /// Service name, for logs and errors.
    pub service: &'a str,
    /// `postgres://…` or `sqlite://…`.
    pub url: &'a str,
    /// Postgres schema owned by the service; ignored on SQLite.
    pub schema: &'a str,
    pub pool: &'a PoolConfig,
}

/// Connects (waiting for the database with backoff), prepares the schema and runs `M`'s
/// migrations.
pub async fn connect_and_migrate<M: MigratorTrait>(
    target: DatabaseTarget<'_>,
) -> Result<DatabaseConnection, DbError> {
    let db = connect(&target).await?;
    tracing::debug!(service = target.service, "running migrations");
    M::up(&db, None)
        .await
        .map_err(|source| DbError::Migration {
            service: target.service.to_owned(),
            source,
        })?;
    Ok(db)
}

async fn connect(target: &DatabaseTarget<'_>) -> Result<DatabaseConnection, DbError> {
    let service = target.service.to_owned();
    let is_sqlite = target.url.starts_with("sqlite:");
    let url = if is_sqlite {
        prepare_sqlite_url(target)?
    } else {
        target.url.to_owned()
    };
    if !is_sqlite && !is_sql_identifier(target.schema) {
        return Err(DbError::SchemaName {
            service,
            schema: target.schema.to_owned(),
        });
    }
    let options = connect_options(&url, target);
    let redacted = redact_url(&url);
    let deadline = Instant::now() + Duration::from_secs(target.pool.startup_wait_secs);
    let mut failures = 0;
    let mut db = loop {
        match Database::connect(options.clone()).await {
            Ok(db) => break db,
            Err(source) => {
                let now = Instant::now();
                if now >= deadline {
                    return Err(DbError::Unreachable {
                        service,
                        url: redacted,
                        waited_secs: target.pool.startup_wait_secs,
                        source,
                    });
                }
                failures += 1;
                let wait = crate::backoff::backoff(
                    failures,
                    Duration::from_millis(250),
                    Duration::from_secs(5),
                    1.0,
                )
                .min(deadline - now);
                tracing::warn!(
                    service = target.service,
                    url = %redacted,
                    error = %source,
                    retry_in_ms = wait.as_millis() as u64,
                    "waiting for the database to accept connections"
                );
                tokio::time::sleep(wait).await;
            }
        }
    };
    if db.get_database_backend() == DbBackend::Postgres {
        let schema_error = |source| DbError::Schema {
            service: target.service.to_owned(),
            schema: target.schema.to_owned(),
            source,
        };
        // Look first: `CREATE SCHEMA IF NOT EXISTS` needs CREATE on the database even when
        // the schema exists, which a role limited to its own schema (compose) does not have.
        let exists = db
            .query_one_raw(sea_orm::Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT 1 AS one FROM pg_namespace WHERE nspname = $1",
                [target.schema.into()],
            ))
            .await
            .map_err(schema_error)?
            .is_some();
        if !exists {
            db.execute_unprepared(&format!(
                "CREATE SCHEMA IF NOT EXISTS \"{}\"",
                target.schema
            ))
            .await
            .map_err(schema_error)?;
        }
    }
    tracing::info!(service = target.service, url = %redacted, "database connected");
    observe_statements(&mut db, target.service);
    Ok(db)
}

/// After every statement: its table on its span (when traces are on), and its latency in
/// the service's metrics.
fn observe_statements(db: &mut DatabaseConnection, service: &str) {
    let metrics = crate::metrics::Metrics::of(service);
    db.set_metric_callback(move |info| {
        let (operation, table) = statement_shape(&info.statement.sql);
        if crate::telemetry::traces_enabled() {
            use tracing_opentelemetry::OpenTelemetrySpanExt as _;
            let span = tracing::Span::current();
            span.set_attribute("db.operation.name", operation);
            if let Some(table) = table {
                span.set_attribute("db.collection.name", table.to_owned());
            }
        }
        metrics.statement(operation, table.unwrap_or(""), info.elapsed, info.failed);
    });
}

/// A statement's kind (`SELECT`, `INSERT`, `UPDATE`, `DELETE`, or another first keyword)
/// and the table it works on (its first `FROM`, `INTO` or `UPDATE` target, unquoted, without
/// the schema); never anything the statement says about values.
pub fn statement_shape(sql: &str) -> (&'static str, Option<&str>) {
    let mut words = sql.split_ascii_whitespace();
    let first = words.next().unwrap_or_default();
    let operation = [
        "SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "BEGIN", "COMMIT", "ROLLBACK",
    ]
    .into_iter()
    .find(|kind| first.eq_ignore_ascii_case(kind))
    .unwrap_or("OTHER");
    let after = match operation {
        "SELECT" | "DELETE" | "WITH" => "FROM",
        "INSERT" => "INTO",
        "UPDATE" => return (operation, words.next().map(table_name)),
        _ => return (operation, None),
    };
    let table = words
        .skip_while(|word| !word.eq_ignore_ascii_case(after))
        .nth(1)
        // `FROM (SELECT ...)`: a subquery, no table.
        .filter(|word| !word.starts_with('('))
        .map(table_name)
        .filter(|name| !name.is_empty());
    (operation, table)
}

/// `"schema"."table"` or `table` -> `table`.
fn table_name(word: &str) -> &str {
    let last = word.rsplit('.').next().unwrap_or(word);
    last.trim_matches(|c: char| c == '"' || c == '`' || c == '(' || c == ')' || c == ',')
}

/// A pooled connection idle at least this long is pinged before it is handed out.
const IDLE_BEFORE_PING_SECS: u64 = 30;

fn connect_options(url: &str, target: &DatabaseTarget<'_>) -> ConnectOptions {
    let pool = target.pool;
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(pool.max_connections)
        .min_connections(pool.min_connections)
        .acquire_timeout(Duration::from_secs(pool.acquire_timeout_secs))
        .connect_timeout(Duration::from_secs(pool.acquire_timeout_secs))
        .idle_timeout(Duration::from_secs(pool.idle_timeout_secs))
        .max_lifetime(Duration::from_secs(pool.max_lifetime_secs))
        // sqlx pings a pooled connection on every checkout by default: one more round trip
        // (on SQLite, two thread wake-ups) per statement outside a transaction. Only a
        // connection that sat idle can have been dropped by the server or a proxy, so only
        // those are checked.
        .test_before_acquire_if_idle_for(Duration::from_secs(IDLE_BEFORE_PING_SECS))
        .sqlx_logging(false)
        // Statement spans (sea-orm's) carry the kind and, from `observe_statements`, the
        // table: never the text, which may hold literals.
        .record_stmt_in_spans(false)
        .set_application_name(format!("keygraph-{}", target.service))
        .set_schema_search_path(target.schema.to_owned())
        .map_sqlx_sqlite_opts(|opts| {
            use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
            // WAL lets readers run beside the single writer; busy_timeout queues writers.
            opts.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
        });
    options
}

/// Creates the SQLite file's directory (owner-only when created here) and the file itself,
/// owner-only: it holds what the service keeps (password hashes, sessions). SQLite gives its
/// `-wal` and `-shm` files the database file's permissions.
fn prepare_sqlite_url(target: &DatabaseTarget<'_>) -> Result<String, DbError> {
    let rest = target
        .url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let creates = !query
        .split('&')
        .any(|p| p.starts_with("mode=") && p != "mode=rwc");
    if path != ":memory:" && !path.is_empty() && creates {
        let fail = |source| DbError::Directory {
            service: target.service.to_owned(),
            path: path.to_owned(),
            source,
        };
        if let Some(parent) = std::path::Path::new(path).parent()
            && !parent.as_os_str().is_empty()
            && !parent.exists()
        {
            crate::files::create_private_dir(parent).map_err(fail)?;
        }
        crate::files::ensure_private_file(std::path::Path::new(path)).map_err(fail)?;
    }
    Ok(if query.split('&').any(|p| p.starts_with("mode=")) {
        target.url.to_owned()
    } else if query.is_empty() {
        format!("sqlite://{path}?mode=rwc")
    } else {
        format!("sqlite://{path}?{query}&mode=rwc")
    })
}

/// The URL with any password replaced, for logs and errors.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

/// This process's turn to write to a database, held until dropped; see [`write_turn`].
#[must_use = "the turn ends when it is dropped: keep it until the write commits"]
pub struct WriteTurn {
    _held: Option<tokio::sync::OwnedMutexGuard<()>>,
}

/// One queue per SQLite file this process writes to.
static SQLITE_WRITERS: std::sync::LazyLock<
    std::sync::Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
> = std::sync::LazyLock::new(Default::default);

/// Waits for this process's turn to write to `db`'s SQLite file; on Postgres, whose writers
/// run side by side, the turn is immediate.
///
/// SQLite lets one connection write at a time. Pooled connections that collide wait in
/// SQLite's busy handler, which sleeps 1, 2, 5, 10 … ms while keeping its pool connection,
/// however soon the lock frees: under concurrent sign-ins the sleeps chain into stalls with
/// the CPU idle. Writers that queue here instead start the moment the previous one commits.
///
/// A turn is not reentrant: while holding one, do not wait for another on the same file.
pub async fn write_turn(db: &DatabaseConnection) -> WriteTurn {
    let DatabaseConnectionType::SqlxSqlitePoolConnection(_) = &db.inner else {
        return WriteTurn { _held: None };
    };
    let file = db
        .get_sqlite_connection_pool()
        .connect_options()
        .get_filename()
        .to_owned();
    let queue = {
        // A poisoned map still holds valid queues: a panic cannot leave one half-made.
        let mut writers = SQLITE_WRITERS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        writers.entry(file).or_default().clone()
    };
    WriteTurn {
        _held: Some(queue.lock_owned().await),
    }
}

/// Begins a write transaction in this process's turn (see [`write_turn`]). Keep the turn
/// until the transaction commits or is dropped:
/// `let (_turn, txn) = db::begin_write(&self.db).await?;`
///
/// On SQLite the transaction is `BEGIN IMMEDIATE`: it takes the write lock at once, waiting
/// in the busy handler while another connection still holds it. A deferred transaction that
/// reads first cannot wait later: SQLite answers its first write "database is locked" at
/// once when another connection holds the lock, and one may, briefly, outside the turns (a
/// transaction dropped after a failed write keeps its lock until its connection has run the
/// rollback, after the turn has passed on).
pub async fn begin_write(
    db: &DatabaseConnection,
) -> Result<(WriteTurn, DatabaseTransaction), DbErr> {
    let turn = write_turn(db).await;
    let txn = match db.get_database_backend() {
        DbBackend::Sqlite => {
            db.begin_with_options(TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..TransactionOptions::default()
            })
            .await?
        }
        _ => db.begin().await?,
    };
    Ok((turn, txn))
}

/// Runs write statements in order inside `txn`, in one round trip where the backend allows.
///
/// On SQLite every statement is a hand-off to the connection's own thread and back, which
/// costs more than a small insert itself; there the statements go as one multi-statement
/// execution. Postgres takes one statement per prepared query, so there they run one after
/// another. Either way a failure part-way leaves the earlier statements to be rolled back
/// with `txn`, so nothing is half-written once it is dropped uncommitted.
pub async fn execute_in_order(
    txn: &DatabaseTransaction,
    statements: Vec<Statement>,
) -> Result<(), DbErr> {
    if txn.get_database_backend() != DbBackend::Sqlite {
        for statement in statements {
            txn.execute_raw(statement).await?;
        }
        return Ok(());
    }
    let mut sql = String::new();
    let mut values = Vec::new();
    for statement in statements {
        if !sql.is_empty() {
            sql.push_str(";\n");
        }
        sql.push_str(statement.sql.trim_end().trim_end_matches(';'));
        values.extend(statement.values.map(|v| v.0).unwrap_or_default());
    }
    if sql.is_empty() {
        return Ok(());
    }
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Sqlite,
        sql,
        values,
    ))
    .await?;
    Ok(())
}

/// Readiness: can the pool run a statement now?
pub async fn is_ready(db: &DatabaseConnection) -> bool {
    db.ping().await.is_ok()
}

/// True when `err` is a unique-constraint violation (both backends).
pub fn is_unique_violation(err: &DbErr) -> bool {
    matches!(
        err.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/keygraph"),
            "postgres://app:***@db:5432/keygraph"
        );
        assert_eq!(redact_url("sqlite://data/x.db"), "sqlite://data/x.db");
    }

    #[tokio::test]
    async fn unreachable_database_is_retried_then_reported() {
        let pool = PoolConfig {
            max_connections: 1,
            min_connections: 0,
            acquire_timeout_secs: 1,
            idle_timeout_secs: 60,
            max_lifetime_secs: 60,
            startup_wait_secs: 1,
        };
        // Port 9 (discard) on loopback: nothing listens there.
        let target = DatabaseTarget {
            service: "probe",
            url: "postgres://nobody@127.0.0.1:9/none",
            schema: "probe",
            pool: &pool,
        };
        let started = Instant::now();
        let err = connect(&target)
            .await
            .expect_err("nothing listens on port 9");
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "retried until the deadline"
        );
        let text = err.to_string();
        assert!(text.contains("still unreachable after 1s"), "{text}");
    }
}

#[cfg(test)]
mod statement_tests {
    use super::statement_shape;

    #[test]
    fn the_kind_and_table_of_a_statement_and_nothing_of_its_values() {
        for (sql, kind, table) in [
            (
                r#"SELECT "users"."id" FROM "identity"."users" WHERE "email" = $1"#,
                "SELECT",
                Some("users"),
            ),
            (
                r#"INSERT INTO "outbox" ("id", "payload") VALUES ($1, $2)"#,
                "INSERT",
                Some("outbox"),
            ),
            (
                r#"UPDATE "sessions" SET "revoked" = $1"#,
                "UPDATE",
                Some("sessions"),
            ),
            (
                r#"delete from roles where id = $1"#,
                "DELETE",
                Some("roles"),
            ),
            ("SELECT 1 AS one", "SELECT", None),
            ("SELECT count(*) FROM (SELECT 1) AS x", "SELECT", None),
            ("BEGIN", "BEGIN", None),
            (
                "SET LOCAL plan_cache_mode = force_custom_plan",
                "OTHER",
                None,
            ),
        ] {
            assert_eq!(statement_shape(sql), (kind, table), "{sql}");
        }
    }
}
