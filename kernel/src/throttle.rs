//! Password guesses slow down, with a delay that doubles after a few free attempts.
//!
//! Sign-in ([`Throttle::sign_in`]) counts per account from one client address, and per
//! client address:
//!
//! - Attempts in flight count like failures, so a burst is throttled before any of its
//!   attempts finishes.
//! - The account is counted per address: one address's failures never delay sign-ins from
//!   another, so whoever guesses at a user's password cannot lock the user out. The per
//!   account delay is capped low, the per address one high.
//! - Per address, more attempts are free (`address_free_attempts`), so many people signing in
//!   at once from one address (an office, a NAT) are not slowed.
//! - A success clears the account's failures from that address.
//!
//! A signed-in user's current password ([`Throttle::current_password`], `changePassword`)
//! is counted per account from any address: whoever holds a stolen access token must not
//! guess at its user's password faster than at sign-in, from however many addresses.
//!
//! Second-factor codes at sign-in and step-up ([`Throttle::second_factor`]) are counted per
//! account from any address, with the long per-address delay cap (a six-digit code has far
//! fewer guesses to go through than a password), and per address together with sign-ins.
//!
//! The counters are [`Counters`]: in Redis when configured (shared by every auth replica), in
//! memory otherwise.

use std::{net::IpAddr, sync::Arc, time::Duration};

use crate::config::ThrottleConfig;
use crate::counters::{Counters, Ending, Tally, Unavailable, unix_ms};
use sha2::{Digest, Sha256};

/// How long an attempt that never ends (its process died) counts as in flight.
const STALE_AFTER: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct Throttle {
    config: ThrottleConfig,
    counters: Arc<Counters>,
    checks: Checks,
}

/// What is guessed at, which says what is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Checks {
    /// Sign-in: the account from this address, and the address.
    SignIn,
    /// A signed-in user's current password: the account, from any address.
    CurrentPassword,
    /// A second factor's code: the account from any address, and the address.
    SecondFactor,
}

/// Why an attempt may not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Too many attempts: wait this many seconds.
    Wait(u64),
    /// The shared counters do not answer (and are configured to refuse meanwhile).
    Unavailable,
}

/// A sign-in attempt in progress. Report how it ended with [`Attempt::finish`]; dropped
/// without that (say the credential check could not be made) it counts as neither.
pub struct Attempt {
    throttle: Throttle,
    keys: Vec<String>,
    id: String,
    finished: bool,
}

impl Throttle {
    /// Sign-in attempts, per account from one address and per address.
    pub fn sign_in(config: ThrottleConfig, counters: Arc<Counters>) -> Self {
        Self {
            config,
            counters,
            checks: Checks::SignIn,
        }
    }

    /// Checks of a signed-in user's current password, per account from any address (free
    /// attempts and the delay cap are the per-account ones of sign-in).
    pub fn current_password(config: ThrottleConfig, counters: Arc<Counters>) -> Self {
        Self {
            config,
            counters,
            checks: Checks::CurrentPassword,
        }
    }

    /// Second-factor codes, per account from any address (the per-address delay cap) and per
    /// address (shared with sign-in).
    pub fn second_factor(config: ThrottleConfig, counters: Arc<Counters>) -> Self {
        Self {
            config,
            counters,
            checks: Checks::SecondFactor,
        }
    }

    fn delay(&self, count: u32, free: u32, cap: u64) -> Duration {
        if count < free {
            return Duration::ZERO;
        }
        let doublings = (count - free).min(20);
        Duration::from_secs(
            self.config
                .base_delay_secs
                .saturating_mul(1 << doublings)
                .min(cap),
        )
    }

    /// When a key's next attempt may start, in Unix milliseconds: other attempts in flight
    /// count as failures happening now.
    fn ready_at(&self, tally: Tally, now: u64, free: u32, cap: u64) -> u64 {
        let others = tally.in_flight.saturating_sub(1);
        let count = tally.failures.saturating_add(others);
        let since = if others > 0 {
            now
        } else {
            tally.last_failure_ms
        };
        since + self.delay(count, free, cap).as_millis() as u64
    }

    /// The counted keys: the account first (a success clears it), then for sign-in the
    /// address. The account is hashed: no email address is written to Redis.
    fn keys(&self, account: &str, address: Option<IpAddr>) -> Vec<String> {
        let digest = Sha256::digest(account.as_bytes());
        let account: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        let address = address.map_or_else(|| "unknown".to_owned(), |a| a.to_string());
        match self.checks {
            Checks::SignIn => vec![
                format!("login:account:{account}:from:{address}"),
                format!("login:address:{address}"),
            ],
            Checks::CurrentPassword => vec![format!("password:account:{account}")],
            Checks::SecondFactor => vec![
                format!("factor:account:{account}"),
                format!("login:address:{address}"),
            ],
        }
    }

    /// Starts an attempt, or says why not.
    pub async fn begin(&self, account: &str, address: Option<IpAddr>) -> Result<Attempt, Refused> {
        let keys = self.keys(account, address);
        let id = uuid::Uuid::new_v4().simple().to_string();
        let window = Duration::from_secs(self.config.window_secs);
        let tallies = self
            .counters
            .start_attempt(&keys, &id, window, STALE_AFTER)
            .await
            .map_err(|Unavailable| Refused::Unavailable)?;
        let mut attempt = Attempt {
            throttle: self.clone(),
            keys,
            id,
            finished: false,
        };
        let now = unix_ms();
        let config = &self.config;
        let account_cap = match self.checks {
            Checks::SecondFactor => config.max_address_delay_secs,
            Checks::SignIn | Checks::CurrentPassword => config.max_account_delay_secs,
        };
        let account_ready = tallies.first().map_or(0, |t| {
            self.ready_at(*t, now, config.free_attempts, account_cap)
        });
        let address_ready = tallies.get(1).map_or(0, |t| {
            self.ready_at(
                *t,
                now,
                config.address_free_attempts,
                config.max_address_delay_secs,
            )
        });
        let ready = account_ready.max(address_ready);
        if ready > now {
            // It leaves the in-flight counts and counts as nothing.
            attempt.finished = true;
            attempt.end(Ending::Abandoned).await;
            return Err(Refused::Wait((ready - now).div_ceil(1000).max(1)));
        }
        Ok(attempt)
    }
}

impl Attempt {
    /// Records the outcome: a failure counts against the account from this address and
    /// against the address; a success clears the account's failures from this address.
    pub async fn finish(mut self, succeeded: bool) {
        self.finished = true;
        let ending = if succeeded {
            Ending::Succeeded { clear: 1 }
        } else {
            Ending::Failed
        };
        self.end(ending).await;
    }

    async fn end(&self, ending: Ending) {
        let window = Duration::from_secs(self.throttle.config.window_secs);
        self.throttle
            .counters
            .end_attempt(&self.keys, &self.id, ending, window)
            .await;
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let (throttle, keys, id) = (
            self.throttle.clone(),
            std::mem::take(&mut self.keys),
            std::mem::take(&mut self.id),
        );
        let window = Duration::from_secs(throttle.config.window_secs);
        // Outside a runtime nothing can be awaited; the attempt then expires by itself.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                throttle
                    .counters
                    .end_attempt(&keys, &id, Ending::Abandoned, window)
                    .await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> Throttle {
        Throttle::sign_in(
            ThrottleConfig {
                free_attempts: 3,
                address_free_attempts: 6,
                base_delay_secs: 2,
                max_account_delay_secs: 30,
                max_address_delay_secs: 900,
                window_secs: 900,
            },
            Arc::new(Counters::in_memory()),
        )
    }

    fn ip(text: &str) -> Option<IpAddr> {
        text.parse().ok()
    }

    async fn fail(t: &Throttle, account: &str, address: &str) {
        t.begin(account, ip(address))
            .await
            .map_err(|_| ())
            .expect("free")
            .finish(false)
            .await;
    }

    #[tokio::test]
    async fn free_failures_then_progressive_waits() {
        let t = throttle();
        for _ in 0..3 {
            fail(&t, "a@example.com", "10.0.0.1").await;
        }
        let refused = t.begin("a@example.com", ip("10.0.0.1")).await.err();
        assert!(matches!(refused, Some(Refused::Wait(1..=2))), "{refused:?}");
        fail(&t, "b@example.com", "10.0.0.1").await;
    }

    #[tokio::test]
    async fn one_addresss_failures_never_delay_another_address() {
        let t = throttle();
        for _ in 0..3 {
            fail(&t, "owner@example.com", "10.0.0.66").await;
        }
        assert!(t.begin("owner@example.com", ip("10.0.0.66")).await.is_err());
        t.begin("owner@example.com", ip("10.0.0.7"))
            .await
            .map_err(|_| ())
            .expect("the owner, elsewhere, signs in at once")
            .finish(true)
            .await;
    }

    #[tokio::test]
    async fn a_burst_is_throttled_before_it_finishes() {
        let t = throttle();
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(
                t.begin("c@example.com", ip("10.0.0.2"))
                    .await
                    .map_err(|_| ())
                    .expect("free"),
            );
        }
        assert!(
            t.begin("c@example.com", ip("10.0.0.2")).await.is_err(),
            "in-flight attempts count against the account"
        );
        // Per address as well: different accounts, one address.
        for i in 0..3 {
            held.push(
                t.begin(&format!("d{i}@example.com"), ip("10.0.0.2"))
                    .await
                    .map_err(|_| ())
                    .expect("within the address's free attempts"),
            );
        }
        assert!(
            t.begin("e@example.com", ip("10.0.0.2")).await.is_err(),
            "in-flight attempts count against the address"
        );
        for attempt in held {
            attempt.finish(true).await;
        }
        assert!(
            t.begin("e@example.com", ip("10.0.0.2")).await.is_ok(),
            "finished successes count as nothing against the address"
        );
    }

    #[tokio::test]
    async fn successes_from_one_address_are_not_throttled() {
        let t = throttle();
        for i in 0..50 {
            t.begin(&format!("user{i}@example.com"), ip("10.0.0.9"))
                .await
                .map_err(|_| ())
                .expect("no throttling for successes")
                .finish(true)
                .await;
        }
    }

    #[tokio::test]
    async fn account_delay_is_capped_and_success_clears_it() {
        let t = throttle();
        assert_eq!(t.delay(40, 3, 30), Duration::from_secs(30));
        assert_eq!(t.delay(3, 3, 30), Duration::from_secs(2));
        assert_eq!(t.delay(4, 3, 30), Duration::from_secs(4));
        for _ in 0..2 {
            fail(&t, "f@example.com", "10.0.0.3").await;
        }
        t.begin("f@example.com", ip("10.0.0.3"))
            .await
            .map_err(|_| ())
            .expect("third")
            .finish(true)
            .await;
        for _ in 0..3 {
            fail(&t, "f@example.com", "10.0.0.3").await;
        }
        // Three failures since the success, not five.
        assert!(matches!(
            t.begin("f@example.com", ip("10.0.0.3")).await.err(),
            Some(Refused::Wait(1..=2))
        ));
    }

    #[tokio::test]
    async fn current_password_checks_count_per_account_from_every_address() {
        let config = throttle().config;
        let t = Throttle::current_password(config, Arc::new(Counters::in_memory()));
        for address in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
            fail(&t, "user-1", address).await;
        }
        assert!(
            matches!(
                t.begin("user-1", ip("10.0.0.4")).await.err(),
                Some(Refused::Wait(1..=2))
            ),
            "a fourth address is slowed by the others' failures"
        );
        fail(&t, "user-2", "10.0.0.4").await;
    }
}
