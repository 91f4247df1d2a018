//! SeaORM entities of the authz schema.

pub mod permission;
pub mod role;
pub mod role_permission;
pub mod user_role;
