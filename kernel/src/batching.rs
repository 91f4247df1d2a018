//! Deterministic DataLoader batches. The executor polls a query level's resolvers over one
//! or more polls of the request future (it yields every few resolvers), and each resolver
//! asks its loader for a key on its first poll. A [`PollFence`] watches the request future:
//! a poll in which no resolver asked for a key means every resolver that was going to has
//! asked, so [`PollFence::spawner`] starts the batch then. The batch holds the whole level,
//! with no timed wait and whatever the load on the machine; a cap bounds the wait should the
//! request stop being polled.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use crate::telemetry::InThisService as _;
use futures::future::BoxFuture;
use tokio::sync::watch;
use tracing::Instrument as _;

/// Longest a batch waits for the level to be complete.
pub const MAX_WAIT: Duration = Duration::from_millis(50);

/// Watches the polls of one request's future.
#[derive(Clone, Default)]
pub struct PollFence(Arc<FenceState>);

struct FenceState {
    /// Keys asked for so far.
    keys: AtomicU64,
    /// Polls that ended without a key being asked for.
    quiet_polls: watch::Sender<u64>,
    /// Batches started by [`MAX_WAIT`] rather than by a quiet poll.
    timed_out: AtomicU64,
}

impl Default for FenceState {
    fn default() -> Self {
        Self {
            keys: AtomicU64::new(0),
            quiet_polls: watch::channel(0).0,
            timed_out: AtomicU64::new(0),
        }
    }
}

impl PollFence {
    pub fn new() -> Self {
        Self::default()
    }

    /// Call before each `load_one`/`load_many` of a loader using [`PollFence::spawner`].
    pub fn note_key(&self) {
        self.0.keys.fetch_add(1, Ordering::SeqCst);
    }

    /// Wraps the request's future so its polls are watched.
    pub fn guard<F: Future>(&self, future: F) -> Fenced<F> {
        Fenced {
            inner: Box::pin(future),
            fence: self.clone(),
        }
    }

    /// Batches of this request that started because [`MAX_WAIT`] passed, not because the
    /// level was complete: nonzero means the executor stopped polling as this module expects
    /// (`kernel/tests/batching.rs` pins that against async-graphql).
    pub fn batches_timed_out(&self) -> u64 {
        self.0.timed_out.load(Ordering::SeqCst)
    }

    /// A DataLoader spawner: the batch starts after the next quiet poll of the request.
    pub fn spawner(&self) -> impl Fn(BoxFuture<'static, ()>) + Send + Sync + 'static {
        let fence = self.clone();
        move |batch| {
            let fence = fence.clone();
            let mut quiet = fence.0.quiet_polls.subscribe();
            let seen = *quiet.borrow();
            // The batch belongs to the request (and the resolver) that asked first.
            tokio::spawn(
                async move {
                    // Timing out (or the request being gone) just starts the batch now.
                    let timed_out = tokio::time::timeout(MAX_WAIT, quiet.wait_for(|n| *n > seen))
                        .await
                        .is_err();
                    if timed_out {
                        fence.0.timed_out.fetch_add(1, Ordering::SeqCst);
                        tracing::debug!("a DataLoader batch started after the longest wait");
                    }
                    batch.await;
                }
                .in_current_span()
                .in_this_service(),
            );
        }
    }
}

/// A future whose polls a [`PollFence`] watches.
pub struct Fenced<F: Future> {
    inner: Pin<Box<F>>,
    fence: PollFence,
}

impl<F: Future> Future for Fenced<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let keys_before = self.fence.0.keys.load(Ordering::SeqCst);
        let result = self.inner.as_mut().poll(cx);
        if self.fence.0.keys.load(Ordering::SeqCst) == keys_before {
            self.fence.0.quiet_polls.send_modify(|n| *n += 1);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Keys asked for over several polls (as the executor does) land in one batch.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_waits_until_a_poll_asks_for_nothing() {
        let fence = PollFence::new();
        let spawn = fence.spawner();
        let keys = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = tokio::sync::oneshot::channel::<usize>();
        let request = {
            let keys = keys.clone();
            let fence = fence.clone();
            async move {
                let batch_keys = keys.clone();
                spawn(Box::pin(async move {
                    let _ = tx.send(batch_keys.lock().map(|k| k.len()).unwrap_or_default());
                }));
                for key in 0..5 {
                    fence.note_key();
                    keys.lock().expect("keys").push(key);
                    // Yield as the executor does between resolvers.
                    tokio::task::yield_now().await;
                    std::thread::sleep(Duration::from_millis(2));
                }
                rx.await.expect("batch ran")
            }
        };
        assert_eq!(fence.guard(request).await, 5);
    }
}
