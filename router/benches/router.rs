//! Router benchmark: `cargo bench -p keygraph-router --bench router`.
//!
//! Starts the four test subgraphs in this process and the router in a child process (this
//! same binary, so its memory is the router's alone), then drives 50 concurrent clients over
//! loopback HTTP and prints, side by side: (a) a single-subgraph query sent straight to the
//! subgraph and through the router, (b) a query whose plan crosses four subgraphs with entity
//! fetches; requests per second, p50 and p99 latency, and the router's resident memory.
//!
//! The host's speed drifts from one phase to the next, so (a) with 50 clients alternates
//! direct and routed phases over several rounds: each round's overhead compares neighbours,
//! and the pooled figures take all rounds together.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use keygraph_kernel::config::{Config, SubgraphEndpoint};
use keygraph_kernel::http::Shutdown;
use serde_json::json;

const CLIENTS: usize = 50;
const PHASE: Duration = Duration::from_secs(5);
/// Rounds of (a) with 50 clients, and the length of each of their two phases.
const ROUNDS: usize = 3;
const ROUND_PHASE: Duration = Duration::from_secs(3);
const WARMUP: Duration = Duration::from_secs(1);
const SINGLE: &str = "{ topProducts(first: 3) { upc name price } }";
const CROSSING: &str =
    "{ topProducts(first: 3) { name shippingEstimate inStock reviews { body author { name } } } }";

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if let Ok(listen) = std::env::var("KEYGRAPH_BENCH_ROUTER_LISTEN") {
        return runtime.block_on(serve_router(listen));
    }
    runtime.block_on(bench())
}

/// The child process: only the router, composing the subgraphs named in the environment.
async fn serve_router(listen: String) -> anyhow::Result<()> {
    let mut config = Config::from_sources(None, Vec::new())?;
    config.log.filter = "error".into();
    config.router.listen = listen.parse()?;
    config.router.poll_interval_secs = 0;
    config.router.rate_limit.per_address.query = u32::MAX;
    config.router.rate_limit.per_address.mutation = u32::MAX;
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

struct ChildRouter(std::process::Child);

impl Drop for ChildRouter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn memory_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

struct Figures {
    rps: f64,
    p50: f64,
    p99: f64,
    errors: usize,
}

/// Sorted latencies (ms) of one phase, and its errors.
struct Phase {
    latencies: Vec<f64>,
    seconds: f64,
    errors: usize,
}

impl Phase {
    fn pooled(phases: &[Phase]) -> Phase {
        let mut latencies: Vec<f64> = phases.iter().flat_map(|p| p.latencies.clone()).collect();
        latencies.sort_by(f64::total_cmp);
        Phase {
            latencies,
            seconds: phases.iter().map(|p| p.seconds).sum(),
            errors: phases.iter().map(|p| p.errors).sum(),
        }
    }

    fn figures(&self) -> Figures {
        let at = |q: f64| {
            self.latencies
                .get(((self.latencies.len() as f64 - 1.0) * q) as usize)
                .copied()
                .unwrap_or(f64::NAN)
        };
        Figures {
            rps: self.latencies.len() as f64 / self.seconds,
            p50: at(0.50),
            p99: at(0.99),
            errors: self.errors,
        }
    }
}

async fn drive(
    http: &reqwest::Client,
    url: &str,
    query: &str,
    clients: usize,
    phase: Duration,
) -> Phase {
    let body = Arc::new(serde_json::to_vec(&json!({ "query": query })).unwrap_or_default());
    let run = |duration: Duration| {
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                let http = http.clone();
                let url = url.to_owned();
                let body = body.clone();
                tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    let mut errors = 0;
                    let end = Instant::now() + duration;
                    while Instant::now() < end {
                        let started = Instant::now();
                        let response = http
                            .post(&url)
                            .header("content-type", "application/json")
                            .body(body.as_ref().clone())
                            .send()
                            .await;
                        let ok = match response {
                            Ok(r) => r
                                .bytes()
                                .await
                                .is_ok_and(|b| !b.windows(9).any(|w| w == b"\"errors\":")),
                            Err(_) => false,
                        };
                        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
                        errors += usize::from(!ok);
                    }
                    (latencies, errors)
                })
            })
            .collect();
        async move {
            let mut all = Vec::new();
            let mut errors = 0;
            for task in tasks {
                if let Ok((latencies, e)) = task.await {
                    all.extend(latencies);
                    errors += e;
                }
            }
            (all, errors)
        }
    };
    run(WARMUP).await;
    let (mut latencies, errors) = run(phase).await;
    latencies.sort_by(f64::total_cmp);
    Phase {
        latencies,
        seconds: phase.as_secs_f64(),
        errors,
    }
}

async fn bench() -> anyhow::Result<()> {
    let subgraphs = common::start_subgraphs().await;
    let port = keygraph_kernel::testing::free_port()?;
    let child = std::process::Command::new(std::env::current_exe()?)
        .env("KEYGRAPH_BENCH_ROUTER_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "KEYGRAPH_BENCH_SUBGRAPHS",
            subgraphs
                .iter()
                .map(|(n, s)| format!("{n}={}", s.url))
                .collect::<Vec<_>>()
                .join(","),
        )
        .spawn()?;
    let child = ChildRouter(child);
    let pid = child.0.id();
    let router = format!("http://127.0.0.1:{port}/graphql");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http
        .get(format!("http://127.0.0.1:{port}/ready"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        anyhow::ensure!(Instant::now() < deadline, "the router did not become ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let idle_kib = memory_kib(pid, "VmRSS:");
    let products = subgraphs["products"].url.clone();
    println!(
        "router benchmark: {CLIENTS} concurrent clients, loopback HTTP, {} cores; (a) with {CLIENTS} clients in {ROUNDS} rounds of {}s per path, the rest {}s per phase",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        ROUND_PHASE.as_secs(),
        PHASE.as_secs(),
    );
    println!();
    println!("| phase | path | req/s | p50 ms | p99 ms | errors |");
    println!("| --- | --- | ---: | ---: | ---: | ---: |");
    let row = |phase: &str, path: &str, figures: &Figures| {
        println!(
            "| {phase} | {path} | {:.0} | {:.3} | {:.3} | {} |",
            figures.rps, figures.p50, figures.p99, figures.errors
        );
    };
    let (mut direct, mut routed, mut overheads) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        let phase = format!("(a) single subgraph, round {round}");
        let d = drive(&http, &products, SINGLE, CLIENTS, ROUND_PHASE).await;
        let r = drive(&http, &router, SINGLE, CLIENTS, ROUND_PHASE).await;
        let (df, rf) = (d.figures(), r.figures());
        row(&phase, "direct to subgraph", &df);
        row(&phase, "through router", &rf);
        overheads.push(rf.p50 - df.p50);
        direct.push(d);
        routed.push(r);
    }
    let (direct, routed) = (
        Phase::pooled(&direct).figures(),
        Phase::pooled(&routed).figures(),
    );
    row(
        "(a) single subgraph, all rounds",
        "direct to subgraph",
        &direct,
    );
    row("(a) single subgraph, all rounds", "through router", &routed);
    let one_direct = drive(&http, &products, SINGLE, 1, PHASE).await.figures();
    row(
        "(a) single subgraph, 1 client",
        "direct to subgraph",
        &one_direct,
    );
    let one_routed = drive(&http, &router, SINGLE, 1, PHASE).await.figures();
    row(
        "(a) single subgraph, 1 client",
        "through router",
        &one_routed,
    );
    let crossing = drive(&http, &router, CROSSING, CLIENTS, PHASE)
        .await
        .figures();
    row(
        "(b) four subgraphs, entity fetches",
        "through router",
        &crossing,
    );
    println!();
    let rounds: Vec<String> = overheads.iter().map(|o| format!("{o:.3}")).collect();
    println!(
        "router p50 overhead (a), 50 clients: {:.3} ms pooled (rounds: {}); 1 client: {:.3} ms (target < 1 ms)",
        routed.p50 - direct.p50,
        rounds.join(", "),
        one_routed.p50 - one_direct.p50
    );
    println!(
        "router memory: {:.1} MB idle after composition, {:.1} MB resident after load, {:.1} MB peak (target < 60 MB)",
        idle_kib as f64 / 1024.0,
        memory_kib(pid, "VmRSS:") as f64 / 1024.0,
        memory_kib(pid, "VmHWM:") as f64 / 1024.0
    );
    Ok(())
}
