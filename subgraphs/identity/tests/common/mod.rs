//! Starts the identity service on a loopback port over a fresh database and talks to it
//! over real HTTP, as a client would.

#![allow(dead_code)]

use std::{path::PathBuf, time::Duration};

use keygraph_kernel::{
    config::Config,
    http::{self, Shutdown, ShutdownTrigger},
    testing::{Backend, TestDatabase, TestSigner},
};
use sea_orm::DatabaseConnection;
use serde_json::{Value, json};
use uuid::Uuid;

pub const INTERNAL_TOKEN: &str = "test-internal-token-0123456789abcdef0123";

/// Runs `$scenario(Backend)` as two tests, on SQLite and on Postgres.
#[macro_export]
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$scenario(keygraph_kernel::testing::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$scenario(keygraph_kernel::testing::Backend::Postgres).await
            }
        }
    )*};
}

pub struct TestService {
    pub base: String,
    pub http: reqwest::Client,
    pub signer: TestSigner,
    pub db: DatabaseConnection,
    pub config: Config,
    mail_dir: PathBuf,
    trigger: ShutdownTrigger,
    _database: TestDatabase,
    _data: tempfile::TempDir,
}

impl Drop for TestService {
    fn drop(&mut self) {
        self.trigger.trigger();
    }
}

/// What a GraphQL response said.
pub struct Answer(pub Value);

impl Answer {
    pub fn data(&self) -> &Value {
        assert!(
            self.0.get("errors").is_none(),
            "unexpected errors: {}",
            self.0
        );
        &self.0["data"]
    }

    /// The first error's `extensions.code`.
    pub fn code(&self) -> &str {
        self.0["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("expected an error with a code: {}", self.0))
    }

    pub fn message(&self) -> &str {
        self.0["errors"][0]["message"].as_str().unwrap_or_default()
    }

    /// Asserts the first error's code and that its message contains `text`.
    pub fn expect_error(&self, code: &str, text: &str) {
        assert_eq!(self.code(), code, "{}", self.0);
        assert!(
            self.message().contains(text),
            "message should mention {text:?}: {}",
            self.0
        );
    }
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
        let mut config = Config::from_sources(None, Vec::new()).expect("default config");
        config.data_dir = data.path().to_owned();
        config.identity.database_url = Some(database.url.clone());
        config.identity.schema = database.schema.clone();
        config.identity.listen = "127.0.0.1:0".parse().expect("addr");
        config.database.max_connections = 5;
        config.database.min_connections = 0;
        config.database.startup_wait_secs = 10;
        config.tokens = signer.token_config();
        config.log.filter = "warn".into();
        adjust(&mut config);
        let service = keygraph_identity::build(&config, INTERNAL_TOKEN)
            .await
            .expect("identity service starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (trigger, shutdown) = Shutdown::new();
        let db = service.db.clone();
        let http_config = config.http.clone();
        tokio::spawn(async move {
            http::serve(
                "identity",
                listener,
                service.router,
                &http_config,
                http::database_readiness(service.db.clone()),
                shutdown,
            )
            .await
            .expect("serve");
        });
        Some(Self {
            base,
            http: reqwest::Client::new(),
            signer,
            db,
            mail_dir: config.data_dir.join("mail"),
            config,
            trigger,
            _database: database,
            _data: data,
        })
    }

    pub async fn gql(&self, query: &str, variables: Value, token: Option<&str>) -> Answer {
        let mut request = self
            .http
            .post(format!("{}/graphql", self.base))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request");
        Answer(response.json().await.expect("JSON response"))
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
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
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
        use sea_orm::{EntityTrait, QueryOrder};
        keygraph_kernel::outbox::entity::Entity::find()
            .order_by_asc(keygraph_kernel::outbox::entity::Column::Id)
            .all(&self.db)
            .await
            .expect("outbox")
            .into_iter()
            .map(|e| e.action)
            .collect()
    }
}

/// Headers plus the body with quoted-printable undone, as a mail client shows it.
pub fn decode_mail(raw: &str) -> String {
    let raw = raw.replace("\r\n", "\n");
    let (head, body) = raw.split_once("\n\n").unwrap_or((&raw, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("content-transfer-encoding: quoted-printable")
    {
        let joined = body.replace("=\n", "");
        let mut out = Vec::new();
        let bytes = joined.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'='
                && i + 2 < bytes.len()
                && let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16)
            {
                out.push(b);
                i += 3;
                continue;
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    } else {
        body.to_owned()
    };
    format!("{head}\n\n{body}")
}

/// The `token` parameter of the first link in a mail.
pub fn link_token(mail: &str) -> String {
    let start = mail
        .find("token=")
        .unwrap_or_else(|| panic!("no link in mail:\n{mail}"))
        + "token=".len();
    mail[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}
