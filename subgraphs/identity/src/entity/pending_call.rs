use sea_orm::entity::prelude::*;

/// A call identity owes another service about a user; see [`crate::handover`].
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "pending_calls")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// [`DROP_GRANTS`] or [`END_SESSIONS`].
    pub kind: String,
    pub user_id: Uuid,
    /// For [`END_SESSIONS`]: the session that stays.
    pub keep_session: Option<Uuid>,
    /// For [`END_SESSIONS`]: why, for auth's audit trail. For [`ASSIGN_ROLE`]: the role name.
    pub reason: Option<String>,
    pub created_at: DateTimeUtc,
    pub attempts: i32,
    pub next_attempt_at: DateTimeUtc,
    pub last_error: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// authz drops a deleted user's grants.
pub const DROP_GRANTS: &str = "drop_grants";
/// auth ends a user's sessions.
pub const END_SESSIONS: &str = "end_sessions";
/// auth removes a deleted user's second factors and recovery codes.
pub const DROP_FACTORS: &str = "drop_factors";
/// authz gives the user a role (the first administrator's `admin`).
pub const ASSIGN_ROLE: &str = "assign_role";
