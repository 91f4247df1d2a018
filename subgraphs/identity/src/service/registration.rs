//! New accounts: self-registration (with its verification mail, and a notice instead when the
//! address is taken) and the first administrator created at start-up.

use chrono::{DateTime, Utc};
use keygraph_kernel::{
    db::{begin_write, is_unique_violation},
    http::RequestMeta,
    outbox::AuditEvent,
};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set,
};
use serde_json::json;
use uuid::Uuid;

use super::{
    Identity, IdentityError, IdentityResult, MAX_DISPLAY_NAME, Registration,
    mailed_tokens::insert_email_token, profile::validate_display_name,
};
use crate::{
    email::{EmailAddress, parse_email},
    entity::{
        credential,
        email_token::PURPOSE_VERIFY_EMAIL,
        user::{self, STATUS_ACTIVE},
    },
    handover::Call,
    mail::OutgoingMail,
    mailed_token,
};

impl Identity {
    /// Creates an account and mails a verification link. A taken address answers the same
    /// and its owner gets a notice instead; the password is hashed either way so both take
    /// as long.
    pub async fn register(&self, meta: &RequestMeta, input: Registration) -> IdentityResult<()> {
        let email = parse_email(&input.email).map_err(|m| IdentityError::input("email", m))?;
        let display_name = match input.display_name {
            Some(name) => validate_display_name(&name)?,
            None => default_display_name(&email),
        };
        self.check_password(&input.password, &email, &display_name, "password")
            .await?;
        let hash = self.hasher.hash(input.password).await?;

        let now = Utc::now();
        let user_id = Uuid::now_v7();
        let (token, token_hash) = mailed_token::generate();
        let (_turn, txn) = begin_write(&self.db).await?;
        let taken = user::Entity::find()
            .filter(user::Column::EmailKey.eq(&email.key))
            .one(&txn)
            .await?
            .is_some();
        if taken {
            txn.rollback().await?;
            self.send_limited(&email, taken_address_notice(&email));
            return Ok(());
        }
        let inserted = async {
            insert_account(
                &txn,
                user_id,
                &email,
                display_name.clone(),
                false,
                hash,
                now,
            )
            .await?;
            insert_email_token(
                &txn,
                user_id,
                PURPOSE_VERIFY_EMAIL,
                token_hash,
                now,
                self.verification_ttl,
            )
            .await?;
            AuditEvent::new("identity.user.registered", "user", user_id)
                .actor(Some(user_id))
                .metadata(json!({ "email": email.display }))
                .record(&txn, meta)
                .await?;
            Ok::<_, DbErr>(())
        }
        .await;
        match inserted {
            Ok(()) => txn.commit().await?,
            // Lost a race with a concurrent registration of the same address.
            Err(e) if is_unique_violation(&e) => {
                txn.rollback().await?;
                self.send_limited(&email, taken_address_notice(&email));
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
        // Over the address's mail limit, the link can be asked for again later.
        self.send_limited(
            &email,
            self.verification_mail(&email.display, &display_name, &token),
        );
        Ok(())
    }

    /// Creates the first administrator if `email` has no account yet: verified, active, and
    /// given the `admin` role through authz (recorded in the same transaction, delivered with
    /// retries, so authz may start later). Answers the password when it was generated here,
    /// so the caller can show it once; `None` when the account exists or the password was given.
    pub async fn ensure_first_admin(
        &self,
        email: &str,
        password: Option<&str>,
    ) -> IdentityResult<Option<String>> {
        let email = parse_email(email)
            .map_err(|m| IdentityError::input("identity.first_admin.email", m))?;
        let exists = user::Entity::find()
            .filter(user::Column::EmailKey.eq(&email.key))
            .one(&self.db)
            .await?
            .is_some();
        if exists {
            return Ok(None);
        }
        let display_name = "Administrator".to_owned();
        let (password, generated) = match password {
            Some(password) => (password.to_owned(), false),
            None => (mailed_token::generate().0, true),
        };
        self.check_password(
            &password,
            &email,
            &display_name,
            "identity.first_admin.password",
        )
        .await?;
        let hash = self.hasher.hash(password.clone()).await?;
        let now = Utc::now();
        let user_id = Uuid::now_v7();
        let (_turn, txn) = begin_write(&self.db).await?;
        let inserted = async {
            insert_account(&txn, user_id, &email, display_name, true, hash, now).await?;
            AuditEvent::new("identity.user.first_admin_created", "user", user_id)
                .metadata(json!({ "email": email.display }))
                .record(&txn, &RequestMeta::default())
                .await?;
            self.handover
                .record(&txn, user_id, Call::AssignRole { role: "admin" })
                .await?;
            Ok::<_, DbErr>(())
        }
        .await;
        match inserted {
            Ok(()) => txn.commit().await?,
            // Another instance created it at the same moment.
            Err(e) if is_unique_violation(&e) => {
                txn.rollback().await?;
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        }
        self.handover.wake();
        tracing::info!(user = %user_id, email = %email.display, "first administrator created");
        Ok(generated.then_some(password))
    }
}

fn taken_address_notice(email: &EmailAddress) -> OutgoingMail {
    OutgoingMail {
        to: email.display.clone(),
        subject: "Someone tried to register with your address".into(),
        text: "Hello,\n\nSomeone tried to create a Keygraph account with this email address, which\nalready has one. If it was you, sign in instead, or reset your password if you\nforgot it. If it was not you, ignore this message: nothing has changed.\n".into(),
    }
}

fn default_display_name(email: &EmailAddress) -> String {
    email
        .display
        .split('@')
        .next()
        .unwrap_or_default()
        .chars()
        .take(MAX_DISPLAY_NAME)
        .collect()
}

/// A new active account and its password hash (registration, the first administrator).
async fn insert_account<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    email: &EmailAddress,
    display_name: String,
    email_verified: bool,
    password_hash: String,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    user::ActiveModel {
        id: Set(user_id),
        email: Set(email.display.clone()),
        email_key: Set(email.key.clone()),
        display_name: Set(display_name),
        email_verified: Set(email_verified),
        status: Set(STATUS_ACTIVE.into()),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await?;
    credential::ActiveModel {
        user_id: Set(user_id),
        password_hash: Set(password_hash),
        updated_at: Set(now),
    }
    .insert(db)
    .await?;
    Ok(())
}
