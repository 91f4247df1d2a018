//! Step-up: the second factor proved again in a signed-in session, for a fresh `auth_time`
//! (and `mfa`) in its tokens; the session's refresh token rotates.

use chrono::Utc;
use keygraph_kernel::{db::begin_write, http::RequestMeta};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, sea_query::Expr};
use uuid::Uuid;

use super::{Proof, proof::with_factor};
use crate::{
    entity::{refresh_token, session},
    service::{Auth, AuthError, AuthResult, Proven, Tokens, insert_refresh, new_refresh_token},
};

impl Auth {
    /// Proves the second factor again in a signed-in session: its tokens get a fresh
    /// `auth_time` (and `mfa`), so sensitive changes pass for `tokens.step_up_max_age_secs`.
    /// The session's refresh token rotates: use the new one.
    pub async fn step_up(
        &self,
        meta: &RequestMeta,
        user: Uuid,
        session_id: Uuid,
        proof: &Proof,
    ) -> AuthResult<Tokens> {
        let session = session::Entity::find_by_id(session_id)
            .one(&self.db)
            .await?
            .filter(|s| s.user_id == user && s.revoked_at.is_none())
            .ok_or_else(|| {
                AuthError::Unauthenticated("this session has ended; sign in again".into())
            })?;
        if !self.has_second_factor(user).await? {
            return Err(AuthError::Conflict(
                "you have no second factor to step up with; sign in again with your password for a fresh sign-in".into(),
            ));
        }
        let accepted = self
            .check_proof(meta, user, proof, None, None, "proof")
            .await?;
        let grants = self.grants(user).await?;
        let now = Utc::now();
        let amr = with_factor(&session.amr, &accepted);
        let (refresh, refresh_hash) = new_refresh_token();
        let (_turn, txn) = begin_write(&self.db).await?;
        self.spend(&txn, meta, user, accepted, "step_up").await?;
        let newest = refresh_token::Entity::find()
            .filter(refresh_token::Column::SessionId.eq(session.id))
            .order_by_desc(refresh_token::Column::Generation)
            .one(&txn)
            .await?
            .map_or(0, |t| t.generation + 1);
        refresh_token::Entity::update_many()
            .col_expr(refresh_token::Column::UsedAt, Expr::value(now))
            .filter(refresh_token::Column::SessionId.eq(session.id))
            .filter(refresh_token::Column::UsedAt.is_null())
            .exec(&txn)
            .await?;
        insert_refresh(session.id, refresh_hash, newest, now)
            .exec(&txn)
            .await?;
        session::Entity::update_many()
            .col_expr(session::Column::Amr, Expr::value(amr.join(" ")))
            .col_expr(session::Column::AuthTime, Expr::value(now))
            .col_expr(session::Column::LastUsedAt, Expr::value(now))
            .filter(session::Column::Id.eq(session.id))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        let proven = Proven {
            amr,
            auth_time: now.timestamp(),
            mfa_enrolled: true,
        };
        self.issue(user, session.id, grants, refresh, &proven).await
    }
}
