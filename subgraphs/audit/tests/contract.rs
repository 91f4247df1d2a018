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

#[test]
fn every_type_is_described() {
    let sdl = keygraph_audit::schema::sdl();
    for name in [
        "type AuditEvent",
        "type AuditCheckpoint",
        "type AuditVerification",
        "type AuditChainBreak",
        "type User",
        "input AuditEventFilter",
        "enum AuditOutcome",
        "enum AuditBreakKind",
    ] {
        let at = sdl.find(name).unwrap_or_else(|| panic!("{name} missing"));
        assert!(
            sdl[..at].trim_end().ends_with("\"\"\""),
            "{name} has no description"
        );
    }
    assert!(
        sdl.contains("type User @key(fields: \"id\")"),
        "audit contributes to the User entity"
    );
    assert!(sdl.contains("type AuditEvent @key(fields: \"id\")"));
}
