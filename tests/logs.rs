//! The log of `cargo run` as a newcomer sees it: start-up fits on one screen, no colour codes
//! when the output is not a terminal, no line per request unless asked for, and request lines
//! carrying the request id and the W3C trace id.

mod common;

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// Runs the binary (everything embedded) with `settings`, waits until it is ready, sends one
/// GraphQL request with a `traceparent`, stops it and returns everything it printed.
async fn log_of_a_run(settings: &[(&str, &str)]) -> String {
    let data = tempfile::tempdir().expect("tempdir");
    let (env, router) = common::loopback_env(data.path()).expect("ports");
    let mut child = Command::new(env!("CARGO_BIN_EXE_keygraph"))
        .envs(env)
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
    let readers: Vec<_> = [
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
    let deadline = Instant::now() + Duration::from_secs(60);
    while !printed.lock().expect("log").contains("Keygraph is ready") {
        assert!(
            Instant::now() < deadline,
            "not ready: {}",
            printed.lock().expect("log")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answer = reqwest::Client::new()
        .post(format!("{router}/graphql"))
        .header("traceparent", format!("00-{TRACE_ID}-00f067aa0ba902b7-01"))
        .json(&serde_json::json!({ "query": "{ __typename }" }))
        .send()
        .await
        .expect("request");
    assert!(answer.status().is_success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = child.kill();
    let _ = child.wait();
    for reader in readers {
        let _ = reader.join();
    }
    printed.lock().expect("log").clone()
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
