//! Shared infrastructure of Keygraph services. No business logic lives here.

pub mod address;
pub mod backoff;
pub mod batching;
pub mod cache;
pub mod config;
pub mod counters;
pub mod db;
pub mod error;
pub mod files;
pub mod graphql;
pub mod guard;
pub mod http;
pub mod internal;
pub mod limits;
pub mod metrics;
pub mod outbox;
pub mod pagination;
pub mod permissions;
pub mod process;
pub mod ratelimit;
pub mod relay;
pub mod secrets;
pub mod telemetry;
pub mod throttle;
pub mod token;

#[cfg(feature = "testing")]
pub mod testing;

pub use error::{ApiError, ApiResult, ErrorCode};
