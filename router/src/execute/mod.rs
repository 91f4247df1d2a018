//! Query plan execution: the executor walks the plan (fetch, flatten, batch, sequence,
//! parallel, condition) and merges what each fetch brings into one response-shaped value.
//!
//! - [`fetch`]: one request to a subgraph — its body, headers, sharing identical ones in
//!   flight, and its answer or why none came.
//! - [`entities`]: an entity fetch — the representations collected along the plan's paths,
//!   sent as `_entities`, and each entity merged back where it came from.
//! - [`representation`]: an entity's representation for the fetch's `requires` selection.
//! - [`locations`]: the objects a plan path leads to, and their response paths.
//! - [`merge`]: the planner's rewrites (value setters, key renamers) and deep merging.
//!
//! The merged JSON a plan run produces is keyed by the client's response keys;
//! [`crate::project`] then projects it onto the client's operation.

mod entities;
mod fetch;
mod locations;
mod merge;
mod representation;

use std::sync::{Arc, Mutex, PoisonError};

use futures::future::{BoxFuture, join_all};
use hive_router_query_planner::planner::plan_nodes::{FetchNode, PlanNode, QueryPlan};
use keygraph_kernel::ErrorCode;
use keygraph_kernel::token::IssuedTokens;
use serde_json::{Map, Value as Json, json};

use crate::graph::Graph;
use crate::json::{Object, Sources, Value};

use entities::EntityJob;
pub use fetch::{Endpoint, Fetched, Forwarded, SubgraphClient, SubgraphRequestKey};
use merge::apply_rewrite;
pub use merge::deep_merge;

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
            .map(|e| fetch::subgraph_error(e, &fetch.service_name, |path| Some(path.to_vec())))
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
}
