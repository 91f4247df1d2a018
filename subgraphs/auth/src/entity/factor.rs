use sea_orm::entity::prelude::*;

/// A second factor of a user: a TOTP authenticator (its secret sealed at rest).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "factors")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: Uuid,
    /// [`TOTP`].
    pub kind: String,
    pub name: String,
    pub sealed_secret: Option<String>,
    pub credential: Option<String>,
    /// The newest TOTP step accepted.
    pub last_step: Option<i64>,
    pub created_at: DateTimeUtc,
    /// None while the enrolment waits for its first correct code.
    pub confirmed_at: Option<DateTimeUtc>,
    pub last_used_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// An authenticator app (RFC 6238).
pub const TOTP: &str = "totp";
