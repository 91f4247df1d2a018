//! Second factors (TOTP now; passkeys share the table), recovery codes, the challenges a
//! password sign-in answers when a second factor is due, and how each session signed in.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Factors {
    Table,
    Id,
    UserId,
    Kind,
    Name,
    SealedSecret,
    Credential,
    LastStep,
    CreatedAt,
    ConfirmedAt,
    LastUsedAt,
}

#[derive(DeriveIden)]
enum RecoveryCodes {
    Table,
    Id,
    UserId,
    CodeHash,
    CreatedAt,
    UsedAt,
}

#[derive(DeriveIden)]
enum SignInChallenges {
    Table,
    Id,
    TokenHash,
    UserId,
    Amr,
    ClientAddr,
    UserAgent,
    EnrolFactor,
    CreatedAt,
    ExpiresAt,
    UsedAt,
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    Amr,
    AuthTime,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Factors::Table)
                    .col(uuid(Factors::Id).primary_key())
                    .col(uuid(Factors::UserId))
                    // totp (passkeys to come).
                    .col(string_len(Factors::Kind, 16))
                    // What the user calls it ("Phone").
                    .col(string_len(Factors::Name, 64))
                    // A TOTP secret sealed with the key-encryption key: nonce || ciphertext, base64.
                    .col(string_len_null(Factors::SealedSecret, 255))
                    // A passkey's public credential (JSON).
                    .col(text_null(Factors::Credential))
                    // The newest TOTP step accepted: a code of it or an earlier one is a replay.
                    .col(big_integer_null(Factors::LastStep))
                    .col(timestamp_with_time_zone(Factors::CreatedAt))
                    // Null while enrolment waits for its first correct code.
                    .col(timestamp_with_time_zone_null(Factors::ConfirmedAt))
                    .col(timestamp_with_time_zone_null(Factors::LastUsedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("factors_user")
                    .table(Factors::Table)
                    .col(Factors::UserId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RecoveryCodes::Table)
                    .col(uuid(RecoveryCodes::Id).primary_key())
                    .col(uuid(RecoveryCodes::UserId))
                    // SHA-256 of the normalised code, hex (codes carry 80 random bits).
                    .col(string_len_uniq(RecoveryCodes::CodeHash, 64))
                    .col(timestamp_with_time_zone(RecoveryCodes::CreatedAt))
                    .col(timestamp_with_time_zone_null(RecoveryCodes::UsedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("recovery_codes_user")
                    .table(RecoveryCodes::Table)
                    .col(RecoveryCodes::UserId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(SignInChallenges::Table)
                    .col(uuid(SignInChallenges::Id).primary_key())
                    // SHA-256 of the challenge handed to the client, hex.
                    .col(string_len_uniq(SignInChallenges::TokenHash, 64))
                    .col(uuid(SignInChallenges::UserId))
                    // How the first step proved the user (`pwd`).
                    .col(string_len(SignInChallenges::Amr, 64))
                    // The first step's client: completion must come from it.
                    .col(string_len_null(SignInChallenges::ClientAddr, 64))
                    .col(string_len_null(SignInChallenges::UserAgent, 512))
                    // A factor being enrolled because a role requires one.
                    .col(uuid_null(SignInChallenges::EnrolFactor))
                    .col(timestamp_with_time_zone(SignInChallenges::CreatedAt))
                    .col(timestamp_with_time_zone(SignInChallenges::ExpiresAt))
                    .col(timestamp_with_time_zone_null(SignInChallenges::UsedAt))
                    .to_owned(),
            )
            .await?;
        // SQLite adds one column per statement.
        manager
            .alter_table(
                Table::alter()
                    .table(Sessions::Table)
                    .add_column(string_len(Sessions::Amr, 64).default("pwd"))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Sessions::Table)
                    .add_column(timestamp_with_time_zone_null(Sessions::AuthTime))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Sessions::AuthTime, Sessions::Amr] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Sessions::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        for table in ["sign_in_challenges", "recovery_codes", "factors"] {
            manager
                .drop_table(Table::drop().table(Alias::new(table)).to_owned())
                .await?;
        }
        Ok(())
    }
}
