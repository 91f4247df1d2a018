//! The operation cache (`kernel/src/cache.rs`, on quick_cache) against the first-in-first-out
//! map it replaced, kept here as the reference:
//! - `cargo bench -p keygraph-kernel --bench cache` prints both hit ratios on a workload of
//!   200 operations clients repeat, interleaved with 5000 one-off ones, through a cache of 500;
//! - `… --bench cache -- hits ours` / `hits fifo` runs 200 000 hits and nothing else, for
//!   `valgrind --tool=callgrind` to count instructions (see docs/benchmarks.md).

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, PoisonError},
};

use keygraph_kernel::cache::{BoundedCache, OperationKey, operation_key};

/// Entries and their insertion order.
type Entries<V> = (HashMap<OperationKey, Arc<V>>, VecDeque<OperationKey>);

/// The reference: a mutex around a map and its insertion order; the oldest entry goes first.
struct Fifo<V> {
    capacity: usize,
    entries: Mutex<Entries<V>>,
}

impl<V> Fifo<V> {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: Mutex::new((HashMap::new(), VecDeque::new())),
        }
    }

    fn get(&self, key: &OperationKey) -> Option<Arc<V>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.0.get(key).cloned()
    }

    fn insert(&self, key: OperationKey, value: Arc<V>) {
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
}

fn keys(prefix: &str, n: u32) -> Vec<OperationKey> {
    (0..n)
        .map(|i| operation_key(&format!("query {prefix}{i} {{ me {{ id }} }}"), None))
        .collect()
}

/// Hits only: the cache is filled once, then asked for each key `rounds` times.
fn hits(which: &str) -> u64 {
    let keys = keys("Q", 1000);
    let rounds = 200;
    let mut found = 0;
    match which {
        "ours" => {
            let cache = BoundedCache::new(1000);
            keys.iter().for_each(|k| cache.insert(*k, Arc::new(())));
            for _ in 0..rounds {
                found += keys.iter().filter(|k| cache.get(k).is_some()).count() as u64;
            }
        }
        _ => {
            let cache = Fifo::new(1000);
            keys.iter().for_each(|k| cache.insert(*k, Arc::new(())));
            for _ in 0..rounds {
                found += keys.iter().filter(|k| cache.get(k).is_some()).count() as u64;
            }
        }
    }
    found
}

fn hit_ratios() {
    let (hot, once) = (keys("Hot", 200), keys("Once", 5000));
    let ours = BoundedCache::new(500);
    let fifo = Fifo::new(500);
    let (mut ours_hits, mut fifo_hits, mut asked) = (0u32, 0u32, 0u32);
    for (i, one_off) in once.iter().enumerate() {
        for key in [hot[i % 200], hot[(i * 7) % 200], *one_off] {
            asked += 1;
            match ours.get(&key) {
                Some(_) => ours_hits += 1,
                None => ours.insert(key, Arc::new(())),
            }
            match fifo.get(&key) {
                Some(_) => fifo_hits += 1,
                None => fifo.insert(key, Arc::new(())),
            }
        }
    }
    let ratio = |hits: u32| f64::from(hits) / f64::from(asked);
    println!(
        "hit ratio: ours {:.3}, fifo {:.3} ({asked} look-ups, cache of 500)",
        ratio(ours_hits),
        ratio(fifo_hits)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().position(|a| a == "hits") {
        Some(at) => {
            let which = args.get(at + 1).map_or("ours", String::as_str);
            println!("{which}: {} hits", hits(which));
        }
        None => hit_ratios(),
    }
}
