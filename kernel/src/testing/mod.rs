//! Test support shared by every service's tests (feature `testing`): a database per test on
//! SQLite or Postgres, and an Ed25519 key that signs access tokens.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::RngCore as _;
use sea_orm::{ConnectionTrait, Database};
use uuid::Uuid;

mod access;
mod descriptions;
mod ports;

pub use access::assert_directives_match_guards;
pub use descriptions::undescribed;
pub use ports::{ephemeral_range, free_port};

use crate::{
    config::{Config, StaticKey, TokenConfig},
    http::{self, ReadinessCheck, Shutdown, ShutdownTrigger},
    token::{ACCESS_TOKEN_TYPE, AccessClaims},
};

/// The internal service token every test service shares.
pub const INTERNAL_TOKEN: &str = "test-internal-token-0123456789abcdef0123";

/// Runs `$scenario(Backend)` as two tests, on SQLite and on Postgres.
#[macro_export]
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$scenario($crate::testing::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$scenario($crate::testing::Backend::Postgres).await
            }
        }
    )*};
}

/// Defaults adjusted for tests: quiet logs, small pools, a short wait for the database, the
/// signer's key trusted, the shared internal token, and `data_dir` in `data`.
pub fn test_config(data: &std::path::Path, signer: &TestSigner) -> Config {
    let mut config = Config::from_sources(None, Vec::new()).expect("default config");
    config.data_dir = data.to_owned();
    config.database.max_connections = 5;
    config.database.min_connections = 0;
    config.database.startup_wait_secs = 10;
    config.tokens = signer.token_config();
    // Services a test does not start are not called.
    config.identity.auth_url = None;
    config.outbox.audit_url = None;
    // Tests create the users they need.
    config.identity.first_admin.email = None;
    config.internal.token = Some(INTERNAL_TOKEN.into());
    config.log.filter = "warn".into();
    config
}

/// A service served on a loopback port with the standard layers, stopped when dropped.
pub struct TestServer {
    pub base: String,
    pub http: reqwest::Client,
    trigger: ShutdownTrigger,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.trigger.trigger();
    }
}

impl TestServer {
    /// Serves `router` on a new loopback port; `shutdown` stops it (see
    /// [`TestServer::shutdown_pair`]).
    pub async fn start(
        service: &'static str,
        router: axum::Router,
        config: &Config,
        readiness: ReadinessCheck,
        shutdown: (ShutdownTrigger, Shutdown),
    ) -> Self {
        let listener = Self::listener().await;
        Self::start_on(listener, service, router, config, readiness, shutdown)
    }

    /// A loopback listener, for services that must know each other's address before starting.
    pub async fn listener() -> tokio::net::TcpListener {
        tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind")
    }

    /// The base URL a listener serves.
    pub fn base_of(listener: &tokio::net::TcpListener) -> String {
        format!("http://{}", listener.local_addr().expect("addr"))
    }

    /// Serves `router` on `listener`.
    pub fn start_on(
        listener: tokio::net::TcpListener,
        service: &'static str,
        router: axum::Router,
        config: &Config,
        readiness: ReadinessCheck,
        (trigger, shutdown): (ShutdownTrigger, Shutdown),
    ) -> Self {
        let base = Self::base_of(&listener);
        let http_config = config.http.clone();
        // The router is the edge; every other service believes the router's statements.
        let addresses = match (service, config.internal.token.as_deref()) {
            ("router", _) | (_, None) => http::ClientAddresses::for_edge(&http_config),
            (_, Some(token)) => http::ClientAddresses::for_subgraph(&http_config, token),
        }
        .expect("valid trusted proxies");
        tokio::spawn(async move {
            http::serve(
                service,
                listener,
                router,
                &http_config,
                addresses,
                readiness,
                shutdown,
            )
            .await
            .expect("serve");
        });
        Self {
            base,
            http: reqwest::Client::new(),
            trigger,
        }
    }

    /// A fresh shutdown pair for a service and its background workers.
    pub fn shutdown_pair() -> (ShutdownTrigger, Shutdown) {
        Shutdown::new()
    }

    /// POSTs a GraphQL request to `/graphql`, with a bearer token if given.
    pub async fn gql(
        &self,
        query: &str,
        variables: serde_json::Value,
        token: Option<&str>,
    ) -> Answer {
        let mut request = self
            .http
            .post(format!("{}/graphql", self.base))
            .json(&serde_json::json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request");
        Answer(response.json().await.expect("JSON response"))
    }

    /// Sends a request to any endpoint of this server (internal ones take the internal token);
    /// returns the status and the JSON body (null if none).
    pub async fn internal(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
        token: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
    }
}

/// What a GraphQL response said.
pub struct Answer(pub serde_json::Value);

impl Answer {
    /// The data, asserting there were no errors.
    pub fn data(&self) -> &serde_json::Value {
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

/// Actions in a service's audit outbox, oldest first.
pub async fn audit_actions(db: &sea_orm::DatabaseConnection) -> Vec<String> {
    use sea_orm::{EntityTrait, QueryOrder};
    crate::outbox::entity::Entity::find()
        .order_by_asc(crate::outbox::entity::Column::Id)
        .all(db)
        .await
        .expect("outbox")
        .into_iter()
        .map(|e| e.action)
        .collect()
}

/// The SQL statements a connection has run, for tests that count them.
#[derive(Clone, Default)]
pub struct StatementLog(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl StatementLog {
    /// Records every statement `db` runs from now on (set it before the service gets its clone).
    pub fn attach(db: &mut sea_orm::DatabaseConnection) -> Self {
        let log = Self::default();
        let sink = log.0.clone();
        db.set_metric_callback(move |info| {
            sink.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(info.statement.sql.clone());
        });
        log
    }

    pub fn len(&self) -> usize {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The statements run since the log held `from` of them.
    pub fn since(&self, from: usize) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)[from..]
            .to_vec()
    }
}

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh database for one test: a SQLite file in a temporary directory, or a Postgres
/// schema `t_<random>_<service>` in `TEST_DATABASE_URL`, dropped when this value is dropped.
pub struct TestDatabase {
    pub url: String,
    pub schema: String,
    backend: Backend,
    _dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    /// `None` for Postgres when `TEST_DATABASE_URL` is not set (the test is then skipped).
    pub fn new(backend: Backend, service: &str) -> Option<Self> {
        let suffix = Uuid::new_v4().simple().to_string();
        let schema = format!("t_{}_{service}", &suffix[..12]);
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temporary directory");
                let url = format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join(format!("{service}.db")).display()
                );
                Some(Self {
                    url,
                    schema,
                    backend,
                    _dir: Some(dir),
                })
            }
            Backend::Postgres => {
                let url = std::env::var("TEST_DATABASE_URL")
                    .ok()
                    .filter(|url| !url.trim().is_empty())?;
                Some(Self {
                    url,
                    schema,
                    backend,
                    _dir: None,
                })
            }
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if self.backend != Backend::Postgres {
            return;
        }
        let url = self.url.clone();
        let schema = self.schema.clone();
        // Drop may run inside a runtime or during a panic: use a thread with its own runtime.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let db = Database::connect(&url).await?;
                db.execute_unprepared(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                    .await?;
                db.close().await?;
                Ok::<_, anyhow::Error>(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("warning: could not drop test schema {}", self.schema);
        }
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

/// Signs access tokens like the auth service will, for tests.
pub struct TestSigner {
    pub kid: String,
    /// base64url of the public key, as in a JWK's `x`.
    pub x: String,
    key: EncodingKey,
    pub issuer: String,
    pub audience: String,
}

impl Default for TestSigner {
    fn default() -> Self {
        Self::new("test-key")
    }
}

impl TestSigner {
    pub fn new(kid: &str) -> Self {
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        let public = ed25519_dalek::SigningKey::from_bytes(&seed)
            .verifying_key()
            .to_bytes();
        Self {
            kid: kid.to_owned(),
            x: URL_SAFE_NO_PAD.encode(public),
            key: EncodingKey::from_ed_der(&crate::token::pkcs8_from_seed(&seed)),
            issuer: "keygraph".into(),
            audience: "keygraph".into(),
        }
    }

    /// This key as a JWKS entry.
    pub fn jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "alg": "EdDSA",
            "use": "sig",
            "kid": self.kid,
            "x": self.x,
        })
    }

    /// Token config trusting this key only.
    pub fn token_config(&self) -> TokenConfig {
        TokenConfig {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            jwks_url: None,
            jwks_cache_secs: 300,
            jwks_min_refetch_secs: 10,
            leeway_secs: 0,
            static_keys: vec![StaticKey {
                kid: self.kid.clone(),
                x: self.x.clone(),
            }],
            revocations_url: None,
            revocations_poll_secs: 2,
            step_up_max_age_secs: 600,
        }
    }

    /// Claims valid for ten minutes for `user_id` with the given permission codes.
    pub fn claims(&self, user_id: Uuid, scopes: &[&str]) -> AccessClaims {
        let now = now_secs();
        AccessClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: user_id.to_string(),
            sid: Some(Uuid::now_v7().to_string()),
            iat: now,
            nbf: now,
            exp: now + 600,
            jti: Some(Uuid::now_v7().to_string()),
            roles: vec![],
            scope: scopes.join(" "),
            amr: vec!["pwd".into()],
            auth_time: Some(now),
            mfa_enrolled: false,
        }
    }

    /// A valid access token for `user_id` with the given permission codes.
    pub fn token(&self, user_id: Uuid, scopes: &[&str]) -> String {
        self.sign(&self.claims(user_id, scopes))
    }

    pub fn sign(&self, claims: &AccessClaims) -> String {
        self.sign_with_header(self.header(), claims)
    }

    /// The header this signer uses: EdDSA, `typ: at+jwt`, its `kid`.
    pub fn header(&self) -> Header {
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(ACCESS_TOKEN_TYPE.into());
        header.kid = Some(self.kid.clone());
        header
    }

    pub fn sign_with_header(&self, header: Header, claims: &AccessClaims) -> String {
        jsonwebtoken::encode(&header, claims, &self.key).expect("signing a test token")
    }

    /// Signs claims of any shape (a claim left out, one of another type).
    pub fn sign_json(&self, claims: &serde_json::Value) -> String {
        jsonwebtoken::encode(&self.header(), claims, &self.key).expect("signing a test token")
    }
}

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// The claims of a JWT, decoded but not verified (the services under test do that).
pub fn jwt_claims(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = URL_SAFE_NO_PAD.decode(payload).expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// `{ ...F0 }` with `levels` fragments on `Query`, each spreading the next one twice, the last
/// selecting `leaf`: a document of about 40 bytes a level whose operation, with its fragments
/// inlined, selects `leaf` 2^levels times.
pub fn fragment_fan(levels: usize, leaf: &str) -> String {
    let mut query = String::from("{ ...F0 }");
    for i in 0..levels {
        let next = i + 1;
        query.push_str(&format!(
            " fragment F{i} on Query {{ ...F{next} ...F{next} }}"
        ));
    }
    query.push_str(&format!(" fragment F{levels} on Query {{ {leaf} }}"));
    query
}

/// Log lines written while it is the default subscriber, for tests of what is (not) logged.
#[derive(Clone, Default)]
pub struct LogCapture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl LogCapture {
    /// A subscriber writing every event, at every level, into this capture.
    pub fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + 'static {
        let capture = self.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || capture.clone())
            .finish()
    }

    /// What was written so far.
    pub fn text(&self) -> String {
        let bytes = self.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut bytes) = self.0.lock() {
            bytes.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every file under `dir` whose name ends with `suffix`, skipping build output, installed
/// packages, `.git` and `data/`: for tests that check the repository's own files.
pub fn repository_files(dir: &std::path::Path, suffix: &str) -> Vec<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, suffix: &str, out: &mut Vec<std::path::PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if path.is_dir() {
                if !matches!(name.as_ref(), "target" | "node_modules" | ".git" | "data") {
                    walk(&path, suffix, out);
                }
            } else if name.ends_with(suffix) {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, suffix, &mut files);
    files
}
