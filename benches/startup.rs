//! Start-up benchmark: `cargo bench --bench startup`.
//!
//! Starts the built `keygraph` binary (every service and the router, embedded SQLite) and
//! times how long until the router answers `/ready` with a composed supergraph: five first
//! starts on fresh data (migrations, key generation, the first administrator) and five
//! restarts on the same data, printed side by side. Target: under 3 s.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 5;

async fn start_once(data: &std::path::Path) -> anyhow::Result<Duration> {
    let (mut env, router) = common::loopback_env(data)?;
    env.extend(
        [
            ("KEYGRAPH__LOG__FILTER", "error"),
            (
                "KEYGRAPH__IDENTITY__FIRST_ADMIN__PASSWORD",
                "a first admin passphrase 1",
            ),
        ]
        .map(|(key, value)| (key.to_owned(), value.to_owned())),
    );
    let http = reqwest::Client::new();
    let ready = format!("{router}/ready");
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_keygraph"))
        .envs(env)
        .env_remove("KEYGRAPH_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let result = loop {
        let up = http
            .get(&ready)
            .timeout(Duration::from_millis(500))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if up {
            break Ok(started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(30) {
            break Err(anyhow::anyhow!("not ready within 30 s"));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    child.kill()?;
    child.wait()?;
    result
}

fn stats(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (
        ms(samples[samples.len() / 2]),
        ms(samples[samples.len() - 1]),
    )
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut first = Vec::new();
        let mut again = Vec::new();
        for _ in 0..RUNS {
            let data = tempfile::tempdir()?;
            first.push(start_once(data.path()).await?);
            again.push(start_once(data.path()).await?);
        }
        let (first_median, first_max) = stats(first);
        let (again_median, again_max) = stats(again);
        println!("keygraph start-up until the router serves the graph ({RUNS} runs each, embedded SQLite)");
        println!();
        println!("| start | median ms | max ms |");
        println!("| --- | ---: | ---: |");
        println!("| first (fresh data: migrations, keys, first admin) | {first_median:.0} | {first_max:.0} |");
        println!("| again (same data) | {again_median:.0} | {again_max:.0} |");
        println!();
        println!("target: ready in under 3000 ms");
        Ok(())
    })
}
