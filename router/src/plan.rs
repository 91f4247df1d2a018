//! One composed supergraph, ready to serve: the planner, the API schema, subgraph endpoints and
//! the plan cache. A recomposition builds a new [`Graph`]; requests in flight keep the old one.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
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
use keygraph_kernel::ErrorCode;
use keygraph_kernel::config::{RouterConfig, RouterLimits, SubgraphEndpoint};
use keygraph_kernel::guard::Authentication;
use keygraph_kernel::limits::{LimitExceeded, Limits};
use serde_json::{Map, Value as Json, json};

use crate::api_schema;
use crate::execute::Endpoint;
use crate::operation::{Measured, Operation, OperationKind, Parsed, QueryDocument};
use crate::response_plan::ResponsePlan;
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
    /// The document is larger than a limit allows (checked before validation).
    #[error("{0}")]
    Refused(LimitExceeded),
    #[error("the operation could not be planned: {0}")]
    Planning(String),
    /// Planning ran out of its time budget, or the request went away.
    #[error("planning the operation took longer than {budget_ms} ms")]
    PlanningTimedOut { budget_ms: u64 },
    #[error("{message}")]
    Unauthenticated {
        message: String,
        /// Why the token sent was refused (`expired`, `ended`, ...); none when none was sent.
        reason: Option<&'static str>,
    },
    #[error("{0}")]
    Forbidden(String),
    /// A field of `router.step_up_fields` without a recent multi-factor sign-in.
    #[error("{}", keygraph_kernel::ApiError::step_up_required(.0).message)]
    StepUpRequired(String),
}

impl PlanError {
    /// The `extensions.code` it is answered with. [`PlanError::Invalid`] carries its errors,
    /// whose codes are the parser's or the validator's.
    pub fn code(&self) -> ErrorCode {
        match self {
            PlanError::Invalid(_) => ErrorCode::GraphqlValidationFailed,
            PlanError::Refused(_) | PlanError::PlanningTimedOut { .. } => {
                ErrorCode::OperationLimitExceeded
            }
            PlanError::Planning(_) => ErrorCode::QueryPlanningFailed,
            PlanError::Unauthenticated { .. } => ErrorCode::Unauthenticated,
            PlanError::Forbidden(_) => ErrorCode::Forbidden,
            PlanError::StepUpRequired(_) => ErrorCode::StepUpRequired,
        }
    }

    /// The GraphQL errors to answer with.
    pub fn to_errors(&self) -> Vec<Json> {
        match self {
            PlanError::Invalid(errors) => errors.clone(),
            PlanError::Refused(refused) => {
                vec![json!({ "message": refused.to_string(), "extensions": refused.extensions() })]
            }
            PlanError::PlanningTimedOut { budget_ms } => vec![json!({
                "message": self.to_string(),
                "extensions": {
                    "code": self.code().as_str(),
                    "limit": "planning_timeout_ms",
                    "max": budget_ms,
                },
            })],
            PlanError::Unauthenticated {
                reason: Some(reason),
                ..
            } => vec![json!({
                "message": self.to_string(),
                "extensions": { "code": self.code().as_str(), "reason": reason },
            })],
            _ => {
                vec![
                    json!({ "message": self.to_string(), "extensions": { "code": self.code().as_str() } }),
                ]
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
    /// A recent sign-in with the second factor (`router.step_up_fields`).
    StepUp {
        coordinate: String,
    },
}

/// What preparing a request's document came to, cached by its [`operation_key`]: the kind of
/// operation it selects (known once it parses) and its plan, or why it cannot run.
#[derive(Debug)]
pub struct Preparation {
    pub kind: Option<OperationKind>,
    pub outcome: Result<PreparedPlan, PlanError>,
}

/// A validated and planned operation.
#[derive(Debug)]
pub struct PreparedPlan {
    pub operation: Operation,
    pub plan: QueryPlan,
    requirements: Vec<Requirement>,
    /// The variables of its `@skip` / `@include` conditions.
    conditions: Vec<String>,
    /// Its response plans, by the values of those variables (one when there are none).
    response_plans: std::sync::Mutex<Vec<(Vec<bool>, Arc<ResponsePlan>)>>,
}

impl PreparedPlan {
    /// The response plan for a request's (coerced) variables, planned on first use.
    pub fn response_plan(&self, types: &Types, variables: &Map<String, Json>) -> Arc<ResponsePlan> {
        let key = crate::response_plan::condition_key(&self.conditions, variables);
        let mut plans = self
            .response_plans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, plan)) = plans.iter().find(|(k, _)| *k == key) {
            return plan.clone();
        }
        let plan = Arc::new(crate::response_plan::compile(
            types,
            &self.operation,
            variables,
        ));
        plans.push((key, plan.clone()));
        plan
    }

    /// Refuses the operation when a field or type it selects needs a token or scopes the
    /// caller does not have; a token that was sent and refused says why.
    pub fn check_access(&self, authentication: &Authentication) -> Result<(), PlanError> {
        let principal = authentication.principal();
        for requirement in &self.requirements {
            match (requirement, principal) {
                (Requirement::Authenticated { coordinate }, None)
                | (Requirement::Scopes { coordinate, .. }, None)
                | (Requirement::StepUp { coordinate }, None) => {
                    return Err(match authentication {
                        Authentication::Invalid(refused) => PlanError::Unauthenticated {
                            message: format!(
                                "`{coordinate}` needs a signed-in caller, and the access token sent was refused: {refused}"
                            ),
                            reason: Some(refused.reason()),
                        },
                        _ => PlanError::Unauthenticated {
                            message: format!(
                                "`{coordinate}` needs a signed-in caller: send an access token as `Authorization: Bearer <token>`"
                            ),
                            reason: None,
                        },
                    });
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
                (Requirement::StepUp { coordinate }, Some(principal)) => {
                    if !principal.stepped_up() {
                        return Err(PlanError::StepUpRequired(format!("`{coordinate}`")));
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
    limits: RouterLimits,
    step_up_fields: BTreeSet<String>,
    endpoints: HashMap<String, Endpoint>,
    possible_types: HashMap<String, HashSet<String>>,
    /// Documents that can run, with their plans.
    plans: BoundedCache<Preparation>,
    /// Documents that cannot (they do not parse or validate, are over a limit, or cannot be
    /// planned), so a repeat is refused at the cost of a lookup. Kept apart from `plans`, so a
    /// flood of invalid documents never pushes out the plans of working ones.
    refusals: BoundedCache<Preparation>,
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
    pub limits: RouterLimits,
    /// `Type.field` coordinates that need a recent sign-in with the second factor
    /// (`router.step_up_fields`).
    pub step_up_fields: BTreeSet<String>,
}

impl From<&RouterConfig> for GraphOptions {
    fn from(config: &RouterConfig) -> Self {
        Self {
            subgraphs: config.subgraphs.clone(),
            plan_cache_size: config.plan_cache_size,
            limits: config.limits,
            step_up_fields: config.step_up_fields.iter().cloned().collect(),
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
        let mut step_up_fields = options.step_up_fields.clone();
        step_up_fields.extend(policy_step_up_fields(&document)?);
        for coordinate in &options.step_up_fields {
            let known = coordinate.split_once('.').is_some_and(|(parent, field)| {
                planner
                    .supergraph
                    .definitions
                    .get(parent)
                    .is_some_and(|d| d.fields().contains_key(field))
            });
            if !known {
                return Err(format!(
                    "router.step_up_fields: `{coordinate}` is not a field of the supergraph (write it as Type.field)"
                ));
            }
        }
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
            limits: options.limits,
            step_up_fields,
            endpoints,
            plans: BoundedCache::new(options.plan_cache_size),
            refusals: BoundedCache::new(options.plan_cache_size),
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

    /// What a document comes to, if it was prepared before.
    fn cached(&self, key: &OperationKey) -> Option<Arc<Preparation>> {
        self.plans.get(key).or_else(|| self.refusals.get(key))
    }

    /// The preparation of an operation, from the cache or made now on this thread, with the
    /// configured planning budget (for the `plan` command and tests).
    pub fn prepare(&self, query: &str, operation_name: Option<&str>) -> Arc<Preparation> {
        let key = operation_key(query, operation_name);
        self.cached(&key).unwrap_or_else(|| {
            let cancel = CancellationToken::with_timeout(self.planning_budget());
            self.prepare_and_keep(key, query, operation_name, &cancel)
        })
    }

    fn planning_budget(&self) -> Duration {
        Duration::from_millis(self.limits.planning_timeout_ms)
    }

    /// Prepares an operation not yet cached and keeps the result under `key`, unless planning
    /// was cut short (that depends on the moment, not on the document).
    fn prepare_and_keep(
        &self,
        key: OperationKey,
        query: &str,
        operation_name: Option<&str>,
        cancel: &CancellationToken,
    ) -> Arc<Preparation> {
        let preparation = Arc::new(self.prepare_now(query, operation_name, cancel));
        match &preparation.outcome {
            Ok(_) => self.plans.insert(key, preparation.clone()),
            Err(PlanError::PlanningTimedOut { .. }) => {}
            Err(_) => self.refusals.insert(key, preparation.clone()),
        }
        preparation
    }

    /// [`Graph::prepare`] for a request: a cached preparation at once; otherwise parsing,
    /// measuring, validation and planning on a blocking thread, so they never hold up the
    /// async workers serving other requests. Their cost is bounded: the document by the
    /// token limit, validation by the limits on the inlined operation (checked first, in one
    /// pass), and planning by `planning_timeout_ms`, or earlier when the request goes away
    /// (dropping this future cancels it). `key` is the request's [`operation_key`].
    pub async fn prepare_off_thread(
        self: &Arc<Self>,
        key: OperationKey,
        query: &str,
        operation_name: Option<&str>,
    ) -> Arc<Preparation> {
        let span = tracing::info_span!(
            "graphql prepare",
            graphql.plan.cached = tracing::field::Empty
        );
        if let Some(preparation) = self.cached(&key) {
            span.record("graphql.plan.cached", true);
            return preparation;
        }
        span.record("graphql.plan.cached", false);
        let cancel = Arc::new(CancellationToken::with_timeout(self.planning_budget()));
        let _cancel_when_dropped = CancelOnDrop(cancel.clone());
        let graph = self.clone();
        let (query, operation_name) = (query.to_owned(), operation_name.map(str::to_owned));
        // The blocking thread works inside this request's span, for its service.
        let service = keygraph_kernel::telemetry::current_service();
        tokio::task::spawn_blocking(move || {
            keygraph_kernel::telemetry::service_scope(service, || {
                let _entered = span.entered();
                graph.prepare_and_keep(key, &query, operation_name.as_deref(), &cancel)
            })
        })
        .await
        .unwrap_or_else(|_| {
            Arc::new(Preparation {
                kind: None,
                outcome: Err(PlanError::Planning(
                    "the operation could not be prepared".into(),
                )),
            })
        })
    }

    /// The plan text for an operation (for tests and diagnostics).
    pub fn plan_json(&self, query: &str, operation_name: Option<&str>) -> Result<Json, PlanError> {
        match &self.prepare(query, operation_name).outcome {
            Ok(prepared) => {
                serde_json::to_value(&prepared.plan).map_err(|e| PlanError::Planning(e.to_string()))
            }
            Err(err) => Err(err.clone()),
        }
    }

    /// Parses the document under the token limit, holds its inlined size to the limits,
    /// validates it and plans the selected operation.
    fn prepare_now(
        &self,
        query: &str,
        operation_name: Option<&str>,
        cancel: &CancellationToken,
    ) -> Preparation {
        let parsed = tracing::info_span!("graphql parse")
            .in_scope(|| crate::operation::parse(query, self.limits.max_tokens));
        let document = match parsed {
            Ok(document) => document,
            Err(Parsed::Invalid(errors)) => {
                return Preparation {
                    kind: None,
                    outcome: Err(PlanError::Invalid(errors)),
                };
            }
            Err(Parsed::Refused(refused)) => {
                return Preparation {
                    kind: None,
                    outcome: Err(PlanError::Refused(refused)),
                };
            }
        };
        Preparation {
            kind: crate::operation::selected_kind(&document, operation_name),
            outcome: self.plan(&document, query, operation_name, cancel),
        }
    }

    fn plan(
        &self,
        document: &QueryDocument,
        query: &str,
        operation_name: Option<&str>,
        cancel: &CancellationToken,
    ) -> Result<PreparedPlan, PlanError> {
        let limits = Limits {
            max_depth: self.limits.max_depth as u64,
            max_fields: self.limits.max_fields as u64,
            max_aliases: self.limits.max_aliases as u64,
            max_directives: self.limits.max_directives as u64,
        };
        let validating = tracing::info_span!("graphql validate").entered();
        limits
            .check(&Measured(document))
            .map_err(PlanError::Refused)?;
        let operation = Operation::prepare(
            &self.types,
            &self.planner.consumer_schema.document,
            &self.validation,
            document,
            operation_name,
        )
        .map_err(PlanError::Invalid)?;
        drop(validating);
        let _planning = tracing::info_span!("graphql plan").entered();
        let supergraph = &self.planner.supergraph;
        let planned = catch_unwind(AssertUnwindSafe(|| {
            let normalized = hive_router_query_planner::ast::normalization::normalize_operation(
                supergraph,
                document,
                operation_name,
            )
            .map_err(|e| PlanError::Planning(e.to_string()))?;
            let mut normalized_operation = normalized.executable_operation().clone();
            strip_introspection(&mut normalized_operation.selection_set);
            let requirements =
                requirements(supergraph, &self.step_up_fields, &normalized_operation);
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
                    cancel,
                )
                .map_err(|e| {
                    if cancel.bail_if_cancelled().is_err() {
                        PlanError::PlanningTimedOut {
                            budget_ms: self.limits.planning_timeout_ms,
                        }
                    } else {
                        PlanError::Planning(e.to_string())
                    }
                })?;
            Ok((plan, requirements))
        }));
        match planned {
            Ok(result) => result.map(|(plan, requirements)| {
                let conditions = crate::response_plan::condition_variables(&operation);
                PreparedPlan {
                    operation,
                    plan,
                    requirements,
                    conditions,
                    response_plans: std::sync::Mutex::default(),
                }
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

/// Cancels planning when the request that waits for it goes away (answered by a timeout, or
/// its client disconnected); a finished plan does not mind.
struct CancelOnDrop(Arc<CancellationToken>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
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

/// The fields whose `@policy` asks for [`STEP_UP_POLICY`](keygraph_kernel::guard::STEP_UP_POLICY).
/// A policy the router does not evaluate refuses the supergraph: it would otherwise let
/// everyone through.
fn policy_step_up_fields(
    document: &graphql_tools::parser::schema::Document<'static, String>,
) -> Result<BTreeSet<String>, String> {
    use graphql_tools::parser::schema::{Definition, TypeDefinition, Value};
    let mut out = BTreeSet::new();
    for definition in &document.definitions {
        let (name, fields) = match definition {
            Definition::TypeDefinition(TypeDefinition::Object(t)) => (&t.name, &t.fields),
            Definition::TypeDefinition(TypeDefinition::Interface(t)) => (&t.name, &t.fields),
            _ => continue,
        };
        for field in fields {
            for directive in field.directives.iter().filter(|d| d.name == "policy") {
                let coordinate = format!("{name}.{}", field.name);
                let names: Vec<&str> = directive
                    .arguments
                    .iter()
                    .filter(|(argument, _)| argument == "policies")
                    .flat_map(|(_, groups)| match groups {
                        Value::List(groups) => groups.iter().collect::<Vec<_>>(),
                        _ => Vec::new(),
                    })
                    .flat_map(|group| match group {
                        Value::List(policies) => policies
                            .iter()
                            .map(|p| match p {
                                Value::String(p) => p.as_str(),
                                _ => "",
                            })
                            .collect::<Vec<_>>(),
                        _ => vec![""],
                    })
                    .collect();
                if let Some(unknown) = names
                    .iter()
                    .find(|p| **p != keygraph_kernel::guard::STEP_UP_POLICY)
                {
                    return Err(format!(
                        "`{coordinate}` asks for the policy `{unknown}`, which this router does not evaluate (it knows `step_up`)"
                    ));
                }
                if !names.is_empty() {
                    out.insert(coordinate);
                }
            }
        }
    }
    Ok(out)
}

/// Every `@authenticated` / `@requiresScopes` and step-up field the operation touches, in
/// selection order.
fn requirements(
    supergraph: &SupergraphState,
    step_up: &BTreeSet<String>,
    operation: &OperationDefinition,
) -> Vec<Requirement> {
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
    walk_requirements(
        supergraph,
        step_up,
        &root,
        &operation.selection_set,
        &mut out,
    );
    out
}

fn walk_requirements(
    supergraph: &SupergraphState,
    step_up: &BTreeSet<String>,
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
                if step_up.contains(&coordinate) {
                    out.push(Requirement::StepUp {
                        coordinate: coordinate.clone(),
                    });
                }
                let target = field_definition.field_type.inner_type();
                if let Some(target_definition) = supergraph.definitions.get(target) {
                    type_requirements(target_definition, out);
                }
                if !field.selections.items.is_empty() {
                    walk_requirements(supergraph, step_up, target, &field.selections, out);
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
                    step_up,
                    &fragment.type_condition,
                    &fragment.selections,
                    out,
                );
            }
            SelectionItem::FragmentSpread(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test options, with these step-up fields.
    fn options(step_up_fields: &[&str]) -> GraphOptions {
        GraphOptions {
            subgraphs: BTreeMap::new(),
            plan_cache_size: 10,
            limits: RouterLimits {
                max_depth: 15,
                max_fields: 1000,
                max_aliases: 30,
                max_directives: 50,
                max_tokens: 15_000,
                planning_timeout_ms: 2_000,
            },
            step_up_fields: step_up_fields.iter().map(|f| (*f).to_owned()).collect(),
        }
    }

    /// Keygraph's own supergraph, as committed.
    fn graph() -> Graph {
        Graph::new(
            include_str!("../../schema/supergraph.graphql").to_owned(),
            &options(&[]),
        )
        .expect("the supergraph builds")
    }

    /// `router.step_up_fields` guard their fields at the router; a coordinate the
    /// supergraph lacks is refused when the graph loads.
    #[test]
    fn step_up_fields_need_a_recent_second_factor() {
        let sdl = include_str!("../../schema/supergraph.graphql");
        let graph = Graph::new(sdl.to_owned(), &options(&["Mutation.deleteRole"])).expect("builds");
        let principal = |step_up_until| {
            Authentication::Authenticated(keygraph_kernel::token::Principal {
                user_id: uuid::Uuid::nil(),
                session_id: uuid::Uuid::nil(),
                token_id: None,
                roles: vec![],
                scopes: vec!["*".into()],
                step_up_until,
            })
        };
        let check = |query: &str, authentication: &Authentication| match &graph
            .prepare(query, None)
            .outcome
        {
            Ok(prepared) => prepared.check_access(authentication),
            Err(err) => panic!("{query} does not prepare: {err}"),
        };
        // Keygraph's own sensitive fields carry `@policy(policies: [["step_up"]])`.
        let change = "mutation { changePassword(currentPassword: \"a\", newPassword: \"b\") }";
        assert!(matches!(
            check(change, &principal(None)),
            Err(PlanError::StepUpRequired(_))
        ));
        let delete = "mutation { deleteRole(id: \"x\") }";
        let now = keygraph_kernel::testing::now_secs();
        match check(delete, &principal(None)) {
            Err(err @ PlanError::StepUpRequired(_)) => {
                assert_eq!(err.code().as_str(), "STEP_UP_REQUIRED");
                assert!(err.to_string().contains("`Mutation.deleteRole`"), "{err}");
                assert!(err.to_string().contains("stepUp"), "{err}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            check(delete, &principal(Some(now - 1))),
            Err(PlanError::StepUpRequired(_))
        ));
        assert!(check(delete, &principal(Some(now + 60))).is_ok());
        assert!(matches!(
            check(delete, &Authentication::Anonymous),
            Err(PlanError::Unauthenticated { .. })
        ));
        // Other fields are not affected.
        assert!(check("{ roles { totalCount } }", &principal(None)).is_ok());
        let other_policy = sdl.replacen("[[\"step_up\"]]", "[[\"weekdays_only\"]]", 1);
        assert!(
            Graph::new(other_policy, &options(&[]))
                .err()
                .is_some_and(|e| e.contains("`weekdays_only`, which this router does not evaluate")),
        );
        let unknown = Graph::new(sdl.to_owned(), &options(&["Mutation.noSuchField"]));
        assert!(
            unknown
                .err()
                .is_some_and(|e| e.contains("`Mutation.noSuchField` is not a field")),
        );
    }

    const ME: &str = "{ me { id email roles { name } permissions } }";

    fn access(query: &str, authentication: &Authentication) -> Result<(), PlanError> {
        match &graph().prepare(query, None).outcome {
            Ok(prepared) => prepared.check_access(authentication),
            Err(err) => panic!("{query} does not prepare: {err}"),
        }
    }

    /// Keygraph's own guarded fields carry access directives, so the router refuses them
    /// before any subgraph is called; sign-in and its payload need no token.
    #[test]
    fn keygraph_fields_are_guarded_at_the_router() {
        let anonymous = Authentication::Anonymous;
        for query in [
            ME,
            "{ users { totalCount } }",
            "{ roles { totalCount } }",
            "{ sessions { id } }",
            "mutation { logout }",
            "mutation { deleteRole(id: \"x\") }",
        ] {
            assert!(
                matches!(
                    access(query, &anonymous),
                    Err(PlanError::Unauthenticated { .. })
                ),
                "{query}"
            );
        }
        let login = "mutation { login(email: \"a@b.c\", password: \"p\") { ... on AuthPayload { accessToken user { email roles { name } permissions } } } }";
        assert!(access(login, &anonymous).is_ok());
        let refreshed = "mutation { refresh(refreshToken: \"r\") { accessToken user { email } } }";
        assert!(access(refreshed, &anonymous).is_ok());

        let reader = Authentication::Authenticated(keygraph_kernel::token::Principal {
            user_id: uuid::Uuid::nil(),
            session_id: uuid::Uuid::nil(),
            token_id: None,
            roles: vec![],
            scopes: vec!["identity.user.read".into()],
            step_up_until: None,
        });
        assert!(access("{ users { totalCount } }", &reader).is_ok());
        match access("{ roles { totalCount } }", &reader) {
            Err(PlanError::Forbidden(message)) => assert!(message.contains("authz.role.read")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cancelled_planning_stops_and_is_not_kept() {
        let graph = graph();
        let key = operation_key(ME, None);
        let cancel = CancellationToken::new();
        cancel.cancel();
        let preparation = graph.prepare_and_keep(key, ME, None, &cancel);
        assert!(
            matches!(
                preparation.outcome,
                Err(PlanError::PlanningTimedOut { budget_ms: 2_000 })
            ),
            "{:?}",
            preparation.outcome
        );
        assert_eq!(
            preparation
                .outcome
                .as_ref()
                .err()
                .map(|err| err.code().as_str()),
            Some("OPERATION_LIMIT_EXCEEDED")
        );
        assert!(graph.cached(&key).is_none());
        // With time to plan, it plans, and the plan is kept.
        assert!(graph.prepare(ME, None).outcome.is_ok());
        assert!(graph.cached(&key).is_some());
    }

    #[test]
    fn the_request_going_away_cancels_its_planning() {
        let cancel = Arc::new(CancellationToken::with_timeout(Duration::from_secs(60)));
        assert!(cancel.bail_if_cancelled().is_ok());
        drop(CancelOnDrop(cancel.clone()));
        assert!(cancel.bail_if_cancelled().is_err());
    }

    #[test]
    fn refused_documents_are_kept_apart_and_refused_again_from_the_cache() {
        let graph = graph();
        for query in [
            "{ me { nope } }",
            "{ me { id }",
            "{ ...A } fragment A on Query { ...A }",
        ] {
            let first = graph.prepare(query, None);
            assert!(first.outcome.is_err(), "{query}");
            let again = graph.prepare(query, None);
            assert!(Arc::ptr_eq(&first, &again), "{query} was prepared twice");
        }
        assert_eq!(graph.cached_plans(), 0);
        assert_eq!(graph.refusals.len(), 3);
    }

    #[test]
    fn limits_are_counted_with_fragments_inlined_before_validation() {
        let graph = graph();
        let deep = "{ me { roles { permissions { code } } } }";
        assert!(graph.prepare(deep, None).outcome.is_ok());
        let query = keygraph_kernel::testing::fragment_fan(11, "__typename");
        let preparation = graph.prepare(&query, None);
        match &preparation.outcome {
            Err(PlanError::Refused(LimitExceeded::Fields { actual, max })) => {
                assert_eq!((*actual, *max), (2048, 1000));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(preparation.kind, Some(OperationKind::Query));
        let errors = preparation
            .outcome
            .as_ref()
            .err()
            .map(PlanError::to_errors)
            .unwrap_or_default();
        assert_eq!(
            errors[0]["extensions"],
            json!({ "code": "OPERATION_LIMIT_EXCEEDED", "limit": "max_fields", "max": 1000 })
        );
    }

    #[test]
    fn the_largest_legitimate_operations_are_well_within_the_limits() {
        let graph = graph();
        let introspection = include_str!("../tests/introspection.graphql");
        let document = crate::operation::parse(introspection, 15_000)
            .unwrap_or_else(|_| panic!("the introspection query parses"));
        let cost = keygraph_kernel::limits::measure(&Measured(&document)).expect("measured");
        // GraphiQL's schema query sets the depth limit's default: its `ofType` chain is 15
        // levels deep. Its fields are about a quarter of the field limit.
        assert_eq!(
            cost,
            keygraph_kernel::limits::Cost {
                fields: 226,
                aliases: 0,
                depth: 15,
                directives: 0
            }
        );
        assert!(graph.prepare(introspection, None).outcome.is_ok());
    }
}
