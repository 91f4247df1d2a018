//! Settings of the running process.

/// Keeps this process on small (4 KiB) pages: transparent huge pages off, unless the operator
/// asked mimalloc for them (`MIMALLOC_ALLOW_THP` set).
///
/// mimalloc asks the kernel for huge pages on its arenas, so on hosts with THP in `madvise`
/// mode (most distributions) every 2 MiB region a thread touches is resident whole. The
/// services' heaps are small and short-lived (a router request lives in well under a MiB), so
/// that doubled the router's resident memory under load (52 → 25 MB, 99 → 54 MB in the
/// federated benchmark) and bought no speed measurable on it. It applies to pages touched from
/// now on; call it first thing.
pub fn prefer_small_pages() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return;
    }
    #[cfg(target_os = "linux")]
    if let Err(err) = nix::sys::prctl::set_thp_disable(true) {
        // Only memory is at stake, and a process keeps going on what the kernel gives it.
        tracing::debug!(%err, "transparent huge pages stay allowed");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn huge_pages_are_turned_off_unless_asked_for() {
        let asked = std::env::var_os("MIMALLOC_ALLOW_THP").is_some();
        super::prefer_small_pages();
        assert_eq!(nix::sys::prctl::get_thp_disable().ok(), Some(!asked));
    }
}
