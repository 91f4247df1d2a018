//! Externally visible contracts: the SDL this subgraph serves and the shape of its errors.
//! `UPDATE_SCHEMA=1` rewrites `schema/authz.graphql` after an intended change; error shapes are
//! insta snapshots (`INSTA_UPDATE=always` to accept a change).

mod common;

use common::Stack;
use keygraph_kernel::testing::Backend;
use serde_json::json;

keygraph_kernel::on_both_backends!(error_shapes, access_directives_match_the_guards);

#[test]
fn committed_sdl_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schema/authz.graphql");
    let generated = keygraph_authz::schema::sdl();
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(path, &generated).expect("write schema/authz.graphql");
        return;
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "schema/authz.graphql is out of date with the code; run `UPDATE_SCHEMA=1 cargo test -p keygraph-authz --test contract` and commit the result"
    );
}

/// Every type, field, argument, input field and enum value a client sees has a description.
#[test]
fn everything_is_described() {
    let missing = keygraph_kernel::testing::undescribed(&keygraph_authz::schema::sdl());
    assert!(missing.is_empty(), "undescribed in the SDL: {missing:?}");
}

async fn error_shapes(backend: Backend) {
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    let admin = stack.admin();
    stack.create_role("ops", &[]).await;
    let conflict = stack
        .gql(
            "mutation { createRole(input: { name: \"ops\" }) { id } }",
            json!({}),
            Some(&admin),
        )
        .await;
    insta::assert_json_snapshot!("conflict", conflict.0);
    let invalid = stack
        .gql(
            "query { checkPermissions(userId: \"00000000-0000-7000-8000-000000000000\", codes: [\"identity.*.read\"]) { granted } }",
            json!({}),
            Some(&admin),
        )
        .await;
    insta::assert_json_snapshot!("bad_code", invalid.0);
    let not_found = stack
        .gql(
            "mutation { deleteRole(id: \"00000000-0000-7000-8000-000000000000\") }",
            json!({}),
            Some(&admin),
        )
        .await;
    insta::assert_json_snapshot!("not_found", not_found.0);
}

/// The access directives in the SDL (which the router enforces) say what the guards do.
async fn access_directives_match_the_guards(backend: Backend) {
    let Some(svc) = common::Stack::start(backend).await else {
        return;
    };
    let sdl = keygraph_authz::schema::sdl();
    keygraph_kernel::testing::assert_directives_match_guards(&sdl, &svc.signer, &svc.authz).await;
}
