//! Pins what `keygraph_kernel::batching` relies on in async-graphql's executor: while it
//! resolves one level of a query it polls the request future until every resolver of the
//! level has asked its DataLoader for a key, and only a poll after that asks for nothing.
//! If an async-graphql upgrade changes how it polls, a level's keys split over several batches
//! (more SQL statements) or a batch waits for `MAX_WAIT` (slower answers), and these tests
//! say which.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_graphql::{
    ComplexObject, Context, EmptyMutation, EmptySubscription, Object, Request, Schema,
    SimpleObject,
    dataloader::{DataLoader, Loader},
};
use keygraph_kernel::batching::PollFence;

/// Every batch a loader was asked to load: (loader, number of keys).
type Batches = Arc<Mutex<Vec<(&'static str, usize)>>>;

struct Recording {
    name: &'static str,
    batches: Batches,
}

impl Loader<u32> for Recording {
    type Value = Vec<u32>;
    type Error = String;

    async fn load(&self, keys: &[u32]) -> Result<HashMap<u32, Self::Value>, Self::Error> {
        self.batches
            .lock()
            .map_err(|_| "poisoned".to_owned())?
            .push((self.name, keys.len()));
        // Each key has three children, like a user's roles or a role's permissions.
        Ok(keys
            .iter()
            .map(|&k| (k, (0..3).map(|i| k * 10 + i).collect()))
            .collect())
    }
}

/// The per-request loaders, as a subgraph builds them (see authz's `Loaders`).
struct Loaders {
    fence: PollFence,
    children: DataLoader<Recording>,
    grandchildren: DataLoader<Recording>,
}

impl Loaders {
    fn new(fence: &PollFence, batches: &Batches) -> Self {
        let loader = |name| {
            DataLoader::new(
                Recording {
                    name,
                    batches: batches.clone(),
                },
                fence.spawner(),
            )
            .delay(Duration::ZERO)
        };
        Self {
            fence: fence.clone(),
            children: loader("children"),
            grandchildren: loader("grandchildren"),
        }
    }

    async fn load(&self, loader: &DataLoader<Recording>, key: u32) -> Vec<u32> {
        self.fence.note_key();
        loader
            .load_one(key)
            .await
            .ok()
            .flatten()
            .unwrap_or_default()
    }
}

#[derive(SimpleObject)]
#[graphql(complex)]
struct Item {
    id: u32,
}

#[ComplexObject]
impl Item {
    async fn children(&self, ctx: &Context<'_>) -> Vec<Child> {
        let loaders = ctx.data_unchecked::<Loaders>();
        let ids = loaders.load(&loaders.children, self.id).await;
        ids.into_iter().map(|id| Child { id }).collect()
    }
}

#[derive(SimpleObject)]
#[graphql(complex)]
struct Child {
    id: u32,
}

#[ComplexObject]
impl Child {
    async fn grandchildren(&self, ctx: &Context<'_>) -> Vec<u32> {
        let loaders = ctx.data_unchecked::<Loaders>();
        loaders.load(&loaders.grandchildren, self.id).await
    }
}

struct Query;

#[Object]
impl Query {
    async fn items(&self, #[graphql(default)] from: u32, count: u32) -> Vec<Item> {
        (from..from + count).map(|id| Item { id }).collect()
    }
}

/// Runs `query` as a subgraph does: fresh loaders, the request future guarded by the fence.
async fn run(query: &str) -> (Vec<(&'static str, usize)>, u64) {
    let schema = Schema::new(Query, EmptyMutation, EmptySubscription);
    let batches = Batches::default();
    let fence = PollFence::new();
    let request = Request::new(query).data(Loaders::new(&fence, &batches));
    let response = fence.guard(schema.execute(request)).await;
    assert!(response.errors.is_empty(), "{:?}", response.errors);
    let batches = batches.lock().expect("batches").clone();
    (batches, fence.batches_timed_out())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_level_of_a_query_is_one_batch_started_without_waiting() {
    // 200 items: well past the number of resolvers async-graphql polls before it yields.
    let (batches, timed_out) =
        run("{ items(count: 200) { id children { id grandchildren } } }").await;
    assert_eq!(
        batches,
        vec![("children", 200), ("grandchildren", 600)],
        "async-graphql no longer asks for a whole level's keys before a quiet poll: batches split"
    );
    assert_eq!(
        timed_out, 0,
        "a batch started only after MAX_WAIT: async-graphql stopped polling the request while \
         its level was incomplete"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliased_fields_of_one_level_share_its_batch() {
    let (batches, timed_out) =
        run("{ a: items(count: 30) { children { id } } b: items(from: 100, count: 20) { children { id } } }")
            .await;
    let keys: usize = batches.iter().map(|(_, n)| n).sum();
    assert_eq!(keys, 50, "every key loaded once: {batches:?}");
    assert_eq!(
        batches.len(),
        1,
        "both lists' children in one batch: {batches:?}"
    );
    assert_eq!(timed_out, 0);
}
