//! Keygraph federation router: the single GraphQL endpoint.
//!
//! Keeping a supergraph to serve:
//! - [`supergraph`]: composition of subgraph SDLs and the fix-ups the planner needs.
//! - [`reload`]: the task that loads the supergraph and keeps it current.
//! - [`graph`]: a served supergraph — planner, API schema, endpoints, plan cache.
//! - [`types`]: the API schema's types as the executor reads them.
//! - [`api_schema`]: introspection of the API schema, via async-graphql.
//!
//! A request, step by step:
//! - [`edge`]: routes, CORS, reading a request from a POST or GET, refusing what cannot be read.
//! - [`pipeline`]: one request's way through: span, preparation, rate limits, access, run, answer.
//! - [`plan`]: preparing a document — parse, limits, validation, planning — cached per graph.
//! - [`operation`]: parsing and validation of a client's operation.
//! - [`variables`]: coercion of a request's variables to the operation's types.
//! - [`merging`]: the field-merging validation rule, in linear time.
//! - [`access`]: what `@authenticated`, `@requiresScopes` and step-up fields ask of the caller.
//! - [`execute`]: our plan executor (fetch, flatten, sequence, parallel, condition).
//! - [`response_plan`]: what the response writer writes for an operation, worked out once.
//! - [`project`]: the merged data projected onto the client's operation, with null propagation.
//! - [`answer`]: the HTTP answer: statuses per GraphQL over HTTP, the body.
//!
//! Around them: [`server`] (the shared state, and starting the router), [`health`]
//! (`/health`, `/ready`, `/metrics`), [`graphiql`], [`metrics`], [`inflight`] (identical
//! requests sharing one answer) and [`json`] (the executor's JSON values).

pub mod access;
pub mod answer;
pub mod api_schema;
pub mod edge;
pub mod execute;
pub mod graph;
pub mod graphiql;
pub mod health;
pub mod inflight;
pub mod json;
pub mod merging;
pub mod metrics;
pub mod operation;
pub mod pipeline;
pub mod plan;
pub mod project;
pub mod reload;
pub mod response_plan;
pub mod server;
pub mod supergraph;
pub mod types;
pub mod variables;

pub use server::{RouterState, run};
