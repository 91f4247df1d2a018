//! Externally visible contracts: the SDL this subgraph serves and the shape of its errors.
//! Run with `UPDATE_SCHEMA=1` to rewrite `schema/identity.graphql` after an intended change;
//! error shapes are insta snapshots (`INSTA_UPDATE=always` to accept a change).

mod common;

use common::TestService;
use keygraph_kernel::testing::Backend;
use serde_json::json;

keygraph_kernel::on_both_backends!(error_shapes, access_directives_match_the_guards);

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

/// Every type, field, argument, input field and enum value a client sees has a description.
#[test]
fn everything_is_described() {
    let missing = keygraph_kernel::testing::undescribed(&keygraph_identity::schema::sdl());
    assert!(missing.is_empty(), "undescribed in the SDL: {missing:?}");
}

async fn error_shapes(backend: Backend) {
    let Some(svc) = TestService::start(backend).await else {
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
async fn access_directives_match_the_guards(backend: Backend) {
    let Some(svc) = common::TestService::start(backend).await else {
        return;
    };
    let sdl = keygraph_identity::schema::sdl();
    keygraph_kernel::testing::assert_directives_match_guards(&sdl, &svc.signer, &svc.server).await;
}
