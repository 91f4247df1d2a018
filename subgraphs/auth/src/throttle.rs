//! Failed sign-ins slow down, per account and per client address, with a delay that doubles
//! after a few free attempts. The per-account delay is capped low (an attacker failing on
//! purpose can make a real user wait at most that long); the per-address cap is high.
//!
//! Per account, attempts still in flight count like failures, so a burst of attempts at one
//! account is throttled before any of them finishes. Per address only finished failures
//! count, so many people signing in successfully from one address (an office, a NAT) are not
//! slowed. A success clears the account's failures.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use keygraph_kernel::config::ThrottleConfig;

#[derive(Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

#[derive(Default)]
struct Counters {
    accounts: HashMap<String, Failures>,
    in_flight: HashMap<String, u32>,
    addresses: HashMap<IpAddr, Failures>,
}

#[derive(Clone)]
pub struct LoginThrottle {
    config: ThrottleConfig,
    counters: Arc<Mutex<Counters>>,
}

/// A sign-in attempt in progress. Report how it ended with [`Attempt::finish`]; dropped
/// without that (say the credential check could not be made) it counts as neither.
pub struct Attempt {
    throttle: LoginThrottle,
    account: String,
    address: Option<IpAddr>,
    finished: bool,
}

/// Entries kept before stale ones are swept.
const SWEEP_ABOVE: usize = 10_000;

impl LoginThrottle {
    pub fn new(config: ThrottleConfig) -> Self {
        Self {
            config,
            counters: Arc::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Counters> {
        self.counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn delay(&self, count: u32, cap: u64) -> Duration {
        if count < self.config.free_attempts {
            return Duration::ZERO;
        }
        let doublings = (count - self.config.free_attempts).min(20);
        Duration::from_secs(
            self.config
                .base_delay_secs
                .saturating_mul(1 << doublings)
                .min(cap),
        )
    }

    /// Starts an attempt, or says how many seconds to wait.
    pub fn begin(&self, account: &str, address: Option<IpAddr>) -> Result<Attempt, u64> {
        let now = Instant::now();
        let window = Duration::from_secs(self.config.window_secs);
        let mut counters = self.lock();
        let fresh = |f: &Failures| now.duration_since(f.last) < window;
        if counters.accounts.len() > SWEEP_ABOVE {
            counters.accounts.retain(|_, f| fresh(f));
        }
        if counters.addresses.len() > SWEEP_ABOVE {
            counters.addresses.retain(|_, f| fresh(f));
        }
        let failures = counters.accounts.get(account).filter(|f| fresh(f)).copied();
        let in_flight = counters.in_flight.get(account).copied().unwrap_or(0);
        let account_count = failures.map_or(0, |f| f.count) + in_flight;
        let account_since = if in_flight > 0 {
            now
        } else {
            failures.map_or(now, |f| f.last)
        };
        let account_ready =
            account_since + self.delay(account_count, self.config.max_account_delay_secs);
        let address_ready = address
            .and_then(|a| counters.addresses.get(&a).filter(|f| fresh(f)).copied())
            .map(|f| f.last + self.delay(f.count, self.config.max_address_delay_secs));
        let ready = address_ready.map_or(account_ready, |a| a.max(account_ready));
        if ready > now {
            return Err((ready - now).as_secs_f64().ceil().max(1.0) as u64);
        }
        *counters.in_flight.entry(account.to_owned()).or_default() += 1;
        Ok(Attempt {
            throttle: self.clone(),
            account: account.to_owned(),
            address,
            finished: false,
        })
    }
}

impl Attempt {
    /// Records the outcome: a failure counts against the account and the address; a success
    /// clears the account's failures.
    pub fn finish(mut self, succeeded: bool) {
        self.finished = true;
        let now = Instant::now();
        let mut counters = self.throttle.lock();
        release(&mut counters, &self.account);
        if succeeded {
            counters.accounts.remove(&self.account);
            return;
        }
        let bump = |f: &mut Failures| {
            f.count = f.count.saturating_add(1);
            f.last = now;
        };
        bump(
            counters
                .accounts
                .entry(self.account.clone())
                .or_insert(Failures {
                    count: 0,
                    last: now,
                }),
        );
        if let Some(address) = self.address {
            bump(counters.addresses.entry(address).or_insert(Failures {
                count: 0,
                last: now,
            }));
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.finished {
            release(&mut self.throttle.lock(), &self.account);
        }
    }
}

fn release(counters: &mut Counters, account: &str) {
    if let Some(n) = counters.in_flight.get_mut(account) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            counters.in_flight.remove(account);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> LoginThrottle {
        LoginThrottle::new(ThrottleConfig {
            free_attempts: 3,
            base_delay_secs: 2,
            max_account_delay_secs: 30,
            max_address_delay_secs: 900,
            window_secs: 900,
        })
    }

    fn ip(text: &str) -> Option<IpAddr> {
        text.parse().ok()
    }

    #[test]
    fn free_failures_then_progressive_waits() {
        let t = throttle();
        for _ in 0..3 {
            t.begin("a@example.com", ip("10.0.0.1"))
                .map_err(|_| ())
                .expect("free")
                .finish(false);
        }
        let wait = t
            .begin("a@example.com", ip("10.0.0.2"))
            .map(|_| ())
            .expect_err("throttled");
        assert!((1..=2).contains(&wait), "{wait}");
        t.begin("b@example.com", ip("10.0.0.3"))
            .map_err(|_| ())
            .expect("independent")
            .finish(false);
    }

    #[test]
    fn a_burst_at_one_account_is_throttled_before_it_finishes() {
        let t = throttle();
        let held: Vec<Attempt> = (0..3)
            .map(|_| {
                t.begin("c@example.com", None)
                    .map_err(|_| ())
                    .expect("free")
            })
            .collect();
        assert!(
            t.begin("c@example.com", None).is_err(),
            "in-flight attempts count"
        );
        drop(held);
        assert!(
            t.begin("c@example.com", None).is_ok(),
            "unfinished attempts count as neither"
        );
    }

    #[test]
    fn successes_from_one_address_are_not_throttled() {
        let t = throttle();
        for i in 0..50 {
            t.begin(&format!("user{i}@example.com"), ip("10.0.0.9"))
                .map_err(|_| ())
                .expect("no throttling for successes")
                .finish(true);
        }
    }

    #[test]
    fn account_delay_is_capped_and_success_clears_it() {
        let t = throttle();
        assert_eq!(t.delay(40, 30), Duration::from_secs(30));
        assert_eq!(t.delay(3, 30), Duration::from_secs(2));
        assert_eq!(t.delay(4, 30), Duration::from_secs(4));
        t.begin("d@example.com", None)
            .map_err(|_| ())
            .expect("first")
            .finish(false);
        t.begin("d@example.com", None)
            .map_err(|_| ())
            .expect("second")
            .finish(true);
        assert!(!t.lock().accounts.contains_key("d@example.com"));
    }
}
