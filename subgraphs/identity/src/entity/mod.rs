//! SeaORM entities of the identity schema.

pub mod credential;
pub mod email_token;
pub mod pending_call;
pub mod user;
