//! Externally visible contracts: the SDL this subgraph serves and the shape of its errors.
//! Run with `UPDATE_SCHEMA=1` to rewrite `schema/identity.graphql` after an intended change;
//! error shapes are insta snapshots (`INSTA_UPDATE=always` to accept a change).

mod common;

use common::TestService;
use keygraph_kernel::testing::Backend;
use serde_json::json;

#[test]
fn committed_sdl_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schema/identity.graphql");
    let generated = keygraph_identity::schema::sdl();
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(path, &generated).expect("write schema/identity.graphql");
        return;
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "schema/identity.graphql is out of date with the code; run `UPDATE_SCHEMA=1 cargo test -p keygraph-identity --test contract` and commit the result"
    );
}

#[test]
fn every_type_and_field_is_described() {
    let sdl = keygraph_identity::schema::sdl();
    for name in [
        "type User",
        "type UserConnection",
        "enum UserStatus",
        "input RegisterInput",
    ] {
        let at = sdl.find(name).unwrap_or_else(|| panic!("{name} missing"));
        let before = &sdl[..at];
        assert!(
            before.trim_end().ends_with("\"\"\""),
            "{name} has no description"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_shapes() {
    let Some(svc) = TestService::start(Backend::Sqlite).await else {
        return;
    };
    let unauthenticated = svc.gql("{ me { id } }", json!({}), None).await;
    insta::assert_json_snapshot!("unauthenticated", unauthenticated.0);
    let bad_input = svc
        .gql(
            "mutation { register(input: { email: \"nope\", password: \"quiet lantern harbor\" }) }",
            json!({}),
            None,
        )
        .await;
    insta::assert_json_snapshot!("bad_user_input", bad_input.0);
    let forbidden = svc
        .gql(
            "{ users { totalCount } }",
            json!({}),
            Some(&svc.token(uuid::Uuid::nil(), &[])),
        )
        .await;
    insta::assert_json_snapshot!("forbidden", forbidden.0);
    let invalid_query = svc.gql("{ me { nope } }", json!({}), None).await;
    insta::assert_json_snapshot!("invalid_query", invalid_query.0);
    let over_a_limit = svc
        .gql(
            &format!("{{ me {{ {} }} }}", "id ".repeat(2_000)),
            json!({}),
            None,
        )
        .await;
    insta::assert_json_snapshot!("operation_limit_exceeded", over_a_limit.0);
}

/// The access directives in the SDL (which the router enforces) say what the guards do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_directives_match_the_guards() {
    let Some(svc) = common::TestService::start(keygraph_kernel::testing::Backend::Sqlite).await
    else {
        return;
    };
    let sdl = keygraph_identity::schema::sdl();
    keygraph_kernel::testing::assert_directives_match_guards(&sdl, &svc.signer, &svc.server).await;
}
