//! One sea-orm-migration Migrator per service. Each runs inside its service's own schema (or
//! SQLite file), so the `seaql_migrations` table lives beside the tables it describes.

pub mod audit;
pub mod auth;
pub mod authz;
pub mod identity;
mod outbox;

pub use sea_orm_migration::MigratorTrait;
