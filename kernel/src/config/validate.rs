//! The rules a type cannot state (ranges, URLs, names that must exist, secrets production
//! needs), each failing with the key's path.

use super::*;

impl Config {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
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
