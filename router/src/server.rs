//! The router's shared state and its start: [`RouterState`] (the served supergraph, the HTTP
//! client to subgraphs, what the edge checks requests with, the requests in flight), and
//! [`run`] / [`serve`], which start the supergraph task and the listeners.
//!
//! A request's way through the router: [`crate::edge`] reads it, [`crate::pipeline`] limits,
//! prepares and runs it, [`crate::answer`] writes the HTTP answer; [`crate::reload`] keeps
//! the supergraph current meanwhile.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use keygraph_kernel::address::AddressProof;
use keygraph_kernel::config::{Config, RouterConfig};
use keygraph_kernel::counters::Counters;
use keygraph_kernel::http::Shutdown;
use keygraph_kernel::internal::{InternalToken, LocalServices};
use keygraph_kernel::telemetry::InThisService as _;
use keygraph_kernel::token::TokenVerifier;

use crate::answer::Answered;
use crate::execute::{Fetched, SubgraphRequestKey};
use crate::graph::{Graph, GraphOptions};
use crate::inflight::Inflight;
use crate::pipeline::ClientRequestKey;

/// Shared by every request: the current supergraph and the edge's settings.
pub struct RouterState {
    graph: RwLock<Option<Arc<Graph>>>,
    pub(crate) http: reqwest::Client,
    pub(crate) edge: Edge,
    pub(crate) config: RouterConfig,
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    /// Client requests in flight, when identical ones share an answer.
    pub(crate) client_inflight: Option<Arc<Inflight<ClientRequestKey, Answered>>>,
    /// Subgraph requests in flight, when identical ones share an answer.
    pub(crate) subgraph_inflight: Option<Arc<Inflight<SubgraphRequestKey, Fetched>>>,
}

/// What the edge checks requests with.
#[derive(Default)]
pub struct Edge {
    /// Verifies access tokens (none: tokens are passed on unchecked, as in the benchmarks).
    pub verifier: Option<TokenVerifier>,
    /// The internal token, which `/metrics` on the router's own port asks for when
    /// `router.metrics.require_token` says so (none: it cannot be presented).
    pub internal_token: Option<InternalToken>,
    /// Signs the client address passed on to subgraphs (none: it is not passed on).
    pub address_proof: Option<AddressProof>,
    /// Where the rate limits are counted.
    pub counters: Arc<Counters>,
}

impl RouterState {
    pub fn new(config: RouterConfig, edge: Edge) -> Result<Arc<Self>, String> {
        let http = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Arc::new(Self {
            graph: RwLock::new(None),
            http,
            edge,
            client_inflight: config.dedupe.client_requests.then(Arc::default),
            subgraph_inflight: config.dedupe.subgraph_requests.then(Arc::default),
            config,
            metrics: crate::metrics::Metrics::shared(),
        }))
    }

    /// The supergraph being served, if one is composed yet.
    pub fn graph(&self) -> Option<Arc<Graph>> {
        self.graph
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn options(&self) -> GraphOptions {
        GraphOptions::from(&self.config)
    }

    /// Serves `sdl` from now on, if it builds; the graph served so far stays otherwise.
    pub fn install(&self, sdl: String) -> Result<(), String> {
        let graph = Graph::new(sdl, &self.options())?;
        *self
            .graph
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::new(graph));
        Ok(())
    }
}

/// Starts the router: its state, the supergraph task, and the HTTP server, until `shutdown`.
/// While it serves, it is registered in `local`, so this process can ask it whether it is
/// ready without reaching another process on the same address.
pub async fn run(
    config: &Config,
    internal_token: &str,
    local: &LocalServices,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let verifier = TokenVerifier::for_service("router", &config.tokens, internal_token)
        .map_err(|e| anyhow::anyhow!("router: token keys: {e}"))?;
    let counters = Counters::from_config(&config.redis).map_err(anyhow::Error::msg)?;
    let edge = Edge {
        verifier: Some(verifier),
        internal_token: Some(InternalToken::new(internal_token)),
        address_proof: Some(AddressProof::new(internal_token)),
        counters: Arc::new(counters),
    };
    serve_in(config, edge, local, shutdown).await
}

/// Serves the router with `edge` until `shutdown`.
pub async fn serve(config: &Config, edge: Edge, shutdown: Shutdown) -> anyhow::Result<()> {
    serve_in(config, edge, &LocalServices::default(), shutdown).await
}

/// [`serve`], registered in `local` while it serves.
pub async fn serve_in(
    config: &Config,
    edge: Edge,
    local: &LocalServices,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let state = RouterState::new(config.router.clone(), edge).map_err(anyhow::Error::msg)?;
    let listener = keygraph_kernel::http::bind("router", config.router.listen).await?;
    if let Some(addr) = config.router.metrics.listen {
        let metrics = keygraph_kernel::http::bind("router metrics", addr).await?;
        let (http, shutdown) = (config.http.clone(), shutdown.clone());
        let routes = crate::health::metrics_routes(state.clone());
        tokio::spawn(async move {
            let served = async {
                keygraph_kernel::http::serve(
                    "router metrics",
                    metrics,
                    routes,
                    &http,
                    keygraph_kernel::http::ClientAddresses::for_edge(&http)
                        .map_err(std::io::Error::other)?,
                    Arc::new(|| Box::pin(async { true })),
                    shutdown,
                )
                .await
            }
            .await;
            if let Err(err) = served {
                tracing::error!(error = %err, "the metrics listener stopped");
            }
        });
    }
    tokio::spawn(
        crate::reload::keep_supergraph_current(state.clone(), shutdown.clone()).in_this_service(),
    );
    keygraph_kernel::http::serve_registered(
        "router",
        listener,
        crate::edge::routes(state.clone()),
        &config.http,
        keygraph_kernel::http::ClientAddresses::for_edge(&config.http)
            .map_err(anyhow::Error::msg)?,
        crate::health::readiness(state),
        local,
        shutdown,
    )
    .await?;
    Ok(())
}
