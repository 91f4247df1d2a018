use sea_orm_migration::{prelude::*, schema::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Sequence,
    Id,
    OccurredAt,
    ReceivedAt,
    Service,
    Action,
    ActorId,
    TargetType,
    TargetId,
    Outcome,
    Metadata,
    RequestId,
    ClientAddress,
    PreviousHash,
    Hash,
}

#[derive(DeriveIden)]
enum AuditCheckpoints {
    Table,
    Sequence,
    HeadHash,
    CreatedAt,
    KeyId,
    Signature,
}

#[derive(DeriveIden)]
enum AuditKeys {
    Table,
    KeyId,
    PublicKey,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let mut action = string_len(AuditEvents::Action, 128);
        if manager.get_database_backend() == DbBackend::Postgres {
            // Byte order, so `action LIKE 'identity.user.%'` is a range scan of the index
            // whatever the database's collation.
            action.extra("COLLATE \"C\"");
        }
        manager
            .create_table(
                Table::create()
                    .table(AuditEvents::Table)
                    // Assigned by the ingest, gap-free: 1, 2, 3 …
                    .col(big_integer(AuditEvents::Sequence).primary_key())
                    .col(uuid_uniq(AuditEvents::Id))
                    .col(timestamp_with_time_zone(AuditEvents::OccurredAt))
                    .col(timestamp_with_time_zone(AuditEvents::ReceivedAt))
                    .col(string_len(AuditEvents::Service, 32))
                    .col(action)
                    .col(uuid_null(AuditEvents::ActorId))
                    .col(string_len(AuditEvents::TargetType, 64))
                    .col(string_len_null(AuditEvents::TargetId, 128))
                    .col(string_len(AuditEvents::Outcome, 16))
                    .col(json(AuditEvents::Metadata))
                    .col(string_len_null(AuditEvents::RequestId, 128))
                    .col(string_len_null(AuditEvents::ClientAddress, 64))
                    .col(string_len(AuditEvents::PreviousHash, 64))
                    .col(string_len(AuditEvents::Hash, 64))
                    .to_owned(),
            )
            .await?;
        // Every filter of `auditEvents` is an index whose second column is the sequence, so a
        // page newest first is a backward scan of one index.
        let indexes: [(&str, Vec<AuditEvents>); 6] = [
            (
                "audit_events_actor",
                vec![AuditEvents::ActorId, AuditEvents::Sequence],
            ),
            (
                "audit_events_action",
                vec![AuditEvents::Action, AuditEvents::Sequence],
            ),
            (
                "audit_events_target",
                vec![
                    AuditEvents::TargetType,
                    AuditEvents::TargetId,
                    AuditEvents::Sequence,
                ],
            ),
            (
                "audit_events_service",
                vec![AuditEvents::Service, AuditEvents::Sequence],
            ),
            (
                "audit_events_outcome",
                vec![AuditEvents::Outcome, AuditEvents::Sequence],
            ),
            ("audit_events_occurred", vec![AuditEvents::OccurredAt]),
        ];
        for (name, columns) in indexes {
            let mut index = Index::create();
            index.name(name).table(AuditEvents::Table);
            for column in columns {
                index.col(column);
            }
            manager.create_index(index.to_owned()).await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(AuditCheckpoints::Table)
                    .col(big_integer(AuditCheckpoints::Sequence).primary_key())
                    .col(string_len(AuditCheckpoints::HeadHash, 64))
                    .col(timestamp_with_time_zone(AuditCheckpoints::CreatedAt))
                    .col(string_len(AuditCheckpoints::KeyId, 32))
                    .col(string_len(AuditCheckpoints::Signature, 128))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AuditKeys::Table)
                    .col(string_len(AuditKeys::KeyId, 32).primary_key())
                    .col(string_len(AuditKeys::PublicKey, 64))
                    .col(timestamp_with_time_zone(AuditKeys::CreatedAt))
                    .to_owned(),
            )
            .await
    }
}
