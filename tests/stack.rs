//! The whole stack as a user runs it: the `keygraph` binary (every service and the router in
//! one process), spoken to only through the router's one endpoint. On SQLite files, and on
//! Postgres (one schema per service) when `TEST_DATABASE_URL` is set.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keygraph_kernel::testing::{
    Backend, TestDatabase, decode_mail, jwt_claims as claims, link_token,
};
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery staple 9";
const ADMIN_EMAIL: &str = "admin@keygraph.localhost";
const ADMIN_PASSWORD: &str = "first admin's own passphrase 42";

fn free_port() -> u16 {
    common::free_port().expect("a free port")
}

/// A running `keygraph` process, killed when dropped.
struct Stack {
    /// One `keygraph` process (embedded), or one per service by name (separate).
    children: Vec<(&'static str, Child)>,
    env: Vec<(String, String)>,
    graphql: String,
    http: reqwest::Client,
    data: tempfile::TempDir,
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
fn psql(url: &str, sql: &str) {
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
enum Topology {
    Embedded,
    Separate,
}

fn spawn(subcommand: Option<&str>, env: &[(String, String)]) -> Child {
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
    async fn start(backend: Backend, topology: Topology) -> Option<Self> {
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
        let mut databases = Vec::new();
        let mut roles = Vec::new();
        if backend == Backend::Postgres {
            for service in ["identity", "auth", "authz"] {
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
            Topology::Separate => ["identity", "authz", "auth", "router"]
                .into_iter()
                .map(|service| (service, spawn(Some(service), &env)))
                .collect(),
        };
        let stack = Self {
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
            assert!(
                Instant::now() < deadline,
                "the stack was not ready within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Some(stack)
    }

    /// Kills one service's process (separate topology).
    fn kill(&mut self, service: &str) {
        for (name, child) in &mut self.children {
            if *name == service {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// Starts a killed service again.
    fn restart(&mut self, service: &'static str) {
        let child = spawn(Some(service), &self.env);
        self.children.retain(|(name, _)| *name != service);
        self.children.push((service, child));
    }

    async fn gql(&self, query: &str, variables: Value, token: Option<&str>) -> Value {
        let mut request = self
            .http
            .post(&self.graphql)
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

    async fn mail_to(&self, address: &str) -> String {
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

fn data(response: &Value) -> &Value {
    assert!(
        response.get("errors").is_none(),
        "unexpected errors: {response}"
    );
    &response["data"]
}

async fn register_verify_login_and_logout(backend: Backend, topology: Topology) {
    let Some(mut stack) = Stack::start(backend, topology).await else {
        return;
    };
    if topology == Topology::Embedded {
        // A second instance on the same data says so and stops.
        let mut env = stack.env.clone();
        for (key, value) in &mut env {
            if key.ends_with("__LISTEN") {
                *value = format!("127.0.0.1:{}", free_port());
            }
        }
        let second = Command::new(env!("CARGO_BIN_EXE_keygraph"))
            .envs(env)
            .env_remove("KEYGRAPH_CONFIG")
            .output()
            .expect("run a second keygraph");
        assert!(!second.status.success());
        let stderr = String::from_utf8_lossy(&second.stderr);
        assert!(
            stderr.contains("another Keygraph instance is using"),
            "{stderr}"
        );
    }
    let email = "grace@example.com";
    let registered = stack
        .gql(
            "mutation($i: RegisterInput!) { register(input: $i) }",
            json!({ "i": { "email": email, "password": PASSWORD } }),
            None,
        )
        .await;
    assert_eq!(data(&registered)["register"], true);
    let token = link_token(&stack.mail_to(email).await);
    let verified = stack
        .gql(
            "mutation($t: String!) { verifyEmail(token: $t) { email } }",
            json!({ "t": token }),
            None,
        )
        .await;
    assert_eq!(data(&verified)["verifyEmail"]["email"], email);

    let login = stack
        .gql(
            "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken refreshToken } }",
            json!({ "e": email, "p": PASSWORD }),
            None,
        )
        .await;
    let access = data(&login)["login"]["accessToken"]
        .as_str()
        .expect("access token")
        .to_owned();
    let refresh = data(&login)["login"]["refreshToken"]
        .as_str()
        .expect("refresh token")
        .to_owned();

    // One request, one endpoint: identity's user, with authz's roles and permissions.
    let me = stack
        .gql(
            "{ me { email roles { name } permissions } }",
            json!({}),
            Some(&access),
        )
        .await;
    let me = &data(&me)["me"];
    assert_eq!(me["email"], email);
    assert!(
        me["roles"].is_array() && me["permissions"].is_array(),
        "{me}"
    );

    // The first administrator (from config) signs in; identity asked authz to make them
    // admin when it created them, so their token soon carries every permission.
    let deadline = Instant::now() + Duration::from_secs(15);
    let admin = loop {
        let login = stack
            .gql(
                "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }",
                json!({ "e": ADMIN_EMAIL, "p": ADMIN_PASSWORD }),
                None,
            )
            .await;
        let token = data(&login)["login"]["accessToken"]
            .as_str()
            .expect("token")
            .to_owned();
        if claims(&token)["roles"]
            .as_array()
            .is_some_and(|r| r.contains(&json!("admin")))
        {
            break token;
        }
        assert!(
            Instant::now() < deadline,
            "the first administrator never became admin"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    // The admin gives the user the `user` role; the user's next token carries it.
    assert!(
        claims(&access)["roles"]
            .as_array()
            .is_some_and(|r| !r.contains(&json!("user")))
    );
    let role = stack
        .gql(
            "{ roleByName(name: \"user\") { id } }",
            json!({}),
            Some(&admin),
        )
        .await;
    let role_id = data(&role)["roleByName"]["id"].clone();
    let me_id = stack.gql("{ me { id } }", json!({}), Some(&access)).await;
    let user_id = data(&me_id)["me"]["id"].clone();
    let assigned = stack
        .gql(
            "mutation($u: ID!, $r: ID!) { assignRole(userId: $u, roleId: $r) { roles { name } } }",
            json!({ "u": user_id, "r": role_id }),
            Some(&admin),
        )
        .await;
    assert!(
        data(&assigned)["assignRole"]["roles"]
            .to_string()
            .contains("\"user\""),
        "{assigned}"
    );
    let refreshed = stack
        .gql(
            "mutation($r: String!) { refresh(refreshToken: $r) { accessToken } }",
            json!({ "r": refresh }),
            None,
        )
        .await;
    let fresh = data(&refreshed)["refresh"]["accessToken"]
        .as_str()
        .expect("access token")
        .to_owned();
    assert!(
        claims(&fresh)["roles"]
            .as_array()
            .is_some_and(|r| r.contains(&json!("user"))),
        "the refreshed token lacks the new role: {}",
        claims(&fresh)
    );
    let me = stack.gql("{ me { email } }", json!({}), Some(&fresh)).await;
    assert_eq!(data(&me)["me"]["email"], email);

    if topology == Topology::Separate {
        // authz dies: identity's part still answers, authz's part is an error naming it, and
        // nothing waits longer than authz's timeout (2 s here).
        stack.kill("authz");
        let started = Instant::now();
        // Query spans both: `me` (identity) and a nullable authz field.
        let partial = stack
            .gql(
                "{ me { email } admin: roleByName(name: \"admin\") { name } }",
                json!({}),
                Some(&fresh),
            )
            .await;
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "a request hung past the timeout"
        );
        assert_eq!(partial["data"]["me"]["email"], email, "{partial}");
        assert_eq!(partial["data"]["admin"], json!(null), "{partial}");
        assert_eq!(
            partial["errors"][0]["extensions"]["code"], "SUBGRAPH_UNAVAILABLE",
            "{partial}"
        );
        assert_eq!(
            partial["errors"][0]["extensions"]["serviceName"], "authz",
            "{partial}"
        );
        // A non-null authz field nulls its nullable ancestor, as the spec says: here all of data.
        let whole = stack
            .gql("{ me { email roles { name } } }", json!({}), Some(&fresh))
            .await;
        assert_eq!(whole["data"], json!(null), "{whole}");
        stack.restart("authz");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let answer = stack
                .gql("{ me { email roles { name } } }", json!({}), Some(&fresh))
                .await;
            if answer.get("errors").is_none() {
                assert!(answer["data"]["me"]["roles"].is_array(), "{answer}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the router did not recover: {answer}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let out = stack
        .gql("mutation { logout }", json!({}), Some(&fresh))
        .await;
    assert_eq!(data(&out)["logout"], true);
    // The router learns of the ended session within 5 s and refuses its tokens.
    let deadline = Instant::now() + Duration::from_secs(6);
    loop {
        let answer = stack.gql("{ me { email } }", json!({}), Some(&fresh)).await;
        if answer["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a logged-out token still works: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_on_sqlite() {
    register_verify_login_and_logout(Backend::Sqlite, Topology::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_on_postgres() {
    register_verify_login_and_logout(Backend::Postgres, Topology::Embedded).await;
}

/// The compose topology: each service its own process, its own Postgres schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separate_processes_on_postgres_survive_a_killed_service() {
    register_verify_login_and_logout(Backend::Postgres, Topology::Separate).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separate_processes_on_sqlite_survive_a_killed_service() {
    register_verify_login_and_logout(Backend::Sqlite, Topology::Separate).await;
}
