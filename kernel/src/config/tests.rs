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
    let err =
        Config::from_sources(None, env(&[("KEYGRAPH__HTTP__BODY_LIMIT", "10")])).expect_err("typo");
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

    let err =
        Config::from_sources(None, env(&[("KEYGRAPH__LOG__FORMAT", "xml")])).expect_err("bad enum");
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
