//! Typed configuration: `config/default.yaml` (built in), then an optional `--config` file,
//! then `KEYGRAPH__SECTION__KEY` environment variables. Unknown keys and bad values fail with
//! the key's path and what is accepted.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use serde_json::Value;

/// The defaults, compiled in so the binary runs without the repository beside it.
pub const DEFAULT_YAML: &str = include_str!("../../config/default.yaml");

/// Prefix of environment variables that override settings.
pub const ENV_PREFIX: &str = "KEYGRAPH__";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {origin} is not valid YAML: {message}")]
    Syntax { origin: String, message: String },
    #[error("config file {origin}: the top level must be a mapping of sections")]
    NotAMapping { origin: String },
    #[error("unknown setting `{key}` (from {origin}); known keys at this level: {known}")]
    UnknownKey {
        key: String,
        origin: String,
        known: String,
    },
    #[error("setting `{path}`: {message}")]
    Invalid { path: String, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Development,
    Production,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub mode: Mode,
    pub data_dir: PathBuf,
    /// Whether `__schema` and `__type` are answered, by the router and by every subgraph.
    /// Unset in the file: on in development mode, off in production (resolved when the
    /// config loads).
    pub introspection: Option<bool>,
    pub log: LogConfig,
    pub telemetry: TelemetryConfig,
    pub http: HttpConfig,
    pub database: PoolConfig,
    pub tokens: TokenConfig,
    pub internal: InternalConfig,
    pub mail: MailConfig,
    pub identity: IdentityConfig,
    pub authz: AuthzConfig,
    pub auth: AuthConfig,
    pub audit: AuditConfig,
    pub outbox: OutboxConfig,
    pub router: RouterConfig,
    pub redis: RedisConfig,
}

/// The audit service: where it listens, keeps its log, and how it signs checkpoints.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    pub listen: SocketAddr,
    pub database_url: Option<String>,
    pub schema: String,
    /// base64 of a 32-byte Ed25519 seed; unset: generated into `<data_dir>/audit-signing-key`
    /// (development mode only).
    pub signing_key: Option<String>,
    /// Seconds between signed checkpoints of the log's head (when it moved).
    pub checkpoint_interval_secs: u64,
    /// Events older than this many days are removed (up to a signed checkpoint); unset: kept.
    pub retention_days: Option<u32>,
}

/// The relay every service runs from its outbox to the audit service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxConfig {
    /// Base URL of the audit service; unset: events stay in the outbox.
    pub audit_url: Option<String>,
    /// Most events sent in one batch.
    pub batch_size: u32,
    /// Milliseconds between looks at the outbox when it was empty.
    pub interval_ms: u64,
    /// First retry delay after a failed delivery, in milliseconds; it doubles with each failure.
    pub retry_base_ms: u64,
    /// Longest retry delay, in seconds.
    pub retry_max_secs: u64,
    /// Delivered events are removed from the outbox after this many seconds.
    pub prune_delivered_after_secs: u64,
}

/// Where limits and throttles shared by replicas are counted (see `counters`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    pub url: Option<String>,
    pub timeout_ms: u64,
    pub when_unavailable: WhenUnavailable,
    pub key_prefix: String,
}

/// What limits and throttles do while Redis does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WhenUnavailable {
    /// Count in this process's memory.
    Local,
    /// Apply no limit.
    Allow,
    /// Refuse what needs a counter (503).
    Refuse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub filter: String,
    pub format: LogFormat,
}

/// Traces over OTLP (`telemetry:`); off while `endpoint` is unset.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    pub endpoint: Option<String>,
    pub protocol: OtlpProtocol,
    pub sampling_ratio: f64,
    pub resource_attributes: std::collections::BTreeMap<String, String>,
    pub service_names: ServiceNames,
    pub filter: String,
    pub batch_delay_ms: u64,
    pub export_timeout_secs: u64,
}

/// How spans travel to the OTLP endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum OtlpProtocol {
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    #[serde(rename = "grpc")]
    Grpc,
}

/// The `service.name` each service reports.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceNames {
    pub router: String,
    pub identity: String,
    pub authz: String,
    pub auth: String,
    pub audit: String,
}

impl ServiceNames {
    /// The name configured for `service` (`router`, `identity`, ...); others keep their own.
    pub fn of<'a>(&'a self, service: &'a str) -> &'a str {
        match service {
            "router" => &self.router,
            "identity" => &self.identity,
            "authz" => &self.authz,
            "auth" => &self.auth,
            "audit" => &self.audit,
            other => other,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub body_limit_bytes: usize,
    pub request_timeout_secs: u64,
    pub shutdown_grace_secs: u64,
    /// Proxies (addresses or CIDR ranges) whose forwarding header is believed.
    pub trusted_proxies: Vec<String>,
    pub forwarded_header: ForwardedHeader,
}

/// The header trusted proxies write the proxy chain in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ForwardedHeader {
    #[serde(rename = "x-forwarded-for")]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=...`.
    #[serde(rename = "forwarded")]
    Forwarded,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    pub max_connections: u32,
    pub min_connections: u32,
    pub acquire_timeout_secs: u64,
    pub idle_timeout_secs: u64,
    pub max_lifetime_secs: u64,
    pub startup_wait_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub issuer: String,
    pub audience: String,
    pub jwks_url: Option<String>,
    pub jwks_cache_secs: u64,
    pub jwks_min_refetch_secs: u64,
    pub leeway_secs: u64,
    pub static_keys: Vec<StaticKey>,
    pub revocations_url: Option<String>,
    pub revocations_poll_secs: u64,
    /// Seconds after a sign-in (or a step-up) during which sensitive changes are allowed.
    pub step_up_max_age_secs: u64,
}

/// An Ed25519 public key trusted without JWKS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticKey {
    pub kid: String,
    /// base64url (no padding) of the raw 32-byte public key, as in a JWK's `x`.
    pub x: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InternalConfig {
    pub token: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailConfig {
    pub from: String,
    pub smtp_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    pub listen: SocketAddr,
    pub database_url: Option<String>,
    pub schema: String,
    pub links: IdentityLinks,
    pub verification_token_ttl_secs: u64,
    pub reset_token_ttl_secs: u64,
    pub mail_rate_limit: RateLimitConfig,
    pub auth_url: Option<String>,
    pub authz_url: Option<String>,
    pub password: PasswordConfig,
    pub first_admin: FirstAdminConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirstAdminConfig {
    pub email: Option<String>,
    pub password: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub listen: SocketAddr,
    pub database_url: Option<String>,
    pub schema: String,
    pub identity_url: String,
    pub authz_url: String,
    pub access_token_ttl_secs: u64,
    pub refresh_idle_ttl_secs: u64,
    pub refresh_absolute_ttl_secs: u64,
    pub refresh_reuse_grace_secs: u64,
    pub allow_unverified_login: bool,
    pub key_encryption_key: Option<String>,
    pub throttle: ThrottleConfig,
    pub mfa: MfaConfig,
}

/// Second factors at sign-in (`auth.mfa`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MfaConfig {
    /// The issuer authenticator apps show beside the account.
    pub totp_issuer: String,
    /// Seconds a sign-in challenge (the answer to a password when a factor is due) lasts.
    pub challenge_ttl_secs: u64,
    /// Seconds an unconfirmed TOTP enrolment waits for its first code.
    pub enrolment_ttl_secs: u64,
    /// Roles whose holders must sign in with a second factor; one without enrols at sign-in.
    pub required_for_roles: Vec<String>,
    pub passkeys: PasskeyConfig,
}

/// The relying party passkeys are made for (`auth.mfa.passkeys`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasskeyConfig {
    /// The domain passkeys are bound to (the origins' host or a parent of it).
    pub rp_id: String,
    /// The name authenticators show.
    pub rp_name: String,
    /// The web origins sign-in pages run on, e.g. `https://app.example.com`.
    pub origins: Vec<String>,
    /// Seconds a passkey ceremony waits between its begin and its finish.
    pub ceremony_ttl_secs: u64,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottleConfig {
    pub free_attempts: u32,
    pub address_free_attempts: u32,
    pub base_delay_secs: u64,
    pub max_account_delay_secs: u64,
    pub max_address_delay_secs: u64,
    pub window_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthzConfig {
    pub listen: SocketAddr,
    pub database_url: Option<String>,
    pub schema: String,
    pub identity_url: String,
    /// Roles every account holds without an assignment (Keycloak's default roles); each must
    /// exist when authz starts. Empty: none.
    pub default_roles: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    pub listen: SocketAddr,
    pub subgraphs: std::collections::BTreeMap<String, SubgraphEndpoint>,
    pub supergraph_file: Option<PathBuf>,
    pub poll_interval_secs: u64,
    pub plan_cache_size: usize,
    /// Unset in the file: on in development mode, off in production (resolved at load).
    pub graphiql: Option<bool>,
    /// The top-level `introspection`, as resolved when the config loads.
    #[serde(skip)]
    pub introspection: bool,
    pub metrics: RouterMetrics,
    pub limits: RouterLimits,
    pub dedupe: RouterDedupe,
    pub rate_limit: RouterRateLimit,
    pub cors: CorsConfig,
    /// `Type.field` coordinates that need a recent sign-in with the second factor.
    pub step_up_fields: Vec<String>,
}

/// Where the router's Prometheus metrics are served.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterMetrics {
    /// Serve `/metrics` on this address only (a port the outside does not reach), without a
    /// token; unset: on the router's own port.
    pub listen: Option<SocketAddr>,
    /// On the router's own port, `/metrics` needs `Authorization: Bearer <internal.token>`.
    /// Unset in the file: no in development mode, yes in production (resolved at load).
    pub require_token: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubgraphEndpoint {
    pub url: String,
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterLimits {
    pub max_depth: usize,
    pub max_fields: usize,
    pub max_aliases: usize,
    pub max_directives: usize,
    pub max_tokens: usize,
    pub planning_timeout_ms: u64,
}

/// Which identical requests in flight at once share one execution.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterDedupe {
    pub client_requests: bool,
    pub subgraph_requests: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    pub allowed_origins: Vec<String>,
    /// Also any `http://localhost`, `127.0.0.1` or `[::1]` origin, on any port. Unset in the
    /// file: on in development mode, off in production (resolved when the config loads).
    pub allow_localhost: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityLinks {
    pub verify_email: String,
    pub reset_password: String,
}

/// The router's request limits, per client address and per signed-in user.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterRateLimit {
    pub window_secs: u64,
    pub per_address: KindLimits,
    pub per_user: KindLimits,
}

/// Requests allowed per window, by kind of operation (subscriptions count as queries).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindLimits {
    pub query: u32,
    pub mutation: u32,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub max: u32,
    pub window_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordConfig {
    pub min_length: usize,
    pub max_length: usize,
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub hashing_concurrency: usize,
}

impl Config {
    /// Defaults, then `file`, then `KEYGRAPH__*` variables of this process.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let overlay = match file {
            Some(path) => Some((
                path.display().to_string(),
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?,
            )),
            None => None,
        };
        Self::from_sources(
            overlay.as_ref().map(|(o, t)| (o.as_str(), t.as_str())),
            std::env::vars(),
        )
    }

    /// Builds the config from the built-in defaults, an optional `(origin, yaml)` overlay and
    /// environment variables (only those starting with [`ENV_PREFIX`] are read).
    pub fn from_sources(
        overlay: Option<(&str, &str)>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut tree = parse_yaml("the built-in defaults", DEFAULT_YAML)?;
        if let Some((origin, text)) = overlay {
            let layer = parse_yaml(origin, text)?;
            merge(&mut tree, layer, origin, "")?;
        }
        let mut env: Vec<_> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        env.sort();
        for (name, value) in env {
            apply_env(&mut tree, &name, &value)?;
        }
        let config: Config =
            serde_path_to_error::deserialize(tree).map_err(|e| ConfigError::Invalid {
                path: e.path().to_string(),
                message: e.into_inner().to_string(),
            })?;
        let mut config = config;
        let development = config.mode == Mode::Development;
        config
            .router
            .cors
            .allow_localhost
            .get_or_insert(development);
        config.router.graphiql.get_or_insert(development);
        config
            .router
            .metrics
            .require_token
            .get_or_insert(!development);
        config.router.introspection = *config.introspection.get_or_insert(development);
        config.validate()?;
        Ok(config)
    }

    /// Whether introspection is answered (the `introspection` setting, resolved by mode).
    pub fn introspection(&self) -> bool {
        self.introspection.unwrap_or(self.mode == Mode::Development)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.validate_production_secrets()?;
        let fail = |path: &str, message: String| {
            Err(ConfigError::Invalid {
                path: path.to_owned(),
                message,
            })
        };
        if self.database.max_connections == 0 {
            return fail("database.max_connections", "must be at least 1".into());
        }
        if self.database.min_connections > self.database.max_connections {
            return fail(
                "database.min_connections",
                format!(
                    "{} exceeds database.max_connections ({})",
                    self.database.min_connections, self.database.max_connections
                ),
            );
        }
        if self.tokens.issuer.is_empty() || self.tokens.audience.is_empty() {
            return fail("tokens", "issuer and audience must not be empty".into());
        }
        validate_http_url("tokens.jwks_url", self.tokens.jwks_url.as_deref())?;
        validate_http_url(
            "tokens.revocations_url",
            self.tokens.revocations_url.as_deref(),
        )?;
        if !(1..=5).contains(&self.tokens.revocations_poll_secs) {
            return fail(
                "tokens.revocations_poll_secs",
                "must be 1 to 5: revoked sessions must be refused within 5 seconds".into(),
            );
        }
        if !(30..=86_400).contains(&self.tokens.step_up_max_age_secs) {
            return fail(
                "tokens.step_up_max_age_secs",
                "must be 30 to 86400 seconds".into(),
            );
        }
        self.validate_router()?;
        if let Err(message) = crate::address::TrustedProxies::parse(&self.http.trusted_proxies) {
            return fail("http.trusted_proxies", message);
        }
        if let Some(url) = &self.redis.url
            && !(url.starts_with("redis://") || url.starts_with("unix://"))
        {
            return fail(
                "redis.url",
                format!("`{url}` is not a redis://host:port/db (or unix://) URL"),
            );
        }
        if !(1..=10_000).contains(&self.redis.timeout_ms) {
            return fail("redis.timeout_ms", "must be 1 to 10000".into());
        }
        let auth = &self.auth;
        validate_database_url("auth.database_url", auth.database_url.as_deref())?;
        validate_http_url("auth.identity_url", Some(&auth.identity_url))?;
        validate_http_url("auth.authz_url", Some(&auth.authz_url))?;
        if !is_sql_identifier(&auth.schema) {
            return fail(
                "auth.schema",
                format!(
                    "`{}` is not a plain schema name (lowercase letters, digits, _)",
                    auth.schema
                ),
            );
        }
        if !(30..=900).contains(&auth.mfa.challenge_ttl_secs) {
            return fail(
                "auth.mfa.challenge_ttl_secs",
                "must be 30 to 900: a sign-in challenge is short-lived".into(),
            );
        }
        if !(60..=3600).contains(&auth.mfa.enrolment_ttl_secs) {
            return fail("auth.mfa.enrolment_ttl_secs", "must be 60 to 3600".into());
        }
        let passkeys = &auth.mfa.passkeys;
        if passkeys.rp_id.is_empty()
            || !passkeys
                .rp_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        {
            return fail(
                "auth.mfa.passkeys.rp_id",
                format!("`{}` is not a domain name", passkeys.rp_id),
            );
        }
        if passkeys.origins.is_empty() {
            return fail(
                "auth.mfa.passkeys.origins",
                "name at least one origin sign-in pages run on".into(),
            );
        }
        for origin in &passkeys.origins {
            let host = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"))
                .map(|rest| rest.split(['/', ':']).next().unwrap_or_default());
            let Some(host) = host else {
                return fail(
                    "auth.mfa.passkeys.origins",
                    format!("`{origin}` is not an http(s) origin"),
                );
            };
            if host != passkeys.rp_id && !host.ends_with(&format!(".{}", passkeys.rp_id)) {
                return fail(
                    "auth.mfa.passkeys.origins",
                    format!(
                        "`{origin}` is not on `{}` (auth.mfa.passkeys.rp_id) or below it",
                        passkeys.rp_id
                    ),
                );
            }
            if origin.starts_with("http://") && host != "localhost" {
                return fail(
                    "auth.mfa.passkeys.origins",
                    format!("`{origin}`: browsers allow passkeys over http only on localhost"),
                );
            }
        }
        if !(30..=900).contains(&passkeys.ceremony_ttl_secs) {
            return fail(
                "auth.mfa.passkeys.ceremony_ttl_secs",
                "must be 30 to 900".into(),
            );
        }
        if auth.mfa.totp_issuer.trim().is_empty() || auth.mfa.totp_issuer.contains(':') {
            return fail(
                "auth.mfa.totp_issuer",
                "must be a non-empty name without `:` (authenticator apps split on it)".into(),
            );
        }
        if auth.access_token_ttl_secs == 0 || auth.access_token_ttl_secs > 3600 {
            return fail(
                "auth.access_token_ttl_secs",
                "must be 1 to 3600: access tokens are short-lived".into(),
            );
        }
        if auth.refresh_idle_ttl_secs == 0
            || auth.refresh_idle_ttl_secs > auth.refresh_absolute_ttl_secs
        {
            return fail(
                "auth.refresh_idle_ttl_secs",
                "must be at least 1 and at most auth.refresh_absolute_ttl_secs".into(),
            );
        }
        if auth.throttle.max_account_delay_secs < auth.throttle.base_delay_secs {
            return fail(
                "auth.throttle.max_account_delay_secs",
                "must be at least auth.throttle.base_delay_secs".into(),
            );
        }
        if let Some(token) = &self.internal.token
            && token.len() < 32
        {
            return fail(
                "internal.token",
                "must be at least 32 characters (e.g. `openssl rand -hex 32`)".into(),
            );
        }
        if let Some(url) = &self.mail.smtp_url
            && !(url.starts_with("smtp://") || url.starts_with("smtps://"))
        {
            return fail(
                "mail.smtp_url",
                format!("`{url}` is not an smtp:// or smtps:// URL"),
            );
        }
        let id = &self.identity;
        validate_database_url("identity.database_url", id.database_url.as_deref())?;
        if !is_sql_identifier(&id.schema) {
            return fail(
                "identity.schema",
                format!(
                    "`{}` is not a plain schema name (lowercase letters, digits, _; not starting with a digit)",
                    id.schema
                ),
            );
        }
        for (path, link) in [
            ("identity.links.verify_email", &id.links.verify_email),
            ("identity.links.reset_password", &id.links.reset_password),
        ] {
            if !link.contains("{token}") {
                return fail(
                    path,
                    format!("`{link}` must contain the placeholder {{token}}"),
                );
            }
        }
        validate_http_url("identity.authz_url", id.authz_url.as_deref())?;
        validate_http_url("identity.auth_url", id.auth_url.as_deref())?;
        let authz = &self.authz;
        validate_database_url("authz.database_url", authz.database_url.as_deref())?;
        validate_http_url("authz.identity_url", Some(&authz.identity_url))?;
        if !is_sql_identifier(&authz.schema) {
            return fail(
                "authz.schema",
                format!(
                    "`{}` is not a plain schema name (lowercase letters, digits, _)",
                    authz.schema
                ),
            );
        }
        for (i, name) in authz.default_roles.iter().enumerate() {
            if name.trim().is_empty() {
                return fail("authz.default_roles", "role names must not be empty".into());
            }
            if authz.default_roles[..i]
                .iter()
                .any(|n| n.trim() == name.trim())
            {
                return fail(
                    "authz.default_roles",
                    format!("names the role `{}` twice", name.trim()),
                );
            }
        }
        self.validate_audit()?;
        self.validate_telemetry()?;
        let pw = &id.password;
        if pw.min_length < 8 {
            return fail("identity.password.min_length", "must be at least 8".into());
        }
        if pw.max_length < 64 || pw.max_length > 4096 {
            return fail(
                "identity.password.max_length",
                "must be between 64 and 4096".into(),
            );
        }
        if pw.min_length > pw.max_length {
            return fail(
                "identity.password.min_length",
                "must not exceed identity.password.max_length".into(),
            );
        }
        if pw.argon2_memory_kib < 19_456 {
            return fail(
                "identity.password.argon2_memory_kib",
                "must be at least 19456 (19 MiB)".into(),
            );
        }
        if pw.argon2_iterations < 2 {
            return fail(
                "identity.password.argon2_iterations",
                "must be at least 2".into(),
            );
        }
        if id.mail_rate_limit.max == 0 || id.mail_rate_limit.window_secs == 0 {
            return fail(
                "identity.mail_rate_limit",
                "max and window_secs must be at least 1".into(),
            );
        }
        Ok(())
    }

    fn validate_telemetry(&self) -> Result<(), ConfigError> {
        let telemetry = &self.telemetry;
        let fail = |path: &str, message: String| {
            Err(ConfigError::Invalid {
                path: path.to_owned(),
                message,
            })
        };
        validate_http_url("telemetry.endpoint", telemetry.endpoint.as_deref())?;
        if telemetry
            .endpoint
            .as_deref()
            .is_some_and(|url| url.starts_with("https://"))
        {
            // Neither exporter is built with TLS: refused here rather than failing every
            // export later.
            return fail(
                "telemetry.endpoint",
                "spans are sent over plain http only: point it at a collector beside the service (e.g. http://127.0.0.1:4318) and let that one use TLS".into(),
            );
        }
        if !(0.0..=1.0).contains(&telemetry.sampling_ratio) {
            return fail(
                "telemetry.sampling_ratio",
                format!("{} is not between 0.0 and 1.0", telemetry.sampling_ratio),
            );
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&telemetry.filter) {
            return fail(
                "telemetry.filter",
                format!("`{}` is not a valid filter: {e}", telemetry.filter),
            );
        }
        let names = &telemetry.service_names;
        for (service, name) in [
            ("router", &names.router),
            ("identity", &names.identity),
            ("authz", &names.authz),
            ("auth", &names.auth),
            ("audit", &names.audit),
        ] {
            if name.trim().is_empty() {
                return fail(
                    &format!("telemetry.service_names.{service}"),
                    "must not be empty".into(),
                );
            }
        }
        if let Some(key) = telemetry.resource_attributes.keys().find(|k| k.is_empty()) {
            return fail(
                "telemetry.resource_attributes",
                format!("`{key}`: an attribute needs a name"),
            );
        }
        if telemetry.batch_delay_ms == 0 || telemetry.export_timeout_secs == 0 {
            return fail(
                "telemetry",
                "batch_delay_ms and export_timeout_secs must be at least 1".into(),
            );
        }
        Ok(())
    }

    fn validate_audit(&self) -> Result<(), ConfigError> {
        let fail = |path: &str, message: String| {
            Err(ConfigError::Invalid {
                path: path.to_owned(),
                message,
            })
        };
        let audit = &self.audit;
        validate_database_url("audit.database_url", audit.database_url.as_deref())?;
        if !is_sql_identifier(&audit.schema) {
            return fail(
                "audit.schema",
                format!(
                    "`{}` is not a plain schema name (lowercase letters, digits, _)",
                    audit.schema
                ),
            );
        }
        if let Some(key) = &audit.signing_key {
            use base64::Engine as _;
            let decoded = base64::engine::general_purpose::STANDARD.decode(key.trim());
            if !matches!(decoded, Ok(bytes) if bytes.len() == 32) {
                return fail(
                    "audit.signing_key",
                    "must be 32 bytes, base64 (e.g. `openssl rand -base64 32`)".into(),
                );
            }
        }
        if !(1..=86_400).contains(&audit.checkpoint_interval_secs) {
            return fail(
                "audit.checkpoint_interval_secs",
                "must be 1 to 86400".into(),
            );
        }
        if audit.retention_days == Some(0) {
            return fail(
                "audit.retention_days",
                "must be at least 1 (null keeps every event)".into(),
            );
        }
        let outbox = &self.outbox;
        validate_http_url("outbox.audit_url", outbox.audit_url.as_deref())?;
        if !(1..=1000).contains(&outbox.batch_size) {
            return fail("outbox.batch_size", "must be 1 to 1000".into());
        }
        if !(1..=60_000).contains(&outbox.interval_ms) {
            return fail("outbox.interval_ms", "must be 1 to 60000".into());
        }
        if outbox.retry_base_ms == 0 || outbox.retry_max_secs == 0 {
            return fail(
                "outbox",
                "retry_base_ms and retry_max_secs must be at least 1".into(),
            );
        }
        if outbox.retry_base_ms > outbox.retry_max_secs.saturating_mul(1000) {
            return fail(
                "outbox.retry_base_ms",
                "must not exceed outbox.retry_max_secs".into(),
            );
        }
        Ok(())
    }

    /// Production mode generates no secrets: name every one that is missing, at once.
    fn validate_production_secrets(&self) -> Result<(), ConfigError> {
        if self.mode != Mode::Production {
            return Ok(());
        }
        let missing: Vec<&str> = [
            (
                self.internal.token.is_none(),
                "internal.token (KEYGRAPH__INTERNAL__TOKEN, at least 32 characters)",
            ),
            (
                self.auth.key_encryption_key.is_none(),
                "auth.key_encryption_key (KEYGRAPH__AUTH__KEY_ENCRYPTION_KEY, 32 bytes base64)",
            ),
        ]
        .into_iter()
        .filter_map(|(absent, name)| absent.then_some(name))
        .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(ConfigError::Invalid {
            path: "mode".into(),
            message: format!(
                "production mode needs these secrets set: {}",
                missing.join("; ")
            ),
        })
    }

    /// Where a service's database lives: the configured URL, or its SQLite file under data_dir.
    fn validate_router(&self) -> Result<(), ConfigError> {
        let router = &self.router;
        let fail = |path: String, message: &str| {
            Err(ConfigError::Invalid {
                path,
                message: message.to_owned(),
            })
        };
        if router.subgraphs.is_empty() && router.supergraph_file.is_none() {
            return fail(
                "router.subgraphs".into(),
                "name at least one subgraph, or set router.supergraph_file",
            );
        }
        for (name, subgraph) in &router.subgraphs {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return fail(
                    format!("router.subgraphs.{name}"),
                    "a subgraph name is letters, digits and _",
                );
            }
            validate_http_url(&format!("router.subgraphs.{name}.url"), Some(&subgraph.url))?;
            if !(1..=300).contains(&subgraph.timeout_secs) {
                return fail(
                    format!("router.subgraphs.{name}.timeout_secs"),
                    "must be 1 to 300",
                );
            }
        }
        if router.plan_cache_size == 0 {
            return fail("router.plan_cache_size".into(), "must be at least 1");
        }
        let limits = router.limits;
        if limits.max_depth == 0
            || limits.max_fields == 0
            || limits.max_aliases == 0
            || limits.max_directives == 0
            || limits.max_tokens == 0
            || limits.planning_timeout_ms == 0
        {
            return fail("router.limits".into(), "every limit must be at least 1");
        }
        let rate = router.rate_limit;
        if rate.window_secs == 0
            || [rate.per_address, rate.per_user]
                .iter()
                .any(|l| l.query == 0 || l.mutation == 0)
        {
            return fail(
                "router.rate_limit".into(),
                "window_secs and every limit must be at least 1",
            );
        }
        Ok(())
    }

    pub fn database_url_for(&self, service: &str, configured: Option<&str>) -> String {
        match configured {
            Some(url) => url.to_owned(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join(format!("{service}.db")).display()
            ),
        }
    }
}

fn validate_database_url(path: &str, url: Option<&str>) -> Result<(), ConfigError> {
    match url {
        None => Ok(()),
        Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => Ok(()),
        Some(u) if u.starts_with("sqlite:") => Ok(()),
        Some(u) => Err(ConfigError::Invalid {
            path: path.to_owned(),
            message: format!(
                "`{}` is not a postgres:// or sqlite:// URL",
                crate::db::redact_url(u)
            ),
        }),
    }
}

fn validate_http_url(path: &str, url: Option<&str>) -> Result<(), ConfigError> {
    match url {
        Some(u) if !(u.starts_with("http://") || u.starts_with("https://")) => {
            Err(ConfigError::Invalid {
                path: path.to_owned(),
                message: format!("`{u}` is not an http(s) URL"),
            })
        }
        _ => Ok(()),
    }
}

/// A schema name safe to quote into DDL.
pub fn is_sql_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63
}

fn parse_yaml(origin: &str, text: &str) -> Result<Value, ConfigError> {
    let value: Value = serde_norway::from_str(text).map_err(|e| ConfigError::Syntax {
        origin: origin.to_owned(),
        message: e.to_string(),
    })?;
    match value {
        Value::Object(_) => Ok(value),
        // An empty file is an empty overlay.
        Value::Null => Ok(Value::Object(Default::default())),
        _ => Err(ConfigError::NotAMapping {
            origin: origin.to_owned(),
        }),
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

fn known_keys(map: &serde_json::Map<String, Value>) -> String {
    map.keys().cloned().collect::<Vec<_>>().join(", ")
}

/// Overlays `layer` on `base`; every key of `layer` must exist in the defaults.
fn merge(base: &mut Value, layer: Value, origin: &str, prefix: &str) -> Result<(), ConfigError> {
    match (base, layer) {
        (Value::Object(base), Value::Object(layer)) => {
            for (key, value) in layer {
                let path = join(prefix, &key);
                let known = known_keys(base);
                let Some(slot) = base.get_mut(&key) else {
                    return Err(ConfigError::UnknownKey {
                        key: path,
                        origin: origin.to_owned(),
                        known,
                    });
                };
                if slot.is_object() && value.is_object() {
                    merge(slot, value, origin, &path)?;
                } else {
                    *slot = value;
                }
            }
            Ok(())
        }
        (base, layer) => {
            *base = layer;
            Ok(())
        }
    }
}

/// `KEYGRAPH__IDENTITY__PASSWORD__MIN_LENGTH=10` sets `identity.password.min_length`.
/// The value is taken as a string where the default is a string, and as YAML otherwise
/// (numbers, booleans, lists such as `[a, b]`).
fn apply_env(tree: &mut Value, name: &str, raw: &str) -> Result<(), ConfigError> {
    let origin = format!("environment variable {name}");
    let segments: Vec<String> = name[ENV_PREFIX.len()..]
        .split("__")
        .map(str::to_ascii_lowercase)
        .collect();
    let mut node = tree;
    let mut path = String::new();
    for (i, segment) in segments.iter().enumerate() {
        let here = join(&path, segment);
        let Value::Object(map) = node else {
            return Err(ConfigError::UnknownKey {
                key: here,
                origin,
                known: format!("none (`{path}` is not a section)"),
            });
        };
        let known = known_keys(map);
        let Some(child) = map.get_mut(segment) else {
            return Err(ConfigError::UnknownKey {
                key: here,
                origin,
                known,
            });
        };
        path = here;
        if i + 1 == segments.len() {
            // `null` turns an optional setting off (e.g. KEYGRAPH__TOKENS__JWKS_URL=null).
            *child = if raw == "null" {
                Value::Null
            } else if child.is_string() {
                Value::String(raw.to_owned())
            } else {
                serde_norway::from_str(raw).map_err(|e| ConfigError::Invalid {
                    path: path.clone(),
                    message: format!("{origin} is not a valid value: {e}"),
                })?
            };
            return Ok(());
        }
        node = child;
    }
    Err(ConfigError::UnknownKey {
        key: name.to_owned(),
        origin,
        known: "a variable needs at least one KEYGRAPH__SECTION__KEY segment".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_load_and_validate() {
        let config = Config::from_sources(None, env(&[])).expect("defaults are valid");
        assert_eq!(config.mode, Mode::Development);
        assert_eq!(config.identity.listen.port(), 4001);
        assert_eq!(config.identity.password.argon2_memory_kib, 19_456);
    }

    #[test]
    fn file_then_env_override_in_order() {
        let file = "identity:\n  password:\n    min_length: 10\nlog:\n  format: json\n";
        let config = Config::from_sources(
            Some(("test.yaml", file)),
            env(&[
                ("KEYGRAPH__IDENTITY__PASSWORD__MIN_LENGTH", "12"),
                ("KEYGRAPH__IDENTITY__SCHEMA", "identity_test"),
                (
                    "KEYGRAPH__INTERNAL__TOKEN",
                    "0123456789012345678901234567890123",
                ),
                ("UNRELATED", "x"),
            ]),
        )
        .expect("valid");
        assert_eq!(config.identity.password.min_length, 12);
        assert_eq!(config.log.format, LogFormat::Json);
        assert_eq!(config.identity.schema, "identity_test");
        // A numeric-looking secret stays a string.
        assert_eq!(
            config.internal.token.as_deref(),
            Some("0123456789012345678901234567890123")
        );
    }

    #[test]
    fn unknown_key_in_file_names_its_path() {
        let err = Config::from_sources(Some(("test.yaml", "identity:\n  lisen: x\n")), env(&[]))
            .expect_err("typo");
        let text = err.to_string();
        assert!(text.contains("`identity.lisen`"), "{text}");
        assert!(text.contains("listen"), "lists the known keys: {text}");
    }

    #[test]
    fn second_factor_settings_are_checked() {
        for (key, value, says) in [
            (
                "KEYGRAPH__AUTH__MFA__PASSKEYS__ORIGINS",
                "[\"https://evil.example\"]",
                "is not on `localhost`",
            ),
            (
                "KEYGRAPH__AUTH__MFA__PASSKEYS__ORIGINS",
                "[\"localhost:4000\"]",
                "not an http(s) origin",
            ),
            (
                "KEYGRAPH__AUTH__MFA__PASSKEYS__ORIGINS",
                "[]",
                "at least one origin",
            ),
            (
                "KEYGRAPH__AUTH__MFA__PASSKEYS__RP_ID",
                "key graph",
                "not a domain name",
            ),
            (
                "KEYGRAPH__AUTH__MFA__TOTP_ISSUER",
                "Key:graph",
                "without `:`",
            ),
            (
                "KEYGRAPH__AUTH__MFA__CHALLENGE_TTL_SECS",
                "3600",
                "short-lived",
            ),
            ("KEYGRAPH__TOKENS__STEP_UP_MAX_AGE_SECS", "5", "30 to 86400"),
        ] {
            let err = Config::from_sources(None, env(&[(key, value)]))
                .expect_err(&format!("{key}={value} is refused"));
            assert!(err.to_string().contains(says), "{key}={value}: {err}");
        }
        // A production domain: https on it and below it; http only on localhost.
        let config = Config::from_sources(
            None,
            env(&[
                ("KEYGRAPH__AUTH__MFA__PASSKEYS__RP_ID", "example.com"),
                (
                    "KEYGRAPH__AUTH__MFA__PASSKEYS__ORIGINS",
                    "[\"https://example.com\", \"https://app.example.com:8443\"]",
                ),
            ]),
        )
        .expect("valid");
        assert_eq!(config.auth.mfa.passkeys.origins.len(), 2);
        let err = Config::from_sources(
            None,
            env(&[
                ("KEYGRAPH__AUTH__MFA__PASSKEYS__RP_ID", "example.com"),
                (
                    "KEYGRAPH__AUTH__MFA__PASSKEYS__ORIGINS",
                    "[\"http://app.example.com\"]",
                ),
            ]),
        )
        .expect_err("http off localhost");
        assert!(err.to_string().contains("only on localhost"), "{err}");
    }

    #[test]
    fn telemetry_settings_are_checked() {
        for (key, value, says) in [
            (
                "KEYGRAPH__TELEMETRY__ENDPOINT",
                "collector:4318",
                "not an http(s) URL",
            ),
            (
                "KEYGRAPH__TELEMETRY__ENDPOINT",
                "https://otlp.example.com",
                "plain http only",
            ),
            (
                "KEYGRAPH__TELEMETRY__SAMPLING_RATIO",
                "1.5",
                "between 0.0 and 1.0",
            ),
            (
                "KEYGRAPH__TELEMETRY__PROTOCOL",
                "http/json",
                "telemetry.protocol",
            ),
            (
                "KEYGRAPH__TELEMETRY__SERVICE_NAMES__AUTH",
                " ",
                "must not be empty",
            ),
            (
                "KEYGRAPH__TELEMETRY__FILTER",
                "info,[",
                "not a valid filter",
            ),
        ] {
            let err = Config::from_sources(None, env(&[(key, value)]))
                .expect_err(&format!("{key}={value} is refused"));
            assert!(err.to_string().contains(says), "{key}={value}: {err}");
        }
        let config = Config::from_sources(
            None,
            env(&[
                ("KEYGRAPH__TELEMETRY__ENDPOINT", "http://127.0.0.1:4317"),
                ("KEYGRAPH__TELEMETRY__PROTOCOL", "grpc"),
            ]),
        )
        .expect("valid");
        assert_eq!(config.telemetry.protocol, OtlpProtocol::Grpc);
        assert_eq!(config.telemetry.service_names.of("authz"), "keygraph-authz");
    }

    #[test]
    fn null_in_the_environment_turns_an_optional_setting_off() {
        let config = Config::from_sources(
            None,
            env(&[
                ("KEYGRAPH__TOKENS__JWKS_URL", "null"),
                ("KEYGRAPH__IDENTITY__FIRST_ADMIN__EMAIL", "null"),
            ]),
        )
        .expect("null is accepted for optional settings");
        assert_eq!(config.tokens.jwks_url, None);
        assert_eq!(config.identity.first_admin.email, None);
        let err = Config::from_sources(None, env(&[("KEYGRAPH__ROUTER__LISTEN", "null")]))
            .expect_err("listen is required");
        assert!(err.to_string().contains("router.listen"), "{err}");
    }

    #[test]
    fn unknown_env_key_names_its_variable() {
        let err = Config::from_sources(None, env(&[("KEYGRAPH__HTTP__BODY_LIMIT", "10")]))
            .expect_err("typo");
        let text = err.to_string();
        assert!(text.contains("http.body_limit"), "{text}");
        assert!(text.contains("KEYGRAPH__HTTP__BODY_LIMIT"), "{text}");
    }

    #[test]
    fn bad_value_names_path_and_expectation() {
        let err = Config::from_sources(
            None,
            env(&[("KEYGRAPH__DATABASE__MAX_CONNECTIONS", "many")]),
        )
        .expect_err("not a number");
        let text = err.to_string();
        assert!(text.contains("database.max_connections"), "{text}");
        assert!(text.contains("u32"), "{text}");

        let err = Config::from_sources(None, env(&[("KEYGRAPH__LOG__FORMAT", "xml")]))
            .expect_err("bad enum");
        let text = err.to_string();
        assert!(
            text.contains("log.format") && text.contains("json"),
            "{text}"
        );
    }

    #[test]
    fn rules_beyond_types_are_checked() {
        let cases = [
            (
                "KEYGRAPH__IDENTITY__PASSWORD__MIN_LENGTH",
                "6",
                "identity.password.min_length",
            ),
            (
                "KEYGRAPH__IDENTITY__PASSWORD__ARGON2_MEMORY_KIB",
                "1024",
                "argon2_memory_kib",
            ),
            ("KEYGRAPH__IDENTITY__SCHEMA", "x; drop", "identity.schema"),
            (
                "KEYGRAPH__IDENTITY__DATABASE_URL",
                "mysql://x",
                "identity.database_url",
            ),
            (
                "KEYGRAPH__IDENTITY__LINKS__VERIFY_EMAIL",
                "http://x/",
                "{token}",
            ),
            ("KEYGRAPH__INTERNAL__TOKEN", "short", "internal.token"),
            ("KEYGRAPH__MODE", "production", "internal.token"),
            ("KEYGRAPH__MODE", "production", "auth.key_encryption_key"),
            (
                "KEYGRAPH__AUDIT__SIGNING_KEY",
                "c2hvcnQ=",
                "audit.signing_key",
            ),
            ("KEYGRAPH__AUDIT__SCHEMA", "Audit", "audit.schema"),
            (
                "KEYGRAPH__AUDIT__RETENTION_DAYS",
                "0",
                "audit.retention_days",
            ),
            ("KEYGRAPH__OUTBOX__BATCH_SIZE", "0", "outbox.batch_size"),
            (
                "KEYGRAPH__OUTBOX__AUDIT_URL",
                "audit:4004",
                "outbox.audit_url",
            ),
            ("KEYGRAPH__IDENTITY__LISTEN", "nowhere", "identity.listen"),
            (
                "KEYGRAPH__AUTHZ__IDENTITY_URL",
                "ftp://x",
                "authz.identity_url",
            ),
            (
                "KEYGRAPH__IDENTITY__AUTHZ_URL",
                "localhost:4003",
                "identity.authz_url",
            ),
            (
                "KEYGRAPH__AUTHZ__DEFAULT_ROLES",
                "[user, \" \"]",
                "authz.default_roles`: role names must not be empty",
            ),
            (
                "KEYGRAPH__AUTHZ__DEFAULT_ROLES",
                "[user, staff, user]",
                "authz.default_roles`: names the role `user` twice",
            ),
        ];
        for (key, value, expected) in cases {
            let err = Config::from_sources(None, env(&[(key, value)]))
                .expect_err(&format!("{key}={value} must be rejected"));
            assert!(err.to_string().contains(expected), "{key}: {err}");
        }
    }

    #[test]
    fn production_turns_off_graphiql_and_introspection_and_guards_metrics() {
        let production = env(&[
            ("KEYGRAPH__MODE", "production"),
            (
                "KEYGRAPH__INTERNAL__TOKEN",
                "0123456789abcdef0123456789abcdef",
            ),
            (
                "KEYGRAPH__AUTH__KEY_ENCRYPTION_KEY",
                "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            ),
        ]);
        let config = Config::from_sources(None, production.clone()).expect("valid");
        assert_eq!(config.router.graphiql, Some(false));
        assert!(!config.introspection() && !config.router.introspection);
        assert_eq!(config.router.metrics.require_token, Some(true));
        assert_eq!(config.router.cors.allow_localhost, Some(false));

        let development = Config::from_sources(None, env(&[])).expect("valid");
        assert_eq!(development.router.graphiql, Some(true));
        assert!(development.introspection() && development.router.introspection);
        assert_eq!(development.router.metrics.require_token, Some(false));

        // Configured values win over the mode.
        let mut opened = production;
        opened.extend(env(&[
            ("KEYGRAPH__INTROSPECTION", "true"),
            ("KEYGRAPH__ROUTER__GRAPHIQL", "true"),
        ]));
        let config = Config::from_sources(None, opened).expect("valid");
        assert!(config.introspection() && config.router.introspection);
        assert_eq!(config.router.graphiql, Some(true));
    }

    #[test]
    fn bad_yaml_and_missing_file_are_reported() {
        let err =
            Config::from_sources(Some(("bad.yaml", "identity: [")), env(&[])).expect_err("syntax");
        assert!(err.to_string().contains("bad.yaml"), "{err}");
        let err = Config::load(Some(Path::new("/nonexistent/keygraph.yaml"))).expect_err("missing");
        assert!(
            err.to_string().contains("/nonexistent/keygraph.yaml"),
            "{err}"
        );
    }
}
