//! Identity subgraph: users, credentials, email verification and password reset.
//!
//! [`build`] assembles the service (database, migrations, mailer, schema, routes) so the
//! `keygraph` launcher, the per-service command and the tests all start the same code.

pub mod email;
pub mod entity;
pub mod handover;
pub mod internal;
pub mod mail;
pub mod mailed_token;
pub mod password;
pub mod permissions;
pub mod schema;
pub mod service;

use std::sync::Arc;

use axum::{
    Router,
    http::header,
    response::{Html, IntoResponse},
    routing::get,
};
use keygraph_kernel::telemetry::InThisService as _;
use keygraph_kernel::{
    config::Config,
    db::{DatabaseTarget, connect_and_migrate},
    graphql,
    http::{self, Shutdown},
    internal::{self as internal_endpoints, InternalClient, InternalToken, LocalServices},
    token::TokenVerifier,
};
use keygraph_migrations::identity::Migrator;
use sea_orm::DatabaseConnection;

use crate::{handover::Handover, mail::Mailer, service::Identity};

pub const SERVICE: &str = "identity";

/// A ready-to-serve identity service.
pub struct IdentityService {
    pub router: Router,
    pub db: DatabaseConnection,
    /// Background work to run beside the server (see [`IdentityService::spawn_workers`]).
    pub handover: Handover,
}

impl IdentityService {
    /// Starts the background workers; they stop with `shutdown`.
    pub fn spawn_workers(&self, shutdown: Shutdown) {
        tokio::spawn(self.handover.clone().run(shutdown).in_this_service());
    }
}

/// Connects and migrates the database and assembles the routes. Calls to services registered
/// in `local` stay in this process.
pub async fn build(
    config: &Config,
    internal_token: &str,
    local: &LocalServices,
) -> anyhow::Result<IdentityService> {
    let url = config.database_url_for(SERVICE, config.identity.database_url.as_deref());
    let db = connect_and_migrate::<Migrator>(DatabaseTarget {
        service: SERVICE,
        url: &url,
        schema: &config.identity.schema,
        pool: &config.database,
    })
    .await?;
    let mailer = Mailer::from_config(&config.mail, config.data_dir.join("mail"))?;
    let client = |url: &Option<String>| {
        url.as_deref()
            .map(|url| InternalClient::new(url, internal_token).map(|c| c.with_local(local)))
            .transpose()
    };
    let handover = Handover::new(
        db.clone(),
        client(&config.identity.authz_url)?,
        client(&config.identity.auth_url)?,
    );
    let counters = keygraph_kernel::counters::Counters::from_config(&config.redis)
        .map_err(anyhow::Error::msg)?;
    let identity = Arc::new(Identity::new(
        db.clone(),
        config,
        mailer,
        handover.clone(),
        client(&config.identity.authz_url)?,
        Arc::new(counters),
    )?);
    if let Some(email) = &config.identity.first_admin.email {
        let generated = identity
            .ensure_first_admin(email, config.identity.first_admin.password.as_deref())
            .await
            .map_err(|e| anyhow::anyhow!("creating the first administrator {email}: {e}"))?;
        if let Some(password) = generated {
            // Shown once, on purpose outside the log: it is not stored anywhere else.
            eprintln!(
                "\n  First administrator created: {email}\n  Password (shown only now): {password}\n  Sign in with the `login` mutation; change it with `changePassword`.\n"
            );
        }
    }
    let verifier = TokenVerifier::for_service("identity", &config.tokens, internal_token)?;
    let router = Router::new()
        .route(
            "/graphql",
            graphql::endpoint(
                schema::build_schema(identity.clone()),
                graphql::Documents::new(schema::LIMITS).with_introspection(config.introspection()),
                verifier,
            ),
        )
        .route("/verify-email", get(link_page))
        .route("/reset-password", get(link_page))
        .merge(internal_endpoints::protect(
            internal::routes(identity),
            InternalToken::new(internal_token),
        ));
    Ok(IdentityService {
        router,
        db,
        handover,
    })
}

/// Runs the service on its configured address until `shutdown`, then closes the pool.
/// Internal calls to services registered in `local` stay in this process, and it registers
/// itself there while it serves.
pub async fn run(
    config: &Config,
    internal_token: &str,
    local: &LocalServices,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    // Bind first: a taken port fails before any database work.
    let listener = http::bind(SERVICE, config.identity.listen).await?;
    let service = build(config, internal_token, local).await?;
    service.spawn_workers(shutdown.clone());
    let router = keygraph_kernel::relay::start(
        SERVICE,
        &service.db,
        config,
        internal_token,
        local,
        service.router,
        shutdown.clone(),
    )?;
    http::serve_with_database(
        SERVICE,
        listener,
        router,
        service.db,
        http::Shell::for_subgraph(&config.http, internal_token, local)
            .map_err(anyhow::Error::msg)?,
        shutdown,
    )
    .await?;
    Ok(())
}

const LINK_PAGE: &str = include_str!("pages/link.html");

/// The page behind mailed links: it asks the user to confirm, then calls the mutation. Its
/// policy lets only its own inline script (by hash) and style run, lets it call only this
/// service, and keeps it out of frames (the kernel adds `X-Frame-Options` and
/// `Referrer-Policy: no-referrer`, so the token in the URL goes nowhere else).
async fn link_page() -> impl IntoResponse {
    static POLICY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let policy = POLICY.get_or_init(|| link_page_policy(LINK_PAGE));
    (
        [(header::CONTENT_SECURITY_POLICY, policy.clone())],
        Html(LINK_PAGE),
    )
}

/// `Content-Security-Policy` for `page`: its inline scripts allowed by their SHA-256.
fn link_page_policy(page: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let mut hashes = String::new();
    let mut rest = page;
    while let Some(start) = rest.find("<script>") {
        let body = &rest[start + "<script>".len()..];
        let Some(end) = body.find("</script>") else {
            break;
        };
        let digest = sha2::Sha256::digest(&body.as_bytes()[..end]);
        hashes.push_str(&format!(
            " 'sha256-{}'",
            base64::engine::general_purpose::STANDARD.encode(digest)
        ));
        rest = &body[end..];
    }
    format!(
        "default-src 'none'; script-src{hashes}; style-src 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_link_page_policy_allows_exactly_its_own_script() {
        let policy = super::link_page_policy("<p>x</p><script>run()</script>");
        assert_eq!(
            policy,
            "default-src 'none'; script-src 'sha256-AvyuiL0SD1mVY3NNxR+V2uo+lhk6RMFrytWmRt6CrJQ='; style-src 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
        );
    }
}
