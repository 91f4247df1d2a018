//! Starts identity and authz side by side on loopback ports, each over its own fresh database,
//! talking to each other over their internal endpoints as in production.

#![allow(dead_code)]

use chrono::Utc;
use keygraph_authz::{
    MAX_BATCH,
    entity::{role, role_permission, user_role},
};
use keygraph_kernel::{
    config::Config,
    http,
    internal::LocalServices,
    testing::{
        Answer, Backend, INTERNAL_TOKEN, StatementLog, TestDatabase, TestServer, TestSigner,
        test_config,
    },
};
use sea_orm::{ActiveModelTrait, DatabaseConnection, EntityTrait, PaginatorTrait, Set};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use uuid::Uuid;

pub const PASSWORD: &str = "quiet lantern harbor";

/// Users by reference with their roles and the roles' permissions: two levels of look-ups.
pub const ENTITIES: &str = "query($r: [_Any!]!) { _entities(representations: $r) { ... on User { id roles { name permissions { code } } } } }";

/// `_entities` variables for these users.
pub fn reps(users: &[Uuid]) -> Value {
    json!({ "r": users.iter().map(|u| json!({ "__typename": "User", "id": u })).collect::<Vec<_>>() })
}

pub struct Stack {
    pub authz: TestServer,
    /// An active identity user holding the built-in admin role in authz: sensitive changes
    /// read current grants, so an administrator's token must belong to one.
    pub admin_id: Uuid,
    pub identity: TestServer,
    pub signer: TestSigner,
    /// authz's database.
    pub db: DatabaseConnection,
    /// identity's database.
    pub identity_db: DatabaseConnection,
    /// SQL statements authz has run since start.
    pub statements: StatementLog,
    pub config: Config,
    _databases: (TestDatabase, TestDatabase),
    _data: tempfile::TempDir,
}

pub struct Options {
    /// Where identity sends deleted users' grant removals; by default the authz of the stack.
    pub identity_authz_url: Option<String>,
    /// Serve authz on this listener (default: a new loopback port).
    pub authz_listener: Option<TcpListener>,
    /// `identity.first_admin.email` (default: none).
    pub first_admin: Option<String>,
}

impl Stack {
    /// `None` (test skipped) for Postgres without `TEST_DATABASE_URL`.
    pub async fn start(backend: Backend) -> Option<Self> {
        Self::start_with(
            backend,
            Options {
                identity_authz_url: None,
                authz_listener: None,
                first_admin: None,
            },
        )
        .await
    }

    pub async fn start_with(backend: Backend, options: Options) -> Option<Self> {
        let (Some(authz_database), Some(identity_database)) = (
            TestDatabase::new(backend, "authz"),
            TestDatabase::new(backend, "identity"),
        ) else {
            eprintln!("skipped: TEST_DATABASE_URL is not set");
            return None;
        };
        let data = tempfile::tempdir().expect("data dir");
        let signer = TestSigner::default();
        let authz_listener = match options.authz_listener {
            Some(listener) => listener,
            None => TestServer::listener().await,
        };
        let identity_listener = TestServer::listener().await;
        let mut config = test_config(data.path(), &signer);
        config.authz.database_url = Some(authz_database.url.clone());
        config.authz.schema = authz_database.schema.clone();
        config.authz.identity_url = TestServer::base_of(&identity_listener);
        config.identity.database_url = Some(identity_database.url.clone());
        config.identity.schema = identity_database.schema.clone();
        config.identity.first_admin.email = options.first_admin;
        config.identity.authz_url = Some(
            options
                .identity_authz_url
                .unwrap_or_else(|| TestServer::base_of(&authz_listener)),
        );

        let identity = keygraph_identity::build(&config, INTERNAL_TOKEN, &LocalServices::default())
            .await
            .expect("identity starts");
        let identity_db = identity.db.clone();
        let (trigger, shutdown) = TestServer::shutdown_pair();
        identity.spawn_workers(shutdown.clone());
        let identity = TestServer::start_on(
            identity_listener,
            "identity",
            identity.router,
            &config,
            http::database_readiness(identity.db),
            (trigger, shutdown),
        );

        let mut db = keygraph_authz::connect(&config)
            .await
            .expect("authz database");
        let statements = StatementLog::attach(&mut db);
        let authz = keygraph_authz::build_with(
            &config,
            db.clone(),
            INTERNAL_TOKEN,
            &LocalServices::default(),
            MAX_BATCH,
        )
        .await
        .expect("authz starts");
        let authz = TestServer::start_on(
            authz_listener,
            "authz",
            authz.router,
            &config,
            http::database_readiness(authz.db),
            TestServer::shutdown_pair(),
        );
        let mut stack = Self {
            authz,
            admin_id: Uuid::nil(),
            identity,
            signer,
            db,
            identity_db,
            statements,
            config,
            _databases: (authz_database, identity_database),
            _data: data,
        };
        stack.admin_id = stack.create_user("root@keygraph.test").await;
        keygraph_authz::seed_administrator(&stack.db, stack.admin_id)
            .await
            .expect("seed the administrator");
        Some(stack)
    }

    pub async fn gql(&self, query: &str, variables: Value, token: Option<&str>) -> Answer {
        self.authz.gql(query, variables, token).await
    }

    pub fn token(&self, user: Uuid, scopes: &[&str]) -> String {
        self.signer.token(user, scopes)
    }

    /// The administrator's token, holding every catalog code as auth issues them for an
    /// admin (scope is the expanded list, not `*`).
    pub fn admin(&self) -> String {
        let codes: Vec<&str> = keygraph_kernel::permissions::CATALOG
            .iter()
            .map(|(c, _)| *c)
            .collect();
        self.token(self.admin_id, &codes)
    }

    /// Registers a user in identity and returns its id.
    pub async fn create_user(&self, email: &str) -> Uuid {
        self.identity
            .gql(
                "mutation($i: RegisterInput!) { register(input: $i) }",
                json!({ "i": { "email": email, "password": PASSWORD } }),
                None,
            )
            .await
            .data();
        let reader = self.token(
            Uuid::now_v7(),
            &[keygraph_kernel::permissions::identity::USER_READ],
        );
        let found = self
            .identity
            .gql(
                "query($s: String) { users(filter: { search: $s }) { edges { node { id email } } } }",
                json!({ "s": email }),
                Some(&reader),
            )
            .await;
        let id = found.data()["users"]["edges"][0]["node"]["id"]
            .as_str()
            .expect("registered user");
        Uuid::parse_str(id).expect("uuid")
    }

    /// Creates a role through the API and returns its id.
    pub async fn create_role(&self, name: &str, grants: &[&str]) -> Uuid {
        let admin = self.admin();
        let created = self
            .gql(
                "mutation($n: String!) { createRole(input: { name: $n }) { id } }",
                json!({ "n": name }),
                Some(&admin),
            )
            .await;
        let id = Uuid::parse_str(created.data()["createRole"]["id"].as_str().expect("id"))
            .expect("uuid");
        for code in grants {
            self.gql(
                "mutation($r: ID!, $c: String!) { grantPermission(roleId: $r, code: $c) { id } }",
                json!({ "r": id, "c": code }),
                Some(&admin),
            )
            .await
            .data();
        }
        id
    }

    pub async fn assign(&self, user: Uuid, role: Uuid) -> Answer {
        self.gql(
            "mutation($u: ID!, $r: ID!) { assignRole(userId: $u, roleId: $r) { id } }",
            json!({ "u": user, "r": role }),
            Some(&self.admin()),
        )
        .await
    }

    /// Seeds `count` users holding every given role, straight into authz's tables.
    pub async fn seed_users_with_roles(&self, count: usize, roles: &[Uuid]) -> Vec<Uuid> {
        let mut users = Vec::with_capacity(count);
        for _ in 0..count {
            let user = Uuid::now_v7();
            for role in roles {
                self.assign_directly(user, *role).await;
            }
            users.push(user);
        }
        users
    }

    /// Gives `user` the role straight in authz's tables (no identity check).
    pub async fn assign_directly(&self, user: Uuid, role: Uuid) {
        user_role::ActiveModel {
            user_id: Set(user),
            role_id: Set(role),
            granted_by: Set(None),
            granted_at: Set(Utc::now()),
        }
        .insert(&self.db)
        .await
        .expect("seed user role");
    }

    /// Seeds a role holding `codes`, straight into authz's tables.
    pub async fn seed_role(&self, name: &str, codes: &[&str]) -> Uuid {
        let id = Uuid::now_v7();
        role::ActiveModel {
            id: Set(id),
            name: Set(name.to_owned()),
            description: Set(String::new()),
            built_in: Set(false),
            created_at: Set(Utc::now()),
            updated_at: Set(Utc::now()),
        }
        .insert(&self.db)
        .await
        .expect("seed role");
        for code in codes {
            role_permission::ActiveModel {
                role_id: Set(id),
                permission_code: Set((*code).to_owned()),
                granted_by: Set(None),
                granted_at: Set(Utc::now()),
            }
            .insert(&self.db)
            .await
            .expect("seed grant");
        }
        id
    }

    /// Audit actions in authz's outbox, oldest first.
    pub async fn audit_actions(&self) -> Vec<String> {
        keygraph_kernel::testing::audit_actions(&self.db).await
    }

    pub async fn count<E>(&self) -> u64
    where
        E: EntityTrait,
        E::Model: Sync,
    {
        PaginatorTrait::count(E::find(), &self.db)
            .await
            .expect("count")
    }
}
