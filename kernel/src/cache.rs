//! A bounded map for per-operation work (the router's plans and document checks, the
//! subgraphs' parsed documents), keyed by [`operation_key`]; the oldest entry goes first
//! when full.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, PoisonError},
};

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

/// Entries and their insertion order.
type Entries<V> = (HashMap<OperationKey, Arc<V>>, VecDeque<OperationKey>);

pub struct BoundedCache<V> {
    capacity: usize,
    entries: Mutex<Entries<V>>,
}

impl<V> BoundedCache<V> {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: Mutex::new((HashMap::new(), VecDeque::new())),
        }
    }

    pub fn get(&self, key: &OperationKey) -> Option<Arc<V>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.0.get(key).cloned()
    }

    pub fn insert(&self, key: OperationKey, value: Arc<V>) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let (map, order) = &mut *entries;
        if map.insert(key, value).is_none() {
            order.push_back(key);
            while map.len() > self.capacity {
                let Some(oldest) = order.pop_front() else {
                    break;
                };
                map.remove(&oldest);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_within_its_size_and_drops_the_oldest() {
        let cache = BoundedCache::new(3);
        for i in 0..10u8 {
            cache.insert([i; 32], Arc::new(i));
            assert!(cache.len() <= 3);
        }
        assert!(cache.get(&[0; 32]).is_none());
        assert_eq!(cache.get(&[9; 32]).as_deref(), Some(&9));
        assert_eq!(cache.get(&[7; 32]).as_deref(), Some(&7));
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
