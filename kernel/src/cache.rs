//! A bounded map for per-operation work (the router's plans and document checks, the
//! subgraphs' parsed documents), keyed by [`operation_key`]. Backed by quick_cache: against
//! the first-in-first-out map it replaces it takes half the instructions per hit and keeps
//! more hits when a scan of one-off operations passes through (docs/benchmarks.md).

use std::sync::Arc;

use sha2::{Digest as _, Sha256};

/// SHA-256 of an operation name and document: the same text asks for the same work.
pub type OperationKey = [u8; 32];

/// The key of a document and operation name. The hashed input is framed so that no two pairs
/// share it: a tag says whether there is a name, the name comes with its length, and the
/// document, last, takes the rest. (A plain separator would not do: a client can put it in
/// either part, and make one operation's key another's.)
pub fn operation_key(query: &str, operation_name: Option<&str>) -> OperationKey {
    let mut hasher = Sha256::new();
    match operation_name {
        None => hasher.update([0]),
        Some(name) => {
            hasher.update([1]);
            hasher.update((name.len() as u64).to_le_bytes());
            hasher.update(name.as_bytes());
        }
    }
    hasher.update(query.as_bytes());
    hasher.finalize().into()
}

/// A concurrent map holding at most its capacity (quick_cache's S3-FIFO-like eviction: an
/// entry asked for again is kept over one-off entries, so a scan of new operations does not
/// push out the ones clients send all the time).
pub struct BoundedCache<V> {
    entries: quick_cache::sync::Cache<OperationKey, Arc<V>>,
}

impl<V> BoundedCache<V> {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: quick_cache::sync::Cache::new(capacity),
        }
    }

    pub fn get(&self, key: &OperationKey) -> Option<Arc<V>> {
        self.entries.get(key)
    }

    pub fn insert(&self, key: OperationKey, value: Arc<V>) {
        self.entries.insert(key, value);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_within_its_size() {
        let cache = BoundedCache::new(3);
        for i in 0..10u8 {
            cache.insert([i; 32], Arc::new(i));
            assert!(cache.len() <= 3);
        }
        assert_eq!(cache.get(&[9; 32]).as_deref(), Some(&9));
    }

    #[test]
    fn an_operation_asked_for_again_outlives_a_scan_of_new_ones() {
        let cache = BoundedCache::new(100);
        let hot = [255u8; 32];
        cache.insert(hot, Arc::new(0u32));
        for i in 0..5_000u32 {
            assert!(
                cache.get(&hot).is_some(),
                "evicted after {i} one-off operations"
            );
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&i.to_le_bytes());
            cache.insert(key, Arc::new(i));
        }
    }

    #[test]
    fn the_key_tells_operation_names_apart() {
        let query = "query A { a } query B { b }";
        assert_ne!(
            operation_key(query, Some("A")),
            operation_key(query, Some("B"))
        );
        assert_eq!(
            operation_key(query, Some("A")),
            operation_key(query, Some("A"))
        );
        assert_ne!(operation_key("b", Some("a")), operation_key("ab", None));
        assert_ne!(operation_key("q", Some("")), operation_key("q", None));
    }

    #[test]
    fn no_name_and_document_share_the_key_of_another_pair() {
        // With "name \0 document" hashed, these two had one key: a query (that fails to
        // validate, so only its check is cached) and a mutation hidden in a comment.
        let query_first = operation_key(" { y }", Some("A\0mutation A { x } #"));
        let mutation = operation_key("mutation A { x } #\0 { y }", Some("A"));
        assert_ne!(query_first, mutation);
        assert_ne!(
            operation_key("\0b", Some("a")),
            operation_key("b", Some("a\0"))
        );
    }
}
