//! Passkey ceremonies: what a WebAuthn registration or authentication begun waits for its
//! finish with (the relying party's state, serialised), on whichever replica finishes it.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum PasskeyCeremonies {
    Table,
    Id,
    UserId,
    Purpose,
    SignInChallenge,
    Name,
    State,
    CreatedAt,
    ExpiresAt,
    UsedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(PasskeyCeremonies::Table)
                    .col(uuid(PasskeyCeremonies::Id).primary_key())
                    // None for a passwordless sign-in (the passkey says who).
                    .col(uuid_null(PasskeyCeremonies::UserId))
                    // register, second_factor, step_up or sign_in.
                    .col(string_len(PasskeyCeremonies::Purpose, 16))
                    // The sign-in challenge a second-factor ceremony completes.
                    .col(uuid_null(PasskeyCeremonies::SignInChallenge))
                    // The name a registration gives the passkey.
                    .col(string_len_null(PasskeyCeremonies::Name, 64))
                    .col(text(PasskeyCeremonies::State))
                    .col(timestamp_with_time_zone(PasskeyCeremonies::CreatedAt))
                    .col(timestamp_with_time_zone(PasskeyCeremonies::ExpiresAt))
                    .col(timestamp_with_time_zone_null(PasskeyCeremonies::UsedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(PasskeyCeremonies::Table).to_owned())
            .await
    }
}
