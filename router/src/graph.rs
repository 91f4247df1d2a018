//! One composed supergraph, ready to serve: the planner, the API schema, subgraph endpoints,
//! the fields that need a step-up, and the plan cache. A recomposition builds a new
//! [`Graph`]; requests in flight keep the old one. Preparing documents against it is
//! [`crate::plan`]'s.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use graphql_tools::validation::validate::ValidationPlan;
use hive_router_query_planner::planner::{Planner, QueryPlannerOptions};
use keygraph_kernel::cache::BoundedCache;
use keygraph_kernel::config::{RouterConfig, RouterLimits, SubgraphEndpoint};

use crate::api_schema;
use crate::execute::Endpoint;
use crate::plan::Preparation;
use crate::types::Types;

/// Timeout for a subgraph named in the supergraph but not in config.
const DEFAULT_SUBGRAPH_TIMEOUT: Duration = Duration::from_secs(10);

/// A supergraph ready to serve.
pub struct Graph {
    pub sdl: String,
    pub(crate) planner: Planner,
    /// The API schema's types, as projection and variable coercion read them.
    pub types: Types,
    /// The API schema as async-graphql serves introspection of it.
    pub api: async_graphql::dynamic::Schema,
    pub(crate) validation: ValidationPlan,
    pub(crate) limits: RouterLimits,
    /// `Type.field` coordinates that need a recent sign-in with the second factor: the
    /// configured ones and those whose `@policy` asks for it.
    pub(crate) step_up_fields: BTreeSet<String>,
    endpoints: HashMap<String, Endpoint>,
    possible_types: HashMap<String, HashSet<String>>,
    /// Documents that can run, with their plans.
    pub(crate) plans: BoundedCache<Preparation>,
    /// Documents that cannot (they do not parse or validate, are over a limit, or cannot be
    /// planned), so a repeat is refused at the cost of a lookup. Kept apart from `plans`, so a
    /// flood of invalid documents never pushes out the plans of working ones.
    pub(crate) refusals: BoundedCache<Preparation>,
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
        step_up_fields.extend(crate::access::policy_step_up_fields(&document)?);
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
}

#[cfg(test)]
pub(crate) mod tests {
    //! Keygraph's own supergraph, for the tests of preparing and access too.

    use std::collections::BTreeMap;

    use keygraph_kernel::config::RouterLimits;

    use super::*;

    /// Test options, with these step-up fields.
    pub(crate) fn options(step_up_fields: &[&str]) -> GraphOptions {
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
    pub(crate) fn graph() -> Graph {
        Graph::new(
            include_str!("../../schema/supergraph.graphql").to_owned(),
            &options(&[]),
        )
        .expect("the supergraph builds")
    }

    #[test]
    fn every_subgraph_of_the_supergraph_has_an_endpoint() {
        let graph = graph();
        for service in ["identity", "auth", "authz", "audit"] {
            assert!(graph.endpoint(service).is_some(), "{service}");
        }
        assert!(graph.endpoint("billing").is_none());
    }
}
