//! Externally visible contracts: the SDL this subgraph serves. `UPDATE_SCHEMA=1` rewrites
//! `schema/audit.graphql` after an intended change.

#[test]
fn committed_sdl_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schema/audit.graphql");
    let generated = keygraph_audit::schema::sdl();
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(path, &generated).expect("write schema/audit.graphql");
        return;
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "schema/audit.graphql is out of date with the code; run `UPDATE_SCHEMA=1 cargo test -p keygraph-audit --test contract` and commit the result"
    );
}

/// Every type, field, argument, input field and enum value a client sees has a description.
#[test]
fn everything_is_described() {
    let missing = keygraph_kernel::testing::undescribed(&keygraph_audit::schema::sdl());
    assert!(missing.is_empty(), "undescribed in the SDL: {missing:?}");
}

mod common;

use serde_json::json;

keygraph_kernel::on_both_backends!(error_shapes, access_directives_match_the_guards);

/// The access directives in the SDL (which the router enforces) say what the guards do.
async fn access_directives_match_the_guards(backend: keygraph_kernel::testing::Backend) {
    let Some(stack) = common::Stack::start(backend).await else {
        return;
    };
    let sdl = keygraph_audit::schema::sdl();
    keygraph_kernel::testing::assert_directives_match_guards(&sdl, &stack.signer, &stack.server)
        .await;
}

async fn error_shapes(backend: keygraph_kernel::testing::Backend) {
    let Some(stack) = common::Stack::start(backend).await else {
        return;
    };
    let user = uuid::Uuid::from_u128(7);
    let token = stack.token(user, &[]);
    let forbidden = stack
        .gql("{ auditEvents { totalCount } }", json!({}), Some(&token))
        .await;
    insta::assert_json_snapshot!("forbidden_list", forbidden.0);
    let bad_filter = stack
        .gql(
            "{ auditEvents(filter: { actorId: \"00000000-0000-0000-0000-000000000007\", action: \"identity..user\" }) { totalCount } }",
            json!({}),
            Some(&token),
        )
        .await;
    insta::assert_json_snapshot!("bad_filter", bad_filter.0);
    let admin = stack.token(user, &["audit.checkpoint.create"]);
    let empty = stack
        .gql(
            "mutation { createAuditCheckpoint { sequence } }",
            json!({}),
            Some(&admin),
        )
        .await;
    insta::assert_json_snapshot!("empty_log", empty.0);
    let (status, body) = stack
        .send("identity", &[json!({ "id": "not-a-uuid" })])
        .await;
    assert_eq!(status, 400);
    insta::assert_json_snapshot!("bad_batch", body);
}
