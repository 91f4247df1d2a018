//! Sign-in under load, in one run: the raw argon2id verify rate of this machine; the login
//! rate through the auth subgraph at saturation (identity verifies the password, authz gives
//! the claims); and p50/p99 of a cheap authenticated query (`me` at identity) alone and while
//! the logins saturate hashing.
//!
//!     cargo bench -p keygraph-auth --bench login [-- --seconds 5]

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
use common::{PASSWORD, Stack};
use keygraph_identity::password::verify_blocking;
use keygraph_kernel::testing::Backend;

fn seconds() -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}

/// Verifies per second with one thread per core and the check identity's hashing pool runs,
/// on nothing else: the machine's ceiling for sign-ins.
fn raw_verify_rate(duration: Duration) -> f64 {
    let params = Params::new(19_456, 2, 1, None).expect("params");
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let salt = SaltString::encode_b64(b"benchmark-salt!!").expect("salt");
    let hash = argon
        .hash_password(PASSWORD.as_bytes(), &salt)
        .expect("hash")
        .to_string();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let count = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let count = count.clone();
            let hash = hash.clone();
            std::thread::spawn(move || {
                let parsed = PasswordHash::new(&hash).expect("parse");
                while started.elapsed() < duration {
                    assert!(verify_blocking(PASSWORD.as_bytes(), &parsed).expect("verifies"));
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("worker");
    }
    count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
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

/// Signs in with every client in a loop for `duration`; returns sign-ins per second.
async fn login_load(stack: &Stack, emails: &[String], duration: Duration) -> f64 {
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
    logins.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn percentile(latencies: &[Duration], p: f64) -> f64 {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn main() {
    let duration = Duration::from_secs(seconds());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let raw = raw_verify_rate(duration);
    runtime.block_on(async move {
        let Some(stack) = Stack::start_with(Backend::Sqlite, |c| c.log.filter = "error".into()).await else {
            return;
        };
        let clients = 4 * std::thread::available_parallelism().map_or(2, |n| n.get());
        let emails: Vec<String> = (0..clients).map(|i| format!("bench{i}@example.com")).collect();
        for email in &emails {
            stack.register(email).await;
        }
        let token = stack.login(&emails[0]).await.access;
        let idle = probe(&stack, &token, duration).await;
        let login_rate = login_load(&stack, &emails, duration).await;
        let (loaded, _) = tokio::join!(probe(&stack, &token, duration), login_load(&stack, &emails, duration));

        println!("sign-in under load ({} s per phase, {clients} login clients, SQLite)", duration.as_secs());
        println!("raw argon2id verify rate (m=19 MiB, t=2, p=1, one thread per core): {raw:>8.1} /s");
        println!(
            "login rate through auth at saturation:                              {login_rate:>8.1} /s ({:.0}% of raw; target >= 90%)",
            100.0 * login_rate / raw
        );
        println!("{:<34} {:>9} {:>9} {:>9}", "`me` at identity", "requests", "p50 ms", "p99 ms");
        for (label, latencies) in [("alone", &idle), ("while logins saturate hashing", &loaded)] {
            println!(
                "{label:<34} {:>9} {:>9.2} {:>9.2}",
                latencies.len(),
                percentile(latencies, 0.5),
                percentile(latencies, 0.99)
            );
        }
        println!(
            "p99 under load / p99 alone: {:.2}x (target <= 2x)",
            percentile(&loaded, 0.99) / percentile(&idle, 0.99).max(f64::EPSILON)
        );
    });
}
