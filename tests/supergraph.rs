//! `schema/supergraph.graphql` is what `keygraph compose` writes from this build's subgraphs.
//! Run `cargo run -- compose` (or `UPDATE_SCHEMA=1 cargo test --test supergraph`) after a
//! subgraph schema change.

use keygraph_kernel::config::Config;
use keygraph_router::supergraph::{SubgraphSdl, compose};

#[test]
fn committed_supergraph_matches_the_subgraphs() {
    let config = Config::from_sources(None, Vec::new()).expect("default config");
    let subgraphs: Vec<SubgraphSdl> = [
        ("identity", keygraph_identity::schema::sdl()),
        ("authz", keygraph_authz::schema::sdl()),
        ("auth", keygraph_auth::schema::sdl()),
        ("audit", keygraph_audit::schema::sdl()),
    ]
    .into_iter()
    .map(|(name, sdl)| SubgraphSdl {
        name: name.to_owned(),
        url: config.router.subgraphs[name].url.clone(),
        sdl,
    })
    .collect();
    let (composed, warnings) = compose(&subgraphs).expect("the subgraphs compose");
    assert!(warnings.is_empty(), "composition warnings: {warnings:?}");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/supergraph.graphql");
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(path, &composed).expect("write the supergraph");
        return;
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == composed,
        "schema/supergraph.graphql is out of date: run `cargo run -- compose`"
    );
}
