//! Links sent by mail, each with a single-use token: asking for and confirming email
//! verification, asking for and using a password reset. Requests answer the same, in the same
//! time, for every well-formed address; the work that would tell them apart runs after the
//! answer.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use keygraph_kernel::telemetry::InThisService as _;
use keygraph_kernel::{db::begin_write, http::RequestMeta, outbox::AuditEvent};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set,
    sea_query::Expr,
};
use tracing::Instrument as _;
use uuid::Uuid;

use super::{Identity, IdentityError, IdentityResult, passwords::set_password_hash};
use crate::{
    email::{EmailAddress, parse_email},
    entity::{
        email_token::{self, PURPOSE_RESET_PASSWORD, PURPOSE_VERIFY_EMAIL},
        user::{self, STATUS_ACTIVE},
    },
    handover::Call,
    mail::OutgoingMail,
    mailed_token,
};

impl Identity {
    /// Mails a new verification link if the address belongs to an active, unverified account.
    /// Answers the same, in the same time, for every well-formed address: looking the account
    /// up and writing its token happen after the answer (see [`Identity::after_answer`]).
    pub async fn request_email_verification(
        self: &Arc<Self>,
        meta: &RequestMeta,
        email: &str,
    ) -> IdentityResult<()> {
        let email = parse_email(email).map_err(|m| IdentityError::input("email", m))?;
        self.throttle_mail(&email)?;
        let meta = meta.clone();
        self.after_answer("verification request", move |this| async move {
            this.mail_verification_link(&meta, &email).await
        });
        Ok(())
    }

    async fn mail_verification_link(
        &self,
        meta: &RequestMeta,
        email: &EmailAddress,
    ) -> IdentityResult<()> {
        let Some(user) = self.find_by_email(email).await? else {
            return Ok(());
        };
        if user.email_verified || user.status != STATUS_ACTIVE {
            return Ok(());
        }
        let token = self
            .replace_mailed_token(
                meta,
                user.id,
                PURPOSE_VERIFY_EMAIL,
                self.verification_ttl,
                "identity.email_verification.requested",
            )
            .await?;
        self.send_in_background(self.verification_mail(&user.email, &user.display_name, &token));
        Ok(())
    }

    /// Marks the address of the token's user as verified. The token is spent.
    pub async fn verify_email(
        &self,
        meta: &RequestMeta,
        token: &str,
    ) -> IdentityResult<user::Model> {
        let stored = self.usable_token(token, PURPOSE_VERIFY_EMAIL).await?;
        let (_turn, txn) = begin_write(&self.db).await?;
        spend_token(&txn, &stored).await?;
        let user = self.load_user(&txn, stored.user_id).await?;
        let mut active: user::ActiveModel = user.into();
        active.email_verified = Set(true);
        active.updated_at = Set(Utc::now());
        let user = active.update(&txn).await?;
        AuditEvent::new("identity.user.email_verified", "user", user.id)
            .actor(Some(user.id))
            .record(&txn, meta)
            .await?;
        txn.commit().await?;
        Ok(user)
    }

    /// Mails a reset link if the address belongs to an active account. Answers the same, in
    /// the same time, for every well-formed address: only an existing account causes a
    /// database write, so that work happens after the answer (see [`Identity::after_answer`]).
    pub async fn request_password_reset(
        self: &Arc<Self>,
        meta: &RequestMeta,
        email: &str,
    ) -> IdentityResult<()> {
        let email = parse_email(email).map_err(|m| IdentityError::input("email", m))?;
        self.throttle_mail(&email)?;
        let meta = meta.clone();
        self.after_answer("password reset request", move |this| async move {
            this.mail_reset_link(&meta, &email).await
        });
        Ok(())
    }

    async fn mail_reset_link(
        &self,
        meta: &RequestMeta,
        email: &EmailAddress,
    ) -> IdentityResult<()> {
        let Some(user) = self.find_by_email(email).await? else {
            return Ok(());
        };
        if user.status != STATUS_ACTIVE {
            return Ok(());
        }
        let token = self
            .replace_mailed_token(
                meta,
                user.id,
                PURPOSE_RESET_PASSWORD,
                self.reset_ttl,
                "identity.password_reset.requested",
            )
            .await?;
        let link = self.links.reset_password.replace("{token}", &token);
        let minutes = self.reset_ttl.as_secs() / 60;
        self.send_in_background(OutgoingMail {
            to: user.email.clone(),
            subject: "Reset your Keygraph password".into(),
            text: format!(
                "Hello {},\n\nSomeone asked to reset the password of this account. To choose a new\npassword, open this link within {minutes} minutes:\n\n{link}\n\nIf it was not you, ignore this message: your password stays as it is.\n",
                user.display_name
            ),
        });
        Ok(())
    }

    /// Sets a new password with a reset token. The token is spent; the mailed link also
    /// proves the address, so it counts as verified.
    pub async fn reset_password(
        &self,
        meta: &RequestMeta,
        token: &str,
        new_password: String,
    ) -> IdentityResult<()> {
        let stored = self.usable_token(token, PURPOSE_RESET_PASSWORD).await?;
        let user = self.load_user(&self.db, stored.user_id).await?;
        let email = parse_email(&user.email).map_err(|m| IdentityError::input("email", m))?;
        self.check_password(&new_password, &email, &user.display_name, "newPassword")
            .await?;
        let hash = self.hasher.hash(new_password).await?;
        let now = Utc::now();
        let (_turn, txn) = begin_write(&self.db).await?;
        spend_token(&txn, &stored).await?;
        set_password_hash(&txn, user.id, hash, now).await?;
        let mut active: user::ActiveModel = user.into();
        active.email_verified = Set(true);
        active.updated_at = Set(now);
        let user = active.update(&txn).await?;
        supersede_tokens(&txn, user.id, PURPOSE_RESET_PASSWORD).await?;
        AuditEvent::new("identity.user.password_reset", "user", user.id)
            .actor(Some(user.id))
            .record(&txn, meta)
            .await?;
        self.handover
            .record(
                &txn,
                user.id,
                Call::EndSessions {
                    keep: None,
                    reason: "password reset",
                },
            )
            .await?;
        txn.commit().await?;
        self.handover.wake();
        Ok(())
    }

    /// A new mailed token of `purpose` for `user`, the older unspent ones spent, and the
    /// request audited as `action`, in one transaction. Answers the token for the mail.
    async fn replace_mailed_token(
        &self,
        meta: &RequestMeta,
        user: Uuid,
        purpose: &str,
        ttl: Duration,
        action: &str,
    ) -> IdentityResult<String> {
        let (token, token_hash) = mailed_token::generate();
        let (_turn, txn) = begin_write(&self.db).await?;
        supersede_tokens(&txn, user, purpose).await?;
        insert_email_token(&txn, user, purpose, token_hash, Utc::now(), ttl).await?;
        AuditEvent::new(action, "user", user)
            .record(&txn, meta)
            .await?;
        txn.commit().await?;
        Ok(token)
    }

    /// Runs `work` after the request is answered, so its duration (a look-up that finds an
    /// account, then a write) tells nothing about the address. Its failure is logged: the
    /// caller was answered already, as they would be for an unknown address.
    fn after_answer<F, Fut>(self: &Arc<Self>, what: &'static str, work: F)
    where
        F: FnOnce(Arc<Self>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = IdentityResult<()>> + Send + 'static,
    {
        let this = self.clone();
        // Still part of the request's trace, though the request has its answer.
        tokio::spawn(
            async move {
                if let Err(err) = work(this).await {
                    tracing::error!(error = %err, "{what} failed after it was answered");
                }
            }
            .in_current_span()
            .in_this_service(),
        );
    }

    /// A token of `purpose` that exists, is unspent and unexpired, or why not.
    async fn usable_token(&self, token: &str, purpose: &str) -> IdentityResult<email_token::Model> {
        const INVALID: &str = "this link is not valid; request a new one";
        if !mailed_token::is_well_formed(token) {
            return Err(IdentityError::InvalidToken(INVALID));
        }
        let stored = email_token::Entity::find()
            .filter(email_token::Column::TokenHash.eq(mailed_token::hash(token)))
            .filter(email_token::Column::Purpose.eq(purpose))
            .one(&self.db)
            .await?
            .ok_or(IdentityError::InvalidToken(INVALID))?;
        if stored.used_at.is_some() {
            return Err(IdentityError::InvalidToken(
                "this link was already used or replaced by a newer one; request a new one",
            ));
        }
        if stored.expires_at <= Utc::now() {
            return Err(IdentityError::InvalidToken(
                "this link has expired; request a new one",
            ));
        }
        Ok(stored)
    }

    pub(super) fn verification_mail(&self, to: &str, name: &str, token: &str) -> OutgoingMail {
        let link = self.links.verify_email.replace("{token}", token);
        OutgoingMail {
            to: to.to_owned(),
            subject: "Confirm your email address for Keygraph".into(),
            text: format!(
                "Hello {name},\n\nPlease confirm that this is your email address by opening this link:\n\n{link}\n\nIf you did not create an account, ignore this message.\n"
            ),
        }
    }
}

pub(super) async fn insert_email_token<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    purpose: &str,
    token_hash: String,
    now: DateTime<Utc>,
    ttl: Duration,
) -> Result<(), DbErr> {
    let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::hours(1));
    email_token::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(user_id),
        purpose: Set(purpose.to_owned()),
        token_hash: Set(token_hash),
        expires_at: Set(now + ttl),
        used_at: Set(None),
        created_at: Set(now),
    }
    .insert(db)
    .await
    .map(|_| ())
}

/// Marks every unspent token of `purpose` as used: only the newest link works.
async fn supersede_tokens<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    purpose: &str,
) -> Result<(), DbErr> {
    email_token::Entity::update_many()
        .col_expr(email_token::Column::UsedAt, Expr::value(Utc::now()))
        .filter(email_token::Column::UserId.eq(user_id))
        .filter(email_token::Column::Purpose.eq(purpose))
        .filter(email_token::Column::UsedAt.is_null())
        .exec(db)
        .await
        .map(|_| ())
}

/// Spends a token; of two concurrent uses only one succeeds.
async fn spend_token<C: ConnectionTrait>(db: &C, token: &email_token::Model) -> IdentityResult<()> {
    let spent = email_token::Entity::update_many()
        .col_expr(email_token::Column::UsedAt, Expr::value(Utc::now()))
        .filter(email_token::Column::Id.eq(token.id))
        .filter(email_token::Column::UsedAt.is_null())
        .exec(db)
        .await?;
    if spent.rows_affected == 1 {
        Ok(())
    } else {
        Err(IdentityError::InvalidToken(
            "this link was already used or replaced by a newer one; request a new one",
        ))
    }
}
