//! docker-compose.yml must agree with the code: every Keygraph service runs a real
//! subcommand, every KEYGRAPH__ variable it (or .env.example) sets is a real config key with
//! a valid value, the ports match, and only the router is published.

use std::collections::BTreeMap;

use keygraph_kernel::config::Config;
use serde_norway::Value;

fn compose() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docker-compose.yml"))
        .expect("docker-compose.yml");
    serde_norway::from_str(&text).expect("docker-compose.yml is YAML")
}

/// `${NAME}` and `${NAME:?message}` replaced by NAME's value in .env.example, or by a value
/// that passes validation.
fn interpolate(value: &str) -> String {
    let example = env_example();
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            break;
        };
        let name = rest[start + 2..start + end]
            .split([':', '?', '-'])
            .next()
            .unwrap_or_default();
        let known = example.iter().find(|(key, _)| key == name);
        out.push_str(known.map_or("placeholder", |(_, v)| v.as_str()));
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

fn env_example() -> Vec<(String, String)> {
    example_file(".env")
}

/// The variables of `<name>.example`, the committed template of an env file compose reads.
fn example_file(name: &str) -> Vec<(String, String)> {
    let path = format!("{}/{name}.example", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn keygraph_services(compose: &Value) -> BTreeMap<String, &Value> {
    compose["services"]
        .as_mapping()
        .expect("services")
        .iter()
        .filter(|(_, s)| s.get("image").and_then(Value::as_str) == Some("keygraph:local"))
        .map(|(name, s)| (name.as_str().expect("name").to_owned(), s))
        .collect()
}

#[test]
fn every_keygraph_service_runs_a_subcommand_with_real_config() {
    let compose = compose();
    let services = keygraph_services(&compose);
    assert_eq!(
        services.keys().map(String::as_str).collect::<Vec<_>>(),
        ["audit", "auth", "authz", "identity", "router"]
    );
    let defaults = Config::from_sources(None, Vec::new()).expect("defaults");
    for (name, service) in &services {
        let command: Vec<&str> = service["command"]
            .as_sequence()
            .expect("command")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(command, [name.as_str()], "{name} runs its own subcommand");
        // What the service's env files hold (their committed templates), then its own.
        let env_files: Vec<&str> = match &service["env_file"] {
            Value::String(file) => vec![file.as_str()],
            Value::Sequence(files) => files.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        assert_eq!(env_files.first(), Some(&".env"), "{name} reads .env");
        let mut env: Vec<(String, String)> = env_files
            .iter()
            .flat_map(|file| example_file(file))
            .collect();
        for (key, value) in service["environment"].as_mapping().expect("environment") {
            let key = key.as_str().expect("key").to_owned();
            let value = match value {
                Value::String(s) => interpolate(s),
                other => serde_norway::to_string(other)
                    .expect("value")
                    .trim()
                    .to_owned(),
            };
            assert!(
                key.starts_with("KEYGRAPH__"),
                "{name}: {key} is not a Keygraph setting"
            );
            env.push((key, value));
        }
        let config = Config::from_sources(None, env.clone())
            .unwrap_or_else(|e| panic!("{name}: the environment is not valid config: {e}"));
        // The port a service listens on is the one config and the other services use.
        let port = match name.as_str() {
            "identity" => config.identity.listen.port(),
            "auth" => config.auth.listen.port(),
            "authz" => config.authz.listen.port(),
            "audit" => config.audit.listen.port(),
            _ => config.router.listen.port(),
        };
        let default_port = match name.as_str() {
            "identity" => defaults.identity.listen.port(),
            "auth" => defaults.auth.listen.port(),
            "authz" => defaults.authz.listen.port(),
            "audit" => defaults.audit.listen.port(),
            _ => defaults.router.listen.port(),
        };
        assert_eq!(port, default_port, "{name} listens on its configured port");
        for (key, value) in &env {
            for (other, other_port) in [
                ("identity", defaults.identity.listen.port()),
                ("auth", defaults.auth.listen.port()),
                ("authz", defaults.authz.listen.port()),
                ("audit", defaults.audit.listen.port()),
            ] {
                let host = format!("http://{other}:");
                if let Some(rest) = value.strip_prefix(&host) {
                    let used: u16 = rest
                        .split('/')
                        .next()
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(0);
                    assert_eq!(
                        used, other_port,
                        "{name}: {key} calls {other} on the wrong port"
                    );
                }
            }
        }
        let healthcheck = format!("{:?}", service["healthcheck"]["test"]);
        assert!(
            healthcheck.contains(&format!(":{port}/")),
            "{name}: health check port"
        );
        let published = service.get("ports").is_some();
        assert_eq!(
            published,
            name == "router",
            "{name}: only the router is published"
        );
    }
    // Every service but the router has a database of its own, under its own role.
    for name in ["identity", "auth", "authz", "audit"] {
        let url = services[name]["environment"]
            [format!("KEYGRAPH__{}__DATABASE_URL", name.to_uppercase()).as_str()]
        .as_str()
        .unwrap_or_default();
        assert!(
            url.starts_with(&format!("postgres://{name}:")),
            "{name} connects as its own role"
        );
    }
    // Every service with an outbox relays it to audit; only audit holds its signing key.
    for name in ["identity", "auth", "authz"] {
        let environment = &services[name]["environment"];
        assert_eq!(
            environment["KEYGRAPH__OUTBOX__AUDIT_URL"].as_str(),
            Some("http://audit:4004"),
            "{name} relays its outbox to audit"
        );
    }
    for (name, service) in &services {
        let files = format!("{:?}", service["env_file"]);
        let holds_key = service["environment"]
            .get("KEYGRAPH__AUDIT__SIGNING_KEY")
            .is_some()
            || files.contains("audit.env");
        assert_eq!(holds_key, name == "audit", "{name}: the audit signing key");
    }
    assert!(
        example_file("audit.env")
            .iter()
            .any(|(key, _)| key == "KEYGRAPH__AUDIT__SIGNING_KEY"),
        "audit.env holds the signing key"
    );
    assert!(
        env_example()
            .iter()
            .all(|(key, _)| key != "KEYGRAPH__AUDIT__SIGNING_KEY"),
        ".env goes to every service: the signing key is passed to audit alone"
    );
}
