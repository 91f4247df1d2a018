//! The SDL this subgraph serves, committed as `schema/auth.graphql`; `UPDATE_SCHEMA=1`
//! rewrites it after an intended change.

mod common;

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

#[test]
fn every_type_is_described() {
    let sdl = keygraph_auth::schema::sdl();
    for name in [
        "type AuthPayload",
        "type Session",
        "type SigningKeyInfo",
        "type User",
    ] {
        let at = sdl.find(name).unwrap_or_else(|| panic!("{name} missing"));
        assert!(
            sdl[..at].trim_end().ends_with("\"\"\""),
            "{name} has no description"
        );
    }
}

/// The access directives in the SDL (which the router enforces) say what the guards do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_directives_match_the_guards() {
    let Some(svc) = common::Stack::start(keygraph_kernel::testing::Backend::Sqlite).await else {
        return;
    };
    let sdl = keygraph_auth::schema::sdl();
    keygraph_kernel::testing::assert_directives_match_guards(&sdl, &svc.signer, &svc.auth).await;
}
