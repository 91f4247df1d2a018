//! The monitoring kit in `deploy/` agrees with the services: every metric the Grafana
//! dashboard queries is one they export (scraped from a running stack), and Prometheus
//! scrapes every service where compose serves its `/metrics`.

mod common;
mod harness;

use std::collections::BTreeSet;

use harness::{ADMIN_EMAIL, ADMIN_PASSWORD, Stack, Topology};
use keygraph_kernel::testing::Backend;
use serde_norway::Value as Yaml;

fn read(path: &str) -> String {
    let path = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The names of the series an OpenMetrics text holds: its samples, and the sample names its
/// families' `# TYPE` lines stand for. A family appears only once it has a series.
fn exported(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(family) = line.strip_prefix("# TYPE ") {
            let mut parts = family.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                "info" => &["_info"],
                _ => &[""],
            };
            names.extend(suffixes.iter().map(|suffix| format!("{name}{suffix}")));
        } else if !line.starts_with('#')
            && let Some(name) = line.split(['{', ' ']).next()
            && !name.is_empty()
        {
            names.insert(name.to_owned());
        }
    }
    names
}

/// Every `keygraph_*` metric name in a PromQL expression.
fn queried(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(start) = rest.find("keygraph_") {
        let name: String = rest[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[start + name.len()..];
        names.push(name);
    }
    names
}

#[tokio::test]
async fn the_dashboard_queries_only_what_the_services_export() {
    let Some(stack) = Stack::start(Backend::Sqlite, Topology::Embedded).await else {
        return;
    };
    // What fills the families that appear on use: a sign-in, failed ones (errors by code),
    // and one attempt too many at an account (the throttle, after `free_attempts` of 5).
    stack.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let mut throttled = false;
    for _ in 0..8 {
        let answer = stack
            .gql(
                "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { ... on AuthPayload { accessToken } } }",
                serde_json::json!({ "e": "nobody@example.com", "p": "not a password 12" }),
                None,
            )
            .await;
        throttled |= answer["errors"][0]["extensions"]["code"] == "RATE_LIMITED";
    }
    assert!(throttled, "the throttle refused one of 8 failed sign-ins");
    let mut names = BTreeSet::new();
    let services = [
        ("identity", "IDENTITY__LISTEN"),
        ("auth", "AUTH__LISTEN"),
        ("authz", "AUTHZ__LISTEN"),
        ("audit", "AUDIT__LISTEN"),
        ("router", "ROUTER__LISTEN"),
    ];
    for (service, listen) in services {
        let address = stack.setting(listen).expect("listen address");
        let response = stack
            .http
            .get(format!("http://{address}/metrics"))
            .send()
            .await
            .expect("scrape");
        assert_eq!(response.status(), 200, "{service}'s /metrics");
        let text = response.text().await.expect("text");
        assert!(
            text.contains(&format!("service=\"{service}\"")),
            "{service}'s series carry its name:\n{text}"
        );
        names.extend(exported(&text));
    }

    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/dashboards/keygraph.json"))
            .expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(!panels.is_empty());
    let mut checked = 0;
    for panel in panels {
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{} queries nothing", panel["title"]);
        for target in targets {
            let expr = target["expr"].as_str().expect("expr");
            let metrics = queried(expr);
            assert!(!metrics.is_empty(), "{expr} queries no Keygraph metric");
            for metric in metrics {
                assert!(
                    names.contains(&metric),
                    "panel {} queries {metric}, which no service exports",
                    panel["title"]
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 20, "only {checked} metrics checked");
}

#[test]
fn prometheus_scrapes_every_service_where_compose_serves_its_metrics() {
    let compose: Yaml = serde_norway::from_str(&read("docker-compose.yml")).expect("compose");
    let services = &compose["services"];
    let listen_port = |service: &str, key: &str| -> String {
        let address = services[service]["environment"][key]
            .as_str()
            .unwrap_or_else(|| panic!("{service} sets {key}"));
        let port = address.rsplit(':').next().expect("port");
        format!("{service}:{port}")
    };
    let expected: BTreeSet<String> = [
        listen_port("identity", "KEYGRAPH__IDENTITY__LISTEN"),
        listen_port("auth", "KEYGRAPH__AUTH__LISTEN"),
        listen_port("authz", "KEYGRAPH__AUTHZ__LISTEN"),
        listen_port("audit", "KEYGRAPH__AUDIT__LISTEN"),
        listen_port("router", "KEYGRAPH__ROUTER__METRICS__LISTEN"),
    ]
    .into();
    let prometheus: Yaml =
        serde_norway::from_str(&read("deploy/prometheus/prometheus.yml")).expect("scrape config");
    let scraped: BTreeSet<String> = prometheus["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs")
        .iter()
        .flat_map(|job| job["static_configs"].as_sequence().into_iter().flatten())
        .flat_map(|config| config["targets"].as_sequence().into_iter().flatten())
        .filter_map(Yaml::as_str)
        .map(str::to_owned)
        .collect();
    assert_eq!(scraped, expected);

    // The profile's services are optional, and every file they mount is in the repository.
    for name in ["otel-collector", "jaeger", "prometheus", "grafana"] {
        let service = &services[name];
        assert_eq!(
            service["profiles"][0].as_str(),
            Some("observability"),
            "{name} runs only with the observability profile"
        );
        for volume in service["volumes"].as_sequence().into_iter().flatten() {
            let host = volume
                .as_str()
                .and_then(|v| v.split(':').next())
                .expect("a bind mount");
            let path = format!("{}/{host}", env!("CARGO_MANIFEST_DIR"));
            assert!(
                std::path::Path::new(&path).exists(),
                "{name} mounts {host}, which is missing"
            );
        }
    }
}
