//! Shared by the audit log's end-to-end tests (`audit_journey`, `audit_delivery`,
//! `audit_tampering`): the GraphQL documents they send, registering a user, reading every
//! event page by page, and reaching a service's database as the stack runs it.

// Each test binary uses part of it.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use keygraph_kernel::testing::link_token;
use sea_orm::{ConnectOptions, ConnectionTrait as _, Database, DatabaseConnection, Statement};
use serde_json::{Value, json};

use crate::harness::{Stack, data};

/// The password of every user `register` makes.
pub const PASSWORD: &str = "correct horse battery staple 9";
/// A page of audit events matching a filter.
pub const EVENTS: &str = "query($f: AuditEventFilter, $n: Int, $a: String) { auditEvents(first: $n, after: $a, filter: $f) { totalCount pageInfo { hasNextPage endCursor } edges { node { id sequence service action actor { id } targetType targetId outcome occurredAt metadata clientAddress } } } }";
/// The audit log's own check of its chain and checkpoints.
pub const VERIFY: &str = "query($from: Int, $to: Int) { verifyAuditLog(from: $from, to: $to) { valid from to eventsChecked checkpointsChecked signedThrough firstBreak { sequence eventId kind message } } }";

/// Registers and verifies `email`; its user id.
pub async fn register(stack: &Stack, email: &str) -> String {
    let registered = stack
        .gql(
            "mutation($i: RegisterInput!) { register(input: $i) }",
            json!({ "i": { "email": email, "password": PASSWORD } }),
            None,
        )
        .await;
    assert_eq!(data(&registered)["register"], true);
    let token = link_token(&stack.mail_to(email).await);
    let verified = stack
        .gql(
            "mutation($t: String!) { verifyEmail(token: $t) { id } }",
            json!({ "t": token }),
            None,
        )
        .await;
    data(&verified)["verifyEmail"]["id"]
        .as_str()
        .expect("id")
        .to_owned()
}

/// Every event matching `filter`, oldest first, read page by page; waits until there are
/// at least `at_least`.
pub async fn all_events(stack: &Stack, token: &str, filter: Value, at_least: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut events = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let answer = stack
                .gql(
                    EVENTS,
                    json!({ "f": filter, "n": 100, "a": after }),
                    Some(token),
                )
                .await;
            if code(&answer) == "SUBGRAPH_UNAVAILABLE" && Instant::now() < deadline {
                // A separate audit process still starting (or restarting).
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            let page = &data(&answer)["auditEvents"];
            events.extend(
                page["edges"]
                    .as_array()
                    .expect("edges")
                    .iter()
                    .map(|e| e["node"].clone()),
            );
            if page["pageInfo"]["hasNextPage"] != true {
                break;
            }
            after = page["pageInfo"]["endCursor"].as_str().map(str::to_owned);
        }
        events.reverse();
        if events.len() >= at_least {
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {at_least} events arrived: {events:#?}",
            events.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The first error's code in a GraphQL answer, or `""`.
pub fn code(answer: &Value) -> &str {
    answer["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("")
}

/// A connection to one service's database as the stack runs it.
pub async fn service_db(stack: &Stack, service: &str) -> DatabaseConnection {
    let upper = service.to_ascii_uppercase();
    match stack.setting(&format!("{upper}__DATABASE_URL")) {
        Some(url) => {
            let schema = stack
                .setting(&format!("{upper}__SCHEMA"))
                .expect("schema")
                .to_owned();
            Database::connect(
                ConnectOptions::new(url)
                    .set_schema_search_path(schema)
                    .to_owned(),
            )
            .await
            .expect("connect")
        }
        None => Database::connect(format!(
            "sqlite://{}",
            stack.data.path().join(format!("{service}.db")).display()
        ))
        .await
        .expect("connect"),
    }
}

/// Runs one SQL statement on a service database, failing the test if it fails.
pub async fn sql(db: &DatabaseConnection, statement: &str) {
    db.execute_raw(Statement::from_string(db.get_database_backend(), statement))
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
}

/// The rows in a service's outbox: all of them and those not yet delivered.
pub async fn outbox_relay(db: &DatabaseConnection) -> (i64, i64) {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n, SUM(CASE WHEN delivered_at IS NULL THEN 1 ELSE 0 END) AS w FROM outbox",
        ))
        .await
        .expect("count")
        .expect("row");
    (
        row.try_get::<i64>("", "n").expect("n"),
        row.try_get::<Option<i64>>("", "w").expect("w").unwrap_or(0),
    )
}
