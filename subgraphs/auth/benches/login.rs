//! Sign-in under load, in one run: the raw argon2id verify rate of this machine; the login
//! rate through the auth subgraph at saturation (identity verifies the password, authz gives
//! the claims); and p50/p99 of a cheap authenticated query (`me` at identity) alone and while
//! the logins saturate hashing.
//!
//! The host's speed drifts between phases (the raw rate alone has ranged 81–178/s here), so
//! every figure is measured in each of several rounds and pooled, and each baseline brackets
//! the phase it is compared with: half of it runs just before, half just after, so a drift
//! that is steady over the round cancels out of the comparison. On a busy shared host the
//! speed also jumps by a fifth within seconds; short rounds, many of them, catch such a jump
//! on both sides of a comparison more often than long ones, so the default is 10 rounds of
//! 2-second phases.
//!
//! Each round also splits the CPU the sign-ins used (Linux, from /proc): the hashing pool's
//! per sign-in, beside the raw CPU per verify, and everything else per sign-in (HTTP between
//! client, auth, identity and authz, GraphQL, SQLite, signing; the load generator too, as it
//! shares the cores). The share of everything else is what keeps the rate below raw.
//!
//! Clients reach auth and identity over HTTP. The services' internal calls to each other
//! (auth asks identity to check the password and authz for the claims) stay in process, as
//! in the embedded default; `--calls http` sends them over loopback HTTP instead, as
//! separate processes would.
//!
//!     cargo bench -p keygraph-auth --bench login [-- --seconds 2 --rounds 10 --calls http]

#[path = "../tests/common/mod.rs"]
mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use argon2::{
    Algorithm, Argon2, Params, PasswordHash, PasswordHasher as _, Version,
    password_hash::SaltString,
};
use common::{Calls, PASSWORD, Stack};
use keygraph_identity::password::verify_blocking;
use keygraph_kernel::testing::Backend;

/// The allocator of the `keygraph` binary (see `src/main.rs`), so the figures are its own.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The word after `flag` on the command line.
fn flag_value(flag: &str) -> Option<String> {
    let mut args = std::env::args().skip_while(|a| a != flag);
    args.next()?;
    args.next()
}

/// The number after `flag` on the command line, or `default`.
fn arg(flag: &str, default: u64) -> u64 {
    flag_value(flag)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn seconds() -> u64 {
    arg("--seconds", 2).max(1)
}

fn rounds() -> u64 {
    arg("--rounds", 10).max(1)
}

/// `--calls http` makes the services' internal calls over loopback HTTP, as separate
/// processes do; by default they stay in process, as in the embedded default (`cargo run`).
fn calls() -> Calls {
    if flag_value("--calls").is_some_and(|v| v == "http") {
        Calls::Http
    } else {
        Calls::InProcess
    }
}

/// Verifies per second with one thread per core and the check identity's hashing pool runs,
/// on nothing else: the machine's ceiling for sign-ins. Each thread verifies once before the
/// clock starts, so its argon2 memory is in place like that of the pool's long-lived threads,
/// and counts its rate up to its own last verify (not up to the slowest thread's, which would
/// add the others' wait for it).
fn raw_verify_rate(duration: Duration) -> f64 {
    let params = Params::new(19_456, 2, 1, None).expect("params");
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let salt = SaltString::encode_b64(b"benchmark-salt!!").expect("salt");
    let hash = argon
        .hash_password(PASSWORD.as_bytes(), &salt)
        .expect("hash")
        .to_string();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let warm = Arc::new(std::sync::Barrier::new(threads));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let hash = hash.clone();
            let warm = warm.clone();
            std::thread::spawn(move || {
                let parsed = PasswordHash::new(&hash).expect("parse");
                assert!(verify_blocking(PASSWORD.as_bytes(), &parsed).expect("verifies"));
                warm.wait();
                let started = Instant::now();
                let mut count = 0u32;
                while started.elapsed() < duration {
                    assert!(verify_blocking(PASSWORD.as_bytes(), &parsed).expect("verifies"));
                    count += 1;
                }
                f64::from(count) / started.elapsed().as_secs_f64()
            })
        })
        .collect();
    workers
        .into_iter()
        .map(|worker| worker.join().expect("worker"))
        .sum()
}

/// Latencies of `me` at identity, one request every 5 ms (a steady client, not a flood that
/// would itself take the CPU), for `duration`.
async fn probe(stack: &Stack, token: &str, duration: Duration) -> Vec<Duration> {
    let mut latencies = Vec::new();
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    while started.elapsed() < duration {
        tick.tick().await;
        let t = Instant::now();
        stack.me(token).await.data();
        latencies.push(t.elapsed());
    }
    latencies
}

/// Signs in with every client in a loop for `duration`; returns the sign-ins and the seconds
/// they took, up to the last answer.
async fn login_load(stack: &Stack, emails: &[String], duration: Duration) -> (f64, f64) {
    let logins = AtomicUsize::new(0);
    let started = Instant::now();
    futures::future::join_all(emails.iter().map(|email| {
        let logins = &logins;
        async move {
            while started.elapsed() < duration {
                stack.login(email).await;
                logins.fetch_add(1, Ordering::Relaxed);
            }
        }
    }))
    .await;
    (
        logins.load(Ordering::Relaxed) as f64,
        started.elapsed().as_secs_f64(),
    )
}

/// `(name, CPU ticks)` of a `stat` file from /proc: `pid (name) state …`, utime and stime
/// being the 12th and 13th fields after the name.
fn stat_ticks(path: &std::path::Path) -> Option<(String, u64)> {
    let stat = std::fs::read_to_string(path).ok()?;
    let (name, rest) = stat
        .split_once(" (")
        .and_then(|(_, tail)| tail.rsplit_once(") "))?;
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    Some((name.to_owned(), ticks))
}

/// CPU seconds (user and system) this process has used, in total (threads that have exited
/// included: the pool replaces its SQLite connections, each with a thread) and by its threads
/// whose name starts with `prefix`; zero where /proc is missing.
fn thread_cpu(prefix: &str) -> (f64, f64) {
    let all = stat_ticks(std::path::Path::new("/proc/self/stat")).map_or(0, |(_, t)| t);
    let matching = std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|task| stat_ticks(&task.path().join("stat")))
        .filter(|(name, _)| name.starts_with(prefix))
        .map(|(_, ticks)| ticks)
        .sum::<u64>();
    // Clock ticks are 1/100 s on Linux.
    (all as f64 / 100.0, matching as f64 / 100.0)
}

fn percentile(latencies: &[Duration], p: f64) -> f64 {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn main() {
    let duration = Duration::from_secs(seconds());
    let rounds = rounds();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let calls = calls();
        let Some(stack) =
            Stack::start_wired(Backend::Sqlite, calls, |c| c.log.filter = "error".into()).await
        else {
            return;
        };
        // Errors only, so a failed sign-in says why without the log taking CPU from the load.
        keygraph_kernel::telemetry::init(&stack.config.log, &stack.config.telemetry).expect("log filter");
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let clients = 4 * cores;
        let emails: Vec<String> = (0..clients).map(|i| format!("bench{i}@example.com")).collect();
        for email in &emails {
            stack.register(email).await;
        }
        let token = stack.login(&emails[0]).await.access;

        let wiring = match calls {
            Calls::InProcess => "internal calls in process, as `cargo run`",
            Calls::Http => "internal calls over loopback HTTP",
        };
        println!(
            "sign-in under load ({rounds} rounds of 4 x {} s, {clients} login clients, SQLite, {wiring})",
            duration.as_secs()
        );
        println!("The machine's speed drifts. Each round measures every figure back to back, so the");
        println!("comparisons hold within a round, and the totals pool all rounds. Each baseline");
        println!("brackets what it is compared with: raw verifies run half before and half after the");
        println!("logins, and `me` alone half before and half after `me` under logins.");
        println!();
        println!(
            "| round | raw argon2id /s | logins /s | % of raw | raw CPU per verify ms | hashing CPU per login ms | other CPU per login ms | other share | `me` p99 alone ms | `me` p99 under logins ms | ratio |"
        );
        println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        let (mut raw_total, mut login_total) = (0.0, 0.0);
        let (mut hashing_total, mut other_total) = (0.0, 0.0);
        let (mut idle_all, mut loaded_all) = (Vec::new(), Vec::new());
        let half = duration / 2;
        for round in 1..=rounds {
            let raw_before = tokio::task::block_in_place(|| raw_verify_rate(half));
            let (all_before, hashing_before) = thread_cpu("keygraph-hash");
            let (logins, seconds) = login_load(&stack, &emails, duration).await;
            let login_rate = logins / seconds;
            let (all_after, hashing_after) = thread_cpu("keygraph-hash");
            let raw_after = tokio::task::block_in_place(|| raw_verify_rate(half));
            let raw = (raw_before + raw_after) / 2.0;
            let hashing = hashing_after - hashing_before;
            let other = (all_after - all_before) - hashing;
            let mut idle = probe(&stack, &token, half).await;
            let (loaded, _) =
                tokio::join!(probe(&stack, &token, duration), login_load(&stack, &emails, duration));
            idle.extend(probe(&stack, &token, half).await);
            let (idle_p99, loaded_p99) = (percentile(&idle, 0.99), percentile(&loaded, 0.99));
            println!(
                "| {round} | {raw:.1} | {login_rate:.1} | {:.0}% | {:.2} | {:.2} | {:.2} | {:.1}% | {idle_p99:.2} | {loaded_p99:.2} | {:.2}x |",
                100.0 * login_rate / raw,
                1000.0 * cores as f64 / raw,
                1000.0 * hashing / logins,
                1000.0 * other / logins,
                100.0 * other / (hashing + other).max(f64::EPSILON),
                loaded_p99 / idle_p99.max(f64::EPSILON)
            );
            hashing_total += hashing;
            other_total += other;
            raw_total += raw;
            login_total += login_rate;
            idle_all.extend(idle);
            loaded_all.extend(loaded);
        }
        println!();
        println!(
            "login rate through auth at saturation: {:.1} /s against a raw argon2id verify rate (m=19 MiB, t=2, p=1, one thread per core) of {:.1} /s: {:.0}% (target >= 90%)",
            login_total / rounds as f64,
            raw_total / rounds as f64,
            100.0 * login_total / raw_total
        );
        println!(
            "CPU of the sign-ins, all rounds: {:.1}% hashing, {:.1}% everything else (the load generator included)",
            100.0 * hashing_total / (hashing_total + other_total).max(f64::EPSILON),
            100.0 * other_total / (hashing_total + other_total).max(f64::EPSILON)
        );
        println!("{:<34} {:>9} {:>9} {:>9}", "`me` at identity, all rounds", "requests", "p50 ms", "p99 ms");
        for (label, latencies) in [("alone", &idle_all), ("while logins saturate hashing", &loaded_all)] {
            println!(
                "{label:<34} {:>9} {:>9.2} {:>9.2}",
                latencies.len(),
                percentile(latencies, 0.5),
                percentile(latencies, 0.99)
            );
        }
        println!(
            "p99 under load / p99 alone: {:.2}x (target <= 2x)",
            percentile(&loaded_all, 0.99) / percentile(&idle_all, 0.99).max(f64::EPSILON)
        );
    });
}
