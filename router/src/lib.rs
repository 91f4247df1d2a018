//! Keygraph federation router: the single GraphQL endpoint.
//!
//! - [`supergraph`]: composition of subgraph SDLs and the fix-ups the planner needs.
//! - [`plan`]: a served supergraph — planner, API schema, endpoints, plan cache.
//! - [`operation`]: parsing, validation and variable coercion of a client's operation.
//! - [`merging`]: the field-merging validation rule, in linear time.
//! - [`execute`]: our plan executor (fetch, flatten, sequence, parallel, condition).
//! - [`project`]: the merged data projected onto the client's operation, with null propagation.
//! - [`types`]: the API schema's types as the executor reads them.
//! - [`api_schema`]: introspection of the API schema, via async-graphql.
//! - [`server`]: the HTTP edge and the task that keeps the supergraph current.

pub mod api_schema;
pub mod execute;
pub mod inflight;
pub mod json;
pub mod merging;
pub mod metrics;
pub mod operation;
pub mod plan;
pub mod project;
pub mod response_plan;
pub mod server;
pub mod supergraph;
pub mod types;

pub use server::{RouterState, run};
