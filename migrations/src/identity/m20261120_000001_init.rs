use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Email,
    EmailKey,
    DisplayName,
    EmailVerified,
    Status,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Credentials {
    Table,
    UserId,
    PasswordHash,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum EmailTokens {
    Table,
    Id,
    UserId,
    Purpose,
    TokenHash,
    ExpiresAt,
    UsedAt,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(uuid(Users::Id).primary_key())
                    .col(string_len(Users::Email, 254))
                    // Lower-cased address: uniqueness is case-insensitive.
                    .col(string_len(Users::EmailKey, 254))
                    .col(string_len(Users::DisplayName, 100))
                    .col(boolean(Users::EmailVerified).default(false))
                    .col(string_len(Users::Status, 16))
                    .col(timestamp_with_time_zone(Users::CreatedAt))
                    .col(timestamp_with_time_zone(Users::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("users_email_key_unique")
                    .table(Users::Table)
                    .col(Users::EmailKey)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Credentials::Table)
                    .col(uuid(Credentials::UserId).primary_key())
                    .col(string_len(Credentials::PasswordHash, 255))
                    .col(timestamp_with_time_zone(Credentials::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("credentials_user")
                            .from(Credentials::Table, Credentials::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(EmailTokens::Table)
                    .col(uuid(EmailTokens::Id).primary_key())
                    .col(uuid(EmailTokens::UserId))
                    // `verify_email` or `reset_password`.
                    .col(string_len(EmailTokens::Purpose, 32))
                    // SHA-256 of the mailed token, hex: the token itself is never stored.
                    .col(string_len(EmailTokens::TokenHash, 64))
                    .col(timestamp_with_time_zone(EmailTokens::ExpiresAt))
                    .col(timestamp_with_time_zone_null(EmailTokens::UsedAt))
                    .col(timestamp_with_time_zone(EmailTokens::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("email_tokens_user")
                            .from(EmailTokens::Table, EmailTokens::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("email_tokens_hash_unique")
                    .table(EmailTokens::Table)
                    .col(EmailTokens::TokenHash)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("email_tokens_user_purpose")
                    .table(EmailTokens::Table)
                    .col(EmailTokens::UserId)
                    .col(EmailTokens::Purpose)
                    .to_owned(),
            )
            .await?;
        crate::outbox::create(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["outbox", "email_tokens", "credentials", "users"] {
            manager
                .drop_table(Table::drop().table(Alias::new(table)).to_owned())
                .await?;
        }
        Ok(())
    }
}
