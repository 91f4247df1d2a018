//! The audit service on its own: idempotent ingest, refusal of bad batches, access to the
//! log, indexes behind every filter, checkpoints and retention. On SQLite, and on Postgres
//! when `TEST_DATABASE_URL` is set.

mod common;

use chrono::Utc;
use common::{Stack, event};
use keygraph_audit::service::EventFilter;
use keygraph_kernel::testing::{Backend, INTERNAL_TOKEN};
use sea_orm::{ConnectionTrait as _, QueryTrait as _, Statement, TransactionTrait as _};
use serde_json::{Value, json};
use uuid::Uuid;

const ALL: &[&str] = &[
    "audit.event.read",
    "audit.event.verify",
    "audit.checkpoint.create",
];
const VERIFY: &str = "{ verifyAuditLog { valid from to eventsChecked checkpointsChecked signedThrough firstBreak { sequence kind message } } }";

async fn a_batch_sent_twice_is_stored_once(backend: Backend) {
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    let user = Uuid::now_v7();
    let batch: Vec<Value> = (0..3)
        .map(|i| {
            event(
                "identity.user.profile_updated",
                Some(user),
                &format!("u{i}"),
            )
        })
        .collect();
    let first = stack.send("identity", &batch).await;
    assert_eq!(first, (200, json!({ "stored": 3, "duplicates": 0 })));
    let again = stack.send("identity", &batch).await;
    assert_eq!(
        again,
        (200, json!({ "stored": 0, "duplicates": 3 })),
        "a resent batch is a success"
    );
    // Half old, half new, and a duplicate inside the batch itself.
    let fresh = event("identity.user.deleted", Some(user), "u9");
    let mixed = vec![batch[2].clone(), fresh.clone(), fresh];
    let answer = stack.send("identity", &mixed).await;
    assert_eq!(answer, (200, json!({ "stored": 1, "duplicates": 2 })));

    let admin = stack.token(Uuid::now_v7(), ALL);
    let listed = stack
        .gql(
            "{ auditEvents { totalCount edges { node { sequence action previousHash hash } } } }",
            json!({}),
            Some(&admin),
        )
        .await;
    let page = &listed.data()["auditEvents"];
    assert_eq!(page["totalCount"], 4);
    let sequences: Vec<i64> = page["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["node"]["sequence"].as_i64().expect("sequence"))
        .collect();
    assert_eq!(sequences, vec![4, 3, 2, 1], "newest first, gap-free");
    let edges = page["edges"].as_array().expect("edges");
    assert_eq!(edges[3]["node"]["previousHash"], "0".repeat(64));
    assert_eq!(edges[2]["node"]["previousHash"], edges[3]["node"]["hash"]);
    let report = stack.gql(VERIFY, json!({}), Some(&admin)).await;
    assert_eq!(report.data()["verifyAuditLog"]["valid"], true);
    assert_eq!(report.data()["verifyAuditLog"]["eventsChecked"], 4);
}

async fn a_bad_batch_is_refused_whole(backend: Backend) {
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    let good = event("identity.user.registered", None, "u1");
    let mut bad = event("identity.user.registered", None, "u2");
    bad["outcome"] = json!("maybe");
    let (status, body) = stack.send("identity", &[good.clone(), bad]).await;
    assert_eq!(status, 400, "{body}");
    let message = body["message"].as_str().unwrap_or("");
    assert!(
        message.contains("events[1]") && message.contains("outcome"),
        "{message}"
    );
    let mut shouting = event("Identity.User.Registered", None, "u3");
    shouting["metadata"] = json!({});
    let (status, body) = stack.send("identity", &[shouting]).await;
    assert_eq!(status, 400);
    assert!(
        body["message"].as_str().unwrap_or("").contains("action"),
        "{body}"
    );
    let (status, body) = stack
        .send("Not A Service", std::slice::from_ref(&good))
        .await;
    assert_eq!(status, 400);
    assert!(
        body["message"].as_str().unwrap_or("").contains("service"),
        "{body}"
    );
    let (status, body) = stack
        .server
        .internal(
            reqwest::Method::POST,
            "/internal/events",
            Some(json!({ "service": "identity", "events": [{ "id": "nope" }] })),
            Some(INTERNAL_TOKEN),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("not an event batch"),
        "{body}"
    );
    let (status, _) = stack
        .server
        .internal(
            reqwest::Method::POST,
            "/internal/events",
            Some(json!({ "service": "identity", "events": [good] })),
            Some("not-the-internal-token-but-long-enough-to-try"),
        )
        .await;
    assert_eq!(status, 401);
    let stored = stack.audit.bounds().await.expect("bounds");
    assert_eq!(stored, None, "nothing of a refused batch is stored");
}

async fn each_reader_sees_what_they_may(backend: Backend) {
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
    let hers = event(
        "identity.user.profile_updated",
        Some(alice),
        &alice.to_string(),
    );
    let his = event("identity.user.profile_updated", Some(bob), &bob.to_string());
    stack.send("identity", &[hers.clone(), his.clone()]).await;
    let alice_token = stack.token(alice, &[]);
    let entity = "query($r: [_Any!]!) { _entities(representations: $r) { ... on AuditEvent { action } ... on User { auditEvents { totalCount } } } }";
    let reps = json!({ "r": [
        { "__typename": "AuditEvent", "id": hers["id"] },
        { "__typename": "AuditEvent", "id": his["id"] },
    ] });
    let answer = stack.gql(entity, reps.clone(), Some(&alice_token)).await;
    assert_eq!(
        answer.data()["_entities"],
        json!([{ "action": "identity.user.profile_updated" }, null]),
        "another user's event resolves to null"
    );
    let reader = stack.token(Uuid::now_v7(), &["audit.event.read"]);
    let answer = stack.gql(entity, reps, Some(&reader)).await;
    assert_eq!(
        answer.data()["_entities"][1]["action"],
        "identity.user.profile_updated"
    );
    let theirs = json!({ "r": [{ "__typename": "User", "id": bob }] });
    let answer = stack.gql(entity, theirs.clone(), Some(&alice_token)).await;
    answer.expect_error("FORBIDDEN", "audit.event.read");
    let own = json!({ "r": [{ "__typename": "User", "id": alice }] });
    let answer = stack.gql(entity, own, Some(&alice_token)).await;
    assert_eq!(
        answer.data()["_entities"][0]["auditEvents"]["totalCount"],
        1
    );
    let answer = stack.gql(entity, theirs, None).await;
    answer.expect_error("UNAUTHENTICATED", "access token");

    let list = "query($f: AuditEventFilter) { auditEvents(filter: $f) { totalCount } }";
    let answer = stack.gql(list, json!({}), Some(&alice_token)).await;
    answer.expect_error("FORBIDDEN", "filter.actorId");
    let answer = stack
        .gql(
            list,
            json!({ "f": { "actorId": alice } }),
            Some(&alice_token),
        )
        .await;
    assert_eq!(answer.data()["auditEvents"]["totalCount"], 1);
    let answer = stack.gql(VERIFY, json!({}), Some(&alice_token)).await;
    answer.expect_error("FORBIDDEN", "audit.event.verify");
    let answer = stack
        .gql(
            "mutation { createAuditCheckpoint { sequence } }",
            json!({}),
            Some(&alice_token),
        )
        .await;
    answer.expect_error("FORBIDDEN", "audit.checkpoint.create");

    // Bad filters say what is wrong.
    for (filter, field) in [
        (json!({ "action": "identity.User." }), "filter.action"),
        (json!({ "actorId": "nobody" }), "filter.actorId"),
        (
            json!({ "since": "2026-12-02T00:00:00Z", "until": "2026-12-01T00:00:00Z" }),
            "filter.until",
        ),
    ] {
        let answer = stack.gql(list, json!({ "f": filter }), Some(&reader)).await;
        assert_eq!(answer.code(), "BAD_USER_INPUT", "{filter}: {}", answer.0);
        assert_eq!(
            answer.0["errors"][0]["extensions"]["field"], field,
            "{}",
            answer.0
        );
    }
    let answer = stack
        .gql(
            "{ auditEvents(after: \"garbage\") { totalCount } }",
            json!({}),
            Some(&reader),
        )
        .await;
    assert_eq!(answer.code(), "BAD_USER_INPUT");
    let answer = stack
        .gql(
            "{ verifyAuditLog(from: 0) { valid } }",
            json!({}),
            Some(&stack.token(Uuid::now_v7(), ALL)),
        )
        .await;
    assert_eq!(answer.code(), "BAD_USER_INPUT");
}

async fn filters_page_through_the_log(backend: Backend) {
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    let actor = Uuid::now_v7();
    let mut batch = Vec::new();
    for i in 0..30 {
        let action = match i % 3 {
            0 => "identity.user.registered",
            1 => "identity.user_group.created",
            _ => "auth.login.failed",
        };
        let mut e = event(
            action,
            (i % 2 == 0).then_some(actor),
            &format!("t{}", i % 5),
        );
        if i % 3 == 2 {
            e["outcome"] = json!("failure");
        }
        batch.push(e);
    }
    stack.send("identity", &batch).await;
    let reader = stack.token(Uuid::now_v7(), &["audit.event.read"]);
    let count = |filter: Value| {
        let stack = &stack;
        let reader = reader.clone();
        async move {
            let answer = stack
                .gql(
                    "query($f: AuditEventFilter) { auditEvents(filter: $f) { totalCount } }",
                    json!({ "f": filter }),
                    Some(&reader),
                )
                .await;
            answer.data()["auditEvents"]["totalCount"]
                .as_u64()
                .expect("count")
        }
    };
    assert_eq!(
        count(json!({ "action": "identity.user." })).await,
        10,
        "a prefix stops at its dot"
    );
    assert_eq!(count(json!({ "action": "identity." })).await, 20);
    assert_eq!(count(json!({ "action": "auth.login.failed" })).await, 10);
    assert_eq!(count(json!({ "outcome": "FAILURE" })).await, 10);
    assert_eq!(count(json!({ "actorId": actor })).await, 15);
    assert_eq!(
        count(json!({ "targetType": "user", "targetId": "t0" })).await,
        6
    );
    assert_eq!(count(json!({ "service": "identity" })).await, 30);
    assert_eq!(count(json!({ "service": "authz" })).await, 0);
    assert_eq!(
        count(json!({ "since": Utc::now() + chrono::Duration::hours(1) })).await,
        0
    );
    assert_eq!(
        count(json!({ "until": Utc::now() + chrono::Duration::hours(1) })).await,
        30
    );

    // Pages of 7, newest first, every event once.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let answer = stack
            .gql(
                "query($a: String) { auditEvents(first: 7, after: $a) { pageInfo { hasNextPage hasPreviousPage endCursor } edges { node { sequence } } } }",
                json!({ "a": after }),
                Some(&reader),
            )
            .await;
        let page = &answer.data()["auditEvents"];
        seen.extend(
            page["edges"]
                .as_array()
                .expect("edges")
                .iter()
                .map(|e| e["node"]["sequence"].as_i64().expect("sequence")),
        );
        assert_eq!(page["pageInfo"]["hasPreviousPage"], after.is_some());
        if page["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = page["pageInfo"]["endCursor"].as_str().map(str::to_owned);
    }
    assert_eq!(seen, (1..=30).rev().collect::<Vec<i64>>());
}

/// Every filter of `auditEvents`, and its count, is answered from an index: on SQLite the
/// plan names one; on Postgres, with sequential scans priced out, none is left.
async fn every_filter_is_served_by_an_index(backend: Backend) {
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    let actor = Uuid::now_v7();
    let filters = [
        EventFilter::default(),
        EventFilter {
            actor_id: Some(actor),
            ..Default::default()
        },
        EventFilter {
            action: Some("identity.user.".into()),
            ..Default::default()
        },
        EventFilter {
            action: Some("auth.login.failed".into()),
            ..Default::default()
        },
        EventFilter {
            target_type: Some("user".into()),
            target_id: Some("u1".into()),
            ..Default::default()
        },
        EventFilter {
            outcome: Some("failure".into()),
            ..Default::default()
        },
        EventFilter {
            service: Some("auth".into()),
            ..Default::default()
        },
        EventFilter {
            since: Some(Utc::now()),
            until: Some(Utc::now() + chrono::Duration::days(1)),
            ..Default::default()
        },
    ];
    // One connection for the whole check (SET LOCAL lasts for its transaction).
    let txn = stack.db.begin().await.expect("begin");
    if backend == Backend::Postgres {
        txn.execute_unprepared("SET LOCAL enable_seqscan = off")
            .await
            .expect("set");
    }
    for filter in &filters {
        let unfiltered = filter.count_query().build(txn.get_database_backend()).sql
            == EventFilter::default()
                .count_query()
                .build(txn.get_database_backend())
                .sql;
        let mut queries = vec![filter.page_query(20, Some(100))];
        if !unfiltered {
            // Counting a whole table reads all of it, index or not.
            queries.push(filter.count_query());
        }
        for query in queries {
            let statement = query.build(txn.get_database_backend());
            let prefix = match backend {
                Backend::Sqlite => "EXPLAIN QUERY PLAN ",
                Backend::Postgres => "EXPLAIN ",
            };
            let rows = txn
                .query_all_raw(Statement::from_sql_and_values(
                    txn.get_database_backend(),
                    format!("{prefix}{}", statement.sql),
                    statement.values.map(|v| v.0).unwrap_or_default(),
                ))
                .await
                .expect("explain");
            let plan: Vec<String> = rows
                .iter()
                .map(|row| {
                    row.try_get_by_index::<String>(if backend == Backend::Sqlite { 3 } else { 0 })
                        .expect("plan line")
                })
                .collect();
            let plan = plan.join("\n");
            match backend {
                Backend::Sqlite => assert!(
                    plan.lines()
                        .filter(|l| l.contains("audit_events"))
                        .all(|l| l.contains("USING")),
                    "{filter:?}: {plan}"
                ),
                Backend::Postgres => assert!(!plan.contains("Seq Scan"), "{filter:?}: {plan}"),
            }
        }
    }
}

async fn retention_keeps_the_rest_verifiable(backend: Backend) {
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    let admin = stack.token(Uuid::now_v7(), ALL);
    let batch = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| event("authz.role.created", None, &format!("r{i}")))
            .collect()
    };
    stack.send("authz", &batch(5)).await;
    let signed = stack
        .gql(
            "mutation { createAuditCheckpoint { sequence headHash keyId signature } }",
            json!({}),
            Some(&admin),
        )
        .await;
    assert_eq!(signed.data()["createAuditCheckpoint"]["sequence"], 5);
    let again = stack
        .gql(
            "mutation { createAuditCheckpoint { sequence signature } }",
            json!({}),
            Some(&admin),
        )
        .await;
    assert_eq!(
        again.data()["createAuditCheckpoint"]["signature"],
        signed.data()["createAuditCheckpoint"]["signature"],
        "the head already has its checkpoint"
    );
    stack.send("authz", &batch(3)).await;
    // Everything is older than the cutoff, but only what a checkpoint covers may go.
    let removed = stack
        .audit
        .apply_retention(Utc::now() + chrono::Duration::seconds(5))
        .await
        .expect("retention");
    assert_eq!(removed, 5);
    let report = stack.gql(VERIFY, json!({}), Some(&admin)).await;
    let report = &report.data()["verifyAuditLog"];
    assert_eq!(report["valid"], true, "{report}");
    assert_eq!((&report["from"], &report["to"]), (&json!(6), &json!(8)));
    assert_eq!(
        report["signedThrough"], 5,
        "verified from the kept checkpoint"
    );

    // All events gone: the log goes on from the newest checkpoint.
    stack.audit.checkpoint().await.expect("checkpoint");
    let removed = stack
        .audit
        .apply_retention(Utc::now() + chrono::Duration::seconds(5))
        .await
        .expect("retention");
    assert_eq!(removed, 3);
    stack.send("authz", &batch(2)).await;
    let report = stack.gql(VERIFY, json!({}), Some(&admin)).await;
    let report = &report.data()["verifyAuditLog"];
    assert_eq!(report["valid"], true, "{report}");
    assert_eq!((&report["from"], &report["to"]), (&json!(9), &json!(10)));

    let checkpoints = stack
        .gql(
            "{ auditCheckpoints { totalCount edges { node { sequence } } } }",
            json!({}),
            Some(&admin),
        )
        .await;
    assert_eq!(
        checkpoints.data()["auditCheckpoints"]["totalCount"],
        2,
        "checkpoints are kept"
    );
    let keys: Value = stack
        .server
        .http
        .get(format!("{}/.well-known/audit-keys.json", stack.server.base))
        .send()
        .await
        .expect("keys")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        keys["keys"][0]["kid"],
        signed.data()["createAuditCheckpoint"]["keyId"]
    );
}

keygraph_kernel::on_both_backends!(
    a_batch_sent_twice_is_stored_once,
    a_bad_batch_is_refused_whole,
    each_reader_sees_what_they_may,
    filters_page_through_the_log,
    every_filter_is_served_by_an_index,
    retention_keeps_the_rest_verifiable,
);
