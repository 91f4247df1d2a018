//! Failed sign-ins slow down, per account and per client address, with a delay that doubles
//! after a few free attempts. The per-account delay is capped low (an attacker failing on
//! purpose can make a real user wait at most that long); the per-address cap is high.
//! An attempt counts as failed from the moment it starts, so many attempts at once (aliases
//! in one request) are throttled too; a success clears the account's count.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

use keygraph_kernel::config::ThrottleConfig;

#[derive(Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

pub struct LoginThrottle {
    config: ThrottleConfig,
    accounts: Mutex<HashMap<String, Failures>>,
    addresses: Mutex<HashMap<IpAddr, Failures>>,
}

/// An attempt in progress; report its outcome with [`LoginThrottle::succeeded`].
pub struct Attempt {
    account: String,
}

/// Entries kept before old ones are swept.
const SWEEP_ABOVE: usize = 10_000;

impl LoginThrottle {
    pub fn new(config: ThrottleConfig) -> Self {
        Self {
            config,
            accounts: Mutex::default(),
            addresses: Mutex::default(),
        }
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

    /// How long until `entry` may try again, if it must wait.
    fn wait(&self, entry: Option<&Failures>, cap: u64, now: Instant) -> Option<Duration> {
        let entry = entry?;
        let ready = entry.last + self.delay(entry.count, cap);
        (ready > now).then(|| ready - now)
    }

    fn forget_old<K: std::hash::Hash + Eq>(&self, map: &mut HashMap<K, Failures>, now: Instant) {
        let window = Duration::from_secs(self.config.window_secs);
        if map.len() > SWEEP_ABOVE {
            map.retain(|_, f| now.duration_since(f.last) < window);
        }
    }

    /// Starts an attempt, or says how many seconds to wait.
    pub fn begin(&self, account: &str, address: Option<IpAddr>) -> Result<Attempt, u64> {
        let now = Instant::now();
        let window = Duration::from_secs(self.config.window_secs);
        let mut accounts = self
            .accounts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut addresses = self
            .addresses
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.forget_old(&mut accounts, now);
        self.forget_old(&mut addresses, now);
        for map in [&mut *accounts] {
            if map
                .get(account)
                .is_some_and(|f| now.duration_since(f.last) >= window)
            {
                map.remove(account);
            }
        }
        if let Some(address) = address
            && addresses
                .get(&address)
                .is_some_and(|f| now.duration_since(f.last) >= window)
        {
            addresses.remove(&address);
        }
        let account_wait = self.wait(
            accounts.get(account),
            self.config.max_account_delay_secs,
            now,
        );
        let address_wait = address
            .and_then(|a| self.wait(addresses.get(&a), self.config.max_address_delay_secs, now));
        if let Some(wait) = account_wait.into_iter().chain(address_wait).max() {
            return Err(wait.as_secs_f64().ceil().max(1.0) as u64);
        }
        let bump = |f: &mut Failures| {
            f.count = f.count.saturating_add(1);
            f.last = now;
        };
        bump(accounts.entry(account.to_owned()).or_insert(Failures {
            count: 0,
            last: now,
        }));
        if let Some(address) = address {
            bump(addresses.entry(address).or_insert(Failures {
                count: 0,
                last: now,
            }));
        }
        Ok(Attempt {
            account: account.to_owned(),
        })
    }

    /// The attempt succeeded: the account's failures are forgotten. The address keeps its
    /// count, so one valid account does not unlock guessing at others from that address.
    pub fn succeeded(&self, attempt: Attempt) {
        self.accounts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&attempt.account);
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

    #[test]
    fn free_attempts_then_progressive_waits() {
        let t = throttle();
        let addr: IpAddr = "127.0.0.1".parse().expect("ip");
        for _ in 0..3 {
            t.begin("a@example.com", Some(addr))
                .map(|_| ())
                .expect("free attempt");
        }
        let wait = t
            .begin("a@example.com", Some(addr))
            .map(|_| ())
            .expect_err("throttled");
        assert!((1..=2).contains(&wait), "{wait}");
        // Another account from another address is unaffected.
        t.begin("b@example.com", Some("127.0.0.2".parse().expect("ip")))
            .map(|_| ())
            .expect("independent");
    }

    #[test]
    fn account_delay_is_capped_and_success_clears_it() {
        let t = throttle();
        assert_eq!(t.delay(40, 30), Duration::from_secs(30));
        assert_eq!(t.delay(3, 30), Duration::from_secs(2));
        assert_eq!(t.delay(4, 30), Duration::from_secs(4));
        let attempt = t
            .begin("c@example.com", None)
            .map_err(|_| ())
            .expect("first");
        t.succeeded(attempt);
        assert!(
            t.accounts
                .lock()
                .expect("lock")
                .get("c@example.com")
                .is_none()
        );
    }
}
