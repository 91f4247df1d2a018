use sea_orm::entity::prelude::*;

/// What a password sign-in answers when a second factor is due: single use, short-lived,
/// bound to the client that signed in. Only the SHA-256 of the handed-out text is stored.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sign_in_challenges")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub token_hash: String,
    pub user_id: Uuid,
    /// How the first step proved the user, space-separated `amr` values.
    pub amr: String,
    pub client_addr: Option<String>,
    pub user_agent: Option<String>,
    /// The factor this sign-in enrols, when a role requires one and the user had none.
    pub enrol_factor: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    pub used_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
