//! Query plan execution: fetches to subgraphs, entity representations, response merge.
//!
//! The merged JSON a plan run produces is keyed by the client's response keys;
//! [`crate::project`] then projects it onto the client's operation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::future::{BoxFuture, join_all};
use hive_router_query_planner::ast::selection_item::SelectionItem;
use hive_router_query_planner::ast::selection_set::SelectionSet;
use hive_router_query_planner::planner::plan_nodes::{
    FetchNode, FetchNodePathSegment, FetchRewrite, FlattenNodePath, FlattenNodePathSegment,
    PlanNode, QueryPlan,
};
use serde_json::{Map, Value as Json, json};

use crate::plan::Graph;

/// Headers passed on to every subgraph request.
#[derive(Debug, Clone, Default)]
pub struct Forwarded {
    pub authorization: Option<String>,
    pub request_id: String,
    pub traceparent: Option<String>,
}

/// Where a subgraph lives and how long one request to it may take.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub url: reqwest::Url,
    pub timeout: Duration,
}

/// How the router reaches subgraphs: the pooled HTTP client, and where outcomes are counted.
#[derive(Clone)]
pub struct SubgraphClient {
    pub http: reqwest::Client,
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// What a request's plan run needs besides the plan: the graph, the subgraph client, and the
/// headers to pass on.
pub struct PlanRun {
    pub graph: Arc<Graph>,
    pub client: SubgraphClient,
    pub forwarded: Forwarded,
}

/// What the plan run produced: the merged data and the subgraphs' errors.
#[derive(Debug, Default)]
pub struct Outcome {
    pub data: Json,
    pub errors: Vec<Json>,
}

impl PlanRun {
    /// Executes `plan` with the request's coerced variables.
    pub async fn execute(&self, plan: &QueryPlan, variables: &Map<String, Json>) -> Outcome {
        let Some(node) = plan.node.as_ref() else {
            return Outcome {
                data: Json::Object(Map::new()),
                errors: Vec::new(),
            };
        };
        let exec = Execution {
            run: self,
            variables,
            data: Mutex::new(Json::Object(Map::new())),
            errors: Mutex::new(Vec::new()),
        };
        exec.node(node).await;
        Outcome {
            data: exec
                .data
                .into_inner()
                .unwrap_or_else(PoisonError::into_inner),
            errors: exec
                .errors
                .into_inner()
                .unwrap_or_else(PoisonError::into_inner),
        }
    }
}

/// One element of a response path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PathElem {
    Key(String),
    Index(usize),
}

impl PathElem {
    fn to_json(&self) -> Json {
        match self {
            PathElem::Key(k) => Json::String(k.clone()),
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

/// The representations of one job, deduplicated, each with the places its result goes.
#[derive(Default)]
struct Collected {
    representations: Vec<Json>,
    targets: Vec<Vec<Vec<PathElem>>>,
}

struct Execution<'r> {
    run: &'r PlanRun,
    variables: &'r Map<String, Json>,
    data: Mutex<Json>,
    errors: Mutex<Vec<Json>>,
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
            "extensions": { "code": "INTERNAL_SERVER_ERROR" }
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

    fn used_variables(
        &self,
        usages: Option<&std::collections::BTreeSet<String>>,
    ) -> Map<String, Json> {
        let mut out = Map::new();
        for name in usages.into_iter().flatten() {
            if let Some(value) = self.variables.get(name) {
                out.insert(name.clone(), value.clone());
            }
        }
        out
    }

    async fn root_fetch(&self, fetch: &FetchNode) {
        let variables = self.used_variables(fetch.variable_usages.as_ref());
        let response = match self
            .send(
                &fetch.service_name,
                &fetch.operation.document_str,
                variables,
            )
            .await
        {
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
        if let Some(mut data) = response.data.filter(|d| !d.is_null()) {
            for rewrite in fetch.output_rewrites.iter().flatten() {
                apply_rewrite(&mut data, rewrite, &self.run.graph);
            }
            let mut merged = self.data.lock().unwrap_or_else(PoisonError::into_inner);
            deep_merge(&mut merged, data, &self.run.graph);
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
            let data = self.data.lock().unwrap_or_else(PoisonError::into_inner);
            jobs.iter().map(|job| self.collect(&data, job)).collect()
        };
        if collected.iter().all(|c| c.representations.is_empty()) {
            return;
        }
        let mut variables = self.used_variables(usages);
        for (job, c) in jobs.iter().zip(&collected) {
            variables.insert(
                job.variable.to_owned(),
                Json::Array(c.representations.clone()),
            );
        }
        let response = match self.send(service, document, variables).await {
            Ok(response) => response,
            Err(error) => {
                self.push_errors(vec![error]);
                return;
            }
        };
        let mut errors = Vec::new();
        for error in response.errors {
            errors.push(subgraph_error(error, service, |path| {
                // ["_entities", i, rest...] -> where entity i sits in the client's response.
                let key = path.first()?.as_str()?;
                let (_, c) = jobs
                    .iter()
                    .zip(&collected)
                    .find(|(j, _)| j.response_key == key)?;
                // Without an index the error is about every entity: name the first.
                let index = match path.get(1) {
                    Some(index) => usize::try_from(index.as_u64()?).ok()?,
                    None => 0,
                };
                let target = c.targets.get(index)?.first()?;
                let mut out: Vec<Json> = target.iter().map(PathElem::to_json).collect();
                out.extend(path.iter().skip(2).cloned());
                Some(out)
            }));
        }
        self.push_errors(errors);
        let Some(Json::Object(mut data)) = response.data else {
            return;
        };
        let mut merged = self.data.lock().unwrap_or_else(PoisonError::into_inner);
        for (job, c) in jobs.iter().zip(collected) {
            let Some(Json::Array(entities)) = data.remove(job.response_key) else {
                continue;
            };
            for (mut entity, targets) in entities.into_iter().zip(c.targets) {
                if entity.is_null() {
                    continue;
                }
                for rewrite in job.output_rewrites.into_iter().flatten() {
                    apply_rewrite(&mut entity, rewrite, &self.run.graph);
                }
                for target in targets {
                    if let Some(slot) = navigate_mut(&mut merged, &target) {
                        deep_merge(slot, entity.clone(), &self.run.graph);
                    }
                }
            }
        }
    }

    fn collect(&self, data: &Json, job: &EntityJob<'_>) -> Collected {
        let graph = &self.run.graph;
        let mut locations = Vec::new();
        for path in &job.paths {
            collect_locations(
                data,
                path.as_slice(),
                &mut Vec::new(),
                &mut locations,
                graph,
            );
        }
        let mut collected = Collected::default();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for location in locations {
            let Some(entity) = navigate(data, &location) else {
                continue;
            };
            let Some(mut representation) = project(entity, job.requires, graph) else {
                // Key fields missing (e.g. null): this entity cannot be fetched.
                continue;
            };
            // No type condition of `requires` matched: the fetch is not for this entity's
            // type (`... on Admin` over a list of accounts).
            if representation.as_object().is_some_and(Map::is_empty) {
                continue;
            }
            for rewrite in job.input_rewrites.into_iter().flatten() {
                apply_rewrite(&mut representation, rewrite, graph);
            }
            let key = representation.to_string();
            match seen.get(&key) {
                Some(&index) => collected.targets[index].push(location),
                None => {
                    seen.insert(key, collected.representations.len());
                    collected.representations.push(representation);
                    collected.targets.push(vec![location]);
                }
            }
        }
        collected
    }

    async fn send(
        &self,
        service: &str,
        document: &str,
        variables: Map<String, Json>,
    ) -> Result<SubgraphResponse, Json> {
        let unavailable = |message: String| {
            self.run.client.metrics.record_subgraph(service, false);
            json!({
                "message": message,
                "extensions": { "code": crate::project::FETCH_FAILED, "serviceName": service }
            })
        };
        let Some(endpoint) = self.run.graph.endpoint(service) else {
            return Err(unavailable(format!(
                "subgraph `{service}` has no URL configured"
            )));
        };
        let forwarded = &self.run.forwarded;
        // Variables hold representations and client input: debug level only.
        tracing::debug!(service, document, variables = %Json::Object(variables.clone()), "subgraph request");
        let mut request = self
            .run
            .client
            .http
            .post(endpoint.url.clone())
            .timeout(endpoint.timeout)
            .header(reqwest::header::ACCEPT, "application/json")
            .header("x-request-id", &forwarded.request_id)
            .json(&json!({ "query": document, "variables": variables }));
        if let Some(authorization) = &forwarded.authorization {
            request = request.header(reqwest::header::AUTHORIZATION, authorization);
        }
        if let Some(traceparent) = &forwarded.traceparent {
            request = request.header("traceparent", traceparent);
        }
        // A transport failure: a timeout says so with the limit, anything else as `otherwise`.
        let transport = |e: reqwest::Error, otherwise: &str| {
            tracing::warn!(service, error = %e, "subgraph request failed");
            if e.is_timeout() {
                unavailable(format!(
                    "subgraph `{service}` did not answer within {}s",
                    endpoint.timeout.as_secs()
                ))
            } else {
                unavailable(format!("subgraph `{service}` {otherwise}"))
            }
        };
        let response = request
            .send()
            .await
            .map_err(|e| transport(e, "is unreachable"))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| transport(e, "broke off its answer"))?;
        match serde_json::from_slice::<SubgraphResponse>(&body) {
            Ok(parsed) if parsed.data.is_some() || !parsed.errors.is_empty() => {
                self.run.client.metrics.record_subgraph(service, true);
                Ok(parsed)
            }
            _ => {
                tracing::warn!(service, %status, "subgraph answered without a GraphQL response");
                Err(unavailable(format!(
                    "subgraph `{service}` answered HTTP {status} without a GraphQL response"
                )))
            }
        }
    }
}

#[derive(serde::Deserialize)]
struct SubgraphResponse {
    #[serde(default)]
    data: Option<Json>,
    #[serde(default)]
    errors: Vec<Json>,
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

fn type_name(value: &Json) -> Option<&str> {
    value.get("__typename").and_then(Json::as_str)
}

fn collect_locations(
    value: &Json,
    segments: &[FlattenNodePathSegment],
    here: &mut Vec<PathElem>,
    out: &mut Vec<Vec<PathElem>>,
    graph: &Graph,
) {
    if let Json::Array(items) = value {
        // A list where the path names a field: every element continues the path.
        for (i, item) in items.iter().enumerate() {
            here.push(PathElem::Index(i));
            collect_locations(item, segments, here, out, graph);
            here.pop();
        }
        return;
    }
    let Json::Object(object) = value else {
        return;
    };
    match segments.split_first() {
        None => out.push(here.clone()),
        Some((FlattenNodePathSegment::Field(name), rest)) => {
            if let Some(child) = object.get(name) {
                here.push(PathElem::Key(name.clone()));
                collect_locations(child, rest, here, out, graph);
                here.pop();
            }
        }
        Some((FlattenNodePathSegment::List, rest)) => {
            collect_locations(value, rest, here, out, graph)
        }
        Some((FlattenNodePathSegment::TypeCondition(types), rest)) => {
            if type_name(value).is_some_and(|t| types.iter().any(|c| graph.type_matches(t, c))) {
                collect_locations(value, rest, here, out, graph);
            }
        }
    }
}

fn navigate<'a>(mut value: &'a Json, path: &[PathElem]) -> Option<&'a Json> {
    for elem in path {
        value = match elem {
            PathElem::Key(k) => value.get(k)?,
            PathElem::Index(i) => value.get(*i)?,
        };
    }
    Some(value)
}

fn navigate_mut<'a>(mut value: &'a mut Json, path: &[PathElem]) -> Option<&'a mut Json> {
    for elem in path {
        value = match elem {
            PathElem::Key(k) => value.get_mut(k)?,
            PathElem::Index(i) => value.get_mut(*i)?,
        };
    }
    Some(value)
}

/// The representation of `value` for `requires`: its key (and required) fields by field name.
/// `None` when a required field is missing.
fn project(value: &Json, selections: &SelectionSet, graph: &Graph) -> Option<Json> {
    match value {
        Json::Null => Some(Json::Null),
        Json::Array(items) => items
            .iter()
            .map(|item| project(item, selections, graph))
            .collect::<Option<Vec<_>>>()
            .map(Json::Array),
        Json::Object(_) if selections.items.is_empty() => Some(value.clone()),
        Json::Object(_) => {
            let mut out = Map::new();
            project_into(value, selections, graph, &mut out)?;
            Some(Json::Object(out))
        }
        leaf => Some(leaf.clone()),
    }
}

fn project_into(
    value: &Json,
    selections: &SelectionSet,
    graph: &Graph,
    out: &mut Map<String, Json>,
) -> Option<()> {
    for item in &selections.items {
        match item {
            // In `requires`, the planner writes `alias: name` the other way round from an
            // operation: `name` is the key in the data (its `_internal_qp_alias_N` when a
            // required `comments(limit: 3)` sits beside the client's `comments(limit: 1)`),
            // `alias` the field name the subgraph expects in the representation.
            SelectionItem::Field(field) => {
                let child = value.get(&field.name)?;
                let projected = if field.selections.items.is_empty() {
                    child.clone()
                } else {
                    project(child, &field.selections, graph)?
                };
                let key = field.alias.as_deref().unwrap_or(&field.name);
                match (out.get_mut(key), projected) {
                    (Some(existing), projected) => deep_merge(existing, projected, graph),
                    (None, projected) => {
                        out.insert(key.to_owned(), projected);
                    }
                }
            }
            SelectionItem::InlineFragment(fragment) => {
                if type_name(value).is_some_and(|t| graph.type_matches(t, &fragment.type_condition))
                {
                    project_into(value, &fragment.selections, graph, out)?;
                }
            }
            SelectionItem::FragmentSpread(_) => {}
        }
    }
    Some(())
}

fn apply_rewrite(value: &mut Json, rewrite: &FetchRewrite, graph: &Graph) {
    match rewrite {
        FetchRewrite::ValueSetter(setter) => {
            rewrite_at(value, &setter.path, graph, &mut |object, key| {
                object.insert(key.to_owned(), Json::String(setter.set_value_to.clone()));
            })
        }
        FetchRewrite::KeyRenamer(renamer) => {
            rewrite_at(value, &renamer.path, graph, &mut |object, key| {
                if let Some(moved) = object.remove(key) {
                    object.insert(renamer.rename_key_to.clone(), moved);
                }
            })
        }
    }
}

fn rewrite_at(
    value: &mut Json,
    path: &[FetchNodePathSegment],
    graph: &Graph,
    action: &mut dyn FnMut(&mut Map<String, Json>, &str),
) {
    if let Json::Array(items) = value {
        for item in items {
            rewrite_at(item, path, graph, action);
        }
        return;
    }
    match path.split_first() {
        None => {}
        Some((FetchNodePathSegment::TypenameEquals(types), rest))
            if type_name(value).is_some_and(|t| types.iter().any(|c| graph.type_matches(t, c))) =>
        {
            rewrite_at(value, rest, graph, action);
        }
        Some((FetchNodePathSegment::TypenameEquals(_), _)) => {}
        Some((FetchNodePathSegment::Key(key), rest)) => {
            let Json::Object(object) = value else {
                return;
            };
            if rest.is_empty() {
                action(object, key);
            } else if let Some(child) = object.get_mut(key) {
                rewrite_at(child, rest, graph, action);
            }
        }
    }
}

/// Merges `source` into `target`: objects key by key, lists of equal length element-wise,
/// anything else replaced. A `__typename` naming an interface (an `@interfaceObject`
/// subgraph's answer) does not replace a concrete type already known.
pub fn deep_merge(target: &mut Json, source: Json, graph: &Graph) {
    match (target, source) {
        (Json::Object(target), Json::Object(source)) => {
            for (key, value) in source {
                if key == "__typename"
                    && target.contains_key("__typename")
                    && value.as_str().is_some_and(|t| graph.is_abstract(t))
                {
                    continue;
                }
                match target.get_mut(&key) {
                    Some(existing) => deep_merge(existing, value, graph),
                    None => {
                        target.insert(key, value);
                    }
                }
            }
        }
        (Json::Array(target), Json::Array(source)) if target.len() == source.len() => {
            for (existing, value) in target.iter_mut().zip(source) {
                deep_merge(existing, value, graph);
            }
        }
        (target, source) => *target = source,
    }
}
