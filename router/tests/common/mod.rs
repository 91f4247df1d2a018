//! Test subgraphs (not Keygraph's domain ones) and a router composed over them, all served
//! over loopback HTTP: accounts, products, inventory and reviews, the classic federation demo
//! shapes — entity chains, `@requires`, `@provides`, unions, interfaces, scopes.
//!
//! Each subgraph's schema has a file of its own, `serving` serves one; this module starts the
//! four and the router in front of them.
#![allow(dead_code)]

mod accounts;
mod inventory;
mod products;
mod reviews;
mod serving;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use keygraph_kernel::config::SubgraphEndpoint;
use keygraph_kernel::testing::{Answer, TestServer, TestSigner, test_config};
use keygraph_router::edge::routes;
use keygraph_router::health::readiness;
use keygraph_router::reload::keep_supergraph_current;
use keygraph_router::server::RouterState;
use serde_json::{Value, json};

// The schemas and modes keep the paths they had before this module was split; as with dead
// code above, not every test binary names every one of them.
#[allow(unused_imports)]
pub use accounts::{AccountsQuery, User};
#[allow(unused_imports)]
pub use inventory::{InventoryProduct, InventoryQuery};
#[allow(unused_imports)]
pub use products::{
    Book, ClashingUser, Media, Movie, Product, ProductsQuery, ProductsQueryBroken, ProductsQueryV2,
    Titled,
};
#[allow(unused_imports)]
pub use reviews::{Review, ReviewMovie, ReviewProduct, ReviewUser, ReviewsQuery};
use serving::serve;
#[allow(unused_imports)]
pub use serving::{FAILING, HANGING, SLOW, Subgraph, UP};

/// Four test subgraphs and the router in front of them.
pub struct Federation {
    pub router: TestServer,
    pub state: Arc<RouterState>,
    pub subgraphs: BTreeMap<&'static str, Subgraph>,
    pub signer: TestSigner,
    _data: tempfile::TempDir,
}

/// The four test subgraphs, each on its own loopback port.
pub async fn start_subgraphs() -> BTreeMap<&'static str, Subgraph> {
    let mut subgraphs = BTreeMap::new();
    subgraphs.insert("accounts", serve(AccountsQuery).await);
    subgraphs.insert("products", serve(ProductsQuery).await);
    subgraphs.insert("inventory", serve(InventoryQuery).await);
    subgraphs.insert("reviews", serve(ReviewsQuery).await);
    subgraphs
}

impl Federation {
    pub async fn start() -> Self {
        Self::start_polling(0).await
    }

    /// Like [`Federation::start`], the router polling subgraph schemas every `secs` seconds.
    pub async fn start_polling(secs: u64) -> Self {
        Self::start_with(|config| config.router.poll_interval_secs = secs).await
    }

    /// Like [`Federation::start`], with the router's config changed by `configure`.
    pub async fn start_with(configure: impl FnOnce(&mut keygraph_kernel::config::Config)) -> Self {
        let subgraphs = start_subgraphs().await;
        let data = tempfile::tempdir().expect("tempdir");
        let signer = TestSigner::default();
        let mut config = test_config(data.path(), &signer);
        config.tokens.revocations_url = None;
        config.router.subgraphs = subgraphs
            .iter()
            .map(|(name, s)| {
                (
                    (*name).to_owned(),
                    SubgraphEndpoint {
                        url: s.url.clone(),
                        timeout_secs: 1,
                    },
                )
            })
            .collect();
        config.router.poll_interval_secs = 0;
        configure(&mut config);
        let verifier =
            keygraph_kernel::token::TokenVerifier::from_config(&config.tokens).expect("verifier");
        let state = RouterState::new(
            config.router.clone(),
            keygraph_router::server::Edge {
                verifier: Some(verifier),
                internal_token: Some(keygraph_kernel::internal::InternalToken::new(
                    keygraph_kernel::testing::INTERNAL_TOKEN,
                )),
                address_proof: Some(keygraph_kernel::address::AddressProof::new(
                    keygraph_kernel::testing::INTERNAL_TOKEN,
                )),
                counters: Default::default(),
            },
        )
        .expect("router state");
        let (trigger, shutdown) = TestServer::shutdown_pair();
        tokio::spawn(keep_supergraph_current(state.clone(), shutdown.clone()));
        let router = TestServer::start(
            "router",
            routes(state.clone()),
            &config,
            readiness(state.clone()),
            (trigger, shutdown),
        )
        .await;
        for _ in 0..100 {
            if state.graph().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if state.graph().is_none() {
            let why = match state.fetch_subgraph_sdls().await {
                Err(e) => e,
                Ok(sdls) => match keygraph_router::supergraph::compose(&sdls) {
                    Err(e) => format!(
                        "{e}\n{}",
                        sdls.iter()
                            .map(|s| format!("# {}\n{}", s.name, s.sdl))
                            .collect::<Vec<_>>()
                            .join("\n")
                    ),
                    Ok((sdl, _)) => state.install(sdl).err().unwrap_or_default(),
                },
            };
            panic!("the router composed no supergraph: {why}");
        }
        Self {
            router,
            state,
            subgraphs,
            signer,
            _data: data,
        }
    }

    pub async fn query(&self, query: &str, variables: Value) -> Value {
        self.router.gql(query, variables, None).await.0
    }

    pub async fn query_as(&self, query: &str, token: &str) -> Answer {
        self.router.gql(query, json!({}), Some(token)).await
    }

    pub fn set_mode(&self, subgraph: &str, mode: u8) {
        self.subgraphs[subgraph].mode.store(mode, Ordering::SeqCst);
    }

    pub fn plan(&self, query: &str) -> Value {
        self.state
            .graph()
            .expect("graph")
            .plan_json(query, None)
            .expect("plan")
    }
}
