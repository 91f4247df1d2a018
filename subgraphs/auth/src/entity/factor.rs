use sea_orm::entity::prelude::*;

/// A second factor of a user: a TOTP authenticator (its secret sealed at rest) or a passkey.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "factors")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: Uuid,
    /// [`TOTP`] or [`PASSKEY`].
    pub kind: String,
    pub name: String,
    pub sealed_secret: Option<String>,
    /// A passkey: webauthn-rs's credential record, JSON.
    pub credential: Option<String>,
    /// The newest TOTP step accepted (a passkey's counter is in its credential).
    pub last_step: Option<i64>,
    pub created_at: DateTimeUtc,
    /// None while the enrolment waits for its first correct code.
    pub confirmed_at: Option<DateTimeUtc>,
    pub last_used_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// A passkey (WebAuthn).
pub const PASSKEY: &str = "passkey";

/// An authenticator app (RFC 6238).
pub const TOTP: &str = "totp";
