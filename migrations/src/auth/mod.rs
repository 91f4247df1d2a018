//! Auth: signing keys, sessions (one per login) and their rotating refresh tokens, second
//! factors and recovery codes.

use sea_orm_migration::prelude::*;

mod m20261120_000001_init;
mod m20261204_000002_second_factors;
mod m20261204_000003_passkey_ceremonies;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261120_000001_init::Migration),
            Box::new(m20261204_000002_second_factors::Migration),
            Box::new(m20261204_000003_passkey_ceremonies::Migration),
        ]
    }
}
