use sea_orm::entity::prelude::*;

/// A refresh token of a session; only its SHA-256 is stored.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "refresh_tokens")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub session_id: Uuid,
    pub token_hash: String,
    /// 0 for the login's token, then one more per rotation.
    pub generation: i32,
    pub created_at: DateTimeUtc,
    /// When it was exchanged for the next one; a second use means theft or a race.
    pub used_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
