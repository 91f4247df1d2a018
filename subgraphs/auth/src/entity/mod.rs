//! SeaORM entities of the auth schema.

pub mod refresh_token;
pub mod session;
pub mod signing_key;
