//! Passwords: changing one (with the current password, throttled like sign-in), checking
//! credentials for the auth service, the password policy check, and storing a new hash.

use chrono::{DateTime, Utc};
use keygraph_kernel::{
    db::{begin_write, write_turn},
    http::RequestMeta,
    outbox::AuditEvent,
    throttle::Refused,
};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set,
};
use uuid::Uuid;

use super::{CredentialCheck, Identity, IdentityError, IdentityResult};
use crate::{
    email::{EmailAddress, parse_email},
    entity::{
        credential,
        user::{self, STATUS_ACTIVE},
    },
    handover::Call,
};

impl Identity {
    /// Changes the password; the user's other sessions end (`keep_session` stays).
    pub async fn change_password(
        &self,
        meta: &RequestMeta,
        user_id: Uuid,
        keep_session: Option<Uuid>,
        current: String,
        new_password: String,
    ) -> IdentityResult<()> {
        let user = self.load_user(&self.db, user_id).await?;
        let stored = credential::Entity::find_by_id(user_id)
            .one(&self.db)
            .await?
            .ok_or(IdentityError::UserNotFound(user_id))?;
        let email = parse_email(&user.email).map_err(|m| IdentityError::input("email", m))?;
        self.check_password(&new_password, &email, &user.display_name, "newPassword")
            .await?;
        if current == new_password {
            return Err(IdentityError::input(
                "newPassword",
                "the new password must differ from the current one",
            ));
        }
        // A stolen access token must not guess at the password faster than sign-in does.
        let attempt = self
            .password_throttle
            .begin(&user_id.to_string(), meta.client_addr)
            .await
            .inspect_err(|_| {
                keygraph_kernel::metrics::Metrics::of("identity").throttled("change_password");
            })
            .map_err(|refused| match refused {
                Refused::Wait(secs) => IdentityError::RateLimited(secs),
                Refused::Unavailable => IdentityError::Unavailable(
                    "password checks are unavailable for a moment (the shared throttle does not answer); retry shortly".into(),
                ),
            })?;
        let matches = self
            .hasher
            .verify(current, stored.password_hash)
            .await?
            .matches;
        attempt.finish(matches).await;
        if !matches {
            return Err(IdentityError::WrongCurrentPassword);
        }
        let hash = self.hasher.hash(new_password).await?;
        let (_turn, txn) = begin_write(&self.db).await?;
        set_password_hash(&txn, user_id, hash, Utc::now()).await?;
        AuditEvent::new("identity.user.password_changed", "user", user_id)
            .actor(Some(user_id))
            .record(&txn, meta)
            .await?;
        let end_others = Call::EndSessions {
            keep: keep_session,
            reason: "password changed",
        };
        self.handover.record(&txn, user_id, end_others).await?;
        txn.commit().await?;
        self.handover.wake();
        Ok(())
    }

    /// For the auth service: the same answer and the same work for an unknown email, a wrong
    /// password and a disabled account. A correct password with outdated hash parameters is
    /// re-hashed.
    pub async fn check_credentials(
        &self,
        email: &str,
        password: String,
    ) -> IdentityResult<CredentialCheck> {
        // The account and its password in one statement: sign-ins are the hot path.
        let found = match parse_email(email) {
            Ok(email) => {
                user::Entity::find()
                    .filter(user::Column::EmailKey.eq(&email.key))
                    .find_also_related(credential::Entity)
                    .one(&self.db)
                    .await?
            }
            Err(_) => None,
        };
        let Some((user, Some(stored))) = found else {
            self.hasher.verify_decoy(password).await?;
            return Ok(CredentialCheck::Invalid);
        };
        let check = self
            .hasher
            .verify(password.clone(), stored.password_hash)
            .await?;
        if !check.matches || user.status != STATUS_ACTIVE {
            return Ok(CredentialCheck::Invalid);
        }
        if check.needs_rehash {
            let hash = self.hasher.hash(password).await?;
            let _turn = write_turn(&self.db).await;
            set_password_hash(&self.db, user.id, hash, Utc::now()).await?;
            tracing::info!(user_id = %user.id, "password re-hashed with current parameters");
        }
        Ok(CredentialCheck::Valid(user))
    }

    /// The policy check estimates guessability (tens of milliseconds for long passwords), so
    /// it runs on the blocking pool like hashing does.
    pub(super) async fn check_password(
        &self,
        password: &str,
        email: &EmailAddress,
        display_name: &str,
        field: &'static str,
    ) -> IdentityResult<()> {
        let policy = self.policy.clone();
        let password = password.to_owned();
        let local = email.key.split('@').next().unwrap_or_default().to_owned();
        let context = [email.key.clone(), local, display_name.to_owned()];
        self.hasher
            .run_blocking(move || {
                let context: Vec<&str> = context.iter().map(String::as_str).collect();
                policy.check(&password, &context)
            })
            .await?
            .map_err(|m| IdentityError::input(field, m))
    }
}

pub(super) async fn set_password_hash<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    hash: String,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    credential::ActiveModel {
        user_id: Set(user_id),
        password_hash: Set(hash),
        updated_at: Set(now),
    }
    .update(db)
    .await
    .map(|_| ())
}
