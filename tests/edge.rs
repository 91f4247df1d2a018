//! The edge knows who is calling: client addresses reach the services that count them, one
//! guesser's failures slow only that guesser, and limits are shared by replicas through Redis.
//!
//! Clients play different addresses by binding to 127.0.0.2, 127.0.0.3, ... The Redis tests run
//! when `TEST_REDIS_URL` is set (`.ci/run` sets it); the one that stops Redis starts a private
//! `redis-server` of its own, so the machine's Redis is never stopped under other tests.

mod common;
mod harness;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::future::join_all;
use harness::{
    ADMIN_EMAIL, ADMIN_PASSWORD, Stack, Topology, client_from, data, free_port, gql_with, spawn,
};
use keygraph_kernel::testing::Backend;
use serde_json::{Value, json};

const LOGIN: &str = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { ... on AuthPayload { accessToken } } }";

fn code(answer: &Value) -> &str {
    answer["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("")
}

async fn login_from(client: &reqwest::Client, url: &str, email: &str, password: &str) -> Value {
    gql_with(
        client,
        url,
        LOGIN,
        json!({ "e": email, "p": password }),
        None,
    )
    .await
}

/// The access token a `login` answered with, which must have no errors.
fn access_token(answer: &Value, what: &str) -> String {
    data(answer)["login"]["accessToken"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: {answer}"))
        .to_owned()
}

/// The addresses the owner's sessions were opened from.
async fn session_addresses(stack: &Stack, token: &str) -> Vec<String> {
    let answer = stack
        .gql("{ sessions { clientAddress } }", json!({}), Some(token))
        .await;
    data(&answer)["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .filter_map(|s| s["clientAddress"].as_str().map(str::to_owned))
        .collect()
}

keygraph_kernel::on_both_backends!(
    one_guesser_never_locks_the_owner_out,
    sign_in_answers_with_the_users_fields_and_leaves_no_orphan_session,
    the_router_refuses_guarded_fields_itself_and_says_why,
);

/// Thirty concurrent wrong sign-ins from one address, each at a made-up account: attempts in
/// flight count, so they are not all tried. Then a guesser fails at the owner's account from
/// another address: that guesser waits, the owner (from a third address) signs in at once,
/// and the owner's session records the owner's address, not the router's.
async fn one_guesser_never_locks_the_owner_out(backend: Backend) {
    let settings = [("KEYGRAPH__AUTH__THROTTLE__ADDRESS_FREE_ATTEMPTS", "10")];
    let Some(stack) = Stack::start_with(backend, Topology::Embedded, &settings).await else {
        return;
    };
    let burst = client_from("127.0.0.2");
    let guesses = (0..30).map(|i| {
        let (burst, url) = (&burst, &stack.graphql);
        async move {
            let email = format!("made-up-{i}@example.com");
            login_from(burst, url, &email, "wrong password 123").await
        }
    });
    let answers = join_all(guesses).await;
    let throttled = answers.iter().filter(|a| code(a) == "RATE_LIMITED").count();
    assert!(
        throttled > 0,
        "30 attempts in flight at once are not all tried: {answers:?}"
    );

    let guesser = client_from("127.0.0.4");
    let mut codes = Vec::new();
    for _ in 0..7 {
        let answer = login_from(&guesser, &stack.graphql, ADMIN_EMAIL, "wrong password 123").await;
        codes.push(code(&answer).to_owned());
    }
    assert_eq!(
        codes.last().map(String::as_str),
        Some("RATE_LIMITED"),
        "{codes:?}"
    );

    let owner = client_from("127.0.0.3");
    let signed_in = login_from(&owner, &stack.graphql, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let token = access_token(&signed_in, "the owner signs in at once");
    assert_eq!(
        session_addresses(&stack, &token).await,
        vec!["127.0.0.3".to_owned()]
    );
}

/// The first mutation a frontend writes: `login` (and `refresh`) with the user's fields in the
/// same request. The later fetches act with the token just issued; a sign-in whose tokens
/// never reach the client (here: not selected) leaves no session behind; a stale token on
/// the request does not get in the way.
async fn sign_in_answers_with_the_users_fields_and_leaves_no_orphan_session(backend: Backend) {
    let Some(stack) = Stack::start(backend, Topology::Embedded).await else {
        return;
    };
    let login = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { ... on AuthPayload { \
                 accessToken refreshToken user { email displayName roles { name } permissions } } } }";
    let credentials = json!({ "e": ADMIN_EMAIL, "p": ADMIN_PASSWORD });
    let answer = stack.gql(login, credentials.clone(), None).await;
    let payload = &data(&answer)["login"];
    assert_eq!(payload["user"]["email"], ADMIN_EMAIL, "{answer}");
    assert_eq!(payload["user"]["roles"][0]["name"], "admin", "{answer}");
    assert!(
        payload["user"]["permissions"]
            .as_array()
            .is_some_and(|p| !p.is_empty())
    );
    let token = payload["accessToken"].as_str().expect("token").to_owned();
    let refresh_token = payload["refreshToken"]
        .as_str()
        .expect("refresh")
        .to_owned();

    // `refresh` the same way, sent with a token that no longer works (the client's usual
    // "on UNAUTHENTICATED, refresh" path).
    let refresh =
        "mutation($r: String!) { refresh(refreshToken: $r) { accessToken user { email } } }";
    let answer = stack
        .gql(
            refresh,
            json!({ "r": refresh_token }),
            Some("expired.or.forged"),
        )
        .await;
    assert_eq!(
        data(&answer)["refresh"]["user"]["email"],
        ADMIN_EMAIL,
        "{answer}"
    );
    let fresh = data(&answer)["refresh"]["accessToken"]
        .as_str()
        .expect("token")
        .to_owned();
    assert_ne!(fresh, token);

    // Signed in, but neither token asked for: the session is ended at once.
    let answer = stack
        .gql(
            "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { ... on AuthPayload { user { email } } } }",
            credentials,
            None,
        )
        .await;
    assert_eq!(data(&answer)["login"]["user"]["email"], ADMIN_EMAIL);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answer = stack
            .gql("{ sessions { id } }", json!({}), Some(&fresh))
            .await;
        let open = data(&answer)["sessions"].as_array().map_or(0, Vec::len);
        if open == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the undelivered session is still open: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The sum of the router's `/metrics` samples of `metric`.
async fn metric(stack: &Stack, metric: &str) -> u64 {
    let metrics = stack
        .http
        .get(stack.graphql.replace("/graphql", "/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    metrics
        .lines()
        .filter(|l| l.split(['{', ' ']).next() == Some(metric))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Subgraph requests the router has made.
async fn subgraph_requests(stack: &Stack) -> u64 {
    metric(stack, "keygraph_router_subgraph_requests_total").await
}

/// Keygraph's guarded fields carry access directives: the router refuses them before any
/// subgraph is called. A token of an ended session is not a 401 for the whole request:
/// sign-in still works with it, and guarded fields say the session ended.
async fn the_router_refuses_guarded_fields_itself_and_says_why(backend: Backend) {
    let Some(stack) = Stack::start(backend, Topology::Embedded).await else {
        return;
    };
    let before = subgraph_requests(&stack).await;
    for query in [
        "{ users { totalCount } }",
        "{ me { email } }",
        "mutation { logoutAll }",
    ] {
        let answer = stack.gql(query, json!({}), None).await;
        assert_eq!(code(&answer), "UNAUTHENTICATED", "{answer}");
        assert!(answer.get("data").is_none(), "nothing ran: {answer}");
    }
    assert_eq!(
        subgraph_requests(&stack).await,
        before,
        "no subgraph was called"
    );

    let answer = login_from(&stack.http, &stack.graphql, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let token = access_token(&answer, "token");
    let answer = stack
        .gql("mutation { logout }", json!({}), Some(&token))
        .await;
    assert_eq!(data(&answer)["logout"], true);
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let answer = stack.gql("{ me { email } }", json!({}), Some(&token)).await;
        if answer["errors"][0]["extensions"]["reason"] == "ended" {
            assert_eq!(code(&answer), "UNAUTHENTICATED");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the ended session is not named: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let answer = gql_with(
        &stack.http,
        &stack.graphql,
        LOGIN,
        json!({ "e": ADMIN_EMAIL, "p": ADMIN_PASSWORD }),
        Some(&token),
    )
    .await;
    assert!(
        data(&answer)["login"]["accessToken"].is_string(),
        "{answer}"
    );
}

/// A subgraph believes the client address the router states, never one a client claims:
/// a direct call with a forged statement and `X-Forwarded-For` is recorded with its own
/// connection's address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subgraphs_believe_no_claimed_address_but_the_routers() {
    let Some(stack) = Stack::start(Backend::Sqlite, Topology::Embedded).await else {
        return;
    };
    let auth_listen = stack
        .env
        .iter()
        .find(|(k, _)| k == "KEYGRAPH__AUTH__LISTEN")
        .map(|(_, v)| v.clone())
        .expect("auth's address");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs();
    let answer: Value = client_from("127.0.0.5")
        .post(format!("http://{auth_listen}/graphql"))
        .header("x-forwarded-for", "10.9.9.9")
        .header(
            "keygraph-client-address",
            format!("10.9.9.8; t={now}; proof=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        )
        .json(&json!({ "query": LOGIN, "variables": { "e": ADMIN_EMAIL, "p": ADMIN_PASSWORD } }))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON");
    let token = access_token(&answer, "signed in");
    assert_eq!(
        session_addresses(&stack, &token).await,
        vec!["127.0.0.5".to_owned()]
    );
}

fn redis_url() -> Option<String> {
    std::env::var("TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// A key prefix no other test run shares.
fn prefix() -> String {
    format!("keygraph-test:{}:", uuid::Uuid::now_v7().simple())
}

/// `env` with the listen addresses of `services` moved to free ports.
fn moved(env: &[(String, String)], services: &[&str]) -> Vec<(String, String)> {
    env.iter()
        .map(|(key, value)| {
            let moves = services
                .iter()
                .any(|s| *key == format!("KEYGRAPH__{}__LISTEN", s.to_ascii_uppercase()));
            if moves {
                (key.clone(), format!("127.0.0.1:{}", free_port()))
            } else {
                (key.clone(), value.clone())
            }
        })
        .collect()
}

fn setting<'e>(env: &'e [(String, String)], key: &str) -> &'e str {
    env.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("{key} is set"))
}

/// A process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_ready(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !reqwest::get(url)
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "{url} was not ready within 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Two router processes count one client's requests against one limit in Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_routers_share_one_rate_limit() {
    let Some(redis) = redis_url() else {
        return;
    };
    let prefix = prefix();
    let settings = [
        ("KEYGRAPH__REDIS__URL", redis.as_str()),
        ("KEYGRAPH__REDIS__KEY_PREFIX", prefix.as_str()),
        ("KEYGRAPH__ROUTER__RATE_LIMIT__PER_ADDRESS__QUERY", "6"),
    ];
    let Some(stack) = Stack::start_with(Backend::Sqlite, Topology::Separate, &settings).await
    else {
        return;
    };
    let env = moved(&stack.env, &["router"]);
    let second = Process(spawn(Some("router"), &env));
    let second_url = format!("http://{}", setting(&env, "KEYGRAPH__ROUTER__LISTEN"));
    wait_ready(&format!("{second_url}/ready")).await;
    let urls = [stack.graphql.clone(), format!("{second_url}/graphql")];
    let client = client_from("127.0.0.6");
    let mut answered = Vec::new();
    for i in 0..10 {
        let answer = gql_with(&client, &urls[i % 2], "{ __typename }", json!({}), None).await;
        answered.push(code(&answer).to_owned());
    }
    let allowed = answered.iter().filter(|c| c.is_empty()).count();
    assert_eq!(allowed, 6, "one limit across both routers: {answered:?}");
    assert!(
        answered[6..].iter().all(|c| c == "RATE_LIMITED"),
        "{answered:?}"
    );
    // Another address has a limit of its own.
    let other = gql_with(
        &client_from("127.0.0.7"),
        &urls[1],
        "{ __typename }",
        json!({}),
        None,
    )
    .await;
    assert_eq!(code(&other), "", "{other}");
    drop(second);
}

/// Two auth processes count one guesser's failures against one throttle in Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_auth_processes_share_one_throttle() {
    let Some(redis) = redis_url() else {
        return;
    };
    let prefix = prefix();
    let kek = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    let settings = [
        ("KEYGRAPH__REDIS__URL", redis.as_str()),
        ("KEYGRAPH__REDIS__KEY_PREFIX", prefix.as_str()),
        ("KEYGRAPH__AUTH__KEY_ENCRYPTION_KEY", kek),
    ];
    let Some(stack) = Stack::start_with(Backend::Postgres, Topology::Separate, &settings).await
    else {
        return;
    };
    // A second auth on the same database, with files of its own.
    let data = tempfile::tempdir().expect("tempdir");
    let mut env = moved(&stack.env, &["auth"]);
    for (key, value) in &mut env {
        if key == "KEYGRAPH__DATA_DIR" {
            *value = data.path().display().to_string();
        }
    }
    let second = Process(spawn(Some("auth"), &env));
    let second_base = format!("http://{}", setting(&env, "KEYGRAPH__AUTH__LISTEN"));
    wait_ready(&format!("{second_base}/health/ready")).await;
    let first_base = format!("http://{}", setting(&stack.env, "KEYGRAPH__AUTH__LISTEN"));
    let urls = [
        format!("{first_base}/graphql"),
        format!("{second_base}/graphql"),
    ];
    let guesser = client_from("127.0.0.8");
    let mut answered = Vec::new();
    // Five failures are free per account from one address (the default); then the wait.
    for i in 0..7 {
        let answer = login_from(&guesser, &urls[i % 2], ADMIN_EMAIL, "not the password 1").await;
        answered.push(code(&answer).to_owned());
    }
    assert!(
        answered[..5].iter().all(|c| c == "UNAUTHENTICATED"),
        "{answered:?}"
    );
    assert!(
        answered[5..].iter().all(|c| c == "RATE_LIMITED"),
        "one throttle across both auth processes: {answered:?}"
    );
    drop(second);
}

/// A private `redis-server` on a free port, killed when dropped.
struct PrivateRedis {
    process: Option<Process>,
    port: u16,
}

impl PrivateRedis {
    fn start() -> Self {
        let port = free_port();
        let mut redis = Self {
            process: None,
            port,
        };
        redis.restart();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (the Redis tests need it on PATH)");
        self.process = Some(Process(child));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        self.process = None;
    }
}

/// The embedded stack on SQLite counting in a private Redis, with `settings` (when the Redis
/// tests run at all).
async fn on_private_redis(settings: &[(&str, &str)]) -> Option<(PrivateRedis, Stack)> {
    redis_url()?;
    let redis = PrivateRedis::start();
    let url = redis.url();
    let mut settings = settings.to_vec();
    settings.push(("KEYGRAPH__REDIS__URL", url.as_str()));
    let stack = Stack::start_with(Backend::Sqlite, Topology::Embedded, &settings).await?;
    Some((redis, stack))
}

/// Requests within `limit` answer, then RATE_LIMITED; none waits long.
async fn count_allowed(client: &reqwest::Client, url: &str, requests: usize) -> usize {
    let mut allowed = 0;
    for _ in 0..requests {
        let started = Instant::now();
        let answer = gql_with(client, url, "{ __typename }", json!({}), None).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a request waited {:?} for Redis",
            started.elapsed()
        );
        match code(&answer) {
            "" => allowed += 1,
            "RATE_LIMITED" => {}
            other => panic!("unexpected {other}: {answer}"),
        }
    }
    allowed
}

/// Redis stops mid-test: with `when_unavailable: local` (the default) requests never hang,
/// limits go on in the process's memory, the outage is counted in `/metrics`; when Redis is
/// back, the shared counts are used again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_mid_test_falls_back_to_local_counts() {
    let settings = [("KEYGRAPH__ROUTER__RATE_LIMIT__PER_ADDRESS__QUERY", "4")];
    let Some((mut redis, stack)) = on_private_redis(&settings).await else {
        return;
    };
    let client = client_from("127.0.0.9");
    assert_eq!(count_allowed(&client, &stack.graphql, 3).await, 3);
    redis.stop();
    // In memory, from zero: four more, then the limit.
    assert_eq!(count_allowed(&client, &stack.graphql, 6).await, 4);
    let unavailable = metric(&stack, "keygraph_router_shared_counters_unavailable_total").await;
    assert!(unavailable >= 6, "the outage is counted: {unavailable}");
    redis.restart();
    // The shared count again (an empty Redis: it lost its data), after the rest period.
    tokio::time::sleep(keygraph_kernel::counters::RETRY_AFTER + Duration::from_millis(300)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = gql_with(&client, &stack.graphql, "{ __typename }", json!({}), None).await;
        if code(&answer).is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Redis is not used again: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// With `when_unavailable: refuse`, requests and sign-ins are refused with
/// SERVICE_UNAVAILABLE while Redis is down, at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_with_refuse_refuses_at_once() {
    let settings = [("KEYGRAPH__REDIS__WHEN_UNAVAILABLE", "refuse")];
    let Some((mut redis, stack)) = on_private_redis(&settings).await else {
        return;
    };
    let client = client_from("127.0.0.10");
    let answer = gql_with(&client, &stack.graphql, "{ __typename }", json!({}), None).await;
    assert_eq!(code(&answer), "", "{answer}");
    redis.stop();
    let started = Instant::now();
    let response = client
        .post(&stack.graphql)
        .json(&json!({ "query": "{ __typename }" }))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 503);
    let answer: Value = response.json().await.expect("JSON");
    assert_eq!(code(&answer), "SERVICE_UNAVAILABLE", "{answer}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // Auth's throttle refuses sign-in the same way.
    let auth = format!(
        "http://{}/graphql",
        setting(&stack.env, "KEYGRAPH__AUTH__LISTEN")
    );
    let answer = login_from(&client, &auth, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(code(&answer), "SERVICE_UNAVAILABLE", "{answer}");
}
