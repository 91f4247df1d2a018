//! In-flight deduplication: requests with the same key at the same moment share one run of
//! the work and all get its (cloned) result. The entry lives while someone waits for it: the
//! last waiter to finish or go away removes it, so a later request runs anew and nothing is
//! kept that nobody asked for.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};

struct Entry<V> {
    id: u64,
    future: Shared<BoxFuture<'static, V>>,
    waiters: usize,
}

pub struct Inflight<K, V> {
    entries: Mutex<HashMap<K, Entry<V>>>,
    next_id: AtomicU64,
}

impl<K, V> Default for Inflight<K, V> {
    fn default() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        }
    }
}

impl<K, V> Inflight<K, V>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// The result of the work in flight under `key`, or of `work` started now. The work
    /// goes on while anyone waits for it (it stops when all have gone away).
    pub async fn run<F>(&self, key: K, work: impl FnOnce() -> F) -> V
    where
        F: Future<Output = V> + Send + 'static,
    {
        let (future, lease) = {
            let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
            match entries.get_mut(&key) {
                Some(entry) => {
                    entry.waiters += 1;
                    (entry.future.clone(), entry.id)
                }
                None => {
                    let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                    let future = work().boxed().shared();
                    entries.insert(
                        key.clone(),
                        Entry {
                            id,
                            future: future.clone(),
                            waiters: 1,
                        },
                    );
                    (future, id)
                }
            }
        };
        let _lease = Lease {
            inflight: self,
            key: Some(key),
            id: lease,
        };
        future.await
    }

    /// Keys in flight now.
    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One waiter's hold on an entry.
struct Lease<'i, K: Hash + Eq, V> {
    inflight: &'i Inflight<K, V>,
    key: Option<K>,
    id: u64,
}

impl<K: Hash + Eq, V> Drop for Lease<'_, K, V> {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else {
            return;
        };
        let mut entries = self
            .inflight
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = entries.get_mut(&key)
            && entry.id == self.id
        {
            entry.waiters -= 1;
            if entry.waiters == 0 {
                entries.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    #[tokio::test]
    async fn requests_at_the_same_moment_share_one_run_and_later_ones_run_anew() {
        let inflight: Arc<Inflight<&str, usize>> = Arc::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let work = |runs: Arc<AtomicUsize>| async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            runs.fetch_add(1, Ordering::SeqCst) + 1
        };
        let results =
            futures::future::join_all((0..5).map(|_| inflight.run("a", || work(runs.clone()))))
                .await;
        assert_eq!(results, [1, 1, 1, 1, 1]);
        assert!(inflight.is_empty());
        assert_eq!(inflight.run("a", || work(runs.clone())).await, 2);
        // Another key is other work.
        let (a, b) = tokio::join!(
            inflight.run("a", || work(runs.clone())),
            inflight.run("b", || work(runs.clone()))
        );
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn work_nobody_waits_for_stops_and_leaves_nothing_behind() {
        let inflight: Arc<Inflight<&str, ()>> = Arc::default();
        let finished = Arc::new(AtomicUsize::new(0));
        let done = finished.clone();
        let waiting = inflight.run("a", move || async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            done.fetch_add(1, Ordering::SeqCst);
        });
        assert!(
            tokio::time::timeout(Duration::from_millis(20), waiting)
                .await
                .is_err()
        );
        assert!(inflight.is_empty());
        assert_eq!(finished.load(Ordering::SeqCst), 0);
    }
}
