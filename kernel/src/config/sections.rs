//! The settings, one struct per section of `config/default.yaml` (which documents each key).

use std::{net::SocketAddr, path::PathBuf};

use serde::Deserialize;

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
