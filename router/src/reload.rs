//! Keeping the supergraph current: reading it from the configured file, or fetching every
//! subgraph's SDL and composing them; at start-up with backoff until it works, then every
//! `router.poll_interval_secs`. A new supergraph that does not build keeps the last good one.

use std::sync::Arc;
use std::time::Duration;

use keygraph_kernel::{backoff::backoff, http::Shutdown};
use serde_json::{Value as Json, json};

use crate::server::RouterState;
use crate::supergraph::{self, SubgraphSdl};

impl RouterState {
    /// Fetches every configured subgraph's SDL; the first that does not answer is named.
    pub async fn fetch_subgraph_sdls(&self) -> Result<Vec<SubgraphSdl>, String> {
        let mut out = Vec::new();
        for (name, endpoint) in &self.config.subgraphs {
            let response = self
                .http
                .post(&endpoint.url)
                .timeout(Duration::from_secs(endpoint.timeout_secs))
                .json(&json!({ "query": "{ _service { sdl } }" }))
                .send()
                .await
                .map_err(|e| {
                    format!("subgraph `{name}` at {} does not answer: {e}", endpoint.url)
                })?;
            let body: Json = response
                .json()
                .await
                .map_err(|e| format!("subgraph `{name}` answered no JSON: {e}"))?;
            let sdl = body
                .pointer("/data/_service/sdl")
                .and_then(Json::as_str)
                .ok_or_else(|| {
                    format!("subgraph `{name}` answered no `_service {{ sdl }}`: {body}")
                })?;
            out.push(SubgraphSdl {
                name: name.clone(),
                url: endpoint.url.clone(),
                sdl: sdl.to_owned(),
            });
        }
        Ok(out)
    }

    /// Reads the supergraph source once: the configured file, or the subgraphs composed.
    async fn load_source(&self) -> Result<String, String> {
        match &self.config.supergraph_file {
            Some(path) => {
                let sdl = tokio::fs::read_to_string(path).await.map_err(|e| {
                    format!("cannot read the supergraph file {}: {e}", path.display())
                })?;
                supergraph::fix_up(&sdl).map_err(|e| format!("{}: {e}", path.display()))
            }
            None => {
                let sdls = self.fetch_subgraph_sdls().await?;
                let (sdl, warnings) = supergraph::compose(&sdls).map_err(|e| e.to_string())?;
                for warning in warnings {
                    tracing::warn!(%warning, "composition warning");
                }
                Ok(sdl)
            }
        }
    }
}

/// Keeps the supergraph current: loads it at start-up (retrying with backoff while subgraphs
/// are not up), then polls every `poll_interval_secs` and recomposes when a schema changed. A
/// composition error keeps the last good supergraph and is logged with what broke.
pub async fn keep_supergraph_current(state: Arc<RouterState>, shutdown: Shutdown) {
    // Failures in a row before the first supergraph, and the wait after the next one.
    let mut failures = 0;
    let retry_after = |failures| {
        backoff(
            failures,
            Duration::from_millis(100),
            Duration::from_secs(5),
            1.0,
        )
    };
    let mut last_source: Option<String> = None;
    loop {
        match state.load_source().await {
            Ok(sdl) if last_source.as_deref() == Some(sdl.as_str()) => {}
            Ok(sdl) => match state.install(sdl.clone()) {
                Ok(()) => {
                    tracing::info!(
                        first = last_source.is_none(),
                        "supergraph composed and serving"
                    );
                    last_source = Some(sdl);
                }
                Err(err) => {
                    tracing::error!(error = %err, "the new supergraph was not installed; keeping the last good one")
                }
            },
            Err(err) if last_source.is_none() => {
                tracing::warn!(error = %err, retry_in_ms = retry_after(failures + 1).as_millis() as u64, "no supergraph yet; retrying");
            }
            Err(err) => {
                tracing::error!(error = %err, "recomposition failed; keeping the last good supergraph")
            }
        }
        let wait = if last_source.is_none() {
            failures += 1;
            retry_after(failures)
        } else if state.config.poll_interval_secs == 0 {
            shutdown.wait().await;
            return;
        } else {
            Duration::from_secs(state.config.poll_interval_secs)
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.clone().wait() => return,
        }
    }
}
