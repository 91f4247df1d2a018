//! Start-up benchmark: `cargo bench --bench startup`.
//!
//! Starts the built `keygraph` binary (every service and the router, embedded SQLite) and
//! times how long until the router answers `/ready` with a composed supergraph: five first
//! starts on fresh data (migrations, key generation, the first administrator) and five
//! restarts on the same data, printed side by side. Target: under 3 s.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 5;

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn start_once(data: &std::path::Path) -> anyhow::Result<Duration> {
    let ports = [free_port()?, free_port()?, free_port()?, free_port()?];
    let [router, identity, auth, authz] = ports;
    let base = |port: u16| format!("http://127.0.0.1:{port}");
    let env = [
        ("KEYGRAPH__DATA_DIR", data.display().to_string()),
        ("KEYGRAPH__LOG__FILTER", "error".into()),
        (
            "KEYGRAPH__IDENTITY__FIRST_ADMIN__PASSWORD",
            "a first admin passphrase 1".into(),
        ),
        ("KEYGRAPH__ROUTER__LISTEN", format!("127.0.0.1:{router}")),
        (
            "KEYGRAPH__IDENTITY__LISTEN",
            format!("127.0.0.1:{identity}"),
        ),
        ("KEYGRAPH__AUTH__LISTEN", format!("127.0.0.1:{auth}")),
        ("KEYGRAPH__AUTHZ__LISTEN", format!("127.0.0.1:{authz}")),
        (
            "KEYGRAPH__TOKENS__JWKS_URL",
            format!("{}/.well-known/jwks.json", base(auth)),
        ),
        (
            "KEYGRAPH__TOKENS__REVOCATIONS_URL",
            format!("{}/internal/revocations", base(auth)),
        ),
        ("KEYGRAPH__IDENTITY__AUTH_URL", base(auth)),
        ("KEYGRAPH__IDENTITY__AUTHZ_URL", base(authz)),
        ("KEYGRAPH__AUTHZ__IDENTITY_URL", base(identity)),
        ("KEYGRAPH__AUTH__IDENTITY_URL", base(identity)),
        ("KEYGRAPH__AUTH__AUTHZ_URL", base(authz)),
        (
            "KEYGRAPH__ROUTER__SUBGRAPHS__IDENTITY__URL",
            format!("{}/graphql", base(identity)),
        ),
        (
            "KEYGRAPH__ROUTER__SUBGRAPHS__AUTH__URL",
            format!("{}/graphql", base(auth)),
        ),
        (
            "KEYGRAPH__ROUTER__SUBGRAPHS__AUTHZ__URL",
            format!("{}/graphql", base(authz)),
        ),
    ];
    let http = reqwest::Client::new();
    let ready = format!("{}/ready", base(router));
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
