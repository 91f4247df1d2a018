//! Identity: users, their password credentials and mailed single-use tokens.

use sea_orm_migration::prelude::*;

mod m20261120_000001_init;
mod m20261120_000002_pending_grant_removals;
mod m20261121_000003_pending_calls;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261120_000001_init::Migration),
            Box::new(m20261120_000002_pending_grant_removals::Migration),
            Box::new(m20261121_000003_pending_calls::Migration),
        ]
    }
}
