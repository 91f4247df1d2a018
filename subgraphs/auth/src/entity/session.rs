use sea_orm::entity::prelude::*;

/// One login: its refresh tokens form a family that rotates on every use.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sessions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: Uuid,
    pub created_at: DateTimeUtc,
    pub last_used_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    pub client_addr: Option<String>,
    pub user_agent: Option<String>,
    pub revoked_at: Option<DateTimeUtc>,
    pub revoked_reason: Option<String>,
    /// How it signed in: space-separated `amr` values (`pwd`, `pwd otp mfa`).
    pub amr: String,
    /// When the user last proved who they are in it (sign-in or step-up); none: at
    /// `created_at` (sessions from before this was recorded).
    pub auth_time: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
