//! The log of `cargo run` as a newcomer sees it: start-up fits on one screen, no colour codes
//! when the output is not a terminal, no line per request unless asked for, and request lines
//! carrying the request id and the W3C trace id.

mod common;

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// The binary, running everything embedded, and all it has printed so far.
struct Running {
    child: std::process::Child,
    printed: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Starts the binary with `env` (see `common::loopback_env`) and `settings`.
    fn start(env: &[(String, String)], settings: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_keygraph"))
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(settings.iter().copied())
            .env(
                "KEYGRAPH__IDENTITY__FIRST_ADMIN__PASSWORD",
                "a first admin passphrase 1",
            )
            .env_remove("KEYGRAPH_CONFIG")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start keygraph");
        let printed = Arc::new(Mutex::new(String::new()));
        let readers = [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        .map(|mut stream| {
            let printed = printed.clone();
            std::thread::spawn(move || {
                let mut buffer = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buffer) {
                    if n == 0 {
                        break;
                    }
                    printed
                        .lock()
                        .expect("log buffer")
                        .push_str(&String::from_utf8_lossy(&buffer[..n]));
                }
            })
        })
        .collect();
        Self {
            child,
            printed,
            readers,
        }
    }

    fn printed(&self) -> String {
        self.printed.lock().expect("log").clone()
    }

    /// Waits (at most a minute) until it has said it is ready.
    async fn until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.printed().contains("Keygraph is ready") {
            assert!(Instant::now() < deadline, "not ready: {}", self.printed());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops it (if it still runs) and returns everything it printed.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        self.printed()
    }
}

/// Runs the binary with `settings`, waits until it is ready, sends one GraphQL request with a
/// `traceparent`, stops it and returns everything it printed.
async fn log_of_a_run(settings: &[(&str, &str)]) -> String {
    let data = tempfile::tempdir().expect("tempdir");
    let (env, router) = common::loopback_env(data.path()).expect("ports");
    let running = Running::start(&env, settings);
    running.until_ready().await;
    let answer = reqwest::Client::new()
        .post(format!("{router}/graphql"))
        .header("traceparent", format!("00-{TRACE_ID}-00f067aa0ba902b7-01"))
        .json(&serde_json::json!({ "query": "{ __typename }" }))
        .send()
        .await
        .expect("request");
    assert!(answer.status().is_success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.stop()
}

/// A second instance on the same ports (from another directory) must not say it is ready on
/// the strength of the first one's `/ready`: it says which port is taken and stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_on_taken_ports_says_so_and_never_that_it_is_ready() {
    let first_data = tempfile::tempdir().expect("tempdir");
    let (env, _router) = common::loopback_env(first_data.path()).expect("ports");
    let first = Running::start(&env, &[]);
    first.until_ready().await;
    let second_data = tempfile::tempdir().expect("tempdir");
    let second_data = second_data.path().display().to_string();
    let mut second_env = env.clone();
    for (key, value) in &mut second_env {
        if key.ends_with("DATA_DIR") {
            *value = second_data.clone();
        }
    }
    let mut second = Running::start(&second_env, &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = second.child.try_wait().expect("second instance") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the second instance still runs: {}",
            second.printed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let log = second.stop();
    first.stop();
    assert!(!status.success(), "{log}");
    assert!(log.contains("cannot listen on"), "{log}");
    assert!(
        !log.contains("Keygraph is ready"),
        "the second instance said it was ready:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_log_is_short_plain_and_quiet_per_request() {
    let log = log_of_a_run(&[]).await;
    assert!(
        !log.contains('\u{1b}'),
        "no colour codes into a pipe:\n{log}"
    );
    let until_ready: Vec<&str> = log
        .lines()
        .take_while(|l| !l.contains("Keygraph is ready"))
        .collect();
    assert!(
        until_ready.len() <= 30,
        "{} lines before the stack is ready:\n{}",
        until_ready.len(),
        until_ready.join("\n")
    );
    assert!(
        !log.contains("request finished"),
        "no line per request by default:\n{log}"
    );
    assert!(!log.contains("Applying migration"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_lines_carry_the_request_and_trace_ids_when_asked_for() {
    let log = log_of_a_run(&[("KEYGRAPH__LOG__FILTER", "info,keygraph::requests=info")]).await;
    let line = log
        .lines()
        .find(|l| l.contains("request finished") && l.contains(TRACE_ID))
        .unwrap_or_else(|| panic!("a request line with the trace id:\n{log}"));
    assert!(line.contains("request_id="), "{line}");
    assert!(line.contains("path=/graphql"), "{line}");
    assert!(
        !log.lines()
            .any(|l| l.contains("request finished") && l.contains("path=/ready")),
        "readiness polls stay at debug:\n{log}"
    );
}
