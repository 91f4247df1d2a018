//! Identity, authz and auth side by side on loopback ports, each over its own fresh database.
//! Every verifier takes keys from auth's JWKS (and a test key, for admin tokens) and polls
//! auth's list of ended sessions, as in production.

#![allow(dead_code)]

pub mod authenticator;
pub mod passkey;

use std::time::Duration;

use base64::{Engine as _, engine::general_purpose::STANDARD};
use keygraph_kernel::{
    config::{Config, StaticKey},
    http,
    internal::LocalServices,
    testing::{Answer, Backend, INTERNAL_TOKEN, TestDatabase, TestServer, TestSigner, test_config},
};
use sea_orm::DatabaseConnection;
use serde_json::{Value, json};
use uuid::Uuid;

pub const PASSWORD: &str = "quiet lantern harbor";

/// How the services of a [`Stack`] make their internal calls to each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Calls {
    /// Over loopback HTTP, as separate processes (the compose topology) do.
    Http,
    /// Straight into each other's routers, as the embedded default (`cargo run`) does.
    InProcess,
}

pub struct Stack {
    pub identity: TestServer,
    pub authz: TestServer,
    /// An active user holding the built-in admin role in authz.
    pub admin_id: Uuid,
    pub auth: TestServer,
    pub signer: TestSigner,
    /// auth's database.
    pub db: DatabaseConnection,
    pub config: Config,
    _databases: [TestDatabase; 3],
    _data: tempfile::TempDir,
}

/// A signed-in session as the API handed it out.
#[derive(Debug, Clone)]
pub struct Login {
    pub access: String,
    pub refresh: String,
    pub session: String,
    pub user: Uuid,
}

impl Login {
    fn from_payload(payload: &Value) -> Self {
        let text = |k: &str| {
            payload[k]
                .as_str()
                .unwrap_or_else(|| panic!("no {k}: {payload}"))
                .to_owned()
        };
        Self {
            access: text("accessToken"),
            refresh: text("refreshToken"),
            session: text("sessionId"),
            user: Uuid::parse_str(payload["user"]["id"].as_str().expect("user id")).expect("uuid"),
        }
    }
}

pub const PAYLOAD: &str = "accessToken refreshToken sessionId expiresIn user { id }";

impl Stack {
    /// `None` (test skipped) for Postgres without `TEST_DATABASE_URL`.
    pub async fn start(backend: Backend) -> Option<Self> {
        Self::start_with(backend, |_| {}).await
    }

    pub async fn start_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> Option<Self> {
        Self::start_wired(backend, Calls::Http, adjust).await
    }

    /// As [`Stack::start_with`], with the internal calls between the services made as `calls`
    /// says. Clients reach every service over HTTP either way.
    pub async fn start_wired(
        backend: Backend,
        calls: Calls,
        adjust: impl FnOnce(&mut Config),
    ) -> Option<Self> {
        let (Some(identity_db), Some(authz_db), Some(auth_db)) = (
            TestDatabase::new(backend, "identity"),
            TestDatabase::new(backend, "authz"),
            TestDatabase::new(backend, "auth"),
        ) else {
            eprintln!("skipped: TEST_DATABASE_URL is not set");
            return None;
        };
        let data = tempfile::tempdir().expect("data dir");
        let signer = TestSigner::default();
        let listeners = [
            TestServer::listener().await,
            TestServer::listener().await,
            TestServer::listener().await,
        ];
        let auth_base = TestServer::base_of(&listeners[2]);
        // Where the services call each other. In process, that is an address nothing listens
        // on, so a call that went over HTTP would fail instead of passing unnoticed.
        let mut internal = Vec::new();
        for listener in &listeners {
            internal.push(match calls {
                Calls::Http => listener.local_addr().expect("addr"),
                Calls::InProcess => TestServer::listener().await.local_addr().expect("addr"),
            });
        }
        let [identity_internal, authz_internal, auth_internal] =
            [0, 1, 2].map(|i| format!("http://{}", internal[i]));
        let mut config = test_config(data.path(), &signer);
        config.identity.database_url = Some(identity_db.url.clone());
        config.identity.schema = identity_db.schema.clone();
        config.identity.authz_url = Some(authz_internal.clone());
        config.identity.auth_url = Some(auth_internal);
        config.authz.database_url = Some(authz_db.url.clone());
        config.authz.schema = authz_db.schema.clone();
        config.authz.identity_url = identity_internal.clone();
        config.auth.database_url = Some(auth_db.url.clone());
        config.auth.schema = auth_db.schema.clone();
        config.auth.identity_url = identity_internal;
        config.auth.authz_url = authz_internal;
        config.auth.key_encryption_key = Some(STANDARD.encode(rand_bytes()));
        config.tokens.jwks_url = Some(format!("{auth_base}/.well-known/jwks.json"));
        config.tokens.jwks_min_refetch_secs = 0;
        config.tokens.revocations_url = Some(format!("{auth_base}/internal/revocations"));
        config.tokens.revocations_poll_secs = 1;
        config.tokens.static_keys = vec![StaticKey {
            kid: signer.kid.clone(),
            x: signer.x.clone(),
        }];
        adjust(&mut config);

        let local = LocalServices::default();
        // In process, as the embedded default does it: each service is registered, with the
        // layers it is served with, under the address the others call it at.
        let register = |service: usize, router: &axum::Router, db| {
            if calls == Calls::InProcess {
                let readiness = http::database_readiness(db);
                let addresses = http::ClientAddresses::for_subgraph(&config.http, INTERNAL_TOKEN)
                    .expect("addresses");
                let layered = http::with_standard_layers(
                    "auth",
                    router.clone(),
                    &config.http,
                    addresses,
                    readiness,
                );
                local.register(internal[service], layered);
            }
        };
        let [identity_listener, authz_listener, auth_listener] = listeners;
        let identity = keygraph_identity::build(&config, INTERNAL_TOKEN, &local)
            .await
            .expect("identity starts");
        let (trigger, shutdown) = TestServer::shutdown_pair();
        identity.spawn_workers(shutdown.clone());
        register(0, &identity.router, identity.db.clone());
        let identity = TestServer::start_on(
            identity_listener,
            "identity",
            identity.router,
            &config,
            http::database_readiness(identity.db),
            (trigger, shutdown),
        );
        let authz = keygraph_authz::build(&config, INTERNAL_TOKEN, &local)
            .await
            .expect("authz starts");
        let authz_connection = authz.db.clone();
        register(1, &authz.router, authz.db.clone());
        let authz = TestServer::start_on(
            authz_listener,
            "authz",
            authz.router,
            &config,
            http::database_readiness(authz.db),
            TestServer::shutdown_pair(),
        );
        let auth = keygraph_auth::build(&config, INTERNAL_TOKEN, &local)
            .await
            .expect("auth starts");
        let db = auth.db.clone();
        register(2, &auth.router, auth.db.clone());
        let auth = TestServer::start_on(
            auth_listener,
            "auth",
            auth.router,
            &config,
            http::database_readiness(auth.db),
            TestServer::shutdown_pair(),
        );
        let mut stack = Self {
            identity,
            authz,
            admin_id: Uuid::nil(),
            auth,
            signer,
            db,
            config,
            _databases: [identity_db, authz_db, auth_db],
            _data: data,
        };
        // Sensitive changes read current grants: the administrator is a real, active user.
        stack.register("root@keygraph.test").await;
        let reader = stack.signer.token(
            Uuid::now_v7(),
            &[keygraph_kernel::permissions::identity::USER_READ],
        );
        let found = stack
            .identity
            .gql(
                "{ users(filter: { search: \"root@keygraph.test\" }) { edges { node { id } } } }",
                json!({}),
                Some(&reader),
            )
            .await;
        stack.admin_id = found.data()["users"]["edges"][0]["node"]["id"]
            .as_str()
            .and_then(|id| Uuid::parse_str(id).ok())
            .expect("the administrator's id");
        keygraph_authz::seed_administrator(&authz_connection, stack.admin_id)
            .await
            .expect("seed the administrator");
        Some(stack)
    }

    /// A token holding every catalog code, signed by the test key.
    pub fn admin(&self) -> String {
        let codes: Vec<&str> = keygraph_kernel::permissions::CATALOG
            .iter()
            .map(|(c, _)| *c)
            .collect();
        self.signer.token(self.admin_id, &codes)
    }

    pub async fn register(&self, email: &str) {
        self.identity
            .gql(
                "mutation($i: RegisterInput!) { register(input: $i) }",
                json!({ "i": { "email": email, "password": PASSWORD } }),
                None,
            )
            .await
            .data();
    }

    pub async fn login_answer(&self, email: &str, password: &str) -> Answer {
        self.auth
            .gql(
                &format!("mutation($e: String!, $p: String!) {{ login(email: $e, password: $p) {{ ... on AuthPayload {{ {PAYLOAD} }} }} }}"),
                json!({ "e": email, "p": password }),
                None,
            )
            .await
    }

    pub async fn login(&self, email: &str) -> Login {
        Login::from_payload(&self.login_answer(email, PASSWORD).await.data()["login"])
    }

    pub async fn refresh_answer(&self, refresh: &str) -> Answer {
        self.auth
            .gql(
                &format!("mutation($r: String!) {{ refresh(refreshToken: $r) {{ {PAYLOAD} }} }}"),
                json!({ "r": refresh }),
                None,
            )
            .await
    }

    pub async fn refresh(&self, refresh: &str) -> Login {
        Login::from_payload(&self.refresh_answer(refresh).await.data()["refresh"])
    }

    /// Creates role `name` with `codes` at authz and assigns it to `user`, as an admin.
    pub async fn give_role(&self, user: Uuid, name: &str, codes: &[&str]) {
        let admin = self.admin();
        let role = self
            .authz
            .gql(
                "mutation($n: String!) { createRole(input: { name: $n }) { id } }",
                json!({ "n": name }),
                Some(&admin),
            )
            .await;
        let role = role.data()["createRole"]["id"].clone();
        for code in codes {
            self.authz
                .gql(
                    "mutation($r: ID!, $c: String!) { grantPermission(roleId: $r, code: $c) { id } }",
                    json!({ "r": role, "c": code }),
                    Some(&admin),
                )
                .await
                .data();
        }
        self.authz
            .gql(
                "mutation($u: ID!, $r: ID!) { assignRole(userId: $u, roleId: $r) { id } }",
                json!({ "u": user, "r": role }),
                Some(&admin),
            )
            .await
            .data();
    }

    /// `me` at identity with this access token.
    pub async fn me(&self, access: &str) -> Answer {
        self.identity
            .gql("{ me { id email } }", json!({}), Some(access))
            .await
    }

    /// Waits (up to 6 s) until identity refuses the token as revoked.
    pub async fn until_refused(&self, access: &str) -> Duration {
        until_refused_by(&self.identity, "{ me { id email } }", access).await
    }

    /// Waits (up to 6 s) until authz refuses the token as revoked. Every
    /// service polls auth's revocation list on its own clock, so identity
    /// refusing a token says nothing yet about authz.
    pub async fn until_authz_refuses(&self, access: &str) -> Duration {
        until_refused_by(&self.authz, "{ myPermissions }", access).await
    }

    /// The `kid`s auth's JWKS publishes.
    pub async fn jwks_kids(&self) -> Vec<String> {
        let (status, jwks) = self
            .auth
            .internal(reqwest::Method::GET, "/.well-known/jwks.json", None, None)
            .await;
        assert_eq!(status, 200, "{jwks}");
        jwks["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .map(|k| k["kid"].as_str().expect("kid").to_owned())
            .collect()
    }

    /// Audit actions in auth's outbox, oldest first.
    pub async fn audit_actions(&self) -> Vec<String> {
        keygraph_kernel::testing::audit_actions(&self.db).await
    }

    /// Asserts that auth's outbox holds an event of `action`.
    pub async fn assert_audited(&self, action: &str) {
        let actions = self.audit_actions().await;
        assert!(
            actions.iter().any(|a| a == action),
            "no {action}: {actions:?}"
        );
    }

    /// `query` (a `login` taking `$e` and `$p`) for `email` with [`PASSWORD`]: its `login`.
    pub async fn login_as(&self, query: &str, email: &str) -> Value {
        self.auth
            .gql(query, json!({ "e": email, "p": PASSWORD }), None)
            .await
            .data()["login"]
            .clone()
    }
}

fn rand_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    for (i, b) in Uuid::new_v4()
        .as_bytes()
        .iter()
        .chain(Uuid::new_v4().as_bytes())
        .enumerate()
    {
        bytes[i] = *b;
    }
    bytes
}

/// Asks `server` the query with the token every 100 ms until it answers that
/// the session has ended; the time that took.
async fn until_refused_by(server: &TestServer, query: &str, access: &str) -> Duration {
    let started = std::time::Instant::now();
    for _ in 0..60 {
        let answer = server.gql(query, json!({}), Some(access)).await;
        if answer.0.get("errors").is_some() {
            answer.expect_error("UNAUTHENTICATED", "session of this access token has ended");
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the token was still accepted after 6 s");
}
