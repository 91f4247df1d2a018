//! Audit: the hash-chained event log, its signed checkpoints and the keys that signed them.

use sea_orm_migration::prelude::*;

mod m20261203_000001_init;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(m20261203_000001_init::Migration)]
    }
}
