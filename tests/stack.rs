//! The whole stack as a user runs it: the `keygraph` binary (every service and the router in
//! one process), spoken to only through the router's one endpoint. On SQLite files, and on
//! Postgres (one schema per service) when `TEST_DATABASE_URL` is set.

mod common;
mod harness;

use std::process::Command;
use std::time::{Duration, Instant};

use harness::{Stack, Topology, data, free_port};
use keygraph_kernel::testing::{Backend, jwt_claims as claims, link_token};
use serde_json::json;

const PASSWORD: &str = "correct horse battery staple 9";
use harness::{ADMIN_EMAIL, ADMIN_PASSWORD};

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
            "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { ... on AuthPayload { accessToken refreshToken } } }",
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
                "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { ... on AuthPayload { accessToken } } }",
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
    // Every account holds `user` (authz.default_roles). The admin gives the user the `admin`
    // role; the user's next token carries it.
    assert!(
        claims(&access)["roles"]
            .as_array()
            .is_some_and(|r| r.contains(&json!("user")) && !r.contains(&json!("admin")))
    );
    let role = stack
        .gql(
            "{ roleByName(name: \"admin\") { id } }",
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
            .contains("\"admin\""),
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
            .is_some_and(|r| r.contains(&json!("admin"))),
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
        // Query spans both: `me` (identity) and a nullable authz field (the administrator
        // may read roles: the router lets the query through to the subgraphs).
        let partial = stack
            .gql(
                "{ me { email } admin: roleByName(name: \"admin\") { name } }",
                json!({}),
                Some(&admin),
            )
            .await;
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "a request hung past the timeout"
        );
        assert_eq!(partial["data"]["me"]["email"], ADMIN_EMAIL, "{partial}");
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
