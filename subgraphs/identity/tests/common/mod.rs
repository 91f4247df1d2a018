//! Starts the identity service on a loopback port over a fresh database and talks to it
//! over real HTTP, as a client would.

#![allow(dead_code)]

use std::{path::PathBuf, time::Duration};

pub use keygraph_kernel::testing::{Answer, INTERNAL_TOKEN};
use keygraph_kernel::{
    config::Config,
    http,
    internal::LocalServices,
    testing::{Backend, TestDatabase, TestServer, TestSigner, test_config},
};
use sea_orm::DatabaseConnection;
use serde_json::{Value, json};
use uuid::Uuid;

pub struct TestService {
    pub server: TestServer,
    pub base: String,
    pub http: reqwest::Client,
    pub signer: TestSigner,
    pub db: DatabaseConnection,
    pub config: Config,
    mail_dir: PathBuf,
    _database: TestDatabase,
    _data: tempfile::TempDir,
}

impl TestService {
    /// `None` (test skipped) for Postgres without `TEST_DATABASE_URL`.
    pub async fn start(backend: Backend) -> Option<Self> {
        Self::start_with(backend, |_| {}).await
    }

    pub async fn start_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> Option<Self> {
        let Some(database) = TestDatabase::new(backend, "identity") else {
            eprintln!("skipped: TEST_DATABASE_URL is not set");
            return None;
        };
        let data = tempfile::tempdir().expect("data dir");
        let signer = TestSigner::default();
        let mut config = test_config(data.path(), &signer);
        config.identity.database_url = Some(database.url.clone());
        config.identity.schema = database.schema.clone();
        // No authz service beside these tests; authz's own tests cover the hand-over.
        config.identity.authz_url = None;
        adjust(&mut config);
        let service = keygraph_identity::build(&config, INTERNAL_TOKEN, &LocalServices::default())
            .await
            .expect("identity service starts");
        let db = service.db.clone();
        let (trigger, shutdown) = TestServer::shutdown_pair();
        service.spawn_workers(shutdown.clone());
        let server = TestServer::start(
            "identity",
            service.router,
            &config,
            http::database_readiness(service.db),
            (trigger, shutdown),
        )
        .await;
        Some(Self {
            base: server.base.clone(),
            http: server.http.clone(),
            server,
            signer,
            db,
            mail_dir: config.data_dir.join("mail"),
            config,
            _database: database,
            _data: data,
        })
    }

    pub async fn gql(&self, query: &str, variables: Value, token: Option<&str>) -> Answer {
        self.server.gql(query, variables, token).await
    }

    /// A token for `user` with the given permission codes.
    pub fn token(&self, user: Uuid, scopes: &[&str]) -> String {
        self.signer.token(user, scopes)
    }

    /// An admin token (scope `*`) for a user that need not exist.
    pub fn admin(&self) -> String {
        self.token(Uuid::now_v7(), &["*"])
    }

    pub async fn register(&self, email: &str, password: &str) -> Answer {
        self.gql(
            "mutation($input: RegisterInput!) { register(input: $input) }",
            json!({ "input": { "email": email, "password": password } }),
            None,
        )
        .await
    }

    pub async fn verify_email(&self, token: &str) -> Answer {
        self.gql(
            "mutation($t: String!) { verifyEmail(token: $t) { id email emailVerified status } }",
            json!({ "t": token }),
            None,
        )
        .await
    }

    pub async fn request_reset(&self, email: &str) -> Answer {
        self.gql(
            "mutation($e: String!) { requestPasswordReset(email: $e) }",
            json!({ "e": email }),
            None,
        )
        .await
    }

    pub async fn reset_password(&self, token: &str, password: &str) -> Answer {
        self.gql(
            "mutation($t: String!, $p: String!) { resetPassword(token: $t, newPassword: $p) }",
            json!({ "t": token, "p": password }),
            None,
        )
        .await
    }

    /// Looks a user up by email through the admin API.
    pub async fn user_id(&self, email: &str) -> Uuid {
        let answer = self
            .gql(
                "query($s: String) { users(first: 5, filter: { search: $s }) { edges { node { id email } } } }",
                json!({ "s": email }),
                Some(&self.admin()),
            )
            .await;
        let edges = answer.data()["users"]["edges"]
            .as_array()
            .expect("edges")
            .clone();
        let node = edges
            .iter()
            .find(|e| {
                e["node"]["email"]
                    .as_str()
                    .is_some_and(|m| m.eq_ignore_ascii_case(email))
            })
            .unwrap_or_else(|| panic!("no user {email}: {}", answer.0));
        Uuid::parse_str(node["node"]["id"].as_str().expect("id")).expect("uuid")
    }

    /// Registers and verifies a user; returns its id.
    pub async fn verified_user(&self, email: &str, password: &str) -> Uuid {
        self.register(email, password).await.data();
        let mail = self.wait_for_mail(email, "Confirm").await;
        self.verify_email(&link_token(&mail)).await.data();
        self.user_id(email).await
    }

    /// Mails delivered to `to` so far (decoded text, oldest first).
    pub fn mails_to(&self, to: &str) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.mail_dir) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        files.sort();
        files
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .map(|raw| decode_mail(&raw))
            .filter(|m| {
                m.lines()
                    .any(|l| l.to_ascii_lowercase() == format!("to: {}", to.to_ascii_lowercase()))
            })
            .collect()
    }

    /// Waits (up to 5 s) for a mail to `to` whose subject contains `subject`; returns the newest.
    pub async fn wait_for_mail(&self, to: &str, subject: &str) -> String {
        for _ in 0..100 {
            if let Some(mail) = self.mails_to(to).into_iter().rev().find(|m| {
                m.lines()
                    .any(|l| l.starts_with("Subject:") && l.contains(subject))
            }) {
                return mail;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no mail to {to} about {subject:?} within 5 s");
    }

    /// Waits (up to 5 s) until `to` has received `count` mails; returns the newest.
    pub async fn wait_for_mail_count(&self, to: &str, count: usize) -> String {
        for _ in 0..100 {
            let mails = self.mails_to(to);
            if mails.len() >= count {
                return mails.last().cloned().unwrap_or_default();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{to} did not receive {count} mails within 5 s");
    }

    pub async fn internal(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (u16, Value) {
        self.server.internal(method, path, body, token).await
    }

    pub async fn check_credentials(&self, email: &str, password: &str) -> bool {
        let (status, body) = self
            .internal(
                reqwest::Method::POST,
                "/internal/credentials/verify",
                Some(json!({ "email": email, "password": password })),
                Some(INTERNAL_TOKEN),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["valid"].as_bool().expect("valid flag")
    }

    /// Actions in the outbox, oldest first.
    pub async fn audit_actions(&self) -> Vec<String> {
        keygraph_kernel::testing::audit_actions(&self.db).await
    }
}

pub use keygraph_kernel::testing::{decode_mail, link_token};
