//! Counters that replicas share: the router's rate limits and auth's sign-in throttle.
//!
//! With `redis.url` set they live in Redis, each decision one atomic Lua script (Redis's own
//! clock, keys that expire by themselves), so every replica counts against the same numbers.
//! Without it they live in this process's memory (the embedded default needs no Redis).
//!
//! A Redis command that fails or takes longer than `redis.timeout_ms` makes Redis count as
//! unavailable for [`RETRY_AFTER`]; meanwhile no request waits for it and
//! `redis.when_unavailable` decides: `local` counts in this process's memory (each replica on
//! its own), `allow` applies no limit, `refuse` refuses what needs a counter. Every decision
//! taken without Redis is counted ([`Counters::unavailable_total`]); the outage and the
//! recovery are logged once each.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionManager;

use crate::config::{RedisConfig, WhenUnavailable};
use crate::ratelimit::SlidingWindowLimiter;

/// How long Redis is left alone after it failed, before it is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Keys kept in memory before stale ones are swept.
const SWEEP_ABOVE: usize = 10_000;

/// Counting was refused: Redis does not answer and `redis.when_unavailable` is `refuse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the shared counters (Redis) do not answer")]
pub struct Unavailable;

/// What one key's attempts add up to, this attempt included in `in_flight`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Failures within the window.
    pub failures: u32,
    /// When the last of them was, in Unix milliseconds (0: none).
    pub last_failure_ms: u64,
    /// Attempts started and not finished, this one included.
    pub in_flight: u32,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// It could not be judged (say a dependency failed): it counts as nothing.
    Abandoned,
    /// It failed: every key's failures grow by one.
    Failed,
    /// It succeeded: the failures of the first `clear` keys are forgotten.
    Succeeded { clear: usize },
}

/// Counters in Redis, or in memory.
pub struct Counters {
    redis: Option<Shared>,
    when_unavailable: WhenUnavailable,
    local: Local,
    unavailable: AtomicU64,
}

struct Shared {
    connection: ConnectionManager,
    prefix: String,
    timeout: Duration,
    /// Unix milliseconds until which Redis is not tried (after a failure).
    resting_until: AtomicU64,
    /// Whether an outage is going on (to log its start and end once).
    down: AtomicBool,
}

struct Local {
    /// Each call gives its own limit and window.
    windows: SlidingWindowLimiter,
    attempts: Mutex<Attempts>,
}

impl Default for Local {
    fn default() -> Self {
        Self {
            windows: SlidingWindowLimiter::new(0, Duration::ZERO),
            attempts: Mutex::default(),
        }
    }
}

#[derive(Default)]
struct Attempts {
    failures: HashMap<String, (u32, u64)>,
    in_flight: HashMap<String, HashMap<String, u64>>,
}

/// A sliding window: drop events older than the window, refuse at `max`, else add one.
/// Answers -1 when allowed, or the milliseconds until the oldest event leaves the window.
const HIT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(0, tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', KEYS[1], now, now .. ':' .. ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return -1
";

/// Starts an attempt: KEYS are (failures hash, in-flight set) pairs; ARGV the attempt's id and
/// how long an unfinished attempt stays in flight (a crashed process's attempts expire).
/// Answers count, last failure and in-flight count per pair.
const START: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local stale = tonumber(ARGV[2])
local out = {}
for i = 1, #KEYS, 2 do
  local f = redis.call('HMGET', KEYS[i], 'count', 'last')
  redis.call('ZREMRANGEBYSCORE', KEYS[i + 1], '-inf', now - stale)
  redis.call('ZADD', KEYS[i + 1], now, ARGV[1])
  redis.call('PEXPIRE', KEYS[i + 1], stale)
  out[#out + 1] = tonumber(f[1]) or 0
  out[#out + 1] = tonumber(f[2]) or 0
  out[#out + 1] = redis.call('ZCARD', KEYS[i + 1])
end
return out
";

/// Ends an attempt: ARGV its id, `failed` / `succeeded` / `abandoned`, the failure window in
/// milliseconds, and how many leading pairs a success clears.
const END: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 1, #KEYS, 2 do
  redis.call('ZREM', KEYS[i + 1], ARGV[1])
  if ARGV[2] == 'failed' then
    redis.call('HINCRBY', KEYS[i], 'count', 1)
    redis.call('HSET', KEYS[i], 'last', now)
    redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[3]))
  elseif ARGV[2] == 'succeeded' and (i + 1) / 2 <= tonumber(ARGV[4]) then
    redis.call('DEL', KEYS[i])
  end
end
return 1
";

// The scripts, hashed once (Redis runs them by hash, loading them on first use).
static HIT_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(HIT));
static START_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(START));
static END_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(END));

impl Counters {
    /// Counters in this process's memory.
    pub fn in_memory() -> Self {
        Self {
            redis: None,
            when_unavailable: WhenUnavailable::Local,
            local: Local::default(),
            unavailable: AtomicU64::new(0),
        }
    }

    /// Counters in Redis when `redis.url` is set (connected on first use, so a Redis that is
    /// down at start-up delays nothing), in memory otherwise.
    pub fn from_config(config: &RedisConfig) -> Result<Self, String> {
        let Some(url) = &config.url else {
            return Ok(Self::in_memory());
        };
        let client = redis::Client::open(url.as_str()).map_err(|e| format!("redis.url: {e}"))?;
        let timeout = Duration::from_millis(config.timeout_ms);
        let manager = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(RETRY_AFTER);
        let connection = ConnectionManager::new_lazy_with_config(client, manager)
            .map_err(|e| format!("redis.url: {e}"))?;
        Ok(Self {
            redis: Some(Shared {
                connection,
                prefix: config.key_prefix.clone(),
                timeout,
                resting_until: AtomicU64::new(0),
                down: AtomicBool::new(false),
            }),
            when_unavailable: config.when_unavailable,
            local: Local::default(),
            unavailable: AtomicU64::new(0),
        })
    }

    /// Whether the counters are in Redis (shared by replicas).
    pub fn is_shared(&self) -> bool {
        self.redis.is_some()
    }

    /// Decisions taken without Redis since start (it failed, or was resting after a failure).
    pub fn unavailable_total(&self) -> u64 {
        self.unavailable.load(Ordering::Relaxed)
    }

    /// Counts one event for `key` if fewer than `max` happened within `window`; otherwise
    /// says how long until one may.
    pub async fn hit(
        &self,
        key: &str,
        max: u32,
        window: Duration,
    ) -> Result<Result<(), Duration>, Unavailable> {
        let local = || {
            Ok(self
                .local
                .windows
                .try_acquire_within(key, max as usize, window))
        };
        let Some(shared) = &self.redis else {
            return local();
        };
        let mut invocation = HIT_SCRIPT.key(shared.key(key));
        invocation
            .arg(window.as_millis() as u64)
            .arg(max)
            .arg(uuid::Uuid::new_v4().simple().to_string());
        match shared.run::<i64>(&invocation).await {
            Ok(wait) if wait < 0 => Ok(Ok(())),
            Ok(wait) => Ok(Err(Duration::from_millis(wait as u64))),
            Err(()) => match self.fall_back() {
                WhenUnavailable::Local => local(),
                WhenUnavailable::Allow => Ok(Ok(())),
                WhenUnavailable::Refuse => Err(Unavailable),
            },
        }
    }

    /// Starts attempt `id` on every key: it counts as in flight on each (until it ends, or
    /// for `stale` at most) and the tallies, this attempt included, are returned in order.
    /// Failures older than `window` are forgotten.
    pub async fn start_attempt(
        &self,
        keys: &[String],
        id: &str,
        window: Duration,
        stale: Duration,
    ) -> Result<Vec<Tally>, Unavailable> {
        let local = || Ok(self.local.start(keys, id, window, stale));
        let Some(shared) = &self.redis else {
            return local();
        };
        let mut invocation = START_SCRIPT.prepare_invoke();
        shared.pair_keys(&mut invocation, keys);
        invocation.arg(id).arg(stale.as_millis() as u64);
        match shared.run::<Vec<u64>>(&invocation).await {
            Ok(numbers) if numbers.len() == keys.len() * 3 => Ok(numbers
                .chunks_exact(3)
                .map(|n| Tally {
                    failures: u32::try_from(n[0]).unwrap_or(u32::MAX),
                    last_failure_ms: n[1],
                    in_flight: u32::try_from(n[2]).unwrap_or(u32::MAX),
                })
                .collect()),
            Ok(_) | Err(()) => match self.fall_back() {
                WhenUnavailable::Local => local(),
                WhenUnavailable::Allow => Ok(vec![
                    Tally {
                        in_flight: 1,
                        ..Tally::default()
                    };
                    keys.len()
                ]),
                WhenUnavailable::Refuse => Err(Unavailable),
            },
        }
    }

    /// Ends attempt `id` on every key it started on.
    pub async fn end_attempt(&self, keys: &[String], id: &str, ending: Ending, window: Duration) {
        // It may have started in memory, during an outage.
        self.local.end(keys, id, ending);
        let Some(shared) = &self.redis else {
            return;
        };
        let mut invocation = END_SCRIPT.prepare_invoke();
        shared.pair_keys(&mut invocation, keys);
        let (outcome, clear) = match ending {
            Ending::Abandoned => ("abandoned", 0),
            Ending::Failed => ("failed", 0),
            Ending::Succeeded { clear } => ("succeeded", clear),
        };
        invocation
            .arg(id)
            .arg(outcome)
            .arg(window.as_millis() as u64)
            .arg(clear);
        if shared.run::<i64>(&invocation).await.is_err() {
            // Nothing to decide: the count is lost (and the attempt expires from the set).
            self.unavailable.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn fall_back(&self) -> WhenUnavailable {
        self.unavailable.fetch_add(1, Ordering::Relaxed);
        self.when_unavailable
    }
}

impl Shared {
    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn pair_keys(&self, invocation: &mut redis::ScriptInvocation<'_>, keys: &[String]) {
        for key in keys {
            invocation
                .key(self.key(&format!("{key}:failures")))
                .key(self.key(&format!("{key}:in-flight")));
        }
    }

    /// Runs a script within the timeout, unless Redis is resting after a failure.
    async fn run<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, ()> {
        if unix_ms() < self.resting_until.load(Ordering::Relaxed) {
            return Err(());
        }
        let mut connection = self.connection.clone();
        let result = tokio::time::timeout(self.timeout, invocation.invoke_async(&mut connection))
            .await
            .map_err(|_| format!("no answer within {} ms", self.timeout.as_millis()))
            .and_then(|answer| answer.map_err(|e| e.to_string()));
        match result {
            Ok(value) => {
                if self.down.swap(false, Ordering::Relaxed) {
                    tracing::info!("Redis answers again: limits are shared again");
                }
                Ok(value)
            }
            Err(error) => {
                self.resting_until.store(
                    unix_ms() + RETRY_AFTER.as_millis() as u64,
                    Ordering::Relaxed,
                );
                if !self.down.swap(true, Ordering::Relaxed) {
                    tracing::warn!(%error, "Redis is unavailable: limits and throttles follow redis.when_unavailable until it answers");
                }
                Err(())
            }
        }
    }
}

impl Local {
    fn lock(&self) -> MutexGuard<'_, Attempts> {
        self.attempts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn start(&self, keys: &[String], id: &str, window: Duration, stale: Duration) -> Vec<Tally> {
        let now = unix_ms();
        let window = window.as_millis() as u64;
        let stale = stale.as_millis() as u64;
        let mut attempts = self.lock();
        if attempts.failures.len() > SWEEP_ABOVE {
            attempts
                .failures
                .retain(|_, (_, last)| now.saturating_sub(*last) < window);
        }
        if attempts.in_flight.len() > SWEEP_ABOVE {
            attempts.in_flight.retain(|_, ids| {
                ids.retain(|_, started| now.saturating_sub(*started) < stale);
                !ids.is_empty()
            });
        }
        keys.iter()
            .map(|key| {
                let (failures, last_failure_ms) = attempts
                    .failures
                    .get(key)
                    .copied()
                    .filter(|(_, last)| now.saturating_sub(*last) < window)
                    .unwrap_or_default();
                let ids = attempts.in_flight.entry(key.clone()).or_default();
                ids.retain(|_, started| now.saturating_sub(*started) < stale);
                ids.insert(id.to_owned(), now);
                Tally {
                    failures,
                    last_failure_ms,
                    in_flight: u32::try_from(ids.len()).unwrap_or(u32::MAX),
                }
            })
            .collect()
    }

    fn end(&self, keys: &[String], id: &str, ending: Ending) {
        let now = unix_ms();
        let mut attempts = self.lock();
        for (i, key) in keys.iter().enumerate() {
            // Only an attempt that started here ends here (one counted in Redis did not).
            let Some(ids) = attempts.in_flight.get_mut(key) else {
                continue;
            };
            if ids.remove(id).is_none() {
                continue;
            }
            if ids.is_empty() {
                attempts.in_flight.remove(key);
            }
            match ending {
                Ending::Failed => {
                    let entry = attempts.failures.entry(key.clone()).or_insert((0, now));
                    entry.0 = entry.0.saturating_add(1);
                    entry.1 = now;
                }
                Ending::Succeeded { clear } if i < clear => {
                    attempts.failures.remove(key);
                }
                Ending::Succeeded { .. } | Ending::Abandoned => {}
            }
        }
    }
}

/// The time now in Unix milliseconds.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Default for Counters {
    fn default() -> Self {
        Self::in_memory()
    }
}
