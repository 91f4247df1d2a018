//! Every request's cost is bounded: documents built to make the router or a subgraph work for
//! seconds (fragments spreading each other, thousands of repeated fields, aliases hidden in
//! fragments, oversized bodies) are refused at once with an error naming the limit, and the
//! process is idle right after. CPU is read from `/proc` for the `keygraph` process itself
//! (every service and the router, embedded on SQLite), so the figures do not depend on how
//! busy the machine is.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keygraph_kernel::testing::fragment_fan;
use serde_json::{Value, json};

/// CPU a refusal may take: parsing and measuring a document of up to 15,000 tokens, in a debug
/// build. The attacks took seconds to minutes before they were bounded.
const REFUSAL_CPU_MS: u64 = 400;
/// CPU an idle stack may use in [`IDLE_WINDOW`] (revocation polls, timers).
const IDLE_CPU_MS: u64 = 100;
const IDLE_WINDOW: Duration = Duration::from_secs(1);

/// The embedded stack, killed when dropped.
struct Stack {
    child: Child,
    router: String,
    identity: String,
    auth: String,
    authz: String,
    http: reqwest::Client,
    _data: tempfile::TempDir,
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Stack {
    async fn start() -> Self {
        let data = tempfile::tempdir().expect("tempdir");
        let (mut env, router) = common::loopback_env(data.path()).expect("free ports");
        env.extend(
            [
                ("KEYGRAPH__LOG__FILTER", "warn"),
                (
                    "KEYGRAPH__IDENTITY__FIRST_ADMIN__PASSWORD",
                    "first admin's own passphrase 42",
                ),
                (
                    "KEYGRAPH__INTERNAL__TOKEN",
                    "limits-internal-token-0123456789abcdef0123456789",
                ),
            ]
            .map(|(key, value)| (key.to_owned(), value.to_owned())),
        );
        let listen = |service: &str| {
            let key = format!("KEYGRAPH__{service}__LISTEN");
            let addr = env
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.clone())
                .expect("a listen address");
            format!("http://{addr}/graphql")
        };
        let (identity, auth, authz) = (listen("IDENTITY"), listen("AUTH"), listen("AUTHZ"));
        let child = Command::new(env!("CARGO_BIN_EXE_keygraph"))
            .envs(env.iter().cloned())
            .env_remove("KEYGRAPH_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start keygraph");
        let stack = Self {
            child,
            router: format!("{router}/graphql"),
            identity,
            auth,
            authz,
            http: reqwest::Client::builder()
                // Before its cost was bounded, the first attack was answered after 30 s.
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client"),
            _data: data,
        };
        let ready = format!("{router}/ready");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !stack
            .http
            .get(&ready)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            assert!(Instant::now() < deadline, "not ready within 60 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Start-up work (the first administrator's hash, the first polls) is over: the
        // baseline every later measurement leans on.
        tokio::time::sleep(Duration::from_millis(500)).await;
        stack.assert_idle("after start-up").await;
        stack
    }

    /// CPU time the process has used, user and system, all threads (exited ones too).
    fn cpu_ms(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .expect("/proc/<pid>/stat");
        // Fields after the command name (which may hold spaces) in parentheses; utime and
        // stime are the 14th and 15th of the line, in USER_HZ ticks (100 per second on Linux).
        let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<u64> = rest
            .split_whitespace()
            .skip(11)
            .take(2)
            .map(|f| f.parse().expect("a tick count"))
            .collect();
        fields.iter().sum::<u64>() * 10
    }

    async fn assert_idle(&self, when: &str) {
        let before = self.cpu_ms();
        tokio::time::sleep(IDLE_WINDOW).await;
        let used = self.cpu_ms() - before;
        assert!(
            used <= IDLE_CPU_MS,
            "{when}: the process used {used} ms of CPU in {IDLE_WINDOW:?} while nothing was asked of it"
        );
    }

    async fn post(&self, url: &str, body: &Value) -> (u16, Value) {
        let response = self
            .http
            .post(url)
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON answer"))
    }

    /// Sends `query` to `url`, asserts it is refused by `limit` within [`REFUSAL_CPU_MS`],
    /// and returns the error message.
    async fn assert_refused(&self, url: &str, query: &str, limit: &str) -> String {
        let before = self.cpu_ms();
        let (_, body) = self.post(url, &json!({ "query": query })).await;
        let used = self.cpu_ms() - before;
        let error = &body["errors"][0];
        assert_eq!(
            error["extensions"]["code"], "OPERATION_LIMIT_EXCEEDED",
            "{url}: {body}"
        );
        assert_eq!(error["extensions"]["limit"], limit, "{url}: {body}");
        assert!(body.get("data").is_none_or(Value::is_null), "{body}");
        assert!(
            used <= REFUSAL_CPU_MS,
            "{url}: refusing took {used} ms of CPU"
        );
        error["message"].as_str().unwrap_or_default().to_owned()
    }
}

/// `{ me { id id … } }` with `repeats` ids, and a comment that makes the text new.
fn repeated_ids(repeats: usize, nonce: usize) -> String {
    format!(
        "# request {nonce}\n{{ me {{ {} }} }}",
        "id ".repeat(repeats)
    )
}

#[tokio::test]
async fn fragments_spreading_each_other_are_refused_at_once_everywhere() {
    let stack = Stack::start().await;
    let bomb = fragment_fan(24, "__typename");
    assert!(bomb.len() < 1_100, "{} bytes", bomb.len());
    let message = stack
        .assert_refused(&stack.router, &bomb, "max_fields")
        .await;
    assert_eq!(
        message,
        "the operation selects 16777216 fields once its fragments are inlined; at most 1000 are accepted"
    );
    // Asked again: refused from the cache of refusals.
    stack
        .assert_refused(&stack.router, &bomb, "max_fields")
        .await;
    for subgraph in [&stack.identity, &stack.auth, &stack.authz] {
        stack.assert_refused(subgraph, &bomb, "max_fields").await;
    }
    stack.assert_idle("after the fragment fans").await;

    // Nothing is left running that a shutdown would have to wait for.
    let started = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &stack.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let mut stack = stack;
    loop {
        if let Some(status) = stack.child.try_wait().expect("wait") {
            assert!(status.success(), "exited with {status}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still running 10 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn thousands_of_repeated_fields_are_refused_at_once_even_eight_at_a_time() {
    let stack = Stack::start().await;
    let stack = &stack;
    for url in [&stack.router, &stack.identity] {
        let before = stack.cpu_ms();
        let answers = futures::future::join_all((0..8).map(|nonce| {
            let query = repeated_ids(14_000, nonce);
            async move { stack.post(url, &json!({ "query": query })).await }
        }))
        .await;
        let used = stack.cpu_ms() - before;
        for (_, body) in &answers {
            assert_eq!(
                body["errors"][0]["extensions"]["code"], "OPERATION_LIMIT_EXCEEDED",
                "{url}: {body}"
            );
            assert_eq!(body["errors"][0]["extensions"]["limit"], "max_fields");
        }
        assert!(
            used <= 2 * REFUSAL_CPU_MS,
            "{url}: eight refusals took {used} ms of CPU"
        );
        stack.assert_idle("after the repeated fields").await;
    }
    // The largest operations the limits admit still run: a thousand fields at the router.
    let (_, body) = stack
        .post(
            &stack.router,
            &json!({ "query": format!("{{ {} }}", "__typename ".repeat(1_000)) }),
        )
        .await;
    assert_eq!(body["data"]["__typename"], "Query", "{body}");
}

#[tokio::test]
async fn aliases_inside_fragments_count_once_per_use() {
    let stack = Stack::start().await;
    let aliased: String = (0..30).map(|i| format!("a{i}: __typename ")).collect();
    let once = format!("{{ ...A }} fragment A on Query {{ {aliased} }}");
    let (_, body) = stack.post(&stack.router, &json!({ "query": once })).await;
    assert_eq!(body["data"]["a29"], "Query", "{body}");
    let twice = format!(
        "{{ ...A ...B }} fragment A on Query {{ {aliased} }} fragment B on Query {{ ...A }}"
    );
    let message = stack
        .assert_refused(&stack.router, &twice, "max_aliases")
        .await;
    assert_eq!(
        message,
        "the operation uses 60 aliases once its fragments are inlined; at most 30 are accepted"
    );
}

#[tokio::test]
async fn a_mutation_cannot_borrow_the_cache_entry_of_a_query_over_get() {
    let stack = Stack::start().await;
    // Operation name and document used to be hashed as `name \0 document`. This pair had the
    // key of the GET below: a query (refused: no operation has that name) whose check was
    // cached as "not a mutation", and a mutation hidden behind a NUL in a comment.
    let disguise = "A\0mutation A { requestPasswordReset(email: \"ada@example.com\") } #";
    let (_, body) = stack
        .post(
            &stack.router,
            &json!({ "query": " { __typename }", "operationName": disguise }),
        )
        .await;
    assert!(body["errors"].is_array(), "{body}");
    let mutation =
        "mutation A { requestPasswordReset(email: \"ada@example.com\") } #\0 { __typename }";
    let response = stack
        .http
        .get(&stack.router)
        .query(&[("query", mutation), ("operationName", "A")])
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 405, "{:?}", response.text().await);
}

/// POSTs a body announced as `mib` MiB to `url` over a plain TCP connection, writing it as long
/// as the server reads; returns the answer's status line and body, and how many bytes were
/// written before the server answered (or stopped reading).
async fn post_oversized(url: &str, mib: usize) -> (String, String, usize) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (host, path) = rest.split_once('/').expect("a path");
    let stream = tokio::net::TcpStream::connect(host).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let head = format!(
        "POST /{path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        mib << 20
    );
    let written = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = written.clone();
    let write = tokio::spawn(async move {
        writer.write_all(head.as_bytes()).await?;
        let chunk = vec![b' '; 64 * 1024];
        for _ in 0..mib * 16 {
            writer.write_all(&chunk).await?;
            counter.fetch_add(chunk.len(), std::sync::atomic::Ordering::SeqCst);
        }
        Ok::<_, std::io::Error>(())
    });
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), reader.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                answer.extend_from_slice(&buffer[..n]);
                let text = String::from_utf8_lossy(&answer);
                // The whole answer is in once its body, as long as it says, has arrived.
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(str::to_owned)
                        })
                        .and_then(|n| n.trim().parse::<usize>().ok());
                    if length.is_some_and(|n| body.len() >= n) {
                        break;
                    }
                }
            }
            Err(_) => panic!("{url}: no answer within 10 s"),
        }
    }
    let sent = written.load(std::sync::atomic::Ordering::SeqCst);
    write.abort();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, body.to_owned(), sent)
}

#[tokio::test]
async fn an_oversized_body_is_refused_without_being_read_whole() {
    let stack = Stack::start().await;
    for url in [&stack.router, &stack.identity, &stack.auth, &stack.authz] {
        let before = stack.cpu_ms();
        let (status, body, sent) = post_oversized(url, 64).await;
        let used = stack.cpu_ms() - before;
        assert!(status.contains(" 413 "), "{url}: {status} {body}");
        let body: Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: {e}: {body}"));
        assert_eq!(
            body["errors"][0]["message"],
            "the request body is larger than the limit of 1048576 bytes (http.body_limit_bytes)",
            "{url}"
        );
        assert!(
            sent < 16 << 20,
            "{url}: {} MiB of the 64 MiB body were taken before the refusal",
            sent >> 20
        );
        assert!(used <= REFUSAL_CPU_MS, "{url}: took {used} ms of CPU");
    }
}
