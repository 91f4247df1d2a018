//! Authz: roles, the permission catalog, role-permission and user-role grants.

use sea_orm_migration::prelude::*;

mod m20261120_000001_init;
mod m20261210_000002_user_role_description;

pub struct Migrator;

/// Name of the built-in role that holds `*`.
pub const ADMIN_ROLE: &str = "admin";
/// Name of the built-in role every account holds while `authz.default_roles` names it (it
/// does by default).
pub const USER_ROLE: &str = "user";

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261120_000001_init::Migration),
            Box::new(m20261210_000002_user_role_description::Migration),
        ]
    }
}
