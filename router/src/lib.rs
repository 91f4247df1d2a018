//! Keygraph federation router: the single GraphQL endpoint.
//!
//! - [`supergraph`]: composition of subgraph SDLs and the fix-ups the planner needs.
//! - [`plan`]: a served supergraph — planner, API schema, endpoints, plan cache.
//! - [`api_schema`]: validation, introspection and response projection via async-graphql.
//! - [`execute`]: our plan executor (fetch, flatten, sequence, parallel, condition).
//! - [`server`]: the HTTP edge and the task that keeps the supergraph current.

pub mod api_schema;
pub mod cache;
pub mod execute;
pub mod fragments;
pub mod metrics;
pub mod nulls;
pub mod plan;
pub mod server;
pub mod supergraph;

pub use server::{RouterState, run};
