//! The audit log end to end along one user's journey: every service's relay feeds it, the
//! router serves it with its filters, the user reads only their own events, checkpoints are
//! signed and delivered outbox rows pruned. Through the `keygraph` binary on SQLite files,
//! and on Postgres (one schema per service) when `TEST_DATABASE_URL` is set.

mod audit_log;
mod common;
mod harness;

use std::time::{Duration, Instant};

use audit_log::{EVENTS, PASSWORD, VERIFY, all_events, code, outbox_relay, register, service_db};
use harness::{ADMIN_EMAIL, ADMIN_PASSWORD, Stack, Topology, data};
use keygraph_kernel::testing::Backend;
use serde_json::{Value, json};

const LOGIN: &str = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { ... on AuthPayload { accessToken refreshToken } } }";

fn find<'a>(events: &'a [Value], action: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["action"] == action)
        .unwrap_or_else(|| panic!("no {action} in {events:#?}"))
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

keygraph_kernel::on_both_backends!(the_journey_is_in_the_log,);
