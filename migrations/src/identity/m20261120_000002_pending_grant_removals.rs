use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Users deleted here whose grants authz has not yet confirmed removing; written in the
/// deletion's transaction and worked off with retries, so none is forgotten.
#[derive(DeriveIden)]
enum PendingGrantRemovals {
    Table,
    UserId,
    CreatedAt,
    Attempts,
    NextAttemptAt,
    LastError,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(PendingGrantRemovals::Table)
                    .col(uuid(PendingGrantRemovals::UserId).primary_key())
                    .col(timestamp_with_time_zone(PendingGrantRemovals::CreatedAt))
                    .col(integer(PendingGrantRemovals::Attempts).default(0))
                    .col(timestamp_with_time_zone(
                        PendingGrantRemovals::NextAttemptAt,
                    ))
                    .col(string_len_null(PendingGrantRemovals::LastError, 500))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(PendingGrantRemovals::Table).to_owned())
            .await
    }
}
