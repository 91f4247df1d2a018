//! Sessions: listing a user's open ones, ending one or all of them (each end audited), and
//! the recently ended ones verifiers must refuse.

use chrono::Utc;
use keygraph_kernel::{db::begin_write, http::RequestMeta, outbox::AuditEvent};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, sea_query::Expr,
};
use serde_json::json;
use uuid::Uuid;

use super::{Auth, AuthError, AuthResult};
use crate::entity::session;

impl Auth {
    /// Ends one session in a transaction of its own: the session and its audit event are
    /// written together or not at all.
    pub(super) async fn end_session_now(
        &self,
        meta: &RequestMeta,
        session: &session::Model,
        reason: &str,
        actor: Option<Uuid>,
    ) -> AuthResult<bool> {
        let (_turn, txn) = begin_write(&self.db).await?;
        let ended = self.end_session(&txn, meta, session, reason, actor).await?;
        txn.commit().await?;
        Ok(ended)
    }

    /// Ends one session (idempotent).
    pub(super) async fn end_session<C: ConnectionTrait>(
        &self,
        db: &C,
        meta: &RequestMeta,
        session: &session::Model,
        reason: &str,
        actor: Option<Uuid>,
    ) -> AuthResult<bool> {
        let ended = session::Entity::update_many()
            .col_expr(session::Column::RevokedAt, Expr::value(Utc::now()))
            .col_expr(session::Column::RevokedReason, Expr::value(reason))
            .filter(session::Column::Id.eq(session.id))
            .filter(session::Column::RevokedAt.is_null())
            .exec(db)
            .await?
            .rows_affected
            == 1;
        if ended {
            AuditEvent::new("auth.session.ended", "session", session.id)
                .actor(actor)
                .metadata(json!({ "reason": reason, "user": session.user_id }))
                .record(db, meta)
                .await?;
        }
        Ok(ended)
    }

    /// Sessions of a user that have not ended, newest first.
    pub async fn sessions(&self, user: Uuid) -> AuthResult<Vec<session::Model>> {
        Ok(session::Entity::find()
            .filter(session::Column::UserId.eq(user))
            .filter(session::Column::RevokedAt.is_null())
            .filter(session::Column::ExpiresAt.gt(Utc::now()))
            .order_by_desc(session::Column::CreatedAt)
            .all(&self.db)
            .await?)
    }

    /// Ends a session: the caller's own, or any with `may_revoke_others`.
    pub async fn revoke_session(
        &self,
        meta: &RequestMeta,
        actor: Uuid,
        session_id: Uuid,
        may_revoke_others: bool,
        reason: &str,
    ) -> AuthResult<()> {
        let session = session::Entity::find_by_id(session_id)
            .one(&self.db)
            .await?
            .filter(|s| s.user_id == actor || may_revoke_others)
            .ok_or_else(|| AuthError::NotFound(format!("no session {session_id} of yours")))?;
        self.end_session_now(meta, &session, reason, Some(actor))
            .await?;
        Ok(())
    }

    /// Ends every session of a user, except `keep`. Returns how many ended.
    pub async fn revoke_user_sessions(
        &self,
        meta: &RequestMeta,
        user: Uuid,
        keep: Option<Uuid>,
        reason: &str,
        actor: Option<Uuid>,
    ) -> AuthResult<u64> {
        let (_turn, txn) = begin_write(&self.db).await?;
        let sessions = session::Entity::find()
            .filter(session::Column::UserId.eq(user))
            .filter(session::Column::RevokedAt.is_null())
            .all(&txn)
            .await?;
        let mut ended = 0;
        for session in sessions.iter().filter(|s| Some(s.id) != keep) {
            if self.end_session(&txn, meta, session, reason, actor).await? {
                ended += 1;
            }
        }
        txn.commit().await?;
        Ok(ended)
    }

    /// Sessions ended recently enough that tokens of theirs may still be unexpired: what
    /// verifiers must refuse.
    pub async fn revoked_sessions(&self) -> AuthResult<Vec<Uuid>> {
        let horizon = Utc::now()
            - chrono::Duration::from_std(self.settings.access_ttl)
                .unwrap_or(chrono::Duration::hours(1))
            - chrono::Duration::seconds(120);
        Ok(session::Entity::find()
            .filter(session::Column::RevokedAt.gt(horizon))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|s| s.id)
            .collect())
    }
}
