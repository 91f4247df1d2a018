use sea_orm::entity::prelude::*;

/// A passkey ceremony between its begin and its finish: the relying party's state, single use.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "passkey_ceremonies")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// None for a passwordless sign-in.
    pub user_id: Option<Uuid>,
    /// [`REGISTER`], [`SECOND_FACTOR`], [`STEP_UP`] or [`SIGN_IN`].
    pub purpose: String,
    pub sign_in_challenge: Option<Uuid>,
    pub name: Option<String>,
    /// webauthn-rs's state, JSON.
    pub state: String,
    pub created_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    pub used_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// Adding a passkey.
pub const REGISTER: &str = "register";
/// A passkey as the second factor of a sign-in challenge.
pub const SECOND_FACTOR: &str = "second_factor";
/// A passkey proving the second factor again in a session.
pub const STEP_UP: &str = "step_up";
/// Passwordless sign-in with a discoverable passkey.
pub const SIGN_IN: &str = "sign_in";
