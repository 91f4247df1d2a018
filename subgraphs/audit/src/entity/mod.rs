//! The audit service's tables.

pub mod checkpoint;
pub mod event;
pub mod key;
