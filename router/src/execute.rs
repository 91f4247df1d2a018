//! Query plan execution: fetches to subgraphs, entity representations, response merge.
//!
//! The merged JSON a plan run produces is keyed by the client's response keys;
//! [`crate::project`] then projects it onto the client's operation.

use std::cell::OnceCell;
use std::hash::BuildHasher as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures::future::{BoxFuture, join_all};
use hive_router_query_planner::ast::selection_item::SelectionItem;
use hive_router_query_planner::ast::selection_set::SelectionSet;
use hive_router_query_planner::planner::plan_nodes::{
    FetchNode, FetchNodePathSegment, FetchRewrite, FlattenNodePath, FlattenNodePathSegment,
    PlanNode, QueryPlan,
};
use rustc_hash::FxHashMap;
use serde_json::{Map, Value as Json, json};

use keygraph_kernel::ErrorCode;
use keygraph_kernel::token::{ISSUED_TOKENS_HEADER, IssuedTokens};
use tracing::Instrument as _;

use crate::inflight::Inflight;
use crate::json::{self, Object, Sources, Value};
use crate::graph::Graph;

/// Headers passed on to every subgraph request.
#[derive(Debug, Clone, Default)]
pub struct Forwarded {
    pub authorization: Option<String>,
    pub request_id: String,
    /// Whether the client sent `request_id` (otherwise the router made it up).
    pub request_id_from_client: bool,
    pub traceparent: Option<String>,
    /// The client's address, stated for subgraphs with the router's proof.
    pub client_address: Option<String>,
}

/// Where a subgraph lives and how long one request to it may take.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub url: reqwest::Url,
    pub timeout: Duration,
}

/// How the router reaches subgraphs: the pooled HTTP client, where outcomes are counted, and
/// the requests in flight (when identical ones share one).
#[derive(Clone)]
pub struct SubgraphClient {
    pub http: reqwest::Client,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub inflight: Option<Arc<Inflight<SubgraphRequestKey, Fetched>>>,
}

/// What makes two subgraph requests the same: where they go, what they send, and every
/// header that can change the answer or that the client asked to be passed on.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SubgraphRequestKey {
    service: String,
    body: Bytes,
    authorization: Option<String>,
    traceparent: Option<String>,
    request_id: Option<String>,
}

/// A subgraph's answer as it came, or why none came.
#[derive(Clone)]
pub enum Fetched {
    Answer {
        status: u16,
        body: Bytes,
        /// Tokens the subgraph issued (it signed someone in), from its response header.
        issued: Option<IssuedTokens>,
    },
    TimedOut,
    Failed {
        broke_off: bool,
    },
}

/// What a request's plan run needs besides the plan: the graph, the subgraph client, the
/// headers to pass on, and whether the operation is a query (only queries share requests).
pub struct PlanRun {
    pub graph: Arc<Graph>,
    pub client: SubgraphClient,
    pub forwarded: Forwarded,
    pub is_query: bool,
}

/// What the plan run produced: the merged data (its strings in `sources`) and the subgraphs'
/// errors.
#[derive(Debug)]
pub struct Outcome {
    pub data: Value,
    pub sources: Sources,
    pub errors: Vec<Json>,
    /// Bytes the subgraphs answered with: about the size of the response.
    pub received: usize,
    /// Tokens a subgraph issued during a mutation, and which subgraph.
    pub issued: Option<(String, IssuedTokens)>,
}

impl PlanRun {
    /// Executes `plan` with the request's coerced variables.
    pub async fn execute(&self, plan: &QueryPlan, variables: &Map<String, Json>) -> Outcome {
        let Some(node) = plan.node.as_ref() else {
            return Outcome {
                data: Value::Object(Object::new()),
                sources: Sources::default(),
                errors: Vec::new(),
                received: 0,
                issued: None,
            };
        };
        let exec = Execution {
            run: self,
            variables,
            state: Mutex::new(State {
                data: Value::Object(Object::new()),
                sources: Sources::default(),
            }),
            errors: Mutex::new(Vec::new()),
            received: std::sync::atomic::AtomicUsize::new(0),
            issued: Mutex::new(None),
        };
        exec.node(node).await;
        let State { data, sources } = exec
            .state
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        Outcome {
            data,
            sources,
            errors: exec
                .errors
                .into_inner()
                .unwrap_or_else(PoisonError::into_inner),
            received: exec.received.into_inner(),
            issued: exec
                .issued
                .into_inner()
                .unwrap_or_else(PoisonError::into_inner),
        }
    }
}

/// One element of a response path; keys are the plan's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PathElem<'p> {
    Key(&'p str),
    Index(usize),
}

impl PathElem<'_> {
    fn to_json(self) -> Json {
        match self {
            PathElem::Key(k) => Json::String(k.to_owned()),
            PathElem::Index(i) => json!(i),
        }
    }
}

/// Entities to fetch for one `_entities` call (a Flatten's fetch, or one alias of a batch).
struct EntityJob<'p> {
    paths: Vec<&'p FlattenNodePath>,
    requires: &'p SelectionSet,
    input_rewrites: Option<&'p Vec<FetchRewrite>>,
    output_rewrites: Option<&'p Vec<FetchRewrite>>,
    variable: &'p str,
    response_key: &'p str,
}

/// The representations of one job (as JSON), deduplicated, and where their entities go: for
/// each location the job's paths lead to, in the order [`locations`] visits them, the index of
/// its representation (none when it has none: a key field is null, or its type is not the
/// fetch's).
#[derive(Default)]
struct Collected {
    representations: Vec<Vec<u8>>,
    assigned: Vec<Option<u32>>,
    /// How many locations each representation's entity goes to.
    uses: Vec<u32>,
}

/// The merged data and the bytes its strings live in.
struct State {
    data: Value,
    sources: Sources,
}

struct Execution<'r> {
    run: &'r PlanRun,
    variables: &'r Map<String, Json>,
    state: Mutex<State>,
    errors: Mutex<Vec<Json>>,
    received: std::sync::atomic::AtomicUsize,
    /// Tokens issued by an earlier fetch of this mutation: the later fetches act with them.
    issued: Mutex<Option<(String, IssuedTokens)>>,
}

impl<'r> Execution<'r> {
    fn node<'a>(&'a self, node: &'a PlanNode) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            match node {
                PlanNode::Fetch(fetch) => self.root_fetch(fetch).await,
                PlanNode::Flatten(flatten) => match flatten.node.as_ref() {
                    PlanNode::Fetch(fetch) => {
                        let Some(requires) = fetch.requires.as_ref() else {
                            self.error("the query plan has an entity fetch without `requires`");
                            return;
                        };
                        let job = EntityJob {
                            paths: vec![&flatten.path],
                            requires,
                            input_rewrites: fetch.input_rewrites.as_ref(),
                            output_rewrites: fetch.output_rewrites.as_ref(),
                            variable: "representations",
                            response_key: "_entities",
                        };
                        self.entity_fetch(
                            &fetch.service_name,
                            &fetch.operation.document_str,
                            fetch.variable_usages.as_ref(),
                            vec![job],
                        )
                        .await;
                    }
                    other => self.node(other).await,
                },
                PlanNode::BatchFetch(batch) => {
                    let jobs = batch
                        .entity_batch
                        .aliases
                        .iter()
                        .map(|alias| EntityJob {
                            paths: alias.merge_paths.iter().collect(),
                            requires: &alias.requires,
                            input_rewrites: alias.input_rewrites.as_ref(),
                            output_rewrites: alias.output_rewrites.as_ref(),
                            variable: &alias.representations_variable_name,
                            response_key: &alias.alias,
                        })
                        .collect();
                    self.entity_fetch(
                        &batch.service_name,
                        &batch.operation.document_str,
                        batch.variable_usages.as_ref(),
                        jobs,
                    )
                    .await;
                }
                PlanNode::Sequence(sequence) => {
                    for child in &sequence.nodes {
                        self.node(child).await;
                    }
                }
                PlanNode::Parallel(parallel) => {
                    join_all(parallel.nodes.iter().map(|child| self.node(child))).await;
                }
                PlanNode::Condition(condition) => {
                    let holds = self.variables.get(&condition.condition) == Some(&Json::Bool(true));
                    let branch = if holds {
                        condition.if_clause.as_deref()
                    } else {
                        condition.else_clause.as_deref()
                    };
                    if let Some(branch) = branch {
                        self.node(branch).await;
                    }
                }
                PlanNode::Subscription(_) => {
                    self.error("subscriptions are not supported by this router")
                }
                PlanNode::Defer(_) => self.error("@defer is not supported by this router"),
            }
        })
    }

    fn error(&self, message: &str) {
        self.push_errors(vec![json!({
            "message": message,
            "extensions": { "code": ErrorCode::InternalServerError.as_str() }
        })]);
    }

    fn push_errors(&self, errors: Vec<Json>) {
        if errors.is_empty() {
            return;
        }
        self.errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(errors);
    }

    /// The request body for a subgraph: the document, the client's variables it uses, and
    /// `extra` variables already written as JSON (representations).
    fn body(
        &self,
        document: &str,
        usages: Option<&std::collections::BTreeSet<String>>,
        extra: &[(&str, &[Vec<u8>])],
    ) -> Vec<u8> {
        let size: usize = extra
            .iter()
            .flat_map(|(_, items)| items.iter().map(|i| i.len() + 1))
            .sum();
        let mut out = Vec::with_capacity(document.len() + size + 64);
        out.extend_from_slice(b"{\"query\":");
        json::write_str(&mut out, document.as_bytes());
        out.extend_from_slice(b",\"variables\":{");
        let mut first = true;
        let mut separate = |out: &mut Vec<u8>| {
            if !first {
                out.push(b',');
            }
            first = false;
        };
        for name in usages.into_iter().flatten() {
            if let Some(value) = self.variables.get(name) {
                separate(&mut out);
                json::write_str(&mut out, name.as_bytes());
                out.push(b':');
                json::write_serde(&mut out, value);
            }
        }
        for (name, items) in extra {
            separate(&mut out);
            json::write_str(&mut out, name.as_bytes());
            out.extend_from_slice(b":[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(item);
            }
            out.push(b']');
        }
        out.extend_from_slice(b"}}");
        out
    }

    async fn root_fetch(&self, fetch: &FetchNode) {
        let body = self.body(
            &fetch.operation.document_str,
            fetch.variable_usages.as_ref(),
            &[],
        );
        let response = match self.send(&fetch.service_name, body).await {
            Ok(response) => response,
            Err(error) => {
                self.push_errors(vec![error]);
                return;
            }
        };
        let errors = response
            .errors
            .into_iter()
            .map(|e| subgraph_error(e, &fetch.service_name, |path| Some(path.to_vec())))
            .collect();
        self.push_errors(errors);
        if let Some(mut data) = response.data {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let State {
                data: merged,
                sources,
            } = &mut *state;
            for rewrite in fetch.output_rewrites.iter().flatten() {
                apply_rewrite(&mut data, rewrite, &self.run.graph, sources);
            }
            deep_merge(merged, data, &self.run.graph, sources);
        }
    }

    async fn entity_fetch(
        &self,
        service: &str,
        document: &str,
        usages: Option<&std::collections::BTreeSet<String>>,
        jobs: Vec<EntityJob<'_>>,
    ) {
        let collected: Vec<Collected> = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let State { data, sources } = &mut *state;
            jobs.iter()
                .map(|job| self.collect(data, sources, job))
                .collect()
        };
        if collected.iter().all(|c| c.representations.is_empty()) {
            return;
        }
        let extra: Vec<(&str, &[Vec<u8>])> = jobs
            .iter()
            .zip(&collected)
            .map(|(job, c)| (job.variable, c.representations.as_slice()))
            .collect();
        let body = self.body(document, usages, &extra);
        let response = match self.send(service, body).await {
            Ok(response) => response,
            Err(error) => {
                self.push_errors(vec![error]);
                return;
            }
        };
        // Per job, where each representation's entity first sits: walked for when an error
        // names one, once however many errors there are.
        let first_locations: Vec<OnceCell<Vec<Option<Vec<PathElem>>>>> =
            jobs.iter().map(|_| OnceCell::new()).collect();
        let mut errors = Vec::new();
        for error in response.errors {
            errors.push(subgraph_error(error, service, |path| {
                // ["_entities", i, rest...] -> where entity i sits in the client's response.
                let key = path.first()?.as_str()?;
                let at = jobs.iter().position(|j| j.response_key == key)?;
                let (job, c) = (jobs.get(at)?, collected.get(at)?);
                // Without an index the error is about every entity: name the first.
                let index = match path.get(1) {
                    Some(index) => usize::try_from(index.as_u64()?).ok()?,
                    None => 0,
                };
                let target = first_locations
                    .get(at)?
                    .get_or_init(|| self.first_locations(&job.paths, c))
                    .get(index)?
                    .as_ref()?;
                let mut out: Vec<Json> = target.iter().map(|e| e.to_json()).collect();
                out.extend(path.iter().skip(2).cloned());
                Some(out)
            }));
        }
        self.push_errors(errors);
        let Some(Value::Object(mut data)) = response.data else {
            return;
        };
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let State {
            data: merged,
            sources,
        } = &mut *state;
        let graph = &self.run.graph;
        for (job, c) in jobs.iter().zip(collected) {
            let Some(Value::Array(mut entities)) = take(&mut data, job.response_key, sources)
            else {
                continue;
            };
            for entity in entities.iter_mut().filter(|e| !e.is_null()) {
                for rewrite in job.output_rewrites.into_iter().flatten() {
                    apply_rewrite(entity, rewrite, graph, sources);
                }
            }
            // The same walk as `collect`'s, so the n-th location is the n-th it assigned.
            let Collected {
                assigned, mut uses, ..
            } = c;
            let mut assigned = assigned.into_iter();
            let sources = &*sources;
            for path in &job.paths {
                locations_mut(merged, path.as_slice(), graph, sources, &mut |slot| {
                    let Some(Some(index)) = assigned.next() else {
                        return;
                    };
                    let index = index as usize;
                    let (Some(entity), Some(left)) = (entities.get_mut(index), uses.get_mut(index))
                    else {
                        return;
                    };
                    if entity.is_null() {
                        return;
                    }
                    // Every location but the last gets a copy; the last takes the entity.
                    *left = left.saturating_sub(1);
                    let entity = if *left == 0 {
                        std::mem::replace(entity, Value::Null)
                    } else {
                        entity.clone()
                    };
                    deep_merge(slot, entity, graph, sources);
                });
            }
        }
    }

    /// For each representation of `collected`, the response path of the first location its
    /// entity goes to (for subgraph errors about that entity).
    fn first_locations<'p>(
        &self,
        paths: &[&'p FlattenNodePath],
        collected: &Collected,
    ) -> Vec<Option<Vec<PathElem<'p>>>> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut found = Vec::new();
        for path in paths {
            locations(
                &state.data,
                path.as_slice(),
                &mut Some((&mut Vec::new(), &mut found)),
                &mut Vec::new(),
                &self.run.graph,
                &state.sources,
            );
        }
        let mut first = vec![None; collected.representations.len()];
        for (assigned, path) in collected.assigned.iter().zip(found) {
            if let Some(slot) = assigned.and_then(|index| first.get_mut(index as usize))
                && slot.is_none()
            {
                *slot = Some(path);
            }
        }
        first
    }

    fn collect(&self, data: &Value, sources: &mut Sources, job: &EntityJob<'_>) -> Collected {
        let graph = &self.run.graph;
        let mut entities = Vec::new();
        for path in &job.paths {
            locations(
                data,
                path.as_slice(),
                &mut None,
                &mut entities,
                graph,
                sources,
            );
        }
        let mut collected = Collected {
            assigned: Vec::with_capacity(entities.len()),
            ..Collected::default()
        };
        // By a hash of the representation's bytes; the bytes are compared on a hit.
        let mut seen: FxHashMap<u64, usize> = FxHashMap::default();
        for entity in entities {
            let Some(written) = representation(entity, job, graph, sources) else {
                collected.assigned.push(None);
                continue;
            };
            let hash = rustc_hash::FxBuildHasher.hash_one(&written);
            let known = seen
                .get(&hash)
                .copied()
                .filter(|&index| collected.representations[index] == written)
                .or_else(|| {
                    seen.contains_key(&hash)
                        .then(|| collected.representations.iter().position(|r| *r == written))
                        .flatten()
                });
            let index = match known {
                Some(index) => index,
                None => {
                    seen.entry(hash).or_insert(collected.representations.len());
                    collected.representations.push(written);
                    collected.uses.push(0);
                    collected.representations.len() - 1
                }
            };
            if let Some(uses) = collected.uses.get_mut(index) {
                *uses += 1;
            }
            collected.assigned.push(u32::try_from(index).ok());
        }
        collected
    }

    async fn send(&self, service: &str, body: Vec<u8>) -> Result<SubgraphResponse, Json> {
        let unavailable = |message: String| {
            self.run.client.metrics.record_subgraph(service, false);
            json!({
                "message": message,
                "extensions": { "code": ErrorCode::SubgraphUnavailable.as_str(), "serviceName": service }
            })
        };
        let Some(endpoint) = self.run.graph.endpoint(service) else {
            return Err(unavailable(format!(
                "subgraph `{service}` has no URL configured"
            )));
        };
        let forwarded = &self.run.forwarded;
        // Variables hold representations and client input: debug level only.
        tracing::debug!(service, body = %String::from_utf8_lossy(&body), "subgraph request");
        let body = Bytes::from(body);
        let mut headers = forwarded.clone();
        if let Some((_, issued)) = &*self.issued.lock().unwrap_or_else(PoisonError::into_inner) {
            headers.authorization = Some(format!("Bearer {}", issued.access));
        }
        let span = tracing::info_span!(
            "subgraph fetch",
            otel.name = %format!("fetch {service}"),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            subgraph.name = service,
            status = tracing::field::Empty,
        );
        // With traces on, the subgraph's span is a child of this fetch; otherwise the
        // client's own `traceparent` goes on as it came.
        if let Some(traceparent) = keygraph_kernel::telemetry::traceparent(&span) {
            headers.traceparent = Some(traceparent);
        }
        let request = fetch(
            self.run.client.http.clone(),
            endpoint.clone(),
            headers,
            body.clone(),
            service.to_owned(),
        );
        let fetched = match (&self.run.client.inflight, self.run.is_query) {
            (Some(inflight), true) => {
                let key = SubgraphRequestKey {
                    service: service.to_owned(),
                    body,
                    authorization: forwarded.authorization.clone(),
                    traceparent: forwarded.traceparent.clone(),
                    request_id: forwarded
                        .request_id_from_client
                        .then(|| forwarded.request_id.clone()),
                };
                inflight.run(key, || request).instrument(span.clone()).await
            }
            _ => request.instrument(span.clone()).await,
        };
        match &fetched {
            Fetched::Answer { status, .. } => {
                span.record("status", status);
                if *status >= 500 {
                    span.record("otel.status_code", "ERROR");
                }
            }
            Fetched::TimedOut | Fetched::Failed { .. } => {
                span.record("otel.status_code", "ERROR");
            }
        }
        let (status, body) = match fetched {
            Fetched::Answer {
                status,
                body,
                issued,
            } => {
                // Only a mutation signs someone in; a query's answer may be shared.
                if let Some(issued) = issued
                    && !self.run.is_query
                {
                    *self.issued.lock().unwrap_or_else(PoisonError::into_inner) =
                        Some((service.to_owned(), issued));
                }
                (status, body)
            }
            Fetched::TimedOut => {
                return Err(unavailable(format!(
                    "subgraph `{service}` did not answer within {}s",
                    endpoint.timeout.as_secs()
                )));
            }
            Fetched::Failed { broke_off } => {
                return Err(unavailable(format!(
                    "subgraph `{service}` {}",
                    if broke_off {
                        "broke off its answer"
                    } else {
                        "is unreachable"
                    }
                )));
            }
        };
        self.received
            .fetch_add(body.len(), std::sync::atomic::Ordering::Relaxed);
        let parsed = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            SubgraphResponse::parse(body, &mut state.sources)
        };
        match parsed {
            Some(parsed) if parsed.data.is_some() || !parsed.errors.is_empty() => {
                self.run.client.metrics.record_subgraph(service, true);
                Ok(parsed)
            }
            _ => {
                tracing::warn!(
                    service,
                    status,
                    "subgraph answered without a GraphQL response"
                );
                Err(unavailable(format!(
                    "subgraph `{service}` answered HTTP {status} without a GraphQL response"
                )))
            }
        }
    }
}

/// One subgraph request, owning what it needs (so requests in flight can share it).
async fn fetch(
    http: reqwest::Client,
    endpoint: Endpoint,
    forwarded: Forwarded,
    body: Bytes,
    service: String,
) -> Fetched {
    let mut request = http
        .post(endpoint.url)
        .timeout(endpoint.timeout)
        .header(reqwest::header::ACCEPT, "application/json")
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("x-request-id", &forwarded.request_id)
        .body(body);
    if let Some(authorization) = &forwarded.authorization {
        request = request.header(reqwest::header::AUTHORIZATION, authorization);
    }
    if let Some(traceparent) = &forwarded.traceparent {
        request = request.header("traceparent", traceparent);
    }
    if let Some(address) = &forwarded.client_address {
        request = request.header(keygraph_kernel::address::CLIENT_ADDRESS_HEADER, address);
    }
    let failed = |e: reqwest::Error, broke_off: bool| {
        tracing::warn!(service, error = %e, "subgraph request failed");
        if e.is_timeout() {
            Fetched::TimedOut
        } else {
            Fetched::Failed { broke_off }
        }
    };
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) => return failed(e, false),
    };
    let status = response.status().as_u16();
    let issued = response
        .headers()
        .get(ISSUED_TOKENS_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(IssuedTokens::parse);
    match response.bytes().await {
        Ok(body) => Fetched::Answer {
            status,
            body,
            issued,
        },
        Err(e) => failed(e, true),
    }
}

/// A subgraph's answer: its data (null counts as none) and errors.
struct SubgraphResponse {
    data: Option<Value>,
    errors: Vec<Json>,
}

impl SubgraphResponse {
    /// `None` when the body is not a JSON object.
    fn parse(body: Bytes, sources: &mut Sources) -> Option<SubgraphResponse> {
        let Ok(Value::Object(members)) = sources.parse(body) else {
            return None;
        };
        let mut response = SubgraphResponse {
            data: None,
            errors: Vec::new(),
        };
        for (key, value) in members {
            if sources.is(key, "data") && !value.is_null() {
                response.data = Some(value);
            } else if sources.is(key, "errors")
                && let Value::Array(errors) = value
            {
                response.errors = errors.iter().map(|e| e.to_serde(sources)).collect();
            }
        }
        Some(response)
    }
}

/// Removes and returns the member `key`.
fn take(members: &mut Object, key: &str, sources: &Sources) -> Option<Value> {
    let index = json::position(members, key, sources)?;
    Some(members.swap_remove(index).1)
}

/// A subgraph's error as the client sees it: its path in the client's response, the subgraph
/// named, locations (which point into the subgraph query) dropped.
fn subgraph_error(
    error: Json,
    service: &str,
    rewrite_path: impl Fn(&[Json]) -> Option<Vec<Json>>,
) -> Json {
    let Json::Object(mut error) = error else {
        return json!({ "message": format!("subgraph `{service}` answered a malformed error"), "extensions": { "serviceName": service } });
    };
    let mut out = Map::new();
    let message = error
        .remove("message")
        .filter(Json::is_string)
        .unwrap_or_else(|| Json::String(format!("subgraph `{service}` reported an error")));
    out.insert("message".into(), message);
    if let Some(Json::Array(path)) = error.remove("path")
        && let Some(path) = rewrite_path(&path)
    {
        out.insert("path".into(), Json::Array(path));
    }
    let mut extensions = match error.remove("extensions") {
        Some(Json::Object(extensions)) => extensions,
        _ => Map::new(),
    };
    extensions
        .entry("serviceName")
        .or_insert_with(|| Json::String(service.to_owned()));
    out.insert("extensions".into(), Json::Object(extensions));
    Json::Object(out)
}

fn type_name<'s>(value: &Value, sources: &'s Sources) -> Option<&'s str> {
    value
        .get("__typename", sources)
        .and_then(|t| t.as_str(sources))
}

/// The objects `segments` lead to from `value`, in document order, into `out`; with `paths`
/// (a stack and where to put them), their response paths too.
fn locations<'a, 'p>(
    value: &'a Value,
    segments: &'p [FlattenNodePathSegment],
    paths: &mut Option<(&mut Vec<PathElem<'p>>, &mut Vec<Vec<PathElem<'p>>>)>,
    out: &mut Vec<&'a Value>,
    graph: &Graph,
    sources: &Sources,
) {
    if let Value::Array(items) = value {
        // A list where the path names a field: every element continues the path.
        for (i, item) in items.iter().enumerate() {
            if let Some((here, _)) = paths {
                here.push(PathElem::Index(i));
            }
            locations(item, segments, paths, out, graph, sources);
            if let Some((here, _)) = paths {
                here.pop();
            }
        }
        return;
    }
    let Value::Object(object) = value else {
        return;
    };
    match segments.split_first() {
        None => {
            out.push(value);
            if let Some((here, found)) = paths {
                found.push(here.clone());
            }
        }
        Some((FlattenNodePathSegment::Field(name), rest)) => {
            if let Some(child) = json::get(object, name, sources) {
                if let Some((here, _)) = paths {
                    here.push(PathElem::Key(name));
                }
                locations(child, rest, paths, out, graph, sources);
                if let Some((here, _)) = paths {
                    here.pop();
                }
            }
        }
        Some((FlattenNodePathSegment::List, rest)) => {
            locations(value, rest, paths, out, graph, sources)
        }
        Some((FlattenNodePathSegment::TypeCondition(types), rest)) => {
            if type_name(value, sources)
                .is_some_and(|t| types.iter().any(|c| graph.type_matches(t, c)))
            {
                locations(value, rest, paths, out, graph, sources);
            }
        }
    }
}

/// [`locations`] for changing them: `visit` gets each, in the same order.
fn locations_mut(
    value: &mut Value,
    segments: &[FlattenNodePathSegment],
    graph: &Graph,
    sources: &Sources,
    visit: &mut dyn FnMut(&mut Value),
) {
    if let Value::Array(items) = value {
        for item in items {
            locations_mut(item, segments, graph, sources, visit);
        }
        return;
    }
    if !matches!(value, Value::Object(_)) {
        return;
    }
    match segments.split_first() {
        None => visit(value),
        Some((FlattenNodePathSegment::Field(name), rest)) => {
            if let Some(child) = value.get_mut(name, sources) {
                locations_mut(child, rest, graph, sources, visit);
            }
        }
        Some((FlattenNodePathSegment::List, rest)) => {
            locations_mut(value, rest, graph, sources, visit)
        }
        Some((FlattenNodePathSegment::TypeCondition(types), rest)) => {
            if type_name(value, sources)
                .is_some_and(|t| types.iter().any(|c| graph.type_matches(t, c)))
            {
                locations_mut(value, rest, graph, sources, visit);
            }
        }
    }
}

/// The representation of `entity` for `job`, as JSON; `None` when it cannot be fetched (a key
/// field is missing, e.g. null) or the fetch is not for its type (no type condition of
/// `requires` matched: `... on Admin` over a list of accounts).
fn representation(
    entity: &Value,
    job: &EntityJob<'_>,
    graph: &Graph,
    sources: &mut Sources,
) -> Option<Vec<u8>> {
    let mut written = Vec::with_capacity(64);
    if job.input_rewrites.is_none()
        && let Some(()) = write_requires(entity, job.requires, graph, sources, &mut written)?
    {
        return (written.as_slice() != b"{}").then_some(written);
    }
    // Rewrites, or a key selected twice: build the value, then write it.
    let mut representation = project(entity, job.requires, graph, sources)?;
    if matches!(&representation, Value::Object(members) if members.is_empty()) {
        return None;
    }
    for rewrite in job.input_rewrites.into_iter().flatten() {
        apply_rewrite(&mut representation, rewrite, graph, sources);
    }
    written.clear();
    json::write(&mut written, &representation, sources);
    Some(written)
}

/// Writes the representation of `value` for `selections` straight as JSON. `None`: a required
/// field is missing; `Some(None)`: a key would be written twice (values to merge), so the
/// caller builds it instead.
fn write_requires(
    value: &Value,
    selections: &SelectionSet,
    graph: &Graph,
    sources: &Sources,
    out: &mut Vec<u8>,
) -> Option<Option<()>> {
    match value {
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                if write_requires(item, selections, graph, sources, out)?.is_none() {
                    return Some(None);
                }
            }
            out.push(b']');
        }
        Value::Object(_) if !selections.items.is_empty() => {
            out.push(b'{');
            let mut written: Vec<&str> = Vec::new();
            if write_requires_fields(value, selections, graph, sources, out, &mut written)?
                .is_none()
            {
                return Some(None);
            }
            out.push(b'}');
        }
        other => json::write(out, other, sources),
    }
    Some(Some(()))
}

fn write_requires_fields<'s>(
    value: &Value,
    selections: &'s SelectionSet,
    graph: &Graph,
    sources: &Sources,
    out: &mut Vec<u8>,
    written: &mut Vec<&'s str>,
) -> Option<Option<()>> {
    for item in &selections.items {
        match item {
            // As in `project_into`: `name` is the key in the data, `alias` the field name the
            // subgraph expects.
            SelectionItem::Field(field) => {
                let child = value.get(&field.name, sources)?;
                let key = field.alias.as_deref().unwrap_or(&field.name);
                if written.contains(&key) {
                    return Some(None);
                }
                if !written.is_empty() {
                    out.push(b',');
                }
                written.push(key);
                json::write_name(out, key);
                out.push(b':');
                if field.selections.items.is_empty() {
                    json::write(out, child, sources);
                } else if write_requires(child, &field.selections, graph, sources, out)?.is_none() {
                    return Some(None);
                }
            }
            SelectionItem::InlineFragment(fragment) => {
                if type_name(value, sources)
                    .is_some_and(|t| graph.type_matches(t, &fragment.type_condition))
                    && write_requires_fields(
                        value,
                        &fragment.selections,
                        graph,
                        sources,
                        out,
                        written,
                    )?
                    .is_none()
                {
                    return Some(None);
                }
            }
            SelectionItem::FragmentSpread(_) => {}
        }
    }
    Some(Some(()))
}

/// The representation of `value` for `requires`: its key (and required) fields by field name.
/// `None` when a required field is missing.
fn project(
    value: &Value,
    selections: &SelectionSet,
    graph: &Graph,
    sources: &mut Sources,
) -> Option<Value> {
    match value {
        Value::Null => Some(Value::Null),
        Value::Array(items) => items
            .iter()
            .map(|item| project(item, selections, graph, sources))
            .collect::<Option<Vec<_>>>()
            .map(Value::Array),
        Value::Object(_) if selections.items.is_empty() => Some(value.clone()),
        Value::Object(_) => {
            let mut out = Object::new();
            project_into(value, selections, graph, sources, &mut out)?;
            Some(Value::Object(out))
        }
        leaf => Some(leaf.clone()),
    }
}

fn project_into(
    value: &Value,
    selections: &SelectionSet,
    graph: &Graph,
    sources: &mut Sources,
    out: &mut Object,
) -> Option<()> {
    for item in &selections.items {
        match item {
            // In `requires`, the planner writes `alias: name` the other way round from an
            // operation: `name` is the key in the data (its `_internal_qp_alias_N` when a
            // required `comments(limit: 3)` sits beside the client's `comments(limit: 1)`),
            // `alias` the field name the subgraph expects in the representation.
            SelectionItem::Field(field) => {
                let child = value.get(&field.name, sources)?;
                let projected = if field.selections.items.is_empty() {
                    child.clone()
                } else {
                    project(child, &field.selections, graph, sources)?
                };
                let key = field.alias.as_deref().unwrap_or(&field.name);
                match json::get_mut(out, key, sources) {
                    Some(existing) => deep_merge(existing, projected, graph, sources),
                    None => {
                        let key = sources.make(key);
                        out.push((key, projected));
                    }
                }
            }
            SelectionItem::InlineFragment(fragment) => {
                if type_name(value, sources)
                    .is_some_and(|t| graph.type_matches(t, &fragment.type_condition))
                {
                    project_into(value, &fragment.selections, graph, sources, out)?;
                }
            }
            SelectionItem::FragmentSpread(_) => {}
        }
    }
    Some(())
}

fn apply_rewrite(value: &mut Value, rewrite: &FetchRewrite, graph: &Graph, sources: &mut Sources) {
    match rewrite {
        FetchRewrite::ValueSetter(setter) => rewrite_at(
            value,
            &setter.path,
            graph,
            sources,
            &mut |object, key, sources| {
                let set = Value::String(sources.make(&setter.set_value_to));
                set_member(object, key, set, sources);
            },
        ),
        FetchRewrite::KeyRenamer(renamer) => rewrite_at(
            value,
            &renamer.path,
            graph,
            sources,
            &mut |object, key, sources| {
                if let Some(index) = json::position(object, key, sources) {
                    let (_, moved) = object.remove(index);
                    set_member(object, &renamer.rename_key_to, moved, sources);
                }
            },
        ),
    }
}

/// Sets the member `key` of `object` to `value`, replacing it or adding it at the end.
fn set_member(object: &mut Object, key: &str, value: Value, sources: &mut Sources) {
    match json::get_mut(object, key, sources) {
        Some(existing) => *existing = value,
        None => {
            let key = sources.make(key);
            object.push((key, value));
        }
    }
}

fn rewrite_at(
    value: &mut Value,
    path: &[FetchNodePathSegment],
    graph: &Graph,
    sources: &mut Sources,
    action: &mut dyn FnMut(&mut Object, &str, &mut Sources),
) {
    if let Value::Array(items) = value {
        for item in items {
            rewrite_at(item, path, graph, sources, action);
        }
        return;
    }
    match path.split_first() {
        None => {}
        Some((FetchNodePathSegment::TypenameEquals(types), rest))
            if type_name(value, sources)
                .is_some_and(|t| types.iter().any(|c| graph.type_matches(t, c))) =>
        {
            rewrite_at(value, rest, graph, sources, action);
        }
        Some((FetchNodePathSegment::TypenameEquals(_), _)) => {}
        Some((FetchNodePathSegment::Key(key), rest)) => {
            let Value::Object(object) = value else {
                return;
            };
            if rest.is_empty() {
                action(object, key, sources);
            } else if let Some(child) = json::get_mut(object, key, sources) {
                rewrite_at(child, rest, graph, sources, action);
            }
        }
    }
}

/// Merges `source` into `target`: objects key by key, lists of equal length element-wise,
/// anything else replaced. A `__typename` naming an interface (an `@interfaceObject`
/// subgraph's answer) does not replace a concrete type already known.
pub fn deep_merge(target: &mut Value, source: Value, graph: &Graph, sources: &Sources) {
    match (target, source) {
        (Value::Object(target), Value::Object(source)) => {
            if target.is_empty() {
                *target = source;
                return;
            }
            target.reserve(source.len());
            for (key, value) in source {
                let existing = target.iter().position(|(k, _)| sources.same(*k, key));
                if existing.is_some()
                    && sources.is(key, "__typename")
                    && value.as_str(sources).is_some_and(|t| graph.is_abstract(t))
                {
                    continue;
                }
                match existing {
                    Some(index) => deep_merge(&mut target[index].1, value, graph, sources),
                    None => target.push((key, value)),
                }
            }
        }
        (Value::Array(target), Value::Array(source)) if target.len() == source.len() => {
            for (existing, value) in target.iter_mut().zip(source) {
                deep_merge(existing, value, graph, sources);
            }
        }
        (target, source) => *target = source,
    }
}
