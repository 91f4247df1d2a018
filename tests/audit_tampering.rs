//! Tampering with the audit log end to end: a row changed, reordered or deleted in the audit
//! database is found at that event by `verifyAuditLog` and by `keygraph audit verify` on an
//! export checked with only the file and the key. Through the `keygraph` binary on SQLite
//! files, and on Postgres (one schema per service) when `TEST_DATABASE_URL` is set.

mod audit_log;
mod common;
mod harness;

use std::process::Command;

use audit_log::{VERIFY, all_events, service_db, sql};
use harness::{ADMIN_EMAIL, ADMIN_PASSWORD, Stack, Topology, data};
use keygraph_kernel::testing::Backend;
use serde_json::{Value, json};

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

keygraph_kernel::on_both_backends!(tampering_is_found_where_it_happened,);
