//! Heavy federated queries, our router side by side with Hive Router:
//! `cargo bench -p keygraph-router --bench federated`.
//!
//! Four subgraphs in the shape of The Guild's gateway benchmark run in this process
//! ([`subgraphs`]); each router runs in a child process over the same supergraph file, so its
//! CPU and memory are its own. [wrk](https://github.com/wg/wrk) (Debian's `wrk` package) drives
//! 50 connections at a router for a phase; phases alternate between the routers, round after
//! round, because this host's speed drifts by a fifth within seconds. Scenarios:
//!
//! - **heavy**: the gateway benchmark's nested query, entity chains three levels deep over
//!   four subgraphs, about 100 KiB of response;
//! - **list**: 1,000 products with entities from two other subgraphs;
//! - **single**: one subgraph's query with one client, direct and through our router (the
//!   router's own latency).
//!
//! Each heavy scenario runs in two modes, the same in both routers: `dedupe on` (identical
//! in-flight client requests and subgraph requests share one execution, Hive Router's
//! benchmark configuration) and `dedupe off`.
//!
//! Set `HIVE_ROUTER_BIN` to a Hive Router binary to compare (it installs with
//! `cargo install hive-router --version 0.2.19 --locked --features graphiql`; this benchmark
//! never builds it); without it only our router runs. `-- --seconds N --rounds N` change the
//! phase length (default 5) and the rounds (default 3). The floor printed per scenario is
//! what parsing the subgraphs' answers and serializing the response once cost with
//! serde_json, per request: the router's own work above it is what it adds.

#[path = "federated/subgraphs.rs"]
mod subgraphs;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keygraph_kernel::config::{Config, SubgraphEndpoint};
use keygraph_kernel::http::Shutdown;
use serde_json::{Value, json};

/// As in the `keygraph` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CONNECTIONS: usize = 50;

const HEAVY: &str = r#"
fragment User on User { id username name }
fragment Review on Review { id body }
fragment Product on Product { inStock name price shippingEstimate upc weight }
query Heavy {
  users {
    ...User
    reviews { ...Review product { ...Product reviews { ...Review author { ...User reviews { ...Review product { ...Product } } } } } }
  }
  topProducts { ...Product reviews { ...Review author { ...User reviews { ...Review product { ...Product } } } } }
}"#;

const LIST: &str = "{ topProducts(first: 1000) { upc name price weight inStock shippingEstimate reviews { id author { id name } } } }";

const SINGLE: &str = "{ topProducts(first: 5) { upc name price } }";

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if let Ok(listen) = std::env::var("KEYGRAPH_BENCH_ROUTER_LISTEN") {
        return runtime.block_on(serve_router(listen));
    }
    if let Ok(path) = std::env::var("KEYGRAPH_BENCH_SUBGRAPHS_ONLY") {
        return runtime.block_on(serve_subgraphs(path.into()));
    }
    runtime.block_on(bench())
}

/// For profiling a router by hand: only the subgraphs, with the supergraph written to `path`
/// and the `KEYGRAPH_BENCH_SUBGRAPHS` value for a router child printed, until interrupted.
async fn serve_subgraphs(path: std::path::PathBuf) -> anyhow::Result<()> {
    let subgraphs = subgraphs::start(&subgraphs::Recorder::default()).await?;
    std::fs::write(&path, compose(&subgraphs)?)?;
    println!(
        "KEYGRAPH_BENCH_SUBGRAPHS={}",
        subgraphs
            .iter()
            .map(|s| format!("{}={}", s.name, s.url))
            .collect::<Vec<_>>()
            .join(",")
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}

fn compose(subgraphs: &[subgraphs::Subgraph]) -> anyhow::Result<String> {
    let sdls: Vec<keygraph_router::supergraph::SubgraphSdl> = subgraphs
        .iter()
        .map(|s| keygraph_router::supergraph::SubgraphSdl {
            name: s.name.to_owned(),
            url: s.url.clone(),
            sdl: s.sdl.clone(),
        })
        .collect();
    let (supergraph, _warnings) =
        keygraph_router::supergraph::compose(&sdls).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(supergraph)
}

/// The child process: our router over the supergraph file, with the mode's dedupe settings.
async fn serve_router(listen: String) -> anyhow::Result<()> {
    // As the `keygraph` binary does.
    keygraph_kernel::process::prefer_small_pages();
    let mut config = Config::from_sources(None, Vec::new())?;
    config.log.filter = "error".into();
    config.router.listen = listen.parse()?;
    config.router.poll_interval_secs = 0;
    config.router.rate_limit.per_address.query = u32::MAX;
    config.router.rate_limit.per_address.mutation = u32::MAX;
    config.router.supergraph_file = Some(std::env::var("KEYGRAPH_BENCH_SUPERGRAPH")?.into());
    let dedupe = std::env::var("KEYGRAPH_BENCH_DEDUPE").is_ok_and(|v| v == "on");
    config.router.dedupe.client_requests = dedupe;
    config.router.dedupe.subgraph_requests = dedupe;
    config.router.subgraphs = std::env::var("KEYGRAPH_BENCH_SUBGRAPHS")?
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, url)| {
            (
                name.to_owned(),
                SubgraphEndpoint {
                    url: url.to_owned(),
                    timeout_secs: 30,
                },
            )
        })
        .collect();
    let (_trigger, shutdown) = Shutdown::new();
    keygraph_router::server::serve(&config, keygraph_router::server::Edge::default(), shutdown)
        .await
}

/// A router under test, in its own process.
struct Router {
    name: String,
    url: String,
    child: Child,
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Router {
    fn cpu_ms(&self) -> u64 {
        let (user, system) = self.cpu_split_ms();
        user + system
    }

    /// CPU in user space and in the kernel (the network stack, mostly), in ms.
    fn cpu_split_ms(&self) -> (u64, u64) {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        // utime and stime, in USER_HZ (100 per second).
        let ticks: Vec<u64> = rest
            .split_whitespace()
            .skip(11)
            .take(2)
            .filter_map(|f| f.parse::<u64>().ok())
            .collect();
        (
            ticks.first().copied().unwrap_or(0) * 10,
            ticks.get(1).copied().unwrap_or(0) * 10,
        )
    }

    fn peak_rss_mb(&self) -> f64 {
        self.memory_mb("VmHWM:")
    }

    fn memory_mb(&self, field: &str) -> f64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default()
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or(0.0)
            / 1024.0
    }
}

fn ours(
    mode: &str,
    supergraph: &Path,
    subgraphs: &[subgraphs::Subgraph],
) -> anyhow::Result<Router> {
    let port = keygraph_kernel::testing::free_port()?;
    let child = Command::new(std::env::current_exe()?)
        .env("KEYGRAPH_BENCH_ROUTER_LISTEN", format!("127.0.0.1:{port}"))
        .env("KEYGRAPH_BENCH_SUPERGRAPH", supergraph)
        .env("KEYGRAPH_BENCH_DEDUPE", mode)
        .env(
            "KEYGRAPH_BENCH_SUBGRAPHS",
            subgraphs
                .iter()
                .map(|s| format!("{}={}", s.name, s.url))
                .collect::<Vec<_>>()
                .join(","),
        )
        .stdout(Stdio::null())
        .spawn()?;
    Ok(Router {
        name: format!("keygraph, dedupe {mode}"),
        url: format!("http://127.0.0.1:{port}/graphql"),
        child,
    })
}

fn hive(bin: &str, mode: &str, supergraph: &Path, dir: &Path) -> anyhow::Result<Router> {
    let port = keygraph_kernel::testing::free_port()?;
    let on = mode == "on";
    let config = dir.join(format!("hive-{mode}.yaml"));
    std::fs::write(
        &config,
        format!(
            "supergraph:\n  source: file\n  path: {}\nhttp:\n  host: 127.0.0.1\n  port: {port}\nlog:\n  level: error\ntraffic_shaping:\n  all:\n    dedupe_enabled: {on}\n  router:\n    dedupe:\n      enabled: {on}\n",
            supergraph.display()
        ),
    )?;
    let child = Command::new(bin)
        .env_clear()
        .env("ROUTER_CONFIG_FILE_PATH", &config)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok(Router {
        name: format!("Hive Router, dedupe {mode}"),
        url: format!("http://127.0.0.1:{port}/graphql"),
        child,
    })
}

async fn post(http: &reqwest::Client, url: &str, query: &str) -> anyhow::Result<Value> {
    Ok(http
        .post(url)
        .json(&json!({ "query": query }))
        .send()
        .await?
        .json()
        .await?)
}

async fn wait_until_serving(http: &reqwest::Client, router: &Router) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(body) = post(http, &router.url, "{ __typename }").await
            && body["data"]["__typename"] == "Query"
        {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} did not serve within 60 s",
            router.name
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What one wrk run measured.
#[derive(Clone, Copy, Default)]
struct Run {
    requests: f64,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_ms: f64,
    failures: f64,
}

fn wrk_duration_ms(text: &str) -> Option<f64> {
    let text = text.trim();
    let (number, factor) = if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    number.trim().parse::<f64>().ok().map(|n| n * factor)
}

/// Runs wrk with `connections` against `url` posting `query` for `seconds`; the router's CPU
/// in that time is read around it.
fn wrk(
    script_dir: &Path,
    router: &Router,
    url: &str,
    query: &str,
    connections: usize,
    seconds: u64,
) -> anyhow::Result<Run> {
    let script = script_dir.join("post.lua");
    let body = serde_json::to_string(&json!({ "query": query }))?;
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = {}\nwrk.headers[\"Content-Type\"] = \"application/json\"\n",
            serde_json::to_string(&body)?
        ),
    )?;
    let threads = connections.min(2);
    let cpu_before = router.cpu_ms();
    let output = Command::new("wrk")
        .args([
            "-t",
            &threads.to_string(),
            "-c",
            &connections.to_string(),
            "-d",
            &format!("{seconds}s"),
            "--latency",
            "--timeout",
            "10s",
            "-s",
        ])
        .arg(&script)
        .arg(url)
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run wrk ({e}); install it: apt-get install wrk"))?;
    let cpu_ms = (router.cpu_ms() - cpu_before) as f64;
    let text = String::from_utf8_lossy(&output.stdout);
    let mut run = Run {
        seconds: seconds as f64,
        cpu_ms,
        ..Run::default()
    };
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("50%") {
            run.p50_ms = wrk_duration_ms(rest).unwrap_or(f64::NAN);
        } else if let Some(rest) = line.strip_prefix("99%") {
            run.p99_ms = wrk_duration_ms(rest).unwrap_or(f64::NAN);
        } else if let Some((requests, _)) = line.split_once(" requests in ") {
            run.requests = requests.trim().parse().unwrap_or(0.0);
        } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            run.failures += rest.trim().parse::<f64>().unwrap_or(0.0);
        } else if line.starts_with("Socket errors:") {
            run.failures += line
                .split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<f64>().ok())
                .sum::<f64>();
        }
    }
    anyhow::ensure!(run.requests > 0.0, "wrk measured nothing:\n{text}");
    Ok(run)
}

/// Rounds of one router and scenario, pooled: requests over time, the median round's
/// latencies, CPU per request.
struct Pooled {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_us: f64,
    failures: f64,
}

fn pool(runs: &[Run]) -> Pooled {
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let requests: f64 = runs.iter().map(|r| r.requests).sum();
    Pooled {
        rps: requests / runs.iter().map(|r| r.seconds).sum::<f64>(),
        p50_ms: median(runs.iter().map(|r| r.p50_ms).collect()),
        p99_ms: median(runs.iter().map(|r| r.p99_ms).collect()),
        cpu_us: runs.iter().map(|r| r.cpu_ms).sum::<f64>() * 1000.0 / requests,
        failures: runs.iter().map(|r| r.failures).sum(),
    }
}

/// Parsing the recorded subgraph answers and serializing `response` once, per request.
fn floor_us(bodies: &[axum::body::Bytes], response: &Value) -> f64 {
    let mut samples = Vec::new();
    for _ in 0..200 {
        let started = Instant::now();
        for body in bodies {
            let parsed: Value = serde_json::from_slice(body).unwrap_or_default();
            std::hint::black_box(parsed);
        }
        std::hint::black_box(serde_json::to_vec(response).unwrap_or_default());
        samples.push(started.elapsed().as_secs_f64() * 1e6);
    }
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn flag(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn bench() -> anyhow::Result<()> {
    let seconds = flag("--seconds", 5);
    let rounds = flag("--rounds", 3) as usize;
    let dir = tempfile::tempdir()?;
    let recorder = subgraphs::Recorder::default();
    let subgraphs = subgraphs::start(&recorder).await?;
    let supergraph_path = dir.path().join("supergraph.graphql");
    std::fs::write(&supergraph_path, compose(&subgraphs)?)?;

    let hive_bin = std::env::var("HIVE_ROUTER_BIN").ok();
    let mut routers: BTreeMap<&str, Vec<Router>> = BTreeMap::new();
    for mode in ["on", "off"] {
        let mut pair = vec![ours(mode, &supergraph_path, &subgraphs)?];
        if let Some(bin) = &hive_bin {
            pair.push(hive(bin, mode, &supergraph_path, dir.path())?);
        }
        routers.insert(mode, pair);
    }
    let http = reqwest::Client::new();
    for router in routers.values().flatten() {
        wait_until_serving(&http, router).await?;
    }

    for router in routers.values().flatten() {
        println!(
            "{}: {:.1} MB resident once serving",
            router.name,
            router.memory_mb("VmRSS:")
        );
    }
    println!(
        "federated benchmark: {CONNECTIONS} connections (wrk), {} cores, {rounds} rounds of {seconds}s phases alternating routers{}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if hive_bin.is_none() {
            "; set HIVE_ROUTER_BIN to compare with Hive Router"
        } else {
            ""
        }
    );
    let scenarios = [("heavy", HEAVY), ("list", LIST)];
    // The answers agree between routers and modes, and the floor per scenario.
    let mut floors = BTreeMap::new();
    for (scenario, query) in scenarios {
        let reference = &routers["off"][0];
        recorder.start();
        let expected = post(&http, &reference.url, query).await?;
        let bodies = recorder.stop();
        anyhow::ensure!(expected.get("errors").is_none(), "{scenario}: {}", expected);
        for router in routers.values().flatten() {
            let answer = post(&http, &router.url, query).await?;
            anyhow::ensure!(
                answer == expected,
                "{scenario}: {} answers differently from {}",
                router.name,
                reference.name
            );
        }
        let size = serde_json::to_vec(&expected)?.len();
        let subgraph_bytes: usize = bodies.iter().map(|b| b.len()).sum();
        let floor = floor_us(&bodies, &expected);
        println!(
            "{scenario}: response {:.1} KiB from {} subgraph requests ({:.1} KiB); floor {floor:.0} µs per request",
            size as f64 / 1024.0,
            bodies.len(),
            subgraph_bytes as f64 / 1024.0
        );
        floors.insert(scenario, floor);
    }
    println!();

    let mut runs: BTreeMap<(String, &str), Vec<Run>> = BTreeMap::new();
    for round in 1..=rounds {
        for (scenario, query) in scenarios {
            for (mode, pair) in &routers {
                // Alternate which router goes first from round to round.
                let order: Vec<&Router> = if round % 2 == 1 {
                    pair.iter().collect()
                } else {
                    pair.iter().rev().collect()
                };
                for router in order {
                    let run = wrk(dir.path(), router, &router.url, query, CONNECTIONS, seconds)?;
                    eprintln!(
                        "round {round} {scenario} {mode}: {:<28} {:>8.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms",
                        router.name,
                        run.requests / run.seconds,
                        run.p50_ms,
                        run.p99_ms
                    );
                    runs.entry((router.name.clone(), scenario))
                        .or_default()
                        .push(run);
                }
            }
        }
    }

    for router in routers.values().flatten() {
        let (user, system) = router.cpu_split_ms();
        println!(
            "{}: {:.0}% of its CPU in the kernel",
            router.name,
            100.0 * system as f64 / (user + system).max(1) as f64
        );
    }
    println!();
    println!(
        "| scenario | router | req/s | p50 ms | p99 ms | CPU µs/req | floor µs | peak RSS MB | failed |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (scenario, _) in scenarios {
        for router in routers.values().flatten() {
            let pooled = pool(&runs[&(router.name.clone(), scenario)]);
            println!(
                "| {scenario} | {} | {:.0} | {:.2} | {:.2} | {:.0} | {:.0} | {:.1} | {} |",
                router.name,
                pooled.rps,
                pooled.p50_ms,
                pooled.p99_ms,
                pooled.cpu_us,
                floors[scenario],
                router.peak_rss_mb(),
                pooled.failures
            );
        }
    }
    if hive_bin.is_some() {
        println!();
        println!("| scenario | dedupe | req/s ratio (ours / Hive) | p99 ratio | peak RSS ratio |");
        println!("| --- | --- | ---: | ---: | ---: |");
        for (scenario, _) in scenarios {
            for (mode, pair) in &routers {
                let (ours, hive) = (&pair[0], &pair[1]);
                let (o, h) = (
                    pool(&runs[&(ours.name.clone(), scenario)]),
                    pool(&runs[&(hive.name.clone(), scenario)]),
                );
                println!(
                    "| {scenario} | {mode} | {:.2}x | {:.2}x | {:.2}x |",
                    o.rps / h.rps,
                    o.p99_ms / h.p99_ms,
                    ours.peak_rss_mb() / hive.peak_rss_mb()
                );
            }
        }
    }

    // One client, one subgraph: the router's own latency, direct and routed alternating.
    let products = subgraphs
        .iter()
        .find(|s| s.name == "products")
        .map(|s| s.url.clone())
        .unwrap_or_default();
    let ours_off = &routers["off"][0];
    let (mut direct, mut routed) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        direct.push(wrk(dir.path(), ours_off, &products, SINGLE, 1, seconds)?);
        routed.push(wrk(
            dir.path(),
            ours_off,
            &ours_off.url,
            SINGLE,
            1,
            seconds,
        )?);
    }
    let (direct, routed) = (pool(&direct), pool(&routed));
    println!();
    println!(
        "single subgraph, 1 connection: direct p50 {:.3} ms, through our router {:.3} ms: overhead {:.3} ms p50 (target < 1 ms)",
        direct.p50_ms,
        routed.p50_ms,
        routed.p50_ms - direct.p50_ms
    );
    Ok(())
}
