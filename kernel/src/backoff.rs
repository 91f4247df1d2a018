//! The one retry schedule of every service: a delay that doubles with each failure in a row,
//! up to a limit. The outbox relay, the wait for the database at start-up, identity's
//! hand-overs (whose attempts are stored with the call) and the router's first supergraph
//! all use it. A retry crate (backon) was weighed: it retries one future, while two of these
//! count failures across batches or keep them in the database, so the schedule is the part
//! they share.

use std::time::Duration;

/// The pause after `failures` failures in a row: `base * 2^(failures-1)`, at most `max`,
/// scaled by `jitter` (0.5 to 1, or 1 for none) so replicas that failed together do not
/// retry together.
pub fn backoff(failures: u64, base: Duration, max: Duration, jitter: f64) -> Duration {
    let exponent = u32::try_from(failures.saturating_sub(1))
        .unwrap_or(u32::MAX)
        .min(20);
    let full = base.saturating_mul(1u32 << exponent).min(max);
    full.mul_f64(jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_limit_and_jitters_down() {
        let base = Duration::from_millis(500);
        let max = Duration::from_secs(60);
        assert_eq!(backoff(1, base, max, 1.0), Duration::from_millis(500));
        assert_eq!(backoff(2, base, max, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(4, base, max, 1.0), Duration::from_secs(4));
        assert_eq!(backoff(30, base, max, 1.0), max);
        assert_eq!(backoff(u64::MAX, base, max, 1.0), max);
        assert_eq!(backoff(2, base, max, 0.5), Duration::from_millis(500));
    }
}
