//! The audit outbox table every service owns (see `keygraph_kernel::outbox`).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveIden)]
enum Outbox {
    Table,
    Id,
    OccurredAt,
    ActorId,
    Action,
    TargetType,
    TargetId,
    Outcome,
    Metadata,
    RequestId,
    ClientAddr,
    DeliveredAt,
    Attempts,
}

pub async fn create(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Outbox::Table)
                .col(uuid(Outbox::Id).primary_key())
                .col(timestamp_with_time_zone(Outbox::OccurredAt))
                .col(uuid_null(Outbox::ActorId))
                .col(string_len(Outbox::Action, 128))
                .col(string_len(Outbox::TargetType, 64))
                .col(string_len_null(Outbox::TargetId, 128))
                .col(string_len(Outbox::Outcome, 16))
                .col(json(Outbox::Metadata))
                .col(string_len_null(Outbox::RequestId, 128))
                .col(string_len_null(Outbox::ClientAddr, 64))
                .col(timestamp_with_time_zone_null(Outbox::DeliveredAt))
                .col(integer(Outbox::Attempts).default(0))
                .to_owned(),
        )
        .await?;
    // The relay reads undelivered events oldest first.
    manager
        .create_index(
            Index::create()
                .name("outbox_pending")
                .table(Outbox::Table)
                .col(Outbox::DeliveredAt)
                .col(Outbox::OccurredAt)
                .to_owned(),
        )
        .await
}
