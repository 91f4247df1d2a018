//! A per-key sliding-window limiter kept in memory (per process).

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
    time::{Duration, Instant},
};

/// Allows `max` events per key within any `window`.
pub struct SlidingWindowLimiter {
    max: usize,
    window: Duration,
    events: Mutex<HashMap<String, VecDeque<Instant>>>,
}

/// Keys kept before stale ones are swept.
const SWEEP_ABOVE: usize = 10_000;

impl SlidingWindowLimiter {
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            max: max as usize,
            window,
            events: Mutex::new(HashMap::new()),
        }
    }

    /// Records an event for `key` if allowed; otherwise returns how long until one is.
    pub fn try_acquire(&self, key: &str) -> Result<(), Duration> {
        self.try_acquire_within(key, self.max, self.window)
    }

    /// [`SlidingWindowLimiter::try_acquire`] with a limit and window of the caller's (one
    /// limiter serving keys of several limits; the window must be the same for a key).
    pub fn try_acquire_within(
        &self,
        key: &str,
        max: usize,
        window: Duration,
    ) -> Result<(), Duration> {
        let now = Instant::now();
        let mut events = self
            .events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if events.len() > SWEEP_ABOVE {
            events.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < window)
            });
        }
        let times = events.entry(key.to_owned()).or_default();
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            times.pop_front();
        }
        if times.len() >= max {
            let oldest = times.front().copied().unwrap_or(now);
            return Err(window.saturating_sub(now.duration_since(oldest)));
        }
        times.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_key_and_reports_wait() {
        let limiter = SlidingWindowLimiter::new(2, Duration::from_secs(60));
        assert!(limiter.try_acquire("a").is_ok());
        assert!(limiter.try_acquire("a").is_ok());
        let wait = limiter
            .try_acquire("a")
            .expect_err("third within the window");
        assert!(wait > Duration::from_secs(58) && wait <= Duration::from_secs(60));
        assert!(
            limiter.try_acquire("b").is_ok(),
            "other keys are independent"
        );
    }
}
