use sea_orm::entity::prelude::*;

/// An Ed25519 signing key; its private seed is sealed with the key-encryption key.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "signing_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub kid: String,
    pub public_key: String,
    pub sealed_private_key: String,
    /// [`NEXT`], [`CURRENT`], [`PREVIOUS`] or [`RETIRED`].
    pub status: String,
    pub created_at: DateTimeUtc,
    pub activated_at: Option<DateTimeUtc>,
    pub retired_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// Published, not yet signing.
pub const NEXT: &str = "next";
/// Signs new tokens.
pub const CURRENT: &str = "current";
/// No longer signs; verifies tokens it signed until they expire.
pub const PREVIOUS: &str = "previous";
/// Unpublished.
pub const RETIRED: &str = "retired";
