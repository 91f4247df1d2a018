//! Write turns: in one process, writers to a SQLite file queue for their turn instead of
//! colliding in SQLite's busy handler; Postgres writers run side by side.

use std::time::Duration;

use keygraph_kernel::{
    config::PoolConfig,
    db::{
        DatabaseTarget, WriteTurn, begin_write, connect_and_migrate, execute_in_order, write_turn,
    },
    on_both_backends,
    testing::{Backend, TestDatabase},
};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, Statement,
    sea_query::{Alias, Query, SimpleExpr},
};
use sea_orm_migration::{MigrationTrait, MigratorTrait};

/// Nothing to migrate: the tests create their own table.
struct NoMigrations;

impl MigratorTrait for NoMigrations {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        Vec::new()
    }
}

async fn open(database: &TestDatabase) -> DatabaseConnection {
    let pool = PoolConfig {
        // Two: a writer in a transaction holds one, which leaves one for everyone else.
        max_connections: 2,
        min_connections: 0,
        acquire_timeout_secs: 10,
        idle_timeout_secs: 60,
        max_lifetime_secs: 600,
        startup_wait_secs: 10,
    };
    let db = connect_and_migrate::<NoMigrations>(DatabaseTarget {
        service: "turns",
        url: &database.url,
        schema: &database.schema,
        pool: &pool,
    })
    .await
    .expect("connect");
    db.execute_unprepared("CREATE TABLE events (n INTEGER NOT NULL)")
        .await
        .expect("table");
    db
}

async fn events(db: &DatabaseConnection) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM events",
        ))
        .await
        .expect("count")
        .expect("a row");
    row.try_get::<i64>("", "n").expect("n")
}

/// Takes a turn, begins a transaction and inserts event 1 in it, not yet committed.
async fn first_writer(db: &DatabaseConnection) -> (WriteTurn, DatabaseTransaction) {
    let (turn, txn) = begin_write(db).await.expect("first turn");
    txn.execute_unprepared("INSERT INTO events VALUES (1)")
        .await
        .expect("first insert");
    (turn, txn)
}

/// Waits (up to 10 s) for a writer started by [`second_writer`] to commit.
async fn committed(writer: tokio::task::JoinHandle<Result<(), DbErr>>, waited_for: &str) {
    tokio::time::timeout(Duration::from_secs(10), writer)
        .await
        .expect(waited_for)
        .expect("joined")
        .expect("second writer");
}

/// Starts a second writer that inserts one event in its own turn.
fn second_writer(db: &DatabaseConnection) -> tokio::task::JoinHandle<Result<(), DbErr>> {
    let db = db.clone();
    tokio::spawn(async move {
        let (_turn, txn) = begin_write(&db).await?;
        txn.execute_unprepared("INSERT INTO events VALUES (2)")
            .await?;
        txn.commit().await
    })
}

async fn writers_take_turns_on_sqlite_only(backend: Backend) {
    let Some(database) = TestDatabase::new(backend, "turns") else {
        return;
    };
    let db = open(&database).await;
    let (turn, txn) = first_writer(&db).await;
    let second = second_writer(&db);
    match db.get_database_backend() {
        DbBackend::Sqlite => {
            // While the first writer keeps its turn, others wait for it, not for SQLite's
            // lock: they hold no connection meanwhile, so a reader gets the pool's other
            // one at once (it would wait out the 10-s busy timeout behind a writer that
            // took it).
            let third = tokio::time::timeout(Duration::from_millis(300), write_turn(&db)).await;
            assert!(
                third.is_err(),
                "another writer got a turn while the first held it"
            );
            assert!(
                !second.is_finished(),
                "the second writer did not wait its turn"
            );
            let read = tokio::time::timeout(Duration::from_secs(5), events(&db))
                .await
                .expect("a reader was kept waiting by queued writers");
            assert_eq!(read, 0, "the first writer has not committed");
            txn.commit().await.expect("first commit");
            drop(turn);
        }
        _ => {
            // Postgres writers do not queue: the second commits while the first is open.
            tokio::time::timeout(Duration::from_secs(10), async {
                while !second.is_finished() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await
            .expect("the second writer finished while the first was open");
            txn.commit().await.expect("first commit");
            drop(turn);
        }
    }
    committed(second, "the second writer finished after the first").await;
    assert_eq!(events(&db).await, 2);
}

on_both_backends!(writers_take_turns_on_sqlite_only);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_sqlite_file_has_its_own_queue() {
    let (Some(one), Some(other)) = (
        TestDatabase::new(Backend::Sqlite, "one"),
        TestDatabase::new(Backend::Sqlite, "other"),
    ) else {
        return;
    };
    let (one, other) = (open(&one).await, open(&other).await);
    let _held = write_turn(&one).await;
    let _free = tokio::time::timeout(Duration::from_secs(5), write_turn(&other))
        .await
        .expect("another file's turn is free while this one's is held");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_transaction_frees_the_turn() {
    let Some(database) = TestDatabase::new(Backend::Sqlite, "dropped") else {
        return;
    };
    let db = open(&database).await;
    // Dropped without a commit, as on an early `?` return: rolled back, turn freed.
    drop(first_writer(&db).await);
    committed(second_writer(&db), "the next writer got its turn").await;
    assert_eq!(events(&db).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_that_reads_first_waits_for_a_lock_held_outside_the_turns() {
    let Some(database) = TestDatabase::new(Backend::Sqlite, "upgrade") else {
        return;
    };
    let db = open(&database).await;
    // A write lock no turn accounts for: a transaction dropped after a failed write keeps
    // its connection's lock until that connection runs the rollback, a moment later.
    let lingering = sea_orm::TransactionTrait::begin(&db).await.expect("begin");
    lingering
        .execute_unprepared("INSERT INTO events VALUES (1)")
        .await
        .expect("insert");
    let writer = {
        let db = db.clone();
        tokio::spawn(async move {
            let (_turn, txn) = begin_write(&db).await?;
            // Read, then write: a deferred transaction cannot wait for the lock once it
            // reads (SQLite answers "database is locked" at once); an immediate one waits.
            txn.query_one_raw(Statement::from_string(
                DbBackend::Sqlite,
                "SELECT COUNT(*) AS n FROM events",
            ))
            .await?;
            txn.execute_unprepared("INSERT INTO events VALUES (2)")
                .await?;
            txn.commit().await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    lingering.rollback().await.expect("rollback");
    committed(writer, "the writer committed once the lock was free").await;
    assert_eq!(events(&db).await, 1);
}

/// An insert of one row per value into `events`, for `db`'s backend.
fn insert_events(db: &DatabaseConnection, values: &[Option<i64>]) -> Statement {
    let mut insert = Query::insert();
    insert
        .into_table(Alias::new("events"))
        .columns([Alias::new("n")]);
    for value in values {
        insert.values_panic([SimpleExpr::from(*value)]);
    }
    db.get_database_backend().build(&insert)
}

async fn numbers(db: &DatabaseConnection) -> Vec<i64> {
    db.query_all_raw(Statement::from_string(
        db.get_database_backend(),
        "SELECT CAST(n AS BIGINT) AS n FROM events ORDER BY n",
    ))
    .await
    .expect("select")
    .iter()
    .map(|row| row.try_get::<i64>("", "n").expect("n"))
    .collect()
}

async fn writes_in_order_are_all_or_nothing(backend: Backend) {
    let Some(database) = TestDatabase::new(backend, "in_order") else {
        return;
    };
    let db = open(&database).await;
    // Statements with different numbers of parameters: each gets its own values, in order.
    let (turn, txn) = begin_write(&db).await.expect("turn");
    execute_in_order(
        &txn,
        vec![
            insert_events(&db, &[Some(10)]),
            insert_events(&db, &[Some(20), Some(30)]),
            insert_events(&db, &[Some(40)]),
        ],
    )
    .await
    .expect("three inserts");
    txn.commit().await.expect("commit");
    drop(turn);
    assert_eq!(numbers(&db).await, [10, 20, 30, 40]);

    // The second statement breaks a constraint: the error says so, and once the
    // transaction is dropped the first statement's row is gone with it.
    let (turn, txn) = begin_write(&db).await.expect("turn");
    let err = execute_in_order(
        &txn,
        vec![
            insert_events(&db, &[Some(50)]),
            insert_events(&db, &[None]),
            insert_events(&db, &[Some(60)]),
        ],
    )
    .await
    .expect_err("a NULL in a NOT NULL column");
    assert!(
        err.to_string().to_lowercase().contains("null"),
        "the error names the violation: {err}"
    );
    drop((txn, turn));
    assert_eq!(numbers(&db).await, [10, 20, 30, 40]);

    // Nothing to write is not an error.
    let (_turn, txn) = begin_write(&db).await.expect("turn");
    execute_in_order(&txn, Vec::new())
        .await
        .expect("no statements");
}

on_both_backends!(writes_in_order_are_all_or_nothing);
