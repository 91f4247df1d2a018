use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Calls identity owes other services about a user (drop a deleted user's grants in authz,
/// end a user's sessions in auth). Written in the transaction of the change that causes them,
/// delivered with retries; replaces `pending_grant_removals`, whose rows move over.
#[derive(DeriveIden)]
enum PendingCalls {
    Table,
    Id,
    Kind,
    UserId,
    KeepSession,
    Reason,
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
                    .table(PendingCalls::Table)
                    .col(uuid(PendingCalls::Id).primary_key())
                    // `drop_grants` or `end_sessions`.
                    .col(string_len(PendingCalls::Kind, 32))
                    .col(uuid(PendingCalls::UserId))
                    .col(uuid_null(PendingCalls::KeepSession))
                    .col(string_len_null(PendingCalls::Reason, 64))
                    .col(timestamp_with_time_zone(PendingCalls::CreatedAt))
                    .col(integer(PendingCalls::Attempts).default(0))
                    .col(timestamp_with_time_zone(PendingCalls::NextAttemptAt))
                    .col(string_len_null(PendingCalls::LastError, 500))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("pending_calls_due")
                    .table(PendingCalls::Table)
                    .col(PendingCalls::NextAttemptAt)
                    .to_owned(),
            )
            .await?;
        // A grant removal was one per user, so the user id serves as the call's id.
        manager
            .get_connection()
            .execute_unprepared(
                "INSERT INTO pending_calls (id, kind, user_id, created_at, attempts, next_attempt_at, last_error) \
                 SELECT user_id, 'drop_grants', user_id, created_at, attempts, next_attempt_at, last_error \
                 FROM pending_grant_removals",
            )
            .await?;
        manager
            .drop_table(
                Table::drop()
                    .table(Alias::new("pending_grant_removals"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(PendingCalls::Table).to_owned())
            .await
    }
}
