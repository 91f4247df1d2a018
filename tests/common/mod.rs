//! Shared by the end-to-end tests and the start-up benchmark: the environment that runs the
//! whole stack (every service and the router) on free loopback ports.

use std::path::Path;

pub use keygraph_kernel::testing::free_port;

/// `KEYGRAPH__` variables putting each service on a free loopback port, pointing every
/// service, verifier and the router at the others, with its files under `data`. Returns them
/// and the router's base URL.
pub fn loopback_env(data: &Path) -> std::io::Result<(Vec<(String, String)>, String)> {
    let [router, identity, auth, authz, audit] = [
        free_port()?,
        free_port()?,
        free_port()?,
        free_port()?,
        free_port()?,
    ];
    let base = |port: u16| format!("http://127.0.0.1:{port}");
    let listen = |port: u16| format!("127.0.0.1:{port}");
    let env = [
        ("DATA_DIR", data.display().to_string()),
        ("ROUTER__LISTEN", listen(router)),
        ("ROUTER__POLL_INTERVAL_SECS", "0".into()),
        ("IDENTITY__LISTEN", listen(identity)),
        ("AUTH__LISTEN", listen(auth)),
        ("AUTHZ__LISTEN", listen(authz)),
        ("AUDIT__LISTEN", listen(audit)),
        ("OUTBOX__AUDIT_URL", base(audit)),
        (
            "TOKENS__JWKS_URL",
            format!("{}/.well-known/jwks.json", base(auth)),
        ),
        (
            "TOKENS__REVOCATIONS_URL",
            format!("{}/internal/revocations", base(auth)),
        ),
        ("IDENTITY__AUTH_URL", base(auth)),
        ("IDENTITY__AUTHZ_URL", base(authz)),
        ("AUTHZ__IDENTITY_URL", base(identity)),
        ("AUTH__IDENTITY_URL", base(identity)),
        ("AUTH__AUTHZ_URL", base(authz)),
        (
            "ROUTER__SUBGRAPHS__IDENTITY__URL",
            format!("{}/graphql", base(identity)),
        ),
        (
            "ROUTER__SUBGRAPHS__AUTH__URL",
            format!("{}/graphql", base(auth)),
        ),
        (
            "ROUTER__SUBGRAPHS__AUTHZ__URL",
            format!("{}/graphql", base(authz)),
        ),
        (
            "ROUTER__SUBGRAPHS__AUDIT__URL",
            format!("{}/graphql", base(audit)),
        ),
    ]
    .into_iter()
    .map(|(key, value)| (format!("KEYGRAPH__{key}"), value))
    .collect();
    Ok((env, base(router)))
}
