//! Delivery into the audit log end to end: events made while audit is stopped arrive once
//! each and in order, and a batch relayed again is stored once. Through the `keygraph`
//! binary on SQLite files, and on Postgres (one schema per service) when
//! `TEST_DATABASE_URL` is set.

mod audit_log;
mod common;
mod harness;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use audit_log::{VERIFY, all_events, outbox_relay, register, service_db, sql};
use harness::{ADMIN_EMAIL, ADMIN_PASSWORD, Stack, Topology, data};
use keygraph_kernel::testing::Backend;
use sea_orm::{ConnectionTrait as _, Statement};
use serde_json::{Value, json};

async fn events_survive_an_audit_outage(backend: Backend) {
    let Some(mut stack) = Stack::start_with(
        backend,
        Topology::Separate,
        &[("KEYGRAPH__OUTBOX__RETRY_MAX_SECS", "2")],
    )
    .await
    else {
        return;
    };
    let (admin, _) = stack.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    // The first administrator's creation and role, and their sign-in.
    let before = all_events(&stack, &admin, json!({}), 3).await.len();
    stack.kill("audit");
    // 200 changes in two services while audit is down.
    for i in 0..100 {
        let renamed = stack
            .gql(
                "mutation($n: String!) { updateProfile(input: { displayName: $n }) { id } }",
                json!({ "n": format!("Admin {i}") }),
                Some(&admin),
            )
            .await;
        data(&renamed);
        let created = stack
            .gql(
                "mutation($n: String!) { createRole(input: { name: $n }) { id } }",
                json!({ "n": format!("role-{i}") }),
                Some(&admin),
            )
            .await;
        data(&created);
    }
    let identity = service_db(&stack, "identity").await;
    let waiting = identity
        .query_one_raw(Statement::from_string(
            identity.get_database_backend(),
            "SELECT COUNT(*) AS n FROM outbox WHERE delivered_at IS NULL",
        ))
        .await
        .expect("count")
        .expect("row")
        .try_get::<i64>("", "n")
        .expect("n");
    assert!(
        waiting >= 100,
        "the events wait in identity's outbox: {waiting}"
    );
    // The relay counts its backlog and its failures.
    let status: Value = stack
        .http
        .get(format!(
            "http://{}/internal/outbox",
            stack.setting("AUTHZ__LISTEN").expect("authz address")
        ))
        .bearer_auth(stack.setting("INTERNAL__TOKEN").expect("token"))
        .send()
        .await
        .expect("outbox status")
        .json()
        .await
        .expect("JSON");
    assert!(status["pending"].as_u64() >= Some(100), "{status}");
    assert!(
        status["consecutiveFailures"].as_u64() >= Some(1),
        "{status}"
    );
    stack.restart("audit");
    let events = all_events(&stack, &admin, json!({}), before + 200).await;
    assert_eq!(events.len(), before + 200, "none twice");
    let ids: HashSet<&str> = events.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids.len(), events.len(), "every id once");
    for service in ["identity", "authz"] {
        let mine: Vec<&Value> = events.iter().filter(|e| e["service"] == service).collect();
        let times: Vec<&str> = mine
            .iter()
            .filter_map(|e| e["occurredAt"].as_str())
            .collect();
        let mut sorted = times.clone();
        sorted.sort();
        assert_eq!(
            times, sorted,
            "{service}'s events are stored in the order they happened"
        );
    }
    let roles: Vec<String> = events
        .iter()
        .filter(|e| e["action"] == "authz.role.created")
        .map(|e| e["metadata"]["name"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        roles,
        (0..100).map(|i| format!("role-{i}")).collect::<Vec<_>>()
    );
    let verification = stack.gql(VERIFY, json!({}), Some(&admin)).await;
    assert_eq!(data(&verification)["verifyAuditLog"]["valid"], true);
}

/// A relay stopped after audit stored a batch but before it marked the rows: they are sent
/// again, and audit stores none of them twice.
async fn a_batch_sent_again_is_stored_once(backend: Backend) {
    let Some(stack) = Stack::start(backend, Topology::Embedded).await else {
        return;
    };
    let (admin, _) = stack.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    register(&stack, "lin@example.com").await;
    let identity = service_db(&stack, "identity").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while outbox_relay(&identity).await.1 > 0 {
        assert!(
            Instant::now() < deadline,
            "identity's outbox is not delivered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Only identity's events: auth's and authz's outboxes (the sign-in above) may still be
    // delivering, and would change the count between the two reads.
    let identity_events = |events: Vec<Value>| -> Vec<String> {
        let mut ids: Vec<String> = events
            .iter()
            .filter(|e| e["service"] == "identity")
            .filter_map(|e| e["id"].as_str().map(str::to_owned))
            .collect();
        ids.sort();
        ids
    };
    let before = identity_events(all_events(&stack, &admin, json!({}), 1).await);
    // Undo the marks, as if the relay had died between audit's answer and the update.
    sql(&identity, "UPDATE outbox SET delivered_at = NULL").await;
    let resent = outbox_relay(&identity).await.0;
    assert!(resent >= 3, "{resent}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while outbox_relay(&identity).await.1 > 0 {
        assert!(
            Instant::now() < deadline,
            "the batch is not delivered again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let everything = all_events(&stack, &admin, json!({}), 1).await;
    let ids: HashSet<&str> = everything.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids.len(), everything.len(), "every id once");
    let after = identity_events(everything);
    assert!(after.len() >= 3, "identity's events: {after:?}");
    assert_eq!(after, before, "no event is stored twice");
    let verification = stack.gql(VERIFY, json!({}), Some(&admin)).await;
    assert_eq!(data(&verification)["verifyAuditLog"]["valid"], true);
}

keygraph_kernel::on_both_backends!(
    events_survive_an_audit_outage,
    a_batch_sent_again_is_stored_once,
);
