//! The whole stack as a user runs it, for the end-to-end tests: the `keygraph` binary (every
//! service and the router in one process, or one process per service as compose runs them),
//! on SQLite files or on Postgres (one schema and role per service).

// Each test binary uses part of it.
#![allow(dead_code)]

use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keygraph_kernel::testing::{Backend, TestDatabase, decode_mail};
use serde_json::{Value, json};

use crate::common;

/// The first administrator's password in every stack.
pub const ADMIN_PASSWORD: &str = "first admin's own passphrase 42";
/// The first administrator `identity.first_admin` creates (config/default.yaml).
pub const ADMIN_EMAIL: &str = "admin@keygraph.localhost";

pub fn free_port() -> u16 {
    common::free_port().expect("a free port")
}

/// A running `keygraph` process, killed when dropped.
pub struct Stack {
    /// One `keygraph` process (embedded), or one per service by name (separate).
    children: Vec<(&'static str, Child)>,
    pub env: Vec<(String, String)>,
    pub graphql: String,
    pub http: reqwest::Client,
    pub data: tempfile::TempDir,
    _databases: Vec<TestDatabase>,
    /// Per-service Postgres roles (admin URL, role), dropped with their schemas.
    roles: Vec<(String, String)>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for (url, role) in &self.roles {
            psql(
                url,
                &format!(
                    "DROP SCHEMA IF EXISTS \"{role}\" CASCADE; DROP ROLE IF EXISTS \"{role}\";"
                ),
            );
        }
    }
}

/// Runs SQL as the test database's administrator.
pub fn psql(url: &str, sql: &str) {
    let status = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .env("PGOPTIONS", "--client-min-messages=warning")
        .stdout(Stdio::null())
        .status()
        .expect("psql");
    assert!(status.success(), "psql failed: {sql}");
}

/// `url` logging in as `user` instead (trust authentication on the test server).
fn with_user(url: &str, user: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let host = rest.split_once('@').map_or(rest, |(_, host)| host);
    format!("postgres://{user}@{host}")
}

/// How the stack runs: everything in one process, or each service in its own, as compose does.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    Embedded,
    Separate,
}

pub fn spawn(subcommand: Option<&str>, env: &[(String, String)]) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keygraph"));
    if let Some(subcommand) = subcommand {
        command.arg(subcommand);
    }
    command
        .envs(env.iter().cloned())
        .env_remove("KEYGRAPH_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start keygraph")
}

impl Stack {
    pub async fn start(backend: Backend, topology: Topology) -> Option<Self> {
        Self::start_with(backend, topology, &[]).await
    }

    /// [`Stack::start`] with more `KEYGRAPH__` settings.
    pub async fn start_with(
        backend: Backend,
        topology: Topology,
        settings: &[(&str, &str)],
    ) -> Option<Self> {
        let data = tempfile::tempdir().expect("tempdir");
        let (mut env, router) = common::loopback_env(data.path()).expect("free ports");
        env.extend(
            [
                ("KEYGRAPH__LOG__FILTER", "warn"),
                ("KEYGRAPH__IDENTITY__FIRST_ADMIN__PASSWORD", ADMIN_PASSWORD),
                ("KEYGRAPH__ROUTER__SUBGRAPHS__AUTHZ__TIMEOUT_SECS", "2"),
                (
                    "KEYGRAPH__INTERNAL__TOKEN",
                    "e2e-internal-token-0123456789abcdef0123456789",
                ),
            ]
            .map(|(key, value)| (key.to_owned(), value.to_owned())),
        );
        env.extend(
            settings
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned())),
        );
        let mut databases = Vec::new();
        let mut roles = Vec::new();
        if backend == Backend::Postgres {
            for service in ["identity", "auth", "authz", "audit"] {
                let db = TestDatabase::new(backend, service)?;
                let upper = service.to_ascii_uppercase();
                let url = match topology {
                    Topology::Embedded => db.url.clone(),
                    // As in docker-compose: each service logs in as its own role, which owns
                    // its schema and nothing else.
                    Topology::Separate => {
                        let role = db.schema.clone();
                        psql(
                            &db.url,
                            &format!(
                                "CREATE ROLE \"{role}\" LOGIN; CREATE SCHEMA \"{role}\" AUTHORIZATION \"{role}\";"
                            ),
                        );
                        roles.push((db.url.clone(), role.clone()));
                        with_user(&db.url, &role)
                    }
                };
                env.push((format!("KEYGRAPH__{upper}__DATABASE_URL"), url));
                env.push((format!("KEYGRAPH__{upper}__SCHEMA"), db.schema.clone()));
                databases.push(db);
            }
        }
        let children = match topology {
            Topology::Embedded => vec![("all", spawn(None, &env))],
            Topology::Separate => ["identity", "authz", "auth", "audit", "router"]
                .into_iter()
                .map(|service| (service, spawn(Some(service), &env)))
                .collect(),
        };
        let mut stack = Self {
            children,
            env,
            graphql: format!("{router}/graphql"),
            http: reqwest::Client::new(),
            data,
            _databases: databases,
            roles,
        };
        let ready = format!("{router}/ready");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let up = stack
                .http
                .get(&ready)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if up {
                break;
            }
            // A process that stopped (a port taken, a bad setting) will not become ready:
            // say so now, rather than after the deadline.
            for (name, child) in &mut stack.children {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "keygraph ({name}) exited with {status} before the stack was ready; its log is above"
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "the stack was not ready within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Some(stack)
    }

    /// The `KEYGRAPH__` value of `key` (without the prefix), as this stack runs.
    pub fn setting(&self, key: &str) -> Option<&str> {
        let name = format!("KEYGRAPH__{key}");
        self.env
            .iter()
            .rev()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Kills one service's process (separate topology).
    pub fn kill(&mut self, service: &str) {
        for (name, child) in &mut self.children {
            if *name == service {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// Starts a killed service again.
    pub fn restart(&mut self, service: &'static str) {
        let child = spawn(Some(service), &self.env);
        self.children.retain(|(name, _)| *name != service);
        self.children.push((service, child));
    }

    pub async fn gql(&self, query: &str, variables: Value, token: Option<&str>) -> Value {
        gql_with(&self.http, &self.graphql, query, variables, token).await
    }

    /// Signs in through the router: the access and refresh tokens.
    pub async fn login(&self, email: &str, password: &str) -> (String, String) {
        let answer = self
            .gql(
                "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { ... on AuthPayload { accessToken refreshToken } } }",
                json!({ "e": email, "p": password }),
                None,
            )
            .await;
        let login = &data(&answer)["login"];
        (
            login["accessToken"].as_str().expect("access").to_owned(),
            login["refreshToken"].as_str().expect("refresh").to_owned(),
        )
    }

    pub async fn mail_to(&self, address: &str) -> String {
        let dir = self.data.path().join("mail");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for entry in entries.flatten() {
                    let path = entry.path();
                    if path.extension().is_some_and(|e| e == "eml") {
                        let mail = decode_mail(&std::fs::read_to_string(&path).unwrap_or_default());
                        if mail.contains(address) {
                            return mail;
                        }
                    }
                }
            }
            assert!(Instant::now() < deadline, "no mail to {address}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// An HTTP client whose connections come from `address` (any of 127.0.0.0/8 plays a client
/// of its own).
pub fn client_from(address: &str) -> reqwest::Client {
    let address: IpAddr = address.parse().expect("an address");
    reqwest::Client::builder()
        .local_address(address)
        .build()
        .expect("a client")
}

/// POSTs a GraphQL request to `url` with `client`.
pub async fn gql_with(
    client: &reqwest::Client,
    url: &str,
    query: &str,
    variables: Value,
    token: Option<&str>,
) -> Value {
    let mut request = client
        .post(url)
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON")
}

/// The GraphQL data of a response that must have no errors.
pub fn data(response: &Value) -> &Value {
    assert!(
        response.get("errors").is_none(),
        "unexpected errors: {response}"
    );
    &response["data"]
}
