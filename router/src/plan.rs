//! Preparing a client's document against the served [`Graph`]: parsing under the token
//! limit, the limits on the inlined operation, validation, the access requirements, and
//! planning within its time budget, off the async workers; the outcome (a plan, or why the
//! document cannot run) is cached per graph. [`PlanError`] is every reason an operation did
//! not run.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use hive_router_query_planner::ast::selection_item::SelectionItem;
use hive_router_query_planner::ast::selection_set::SelectionSet;
use hive_router_query_planner::graph::PlannerOverrideContext;
use hive_router_query_planner::planner::plan_nodes::QueryPlan;
use hive_router_query_planner::utils::cancellation::CancellationToken;
use keygraph_kernel::ErrorCode;
use keygraph_kernel::cache::{OperationKey, operation_key};
use keygraph_kernel::guard::Authentication;
use keygraph_kernel::limits::{LimitExceeded, Limits};
use serde_json::{Map, Value as Json, json};

use crate::access::Requirements;
use crate::operation::{Measured, Operation, OperationKind, Parsed, QueryDocument};
use crate::response_plan::ResponsePlan;
use crate::types::Types;

/// The served graph and how it is built: named here too, where callers (the `plan` command,
/// the benchmarks) have always found them.
pub use crate::graph::{Graph, GraphOptions};

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
    requirements: Requirements,
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
        self.requirements.check(authentication)
    }
}

impl Graph {
    /// What a document comes to, if it was prepared before.
    pub(crate) fn cached(&self, key: &OperationKey) -> Option<Arc<Preparation>> {
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
    pub(crate) fn prepare_and_keep(
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
                Requirements::of(supergraph, &self.step_up_fields, &normalized_operation);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::tests::graph;

    const ME: &str = "{ me { id email roles { name } permissions } }";

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
