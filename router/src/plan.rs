//! One composed supergraph, ready to serve: the planner, the API schema, subgraph endpoints and
//! the plan cache. A recomposition builds a new [`Graph`]; requests in flight keep the old one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use graphql_tools::validation::validate::ValidationPlan;
use hive_router_query_planner::ast::operation::OperationDefinition;
use hive_router_query_planner::ast::selection_item::SelectionItem;
use hive_router_query_planner::ast::selection_set::SelectionSet;
use hive_router_query_planner::ast::value::Value as PlanValue;
use hive_router_query_planner::graph::PlannerOverrideContext;
use hive_router_query_planner::planner::plan_nodes::QueryPlan;
use hive_router_query_planner::planner::{Planner, QueryPlannerOptions};
use hive_router_query_planner::state::supergraph_state::{SupergraphDefinition, SupergraphState};
use hive_router_query_planner::utils::cancellation::CancellationToken;
use keygraph_kernel::config::{RouterConfig, SubgraphEndpoint};
use keygraph_kernel::token::Principal;
use serde_json::{Value as Json, json};

use crate::api_schema;
use crate::execute::Endpoint;
use crate::operation::Operation;
use crate::types::Types;
use keygraph_kernel::cache::{BoundedCache, OperationKey, operation_key};

/// Timeout for a subgraph named in the supergraph but not in config.
const DEFAULT_SUBGRAPH_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an operation did not run.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PlanError {
    /// The document does not parse or validate: GraphQL errors with locations.
    #[error("{}", messages(.0))]
    Invalid(Vec<Json>),
    #[error("the operation could not be planned: {0}")]
    Planning(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
}

impl PlanError {
    pub fn code(&self) -> &'static str {
        match self {
            PlanError::Invalid(_) => "GRAPHQL_VALIDATION_FAILED",
            PlanError::Planning(_) => "QUERY_PLANNING_FAILED",
            PlanError::Unauthenticated(_) => "UNAUTHENTICATED",
            PlanError::Forbidden(_) => "FORBIDDEN",
        }
    }

    /// The GraphQL errors to answer with.
    pub fn to_errors(&self) -> Vec<Json> {
        match self {
            PlanError::Invalid(errors) => errors.clone(),
            _ => {
                vec![json!({ "message": self.to_string(), "extensions": { "code": self.code() } })]
            }
        }
    }
}

fn messages(errors: &[Json]) -> String {
    let messages: Vec<&str> = errors
        .iter()
        .filter_map(|e| e.get("message").and_then(Json::as_str))
        .collect();
    messages.join("; ")
}

/// What a field or type demands of the caller (`@authenticated`, `@requiresScopes`).
#[derive(Debug, Clone)]
enum Requirement {
    Authenticated {
        coordinate: String,
    },
    /// Any one group, all of its scopes.
    Scopes {
        coordinate: String,
        groups: Vec<Vec<String>>,
    },
}

/// A validated and planned operation, cached by document and operation name.
#[derive(Debug)]
pub struct PreparedPlan {
    pub operation: Operation,
    pub plan: QueryPlan,
    requirements: Vec<Requirement>,
}

impl PreparedPlan {
    /// Refuses the operation when a field or type it selects needs a token or scopes the
    /// caller does not have.
    pub fn check_access(&self, principal: Option<&Principal>) -> Result<(), PlanError> {
        for requirement in &self.requirements {
            match (requirement, principal) {
                (Requirement::Authenticated { coordinate }, None)
                | (Requirement::Scopes { coordinate, .. }, None) => {
                    return Err(PlanError::Unauthenticated(format!(
                        "`{coordinate}` needs a signed-in caller: send an access token as `Authorization: Bearer <token>`"
                    )));
                }
                (Requirement::Scopes { coordinate, groups }, Some(principal)) => {
                    let granted = groups
                        .iter()
                        .any(|group| group.iter().all(|scope| principal.has_permission(scope)));
                    if !granted {
                        let wanted: Vec<String> = groups.iter().map(|g| g.join(" and ")).collect();
                        return Err(PlanError::Forbidden(format!(
                            "`{coordinate}` needs the permission {}",
                            wanted.join(", or ")
                        )));
                    }
                }
                (Requirement::Authenticated { .. }, Some(_)) => {}
            }
        }
        Ok(())
    }
}

/// A supergraph ready to serve.
pub struct Graph {
    pub sdl: String,
    planner: Planner,
    /// The API schema's types, as projection and variable coercion read them.
    pub types: Types,
    /// The API schema as async-graphql serves introspection of it.
    pub api: async_graphql::dynamic::Schema,
    validation: ValidationPlan,
    max_depth: usize,
    endpoints: HashMap<String, Endpoint>,
    possible_types: HashMap<String, HashSet<String>>,
    plans: BoundedCache<PreparedPlan>,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph")
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

/// How a [`Graph`] is built.
#[derive(Debug, Clone)]
pub struct GraphOptions {
    pub subgraphs: BTreeMap<String, SubgraphEndpoint>,
    pub plan_cache_size: usize,
    pub max_depth: usize,
}

impl From<&RouterConfig> for GraphOptions {
    fn from(config: &RouterConfig) -> Self {
        Self {
            subgraphs: config.subgraphs.clone(),
            plan_cache_size: config.plan_cache_size,
            max_depth: config.limits.max_depth,
        }
    }
}

impl Graph {
    /// Builds the planner and API schema for a supergraph SDL.
    pub fn new(sdl: String, options: &GraphOptions) -> Result<Self, String> {
        let document = graphql_tools::parser::parse_schema::<String>(&sdl)
            .map_err(|e| format!("the supergraph does not parse: {e}"))?
            .into_static();
        let planner = catch_unwind(AssertUnwindSafe(|| {
            Planner::new_from_supergraph(&document, QueryPlannerOptions::default())
        }))
        .map_err(|_| {
            "the query planner rejected the supergraph (it has no Query type?)".to_owned()
        })?
        .map_err(|e| format!("the query planner rejected the supergraph: {e}"))?;
        let types = Types::new(&planner.consumer_schema.document);
        let api = api_schema::build(&planner.consumer_schema.document, &types)
            .map_err(|e| format!("the API schema is invalid: {e}"))?;
        let mut endpoints = HashMap::new();
        for (name, url) in &planner.supergraph.subgraph_endpoint_map {
            let configured = options.subgraphs.get(name);
            let url = configured.map_or(url.as_str(), |c| c.url.as_str());
            // Parsed once here, not on every fetch.
            let url = reqwest::Url::parse(url)
                .map_err(|e| format!("subgraph `{name}` has an invalid URL `{url}`: {e}"))?;
            endpoints.insert(
                name.clone(),
                Endpoint {
                    url,
                    timeout: configured.map_or(DEFAULT_SUBGRAPH_TIMEOUT, |c| {
                        Duration::from_secs(c.timeout_secs)
                    }),
                },
            );
        }
        Ok(Self {
            possible_types: crate::types::possible_types(&document),
            sdl,
            types,
            planner,
            api,
            validation: crate::operation::validation_plan(),
            max_depth: options.max_depth,
            endpoints,
            plans: BoundedCache::new(options.plan_cache_size),
        })
    }

    pub fn endpoint(&self, service: &str) -> Option<&Endpoint> {
        self.endpoints.get(service)
    }

    /// Plans in the cache.
    pub fn cached_plans(&self) -> usize {
        self.plans.len()
    }

    /// Whether `name` is an interface or union.
    pub fn is_abstract(&self, name: &str) -> bool {
        self.possible_types.contains_key(name)
    }

    /// Whether an object of type `actual` matches the type condition `condition`.
    pub fn type_matches(&self, actual: &str, condition: &str) -> bool {
        actual == condition
            || self
                .possible_types
                .get(condition)
                .is_some_and(|members| members.contains(actual))
    }

    /// The plan for an operation, from the cache or planned now.
    pub fn prepare(
        &self,
        query: &str,
        operation_name: Option<&str>,
    ) -> Result<Arc<PreparedPlan>, PlanError> {
        let key = operation_key(query, operation_name);
        match self.plans.get(&key) {
            Some(plan) => Ok(plan),
            None => self.plan_and_keep(key, query, operation_name),
        }
    }

    /// Validates and plans an operation not yet cached, and keeps the result under `key`.
    fn plan_and_keep(
        &self,
        key: OperationKey,
        query: &str,
        operation_name: Option<&str>,
    ) -> Result<Arc<PreparedPlan>, PlanError> {
        let prepared = Arc::new(self.plan(query, operation_name)?);
        self.plans.insert(key, prepared.clone());
        Ok(prepared)
    }

    /// [`Graph::prepare`] for a request: a cached plan at once; validation and planning (CPU
    /// work that grows with the document, up to the edge's token limit) on a blocking thread,
    /// so they never hold up the async workers serving other requests. `key` is the request's
    /// [`operation_key`].
    pub async fn prepare_off_thread(
        self: &Arc<Self>,
        key: OperationKey,
        query: &str,
        operation_name: Option<&str>,
    ) -> Result<Arc<PreparedPlan>, PlanError> {
        if let Some(plan) = self.plans.get(&key) {
            return Ok(plan);
        }
        let graph = self.clone();
        let (query, operation_name) = (query.to_owned(), operation_name.map(str::to_owned));
        tokio::task::spawn_blocking(move || {
            graph.plan_and_keep(key, &query, operation_name.as_deref())
        })
        .await
        .unwrap_or_else(|_| {
            Err(PlanError::Planning(
                "the operation could not be prepared".into(),
            ))
        })
    }

    /// The plan text for an operation (for tests and diagnostics).
    pub fn plan_json(&self, query: &str, operation_name: Option<&str>) -> Result<Json, PlanError> {
        let prepared = self.prepare(query, operation_name)?;
        serde_json::to_value(&prepared.plan).map_err(|e| PlanError::Planning(e.to_string()))
    }

    fn plan(&self, query: &str, operation_name: Option<&str>) -> Result<PreparedPlan, PlanError> {
        let document = crate::operation::parse(query).map_err(PlanError::Invalid)?;
        let operation = Operation::prepare(
            &self.types,
            &self.planner.consumer_schema.document,
            &self.validation,
            &document,
            operation_name,
            self.max_depth,
        )
        .map_err(PlanError::Invalid)?;
        let supergraph = &self.planner.supergraph;
        let planned = catch_unwind(AssertUnwindSafe(|| {
            let normalized = hive_router_query_planner::ast::normalization::normalize_operation(
                supergraph,
                &document,
                operation_name,
            )
            .map_err(|e| PlanError::Planning(e.to_string()))?;
            let mut normalized_operation = normalized.executable_operation().clone();
            strip_introspection(&mut normalized_operation.selection_set);
            let requirements = requirements(supergraph, &normalized_operation);
            if !asks_subgraphs(&normalized_operation.selection_set) {
                // Only introspection and `__typename`: the router answers it all.
                let plan = QueryPlan {
                    kind: "QueryPlan",
                    node: None,
                };
                return Ok((plan, requirements));
            }
            let plan = self
                .planner
                .plan_from_normalized_operation(
                    &normalized_operation,
                    PlannerOverrideContext::default(),
                    &CancellationToken::new(),
                )
                .map_err(|e| PlanError::Planning(e.to_string()))?;
            Ok((plan, requirements))
        }));
        match planned {
            Ok(result) => result.map(|(plan, requirements)| PreparedPlan {
                operation,
                plan,
                requirements,
            }),
            Err(_) => {
                tracing::error!(query, "the query planner panicked");
                Err(PlanError::Planning(
                    "the query planner failed on this operation".into(),
                ))
            }
        }
    }
}

/// The router answers `__schema` and `__type` itself; subgraphs never see them.
fn strip_introspection(selections: &mut SelectionSet) {
    selections.items.retain_mut(|item| match item {
        SelectionItem::Field(field) => field.name != "__schema" && field.name != "__type",
        SelectionItem::InlineFragment(fragment) => {
            strip_introspection(&mut fragment.selections);
            !fragment.selections.items.is_empty()
        }
        SelectionItem::FragmentSpread(_) => true,
    });
}

/// Whether a (normalized, introspection-free) selection asks anything of a subgraph.
fn asks_subgraphs(selections: &SelectionSet) -> bool {
    selections.items.iter().any(|item| match item {
        SelectionItem::Field(field) => field.name != "__typename",
        SelectionItem::InlineFragment(fragment) => asks_subgraphs(&fragment.selections),
        SelectionItem::FragmentSpread(_) => true,
    })
}

fn type_requirements(definition: &SupergraphDefinition, out: &mut Vec<Requirement>) {
    let (authenticated, scopes) = match definition {
        SupergraphDefinition::Object(t) => (!t.authenticated.is_empty(), &t.requires_scopes),
        SupergraphDefinition::Interface(t) => (!t.authenticated.is_empty(), &t.requires_scopes),
        SupergraphDefinition::Scalar(t) => (!t.authenticated.is_empty(), &t.requires_scopes),
        SupergraphDefinition::Enum(t) => (!t.authenticated.is_empty(), &t.requires_scopes),
        SupergraphDefinition::Union(_) | SupergraphDefinition::InputObject(_) => return,
    };
    let name = definition.name().to_owned();
    if authenticated {
        out.push(Requirement::Authenticated {
            coordinate: name.clone(),
        });
    }
    for directive in scopes {
        out.push(Requirement::Scopes {
            coordinate: name.clone(),
            groups: scope_groups(&directive.scopes),
        });
    }
}

fn scope_groups(value: &PlanValue) -> Vec<Vec<String>> {
    let PlanValue::List(groups) = value else {
        return vec![];
    };
    groups
        .iter()
        .map(|group| match group {
            PlanValue::List(scopes) => scopes
                .iter()
                .filter_map(|s| match s {
                    PlanValue::String(s) => Some(s.clone()),
                    _ => None,
                })
                .collect(),
            PlanValue::String(s) => vec![s.clone()],
            _ => vec![],
        })
        .collect()
}

/// Every `@authenticated` / `@requiresScopes` the operation touches, in selection order.
fn requirements(supergraph: &SupergraphState, operation: &OperationDefinition) -> Vec<Requirement> {
    let root = match operation.operation_kind {
        Some(hive_router_query_planner::state::supergraph_state::OperationKind::Mutation) => {
            supergraph
                .mutation_type
                .clone()
                .unwrap_or_else(|| "Mutation".into())
        }
        Some(hive_router_query_planner::state::supergraph_state::OperationKind::Subscription) => {
            supergraph
                .subscription_type
                .clone()
                .unwrap_or_else(|| "Subscription".into())
        }
        _ => supergraph.query_type.clone(),
    };
    let mut out = Vec::new();
    walk_requirements(supergraph, &root, &operation.selection_set, &mut out);
    out
}

fn walk_requirements(
    supergraph: &SupergraphState,
    parent: &str,
    selections: &SelectionSet,
    out: &mut Vec<Requirement>,
) {
    let Some(definition) = supergraph.definitions.get(parent) else {
        return;
    };
    for item in &selections.items {
        match item {
            SelectionItem::Field(field) => {
                let Some(field_definition) = definition.fields().get(&field.name) else {
                    continue;
                };
                let coordinate = format!("{parent}.{}", field.name);
                if !field_definition.authenticated.is_empty() {
                    out.push(Requirement::Authenticated {
                        coordinate: coordinate.clone(),
                    });
                }
                for directive in &field_definition.requires_scopes {
                    out.push(Requirement::Scopes {
                        coordinate: coordinate.clone(),
                        groups: scope_groups(&directive.scopes),
                    });
                }
                let target = field_definition.field_type.inner_type();
                if let Some(target_definition) = supergraph.definitions.get(target) {
                    type_requirements(target_definition, out);
                }
                if !field.selections.items.is_empty() {
                    walk_requirements(supergraph, target, &field.selections, out);
                }
            }
            SelectionItem::InlineFragment(fragment) => {
                if let Some(target_definition) =
                    supergraph.definitions.get(&fragment.type_condition)
                    && fragment.type_condition != parent
                {
                    type_requirements(target_definition, out);
                }
                walk_requirements(
                    supergraph,
                    &fragment.type_condition,
                    &fragment.selections,
                    out,
                );
            }
            SelectionItem::FragmentSpread(_) => {}
        }
    }
}
