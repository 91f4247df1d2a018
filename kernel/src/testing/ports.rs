//! Loopback ports for a process a test starts, which binds them itself.
//!
//! A port found by binding port 0 and letting go comes from the kernel's ephemeral range, the
//! same range every outgoing connection (to Postgres, to Redis, between services) takes its
//! local port from. Between the moment the test lets go and the moment the started process
//! binds, another test's connection can take it, and the process dies with "Address already
//! in use". So ports come from below that range, where the kernel hands nothing out on its
//! own, each number once per test process, starting at an offset of the process id so that
//! test binaries run side by side (nextest) start far apart. A number some listener already
//! holds is skipped.

use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};

/// Linux's default ephemeral range, when `/proc` does not say.
const DEFAULT_EPHEMERAL: (u16, u16) = (32768, 60999);
/// Nothing below this: well-known and registered service ports (Postgres, Redis, NATS …).
const LOWEST: u16 = 10000;

/// A loopback port that no listener holds and that no outgoing connection will be given.
pub fn free_port() -> std::io::Result<u16> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let (low, high) = pick_range(ephemeral_range());
    let span = u32::from(high - low) + 1;
    let start = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = low + u16::try_from((start + n) % span).unwrap_or(0);
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!("every loopback port from {low} to {high} is taken"),
    ))
}

/// The kernel's ephemeral range, from `/proc/sys/net/ipv4/ip_local_port_range`.
pub fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut numbers = text.split_whitespace().map(str::parse::<u16>);
            Some((numbers.next()?.ok()?, numbers.next()?.ok()?))
        })
        .unwrap_or(DEFAULT_EPHEMERAL)
}

/// The ports to hand out for the given ephemeral range: below it when there is room, else
/// above it.
fn pick_range((low, high): (u16, u16)) -> (u16, u16) {
    if low > LOWEST + 1000 {
        (LOWEST, low - 1)
    } else {
        (high.saturating_add(1).max(LOWEST), u16::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_come_from_outside_the_ephemeral_range_and_never_twice() {
        let (low, high) = ephemeral_range();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let port = free_port().expect("a port");
            assert!(
                !(low..=high).contains(&port),
                "{port} is in the ephemeral range {low}-{high}, where an outgoing connection can take it"
            );
            assert!(port >= LOWEST, "{port} is below {LOWEST}");
            assert!(seen.insert(port), "{port} was handed out twice");
        }
    }

    #[test]
    fn a_range_reaching_down_low_hands_out_ports_above_it() {
        assert_eq!(pick_range((32768, 60999)), (10000, 32767));
        assert_eq!(pick_range((1024, 50000)), (50001, 65535));
    }
}
