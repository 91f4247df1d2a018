//! Externally visible contracts: the SDL this subgraph serves and the shape of its errors.
//! `UPDATE_SCHEMA=1` rewrites `schema/authz.graphql` after an intended change; error shapes are
//! insta snapshots (`INSTA_UPDATE=always` to accept a change).

mod common;

use common::Stack;
use keygraph_kernel::testing::Backend;
use serde_json::json;

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

#[test]
fn every_type_is_described() {
    let sdl = keygraph_authz::schema::sdl();
    for name in [
        "type Role",
        "type Permission",
        "type User",
        "type PermissionCheck",
        "input CreateRoleInput",
    ] {
        let at = sdl.find(name).unwrap_or_else(|| panic!("{name} missing"));
        assert!(
            sdl[..at].trim_end().ends_with("\"\"\""),
            "{name} has no description"
        );
    }
    assert!(
        sdl.contains("type User @key(fields: \"id\")"),
        "authz contributes to the User entity"
    );
    assert!(sdl.contains("type Role @key(fields: \"id\")"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_shapes() {
    let Some(stack) = Stack::start(Backend::Sqlite).await else {
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
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_directives_match_the_guards() {
    let Some(svc) = common::Stack::start(keygraph_kernel::testing::Backend::Sqlite).await else {
        return;
    };
    let sdl = keygraph_authz::schema::sdl();
    keygraph_kernel::testing::assert_directives_match_guards(&sdl, &svc.signer, &svc.authz).await;
}
