//! Passwords: the acceptance policy (length and common-password check, no composition rules)
//! and argon2id hashing on a bounded number of blocking threads.

use std::{cell::RefCell, sync::Arc, time::Instant};

use argon2::{
    Algorithm, Argon2, Block, Params, PasswordHash, PasswordHasher as _, Version,
    password_hash::{Output, SaltString, rand_core::OsRng},
};
use keygraph_kernel::config::PasswordConfig;
use tokio::sync::{OnceCell, Semaphore};
use tracing::Instrument as _;

/// What a password must satisfy.
#[derive(Debug, Clone)]
pub struct PasswordPolicy {
    pub min_length: usize,
    pub max_length: usize,
}

impl PasswordPolicy {
    pub fn from_config(config: &PasswordConfig) -> Self {
        Self {
            min_length: config.min_length,
            max_length: config.max_length,
        }
    }

    /// Checks length (in characters) and rejects common or easily guessed passwords, also
    /// those built from the user's own email or name (`context`). The error says why.
    pub fn check(&self, password: &str, context: &[&str]) -> Result<(), String> {
        let length = password.chars().count();
        if length < self.min_length {
            return Err(format!(
                "password must be at least {} characters (it has {length})",
                self.min_length
            ));
        }
        if length > self.max_length {
            return Err(format!(
                "password must be at most {} characters",
                self.max_length
            ));
        }
        // zxcvbn's dictionaries hold the most common passwords, words and names; estimates
        // below 10^6 guesses mean the password is on such a list or a trivial variation.
        let estimate = zxcvbn::zxcvbn(password, context);
        if (estimate.score() as u8) < 2 {
            let hint = estimate
                .feedback()
                .and_then(|f| f.warning())
                .map(|w| format!(" ({w})"))
                .unwrap_or_default();
            return Err(format!(
                "password is too common or too easy to guess{hint}; a few unrelated words make a strong one"
            ));
        }
        Ok(())
    }
}

/// Result of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verification {
    pub matches: bool,
    /// The hash was made with other parameters than today's: re-hash on success.
    pub needs_rehash: bool,
}

/// argon2id hashing, never on the async workers: a fixed pool of threads at a low OS
/// priority does it, so it takes the CPU the request handlers leave idle and yields at once
/// when they need it. `concurrency` jobs run at once and as many wait queued; the rest wait
/// their turn.
#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    permits: Arc<Semaphore>,
    pool: Arc<HashingPool>,
    /// A hash of a random password, verified against for unknown accounts so their answer
    /// takes as long as a real check.
    decoy: Arc<OnceCell<String>>,
}

type Job = Box<dyn FnOnce() + Send>;

/// Threads that run password work, each at a lowered priority.
struct HashingPool {
    jobs: std::sync::mpsc::Sender<Job>,
}

/// Gives the calling thread the lowest normal priority (nice 19): it runs on CPU time that
/// request handling leaves idle, yet keeps a small share on a host whose other processes are
/// busy, so sign-ins never starve. On Linux it also gets a long time slice (see
/// [`linux::nice_19_long_slice`]), so that a request handler waking up takes the core from
/// it at once. (Linux's `SCHED_IDLE` class was measured too: it made the stalls of other
/// requests under sign-in load more frequent, not less.)
fn lower_priority() -> Result<(), String> {
    #[cfg(target_os = "linux")]
    match linux::nice_19_long_slice() {
        Ok(()) => return Ok(()),
        Err(err) => {
            tracing::debug!(error = %err, "no long time slice for a hashing thread; nice 19 alone");
        }
    }
    thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min)
        .map_err(|e| format!("{e:?}"))
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod linux {
    use std::time::Duration;

    /// The hashing threads' time slice: longer than the default of every other thread.
    const HASHING_SLICE: Duration = Duration::from_millis(20);

    /// Sets the calling thread to nice 19 with a [`HASHING_SLICE`] time slice, in one
    /// `sched_setattr(2)`.
    ///
    /// Why the slice: Linux's EEVDF scheduler (6.6 and later) lets a thread it has just
    /// picked run out a protected part of its slice: a thread that wakes meanwhile waits for
    /// the next timer tick, up to 4 ms at 250 Hz, unless it asks for a shorter slice than the
    /// running one (6.12 and later). Measured with `perf sched` under the sign-in benchmark,
    /// most stalls of 1 ms or more in request handling were exactly that: a hashing thread
    /// picked in a gap between requests, then a request thread woken behind it. With the
    /// hashing threads' slice longer than the default, every other thread's is shorter, and
    /// its wake-up preempts hashing at once. Kernels without custom slices ignore it.
    pub(super) fn nice_19_long_slice() -> std::io::Result<()> {
        let attr = libc::sched_attr {
            size: std::mem::size_of::<libc::sched_attr>() as u32,
            sched_policy: libc::SCHED_OTHER as u32,
            sched_flags: 0,
            sched_nice: 19,
            sched_priority: 0,
            sched_runtime: HASHING_SLICE.as_nanos() as u64,
            sched_deadline: 0,
            sched_period: 0,
        };
        // SAFETY: sched_setattr(2) only reads `attr.size` bytes through the pointer, which
        // points to a live, fully initialised `sched_attr` of exactly that size; pid 0 is the
        // calling thread and the flags argument must be 0. No memory is written.
        let result = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &raw const attr, 0) };
        if result == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

thread_local! {
    /// argon2's working memory (19 MiB at the default cost), kept by each thread that
    /// verifies passwords: allocating and zeroing it for every check costs about 4% of the
    /// check, and argon2 overwrites every block on its first pass anyway.
    static ARGON2_MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Checks `password` against a PHC string on the calling thread, in the thread's reused
/// argon2 memory; the comparison takes constant time. The raw cost of a password check: the
/// hashing pool runs it, and the sign-in benchmark measures this machine's rate with it.
pub fn verify_blocking(password: &[u8], stored: &PasswordHash<'_>) -> Result<bool, HashingError> {
    let fail = |e: &dyn std::fmt::Display| HashingError(e.to_string());
    let algorithm = Algorithm::try_from(stored.algorithm).map_err(|e| fail(&e))?;
    let version = match stored.version {
        Some(v) => Version::try_from(v).map_err(|e| fail(&e))?,
        None => Version::default(),
    };
    let params = Params::try_from(stored).map_err(|e| fail(&e))?;
    let (Some(salt), Some(expected)) = (stored.salt, stored.hash) else {
        return Err(HashingError(
            "the stored hash has no salt or no output".into(),
        ));
    };
    let mut salt_bytes = [0u8; 64];
    let salt = salt.decode_b64(&mut salt_bytes).map_err(|e| fail(&e))?;
    let mut out = vec![0u8; expected.len()];
    ARGON2_MEMORY.with_borrow_mut(|memory| {
        memory.resize(params.block_count(), Block::new());
        Argon2::new(algorithm, version, params)
            .hash_password_into_with_memory(password, salt, &mut out, &mut memory[..])
            .map_err(|e| fail(&e))
    })?;
    let computed = Output::new(&out).map_err(|e| fail(&e))?;
    // `Output`'s equality is constant-time.
    Ok(computed == expected)
}

impl HashingPool {
    fn start(threads: usize) -> Result<Self, HashingError> {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let queue = Arc::new(std::sync::Mutex::new(queue));
        for n in 0..threads {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("keygraph-hash-{n}"))
                .spawn(move || {
                    let lowered = lower_priority();
                    if let Err(err) = lowered {
                        tracing::warn!(error = %err, "cannot lower the priority of a hashing thread");
                    }
                    loop {
                        let job = match queue.lock() {
                            Ok(queue) => queue.recv(),
                            Err(_) => return,
                        };
                        match job {
                            // A panicking job must not take the thread with it; its caller
                            // sees the dropped result as a failure.
                            Ok(job) => {
                                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                                    tracing::error!("a password job panicked");
                                }
                            }
                            // Every sender is gone: the hasher was dropped.
                            Err(_) => return,
                        }
                    }
                })
                .map_err(|e| HashingError(e.to_string()))?;
        }
        Ok(Self { jobs })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashingError(String);

impl PasswordHasher {
    pub fn from_config(config: &PasswordConfig) -> Result<Self, HashingError> {
        let params = Params::new(config.argon2_memory_kib, config.argon2_iterations, 1, None)
            .map_err(|e| HashingError(e.to_string()))?;
        let concurrency = match config.hashing_concurrency {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        Ok(Self {
            params,
            // One job waiting per thread besides the running one: a thread that finishes
            // starts the next job at once instead of idling until an async task sends it.
            permits: Arc::new(Semaphore::new(2 * concurrency)),
            pool: Arc::new(HashingPool::start(concurrency)?),
            decoy: Arc::new(OnceCell::new()),
        })
    }

    fn argon2(params: Params) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
    }

    /// Runs CPU-heavy password work (hashing, strength estimation) on the hashing pool. Its
    /// wait for a thread and its work there are spans (and histograms) of their own.
    pub async fn run_blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashingError> {
        let metrics = hashing_metrics();
        let queued_at = Instant::now();
        let waiting = tracing::info_span!("password queue");
        metrics.queued.inc();
        let leaves_queue = QueueSlot(&metrics.queued);
        let _permit = self
            .permits
            .acquire()
            .instrument(waiting.clone())
            .await
            .map_err(|e| HashingError(e.to_string()))?;
        let (started, on_thread) = tokio::sync::oneshot::channel();
        let (done, result) = tokio::sync::oneshot::channel();
        self.pool
            .jobs
            .send(Box::new(move || {
                let _ = started.send(Instant::now());
                // The caller may have gone away; then nobody needs the result.
                let _ = done.send(work());
            }))
            .map_err(|_| HashingError("the hashing pool has stopped".into()))?;
        let started_at = on_thread
            .instrument(waiting)
            .await
            .unwrap_or_else(|_| Instant::now());
        drop(leaves_queue);
        metrics.wait.observe(
            started_at
                .saturating_duration_since(queued_at)
                .as_secs_f64(),
        );
        let outcome = result
            .instrument(tracing::info_span!("password hash"))
            .await
            .map_err(|_| HashingError("a hashing job failed".into()));
        metrics.work.observe(started_at.elapsed().as_secs_f64());
        outcome
    }

    /// A PHC string (`$argon2id$v=19$m=…,t=…,p=1$salt$hash`).
    pub async fn hash(&self, password: String) -> Result<String, HashingError> {
        let params = self.params.clone();
        self.run_blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            Self::argon2(params)
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| HashingError(e.to_string()))
        })
        .await?
    }

    /// Checks `password` against `stored`.
    pub async fn verify(
        &self,
        password: String,
        stored: String,
    ) -> Result<Verification, HashingError> {
        let current = self.params.clone();
        self.run_blocking(move || {
            let parsed = PasswordHash::new(&stored).map_err(|e| HashingError(e.to_string()))?;
            let matches = verify_blocking(password.as_bytes(), &parsed)?;
            let stored_params = Params::try_from(&parsed).ok();
            let needs_rehash = parsed.algorithm.as_str() != "argon2id"
                || stored_params.is_none_or(|p| {
                    p.m_cost() != current.m_cost()
                        || p.t_cost() != current.t_cost()
                        || p.p_cost() != current.p_cost()
                });
            Ok(Verification {
                matches,
                needs_rehash,
            })
        })
        .await?
    }

    /// Does the work of [`verify`](Self::verify) for an account that does not exist.
    pub async fn verify_decoy(&self, password: String) -> Result<(), HashingError> {
        let decoy = self
            .decoy
            .get_or_try_init(|| async {
                let random: String = uuid::Uuid::new_v4().simple().to_string();
                self.hash(random).await
            })
            .await?
            .clone();
        self.verify(password, decoy).await.map(|_| ())
    }
}

/// The hashing pool's series (identity's): jobs waiting, their wait and their work.
struct HashingMetrics {
    queued: prometheus_client::metrics::gauge::Gauge,
    wait: prometheus_client::metrics::histogram::Histogram,
    work: prometheus_client::metrics::histogram::Histogram,
}

fn hashing_metrics() -> &'static HashingMetrics {
    static METRICS: std::sync::OnceLock<HashingMetrics> = std::sync::OnceLock::new();
    METRICS.get_or_init(|| {
        let metrics = HashingMetrics {
            queued: Default::default(),
            wait: keygraph_kernel::metrics::latency_histogram(),
            work: keygraph_kernel::metrics::latency_histogram(),
        };
        let service = keygraph_kernel::metrics::Metrics::of("identity");
        service.register(
            "keygraph_password_queue_depth",
            "Password jobs (hashes, checks) waiting for a hashing thread",
            metrics.queued.clone(),
        );
        service.register(
            "keygraph_password_queue_wait_seconds",
            "Time a password job waited for a hashing thread",
            metrics.wait.clone(),
        );
        service.register(
            "keygraph_password_hash_seconds",
            "Time a password job took on its hashing thread",
            metrics.work.clone(),
        );
        metrics
    })
}

/// Takes a job off the queue gauge when it leaves the queue, however it leaves.
struct QueueSlot<'a>(&'a prometheus_client::metrics::gauge::Gauge);

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> PasswordPolicy {
        PasswordPolicy {
            min_length: 8,
            max_length: 128,
        }
    }

    #[test]
    fn length_bounds_in_characters() {
        assert!(
            policy()
                .check("short", &[])
                .expect_err("short")
                .contains("at least 8")
        );
        let long = "x".repeat(129);
        assert!(
            policy()
                .check(&long, &[])
                .expect_err("long")
                .contains("at most 128")
        );
        // Eight characters of multi-byte text count as eight.
        assert!(policy().check("ŵæþŧøœ§ð", &[]).is_ok());
    }

    #[test]
    fn common_passwords_are_rejected_without_composition_rules() {
        for common in [
            "password",
            "password1",
            "12345678",
            "qwertyuiop",
            "iloveyou1",
        ] {
            assert!(
                policy().check(common, &[]).is_err(),
                "{common} must be rejected"
            );
        }
        assert!(
            policy()
                .check("ada@example.com", &["ada@example.com"])
                .is_err()
        );
        // Lowercase words only, no digits or symbols: fine.
        assert!(policy().check("correct horse battery staple", &[]).is_ok());
    }

    #[tokio::test]
    async fn hash_verify_and_rehash_detection() {
        let config = PasswordConfig {
            min_length: 8,
            max_length: 128,
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            hashing_concurrency: 1,
        };
        let hasher = PasswordHasher::from_config(&config).expect("params");
        let hash = hasher.hash("a long passphrase".into()).await.expect("hash");
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        let ok = hasher
            .verify("a long passphrase".into(), hash.clone())
            .await
            .expect("verify");
        assert_eq!(
            ok,
            Verification {
                matches: true,
                needs_rehash: false
            }
        );
        let bad = hasher
            .verify("another".into(), hash.clone())
            .await
            .expect("verify");
        assert!(!bad.matches);

        let stronger = PasswordHasher::from_config(&PasswordConfig {
            argon2_iterations: 3,
            ..config
        })
        .expect("params");
        let old = stronger
            .verify("a long passphrase".into(), hash)
            .await
            .expect("verify");
        assert_eq!(
            old,
            Verification {
                matches: true,
                needs_rehash: true
            }
        );
        hasher.verify_decoy("anything".into()).await.expect("decoy");
    }
}
