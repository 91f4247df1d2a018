use sea_orm::entity::prelude::*;

/// One stored audit event, a link of the hash chain.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub sequence: i64,
    #[sea_orm(unique)]
    pub id: Uuid,
    pub occurred_at: DateTimeUtc,
    pub received_at: DateTimeUtc,
    pub service: String,
    pub action: String,
    pub actor_id: Option<Uuid>,
    pub target_type: String,
    pub target_id: Option<String>,
    pub outcome: String,
    pub metadata: Json,
    pub request_id: Option<String>,
    pub client_address: Option<String>,
    pub previous_hash: String,
    pub hash: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
