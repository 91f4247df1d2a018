//! SeaORM entities of the auth schema.

pub mod factor;
pub mod passkey_ceremony;
pub mod recovery_code;
pub mod refresh_token;
pub mod session;
pub mod sign_in_challenge;
pub mod signing_key;
