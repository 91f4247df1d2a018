//! The audit log end to end: every service's relay feeds it, the router serves it, and it
//! notices tampering. Through the `keygraph` binary on SQLite files, and on Postgres (one
//! schema per service) when `TEST_DATABASE_URL` is set.

mod common;
mod harness;

use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};

use harness::{ADMIN_EMAIL, ADMIN_PASSWORD, Stack, Topology, data};
use keygraph_kernel::testing::{Backend, link_token};
use sea_orm::{ConnectOptions, ConnectionTrait as _, Database, DatabaseConnection, Statement};
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery staple 9";
const LOGIN: &str = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { ... on AuthPayload { accessToken refreshToken } } }";
const EVENTS: &str = "query($f: AuditEventFilter, $n: Int, $a: String) { auditEvents(first: $n, after: $a, filter: $f) { totalCount pageInfo { hasNextPage endCursor } edges { node { id sequence service action actor { id } targetType targetId outcome occurredAt metadata clientAddress } } } }";
const VERIFY: &str = "query($from: Int, $to: Int) { verifyAuditLog(from: $from, to: $to) { valid from to eventsChecked checkpointsChecked signedThrough firstBreak { sequence eventId kind message } } }";

/// Registers and verifies `email`; its user id.
async fn register(stack: &Stack, email: &str) -> String {
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
async fn all_events(stack: &Stack, token: &str, filter: Value, at_least: usize) -> Vec<Value> {
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

fn find<'a>(events: &'a [Value], action: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["action"] == action)
        .unwrap_or_else(|| panic!("no {action} in {events:#?}"))
}

fn code(answer: &Value) -> &str {
    answer["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("")
}

/// A connection to one service's database as the stack runs it.
async fn service_db(stack: &Stack, service: &str) -> DatabaseConnection {
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

async fn sql(db: &DatabaseConnection, statement: &str) {
    db.execute_raw(Statement::from_string(db.get_database_backend(), statement))
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
}

async fn the_journey_is_in_the_log(backend: Backend) {
    let Some(stack) = Stack::start_with(
        backend,
        Topology::Embedded,
        &[
            ("KEYGRAPH__AUTH__REFRESH_REUSE_GRACE_SECS", "0"),
            ("KEYGRAPH__AUDIT__CHECKPOINT_INTERVAL_SECS", "1"),
            ("KEYGRAPH__OUTBOX__PRUNE_DELIVERED_AFTER_SECS", "1"),
        ],
    )
    .await
    else {
        return;
    };
    let email = "ada@example.com";
    let user = register(&stack, email).await;
    let (_, refresh) = stack.login(email, PASSWORD).await;
    let failed = stack
        .gql(
            LOGIN,
            json!({ "e": email, "p": "not the password 123" }),
            None,
        )
        .await;
    assert!(failed["errors"].is_array(), "{failed}");
    let (admin, _) = stack.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let admin_id = data(&stack.gql("{ me { id } }", json!({}), Some(&admin)).await)["me"]["id"]
        .as_str()
        .expect("admin id")
        .to_owned();
    let role = stack
        .gql(
            "mutation { createRole(input: { name: \"auditors\" }) { id } }",
            json!({}),
            Some(&admin),
        )
        .await;
    let role_id = data(&role)["createRole"]["id"]
        .as_str()
        .expect("role")
        .to_owned();
    let assigned = stack
        .gql(
            "mutation($u: ID!, $r: ID!) { assignRole(userId: $u, roleId: $r) { id } }",
            json!({ "u": user, "r": role_id }),
            Some(&admin),
        )
        .await;
    data(&assigned);
    // A refresh token used twice: the second use is theft, refused and recorded.
    let refreshed = stack
        .gql(
            "mutation($r: String!) { refresh(refreshToken: $r) { accessToken } }",
            json!({ "r": refresh }),
            None,
        )
        .await;
    data(&refreshed);
    let reused = stack
        .gql(
            "mutation($r: String!) { refresh(refreshToken: $r) { accessToken } }",
            json!({ "r": refresh }),
            None,
        )
        .await;
    assert!(reused["errors"].is_array(), "{reused}");
    let (again, _) = stack.login(email, PASSWORD).await;
    let out = stack
        .gql("mutation { logout }", json!({}), Some(&again))
        .await;
    assert_eq!(data(&out)["logout"], true);

    let events = all_events(
        &stack,
        &admin,
        json!({ "since": "2000-01-01T00:00:00Z" }),
        11,
    )
    .await;
    let registered = find(&events, "identity.user.registered");
    assert_eq!(registered["actor"]["id"], user.as_str());
    assert_eq!(
        (
            &registered["targetType"],
            &registered["targetId"],
            &registered["outcome"]
        ),
        (&json!("user"), &json!(user), &json!("SUCCESS"))
    );
    assert_eq!(registered["service"], "identity");
    assert_eq!(registered["clientAddress"], "127.0.0.1");
    let verified = find(&events, "identity.user.email_verified");
    assert_eq!(verified["actor"]["id"], user.as_str());
    let signed_in = find(&events, "auth.login.succeeded");
    assert_eq!(
        (
            &signed_in["actor"]["id"],
            &signed_in["targetType"],
            &signed_in["outcome"]
        ),
        (&json!(user), &json!("session"), &json!("SUCCESS"))
    );
    let refused = find(&events, "auth.login.failed");
    assert_eq!(
        (
            &refused["actor"],
            &refused["targetType"],
            &refused["outcome"]
        ),
        (&Value::Null, &json!("account"), &json!("FAILURE"))
    );
    let granted = events
        .iter()
        .find(|e| e["action"] == "authz.user.role_assigned" && e["metadata"]["role"] == "auditors")
        .expect("the assignment");
    assert_eq!(
        (
            &granted["actor"]["id"],
            &granted["targetId"],
            &granted["metadata"]["role"]
        ),
        (&json!(admin_id), &json!(user), &json!("auditors"))
    );
    let theft = find(&events, "auth.refresh.reuse_detected");
    assert_eq!(
        (&theft["actor"]["id"], &theft["outcome"]),
        (&json!(user), &json!("DENIED"))
    );
    let ended = events
        .iter()
        .filter(|e| e["action"] == "auth.session.ended")
        .count();
    assert!(ended >= 1, "logout is recorded: {events:#?}");
    // Sequences are gap-free and every id appears once.
    let sequences: Vec<i64> = events
        .iter()
        .map(|e| e["sequence"].as_i64().expect("seq"))
        .collect();
    assert_eq!(sequences, (1..=sequences.len() as i64).collect::<Vec<_>>());

    // Filters: a prefix, an outcome, a target.
    let user_events = all_events(&stack, &admin, json!({ "action": "identity.user." }), 1).await;
    assert!(user_events.iter().all(|e| {
        e["action"]
            .as_str()
            .is_some_and(|a| a.starts_with("identity.user."))
    }));
    assert!(user_events.len() >= 3, "{user_events:#?}");
    let failures = all_events(&stack, &admin, json!({ "outcome": "FAILURE" }), 1).await;
    assert!(failures.iter().all(|e| e["outcome"] == "FAILURE"));
    let about_user = all_events(
        &stack,
        &admin,
        json!({ "targetType": "user", "targetId": user }),
        3,
    )
    .await;
    assert!(about_user.iter().all(|e| e["targetId"] == user.as_str()));

    // What the user did, on the federated User: their own "recent activity". The journey's
    // first session ended when its refresh token came back (the theft above), and every
    // service refuses its access token once it has polled the list of ended sessions: a
    // fresh sign-in reads on.
    let (access, _) = stack.login(email, PASSWORD).await;
    let mine = stack
        .gql(
            "{ me { email auditEvents(first: 50) { totalCount edges { node { action actor { id email } } } } } }",
            json!({}),
            Some(&access),
        )
        .await;
    let me = &data(&mine)["me"];
    assert_eq!(me["email"], email);
    let actions: Vec<&str> = me["auditEvents"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["node"]["action"].as_str().unwrap_or(""))
        .collect();
    assert!(actions.contains(&"identity.user.registered"), "{actions:?}");
    assert!(
        !actions.contains(&"authz.user.role_assigned"),
        "the admin did that: {actions:?}"
    );
    assert_eq!(
        me["auditEvents"]["edges"][0]["node"]["actor"]["email"],
        email
    );

    // Access: the user reads their own events only.
    let everything = stack.gql(EVENTS, json!({}), Some(&access)).await;
    assert_eq!(code(&everything), "FORBIDDEN", "{everything}");
    let own = stack
        .gql(EVENTS, json!({ "f": { "actorId": user } }), Some(&access))
        .await;
    assert!(
        data(&own)["auditEvents"]["totalCount"]
            .as_u64()
            .expect("count")
            >= 3
    );
    let admins = stack
        .gql(
            EVENTS,
            json!({ "f": { "actorId": admin_id } }),
            Some(&access),
        )
        .await;
    assert_eq!(code(&admins), "FORBIDDEN", "{admins}");
    let by_id = stack
        .gql(
            "query($id: ID!) { auditEvent(id: $id) { action } }",
            json!({ "id": granted["id"] }),
            Some(&access),
        )
        .await;
    assert_eq!(
        data(&by_id)["auditEvent"],
        Value::Null,
        "another's event stays hidden"
    );
    let own_by_id = stack
        .gql(
            "query($id: ID!) { auditEvent(id: $id) { action } }",
            json!({ "id": registered["id"] }),
            Some(&access),
        )
        .await;
    assert_eq!(
        data(&own_by_id)["auditEvent"]["action"],
        "identity.user.registered"
    );
    let verify = stack.gql(VERIFY, json!({}), Some(&access)).await;
    assert_eq!(code(&verify), "FORBIDDEN", "{verify}");
    let anonymous = stack.gql(EVENTS, json!({}), None).await;
    assert_eq!(code(&anonymous), "UNAUTHENTICATED", "{anonymous}");

    let verification = stack.gql(VERIFY, json!({}), Some(&admin)).await;
    let report = &data(&verification)["verifyAuditLog"];
    assert_eq!(report["valid"], true, "{report}");
    assert_eq!(report["from"], 1);
    // Checkpoints are signed on their interval, and delivered rows leave the outboxes.
    let deadline = Instant::now() + Duration::from_secs(20);
    let identity = service_db(&stack, "identity").await;
    loop {
        let signed = stack
            .gql(
                "{ auditCheckpoints(first: 1) { totalCount edges { node { sequence } } } }",
                json!({}),
                Some(&admin),
            )
            .await;
        let periodic = data(&signed)["auditCheckpoints"]["totalCount"].as_u64() >= Some(1);
        let pruned = outbox_relay(&identity).await.0 == 0;
        if periodic && pruned {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "checkpoint signed: {periodic}, outbox pruned: {pruned}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let checkpoint = stack
        .gql(
            "mutation { createAuditCheckpoint { sequence headHash keyId } }",
            json!({}),
            Some(&admin),
        )
        .await;
    assert!(data(&checkpoint)["createAuditCheckpoint"]["sequence"].as_i64() >= Some(11));
}

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

async fn outbox_relay(db: &DatabaseConnection) -> (i64, i64) {
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
    let before = all_events(&stack, &admin, json!({}), 1).await;
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
    let after = all_events(&stack, &admin, json!({}), 1).await;
    assert_eq!(after.len(), before.len(), "no event is stored twice");
    let verification = stack.gql(VERIFY, json!({}), Some(&admin)).await;
    assert_eq!(data(&verification)["verifyAuditLog"]["valid"], true);
}

fn keygraph(stack: &Stack, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_keygraph"))
        .args(args)
        .envs(stack.env.iter().cloned())
        .env_remove("KEYGRAPH_CONFIG")
        .output()
        .expect("run keygraph")
}

/// `keygraph audit export` then `keygraph audit verify` with only the file and the key.
fn export_and_verify(stack: &Stack, name: &str, key: &str) -> (bool, String) {
    let file = stack.data.path().join(name);
    let file = file.to_str().expect("path");
    let exported = keygraph(stack, &["audit", "export", "--out", file]);
    assert!(
        exported.status.success(),
        "{}",
        String::from_utf8_lossy(&exported.stderr)
    );
    let checked = Command::new(env!("CARGO_BIN_EXE_keygraph"))
        .args(["audit", "verify", file, &format!("--key={key}")])
        .env_remove("KEYGRAPH_CONFIG")
        .env("KEYGRAPH__LOG__FILTER", "warn")
        .output()
        .expect("run keygraph");
    (
        checked.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&checked.stdout),
            String::from_utf8_lossy(&checked.stderr)
        ),
    )
}

async fn tampering_is_found_where_it_happened(backend: Backend) {
    let Some(stack) = Stack::start(backend, Topology::Embedded).await else {
        return;
    };
    let (admin, _) = stack.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    for i in 0..8 {
        let created = stack
            .gql(
                "mutation($n: String!) { createRole(input: { name: $n }) { id } }",
                json!({ "n": format!("team-{i}") }),
                Some(&admin),
            )
            .await;
        data(&created);
    }
    let events = all_events(&stack, &admin, json!({}), 10).await;
    let keys_url = stack
        .setting("AUDIT__LISTEN")
        .map(|listen| format!("http://{listen}/.well-known/audit-keys.json"))
        .expect("audit address");
    let jwks: Value = stack
        .http
        .get(&keys_url)
        .send()
        .await
        .expect("keys")
        .json()
        .await
        .expect("JSON");
    let key = jwks["keys"][0]["x"].as_str().expect("x").to_owned();
    assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
    let (ok, said) = export_and_verify(&stack, "intact.ndjson", &key);
    assert!(ok, "{said}");
    assert!(said.contains("valid"), "{said}");
    // The key must be the right one.
    let wrong = keygraph_audit::chain::CheckpointSigner::from_seed(&[3; 32]).public_key();
    let (ok, said) = export_and_verify(&stack, "wrong-key.ndjson", &wrong);
    assert!(!ok && said.contains("not among the trusted keys"), "{said}");

    let audit = service_db(&stack, "audit").await;
    let n = events.len() as i64;
    // Changed: one row's outcome.
    sql(
        &audit,
        "UPDATE audit_events SET outcome = 'failure' WHERE sequence = 4",
    )
    .await;
    let report = stack.gql(VERIFY, json!({}), Some(&admin)).await;
    let found = &data(&report)["verifyAuditLog"];
    assert_eq!(found["valid"], false);
    assert_eq!(
        (
            &found["firstBreak"]["sequence"],
            &found["firstBreak"]["kind"]
        ),
        (&json!(4), &json!("CONTENT_CHANGED")),
        "{found}"
    );
    assert_eq!(found["firstBreak"]["eventId"], events[3]["id"]);
    let (ok, said) = export_and_verify(&stack, "changed.ndjson", &key);
    assert!(!ok && said.contains("sequence 4"), "{said}");
    sql(
        &audit,
        "UPDATE audit_events SET outcome = 'success' WHERE sequence = 4",
    )
    .await;
    let report = stack.gql(VERIFY, json!({}), Some(&admin)).await;
    assert_eq!(data(&report)["verifyAuditLog"]["valid"], true, "restored");

    // Reordered: two rows swap places.
    let swap = [
        "UPDATE audit_events SET sequence = -1 WHERE sequence = 6",
        "UPDATE audit_events SET sequence = 6 WHERE sequence = 7",
        "UPDATE audit_events SET sequence = 7 WHERE sequence = -1",
    ];
    for statement in swap {
        sql(&audit, statement).await;
    }
    let report = stack.gql(VERIFY, json!({}), Some(&admin)).await;
    let found = &data(&report)["verifyAuditLog"];
    assert_eq!(
        (
            &found["valid"],
            &found["firstBreak"]["sequence"],
            &found["firstBreak"]["kind"]
        ),
        (&json!(false), &json!(6), &json!("CHAIN_BROKEN")),
        "{found}"
    );
    let (ok, said) = export_and_verify(&stack, "reordered.ndjson", &key);
    assert!(!ok && said.contains("sequence 6"), "{said}");
    for statement in swap {
        sql(&audit, statement).await;
    }

    // Deleted: one row in the middle.
    sql(
        &audit,
        &format!("DELETE FROM audit_events WHERE sequence = {}", n - 2),
    )
    .await;
    let report = stack.gql(VERIFY, json!({}), Some(&admin)).await;
    let found = &data(&report)["verifyAuditLog"];
    assert_eq!(
        (
            &found["valid"],
            &found["firstBreak"]["sequence"],
            &found["firstBreak"]["kind"]
        ),
        (&json!(false), &json!(n - 2), &json!("MISSING_EVENT")),
        "{found}"
    );
    let (ok, said) = export_and_verify(&stack, "deleted.ndjson", &key);
    assert!(
        !ok && said.contains(&format!("sequence {}", n - 2)),
        "{said}"
    );
}

keygraph_kernel::on_both_backends!(
    the_journey_is_in_the_log,
    events_survive_an_audit_outage,
    a_batch_sent_again_is_stored_once,
    tampering_is_found_where_it_happened,
);
