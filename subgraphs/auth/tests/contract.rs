//! The SDL this subgraph serves, committed as `schema/auth.graphql`; `UPDATE_SCHEMA=1`
//! rewrites it after an intended change.

mod common;

keygraph_kernel::on_both_backends!(access_directives_match_the_guards);

#[test]
fn committed_sdl_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schema/auth.graphql");
    let generated = keygraph_auth::schema::sdl();
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(path, &generated).expect("write schema/auth.graphql");
        return;
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "schema/auth.graphql is out of date with the code; run `UPDATE_SCHEMA=1 cargo test -p keygraph-auth --test contract` and commit the result"
    );
}

/// Every type, field, argument, input field and enum value a client sees has a description.
#[test]
fn everything_is_described() {
    let missing = keygraph_kernel::testing::undescribed(&keygraph_auth::schema::sdl());
    assert!(missing.is_empty(), "undescribed in the SDL: {missing:?}");
}

/// The access directives in the SDL (which the router enforces) say what the guards do.
async fn access_directives_match_the_guards(backend: keygraph_kernel::testing::Backend) {
    let Some(svc) = common::Stack::start(backend).await else {
        return;
    };
    let sdl = keygraph_auth::schema::sdl();
    keygraph_kernel::testing::assert_directives_match_guards(&sdl, &svc.signer, &svc.auth).await;
}
