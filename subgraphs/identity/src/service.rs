//! Identity rules: registration, verification, passwords, profile and account status. No
//! GraphQL types here; resolvers check access and call these.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use keygraph_kernel::telemetry::InThisService as _;
use keygraph_kernel::{
    ApiError, ErrorCode,
    config::{Config, IdentityLinks},
    counters::Counters,
    db::{begin_write, is_unique_violation, write_turn},
    http::RequestMeta,
    internal::InternalClient,
    outbox::AuditEvent,
    ratelimit::SlidingWindowLimiter,
    throttle::{Refused, Throttle},
    token::Principal,
};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbErr,
    EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    sea_query::{Expr, ExprTrait as _, Func, LikeExpr},
};
use serde_json::json;
use tracing::Instrument as _;
use uuid::Uuid;

use crate::{
    email::{EmailAddress, parse_email},
    entity::{
        credential,
        email_token::{self, PURPOSE_RESET_PASSWORD, PURPOSE_VERIFY_EMAIL},
        user::{self, STATUS_ACTIVE, STATUS_DISABLED},
    },
    handover::{Call, Handover},
    mail::{Mailer, OutgoingMail},
    mailed_token,
    password::{HashingError, PasswordHasher, PasswordPolicy},
};

pub const MAX_DISPLAY_NAME: usize = 100;
pub const MAX_SEARCH: usize = 100;

/// What went wrong in an identity operation.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{message}")]
    InvalidInput {
        field: &'static str,
        message: String,
    },
    #[error("{0}")]
    InvalidToken(&'static str),
    #[error("the current password is not correct")]
    WrongCurrentPassword,
    #[error("no user with id {0}")]
    UserNotFound(Uuid),
    #[error("too many requests for this address; try again in {0} seconds")]
    RateLimited(u64),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Database(#[from] DbErr),
    #[error(transparent)]
    Hashing(#[from] HashingError),
}

impl IdentityError {
    fn input(field: &'static str, message: impl Into<String>) -> Self {
        Self::InvalidInput {
            field,
            message: message.into(),
        }
    }
}

impl From<IdentityError> for ApiError {
    fn from(err: IdentityError) -> Self {
        match err {
            IdentityError::InvalidInput { field, message } => ApiError::bad_input(field, message),
            IdentityError::InvalidToken(message) => ApiError::bad_input("token", message),
            IdentityError::WrongCurrentPassword => {
                ApiError::bad_input("currentPassword", err.to_string())
            }
            IdentityError::UserNotFound(_) => ApiError::not_found(err.to_string()),
            IdentityError::RateLimited(secs) => ApiError::rate_limited(secs),
            IdentityError::Forbidden(m) => ApiError::forbidden(m),
            IdentityError::Conflict(m) => ApiError::conflict(m),
            IdentityError::Unavailable(m) => ApiError::new(ErrorCode::ServiceUnavailable, m),
            IdentityError::Database(e) => ApiError::internal(e),
            IdentityError::Hashing(e) => ApiError::internal(e),
        }
    }
}

pub type IdentityResult<T> = Result<T, IdentityError>;

/// A user's account state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountStatus {
    Active,
    Disabled,
}

impl AccountStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => STATUS_ACTIVE,
            AccountStatus::Disabled => STATUS_DISABLED,
        }
    }

    pub fn parse(stored: &str) -> Self {
        if stored == STATUS_ACTIVE {
            AccountStatus::Active
        } else {
            AccountStatus::Disabled
        }
    }
}

pub struct Registration {
    pub email: String,
    pub password: String,
    pub display_name: Option<String>,
}

#[derive(Debug, Default, Clone)]
pub struct UserQuery {
    pub search: Option<String>,
    pub status: Option<AccountStatus>,
}

pub struct UserPage {
    pub users: Vec<user::Model>,
    pub has_next_page: bool,
    pub total_count: u64,
}

/// Outcome of a credential check for the auth service.
pub enum CredentialCheck {
    Valid(user::Model),
    /// Unknown email, wrong password or disabled account: deliberately not told apart.
    Invalid,
}

pub struct Identity {
    db: DatabaseConnection,
    hasher: PasswordHasher,
    policy: PasswordPolicy,
    mailer: Mailer,
    links: IdentityLinks,
    verification_ttl: Duration,
    reset_ttl: Duration,
    mail_limiter: SlidingWindowLimiter,
    password_throttle: Throttle,
    /// Asked for current grants before an account is changed or deleted; none without authz.
    authz: Option<InternalClient>,
    handover: Handover,
}

/// What authz says about an actor and the account they act on (`/internal/authority`).
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Authority {
    /// Catalog codes the actor holds now.
    actor_permissions: Vec<String>,
    /// Catalog codes the target holds now and the actor does not.
    target_beyond_actor: Vec<String>,
    /// Whether the target holds `*` (is an administrator).
    target_holds_everything: bool,
    /// The other users holding `*`.
    others_holding_everything: Vec<Uuid>,
}

impl Identity {
    /// `handover` carries what other services must learn about users (deleted users' grants
    /// to authz, ended sessions to auth); `authz` answers who holds what now; `counters`
    /// count guesses at current passwords.
    pub fn new(
        db: DatabaseConnection,
        config: &Config,
        mailer: Mailer,
        handover: Handover,
        authz: Option<InternalClient>,
        counters: Arc<Counters>,
    ) -> Result<Self, HashingError> {
        let id = &config.identity;
        Ok(Self {
            db,
            hasher: PasswordHasher::from_config(&id.password)?,
            policy: PasswordPolicy::from_config(&id.password),
            mailer,
            links: id.links.clone(),
            verification_ttl: Duration::from_secs(id.verification_token_ttl_secs),
            reset_ttl: Duration::from_secs(id.reset_token_ttl_secs),
            mail_limiter: SlidingWindowLimiter::new(
                id.mail_rate_limit.max,
                Duration::from_secs(id.mail_rate_limit.window_secs),
            ),
            password_throttle: Throttle::current_password(config.auth.throttle, counters),
            authz,
            handover,
        })
    }

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
            })            .map_err(|refused| match refused {
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

    pub async fn update_profile(
        &self,
        meta: &RequestMeta,
        user_id: Uuid,
        display_name: Option<String>,
    ) -> IdentityResult<user::Model> {
        let (_turn, txn) = begin_write(&self.db).await?;
        let user = self.load_user(&txn, user_id).await?;
        let Some(name) = display_name else {
            txn.rollback().await?;
            return Ok(user);
        };
        let name = validate_display_name(&name)?;
        if name == user.display_name {
            txn.rollback().await?;
            return Ok(user);
        }
        let mut active: user::ActiveModel = user.into();
        active.display_name = Set(name);
        active.updated_at = Set(Utc::now());
        let user = active.update(&txn).await?;
        AuditEvent::new("identity.user.profile_updated", "user", user_id)
            .actor(Some(user_id))
            .metadata(json!({ "fields": ["displayName"] }))
            .record(&txn, meta)
            .await?;
        txn.commit().await?;
        Ok(user)
    }

    /// Enables or disables an account; a repeat changes nothing and records nothing.
    pub async fn set_status(
        &self,
        meta: &RequestMeta,
        actor: &Principal,
        user_id: Uuid,
        status: AccountStatus,
    ) -> IdentityResult<user::Model> {
        let current = self.load_user(&self.db, user_id).await?;
        if current.status == status.as_str() {
            return Ok(current);
        }
        self.require_authority(
            actor,
            user_id,
            crate::permissions::USER_UPDATE,
            status == AccountStatus::Disabled,
        )
        .await?;
        let actor = actor.user_id;
        let (_turn, txn) = begin_write(&self.db).await?;
        let user = self.load_user(&txn, user_id).await?;
        let from = user.status.clone();
        if from == status.as_str() {
            txn.rollback().await?;
            return Ok(user);
        }
        let mut active: user::ActiveModel = user.into();
        active.status = Set(status.as_str().into());
        active.updated_at = Set(Utc::now());
        let user = active.update(&txn).await?;
        AuditEvent::new("identity.user.status_changed", "user", user_id)
            .actor(Some(actor))
            .metadata(json!({ "from": from, "to": status.as_str() }))
            .record(&txn, meta)
            .await?;
        if status == AccountStatus::Disabled {
            let end_all = Call::EndSessions {
                keep: None,
                reason: "account disabled",
            };
            self.handover.record(&txn, user_id, end_all).await?;
        }
        txn.commit().await?;
        self.handover.wake();
        Ok(user)
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

    /// Deletes the account with its credentials and tokens; authz is told to drop its grants
    /// and auth to end its sessions (recorded in the same transaction, delivered with retries).
    pub async fn delete_user(
        &self,
        meta: &RequestMeta,
        actor: &Principal,
        user_id: Uuid,
    ) -> IdentityResult<()> {
        self.load_user(&self.db, user_id).await?;
        self.require_authority(actor, user_id, crate::permissions::USER_DELETE, true)
            .await?;
        let actor = actor.user_id;
        let (_turn, txn) = begin_write(&self.db).await?;
        let user = self.load_user(&txn, user_id).await?;
        // Children first: SQLite enforces the cascade only with foreign keys on, so do not rely on it.
        email_token::Entity::delete_many()
            .filter(email_token::Column::UserId.eq(user_id))
            .exec(&txn)
            .await?;
        credential::Entity::delete_by_id(user_id).exec(&txn).await?;
        user::Entity::delete_by_id(user_id).exec(&txn).await?;
        self.handover
            .record(&txn, user_id, Call::DropGrants)
            .await?;
        self.handover
            .record(&txn, user_id, Call::DropFactors)
            .await?;
        let end_all = Call::EndSessions {
            keep: None,
            reason: "account deleted",
        };
        self.handover.record(&txn, user_id, end_all).await?;
        AuditEvent::new("identity.user.deleted", "user", user_id)
            .actor(Some(actor))
            .metadata(json!({ "email": user.email }))
            .record(&txn, meta)
            .await?;
        txn.commit().await?;
        self.handover.wake();
        Ok(())
    }

    /// What changing or deleting another account needs, read from authz's current grants
    /// (a token's `scope` may be up to its lifetime old):
    ///
    /// - the actor holds `code` now;
    /// - the actor holds every permission the target holds: nobody disables, enables or
    ///   deletes an account more powerful than their own;
    /// - when `removes` (disabling, deleting) an administrator (a holder of `*`), another
    ///   active administrator remains.
    ///
    /// Without authz (`identity.authz_url` null) nobody holds anything but their token's scope,
    /// which the resolver's guard checked.
    async fn require_authority(
        &self,
        actor: &Principal,
        target: Uuid,
        code: &str,
        removes: bool,
    ) -> IdentityResult<()> {
        let Some(authz) = &self.authz else {
            return Ok(());
        };
        let authority: Authority = authz
            .post_json(
                "/internal/authority",
                &json!({ "actor": actor.user_id, "target": target }),
            )
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "authz does not answer who holds what");
                IdentityError::Unavailable(
                    "the permissions this needs cannot be checked right now (authz does not answer); retry shortly".into(),
                )
            })?;
        let held: BTreeSet<&str> = authority
            .actor_permissions
            .iter()
            .map(String::as_str)
            .collect();
        if !held.contains(code) {
            return Err(IdentityError::Forbidden(format!(
                "this needs the permission `{code}`, which you do not hold (any more)"
            )));
        }
        let missing: Vec<&str> = authority
            .target_beyond_actor
            .iter()
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(IdentityError::Forbidden(format!(
                "this account holds permissions you do not ({}); only someone who holds all of them may change or delete it",
                keygraph_kernel::permissions::list_codes(&missing)
            )));
        }
        if removes && authority.target_holds_everything {
            let others: Vec<Uuid> = authority
                .others_holding_everything
                .into_iter()
                .filter(|u| *u != target)
                .collect();
            let active_others = if others.is_empty() {
                0
            } else {
                user::Entity::find()
                    .filter(user::Column::Id.is_in(others))
                    .filter(user::Column::Status.eq(STATUS_ACTIVE))
                    .count(&self.db)
                    .await?
            };
            if active_others == 0 {
                return Err(IdentityError::Conflict(
                    "this is the last active administrator (the only active holder of `*`); make another user an administrator first".into(),
                ));
            }
        }
        Ok(())
    }

    pub async fn user(&self, id: Uuid) -> IdentityResult<Option<user::Model>> {
        Ok(user::Entity::find_by_id(id).one(&self.db).await?)
    }

    /// One page of users in id order (ids are UUIDv7: creation order), after `after`.
    pub async fn users(
        &self,
        first: u64,
        after: Option<Uuid>,
        query: &UserQuery,
    ) -> IdentityResult<UserPage> {
        let mut filter = Condition::all();
        if let Some(status) = query.status {
            filter = filter.add(user::Column::Status.eq(status.as_str()));
        }
        if let Some(search) = query
            .search
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            if search.chars().count() > MAX_SEARCH {
                return Err(IdentityError::input(
                    "filter.search",
                    format!("search must be at most {MAX_SEARCH} characters"),
                ));
            }
            // A NUL ends the pattern early on SQLite (it then matches everyone).
            if let Some(c) = search.chars().find(|c| c.is_control()) {
                return Err(IdentityError::input(
                    "filter.search",
                    format!(
                        "search must not contain control characters (found U+{:04X})",
                        u32::from(c)
                    ),
                ));
            }
            let pattern = format!("%{}%", escape_like(&search.to_lowercase()));
            filter = filter.add(
                Condition::any()
                    .add(
                        Expr::col(user::Column::EmailKey)
                            .like(LikeExpr::new(pattern.clone()).escape('\\')),
                    )
                    .add(
                        Expr::expr(Func::lower(Expr::col(user::Column::DisplayName)))
                            .like(LikeExpr::new(pattern).escape('\\')),
                    ),
            );
        }
        let total_count = user::Entity::find()
            .filter(filter.clone())
            .count(&self.db)
            .await?;
        let mut page = user::Entity::find().filter(filter);
        if let Some(after) = after {
            page = page.filter(user::Column::Id.gt(after));
        }
        let mut users = page
            .order_by_asc(user::Column::Id)
            .limit(first + 1)
            .all(&self.db)
            .await?;
        let has_next_page = users.len() as u64 > first;
        users.truncate(first as usize);
        Ok(UserPage {
            users,
            has_next_page,
            total_count,
        })
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

    async fn find_by_email(&self, email: &EmailAddress) -> IdentityResult<Option<user::Model>> {
        Ok(user::Entity::find()
            .filter(user::Column::EmailKey.eq(&email.key))
            .one(&self.db)
            .await?)
    }

    async fn load_user<C: ConnectionTrait>(&self, db: &C, id: Uuid) -> IdentityResult<user::Model> {
        user::Entity::find_by_id(id)
            .one(db)
            .await?
            .ok_or(IdentityError::UserNotFound(id))
    }

    /// The policy check estimates guessability (tens of milliseconds for long passwords), so
    /// it runs on the blocking pool like hashing does.
    async fn check_password(
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

    /// Every mail to one address shares one limit, whatever it is about.
    fn throttle_mail(&self, email: &EmailAddress) -> IdentityResult<()> {
        self.mail_limiter
            .try_acquire(&email.key)
            .map_err(|wait| IdentityError::RateLimited(Ord::max(wait.as_secs(), 1)))
    }

    /// Sends `mail` unless the address is over its mail limit; either way the caller answers
    /// the same (registration must not tell a taken address from a new one).
    fn send_limited(&self, email: &EmailAddress, mail: OutgoingMail) {
        if self.throttle_mail(email).is_ok() {
            self.send_in_background(mail);
        } else {
            tracing::info!(to = %email.display, subject = %mail.subject, "mail not sent: the address is over identity.mail_rate_limit");
        }
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

    fn verification_mail(&self, to: &str, name: &str, token: &str) -> OutgoingMail {
        let link = self.links.verify_email.replace("{token}", token);
        OutgoingMail {
            to: to.to_owned(),
            subject: "Confirm your email address for Keygraph".into(),
            text: format!(
                "Hello {name},\n\nPlease confirm that this is your email address by opening this link:\n\n{link}\n\nIf you did not create an account, ignore this message.\n"
            ),
        }
    }

    /// Mail goes out after the response: delivery time must not tell known addresses apart,
    /// and a slow relay must not hold the request.
    fn send_in_background(&self, mail: OutgoingMail) {
        let mailer = self.mailer.clone();
        tokio::spawn(
            async move {
                if let Err(err) = mailer.send(&mail).await {
                    tracing::error!(to = %mail.to, subject = %mail.subject, error = %err, "mail delivery failed");
                }
            }
            .in_current_span()
            .in_this_service(),
        );
    }
}

fn taken_address_notice(email: &EmailAddress) -> OutgoingMail {
    OutgoingMail {
        to: email.display.clone(),
        subject: "Someone tried to register with your address".into(),
        text: "Hello,\n\nSomeone tried to create a Keygraph account with this email address, which\nalready has one. If it was you, sign in instead, or reset your password if you\nforgot it. If it was not you, ignore this message: nothing has changed.\n".into(),
    }
}

fn validate_display_name(input: &str) -> IdentityResult<String> {
    let name = input.trim();
    if name.is_empty() {
        return Err(IdentityError::input(
            "displayName",
            "display name must not be empty",
        ));
    }
    if name.chars().count() > MAX_DISPLAY_NAME {
        return Err(IdentityError::input(
            "displayName",
            format!("display name must be at most {MAX_DISPLAY_NAME} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(IdentityError::input(
            "displayName",
            "display name must not contain control characters",
        ));
    }
    if let Some(c) = name.chars().find(|c| is_invisible_or_bidi(*c)) {
        return Err(IdentityError::input(
            "displayName",
            format!(
                "display name must not contain invisible or text-direction characters (found U+{:04X})",
                u32::from(c)
            ),
        ));
    }
    Ok(name.to_owned())
}

/// Characters that change how the text around them reads without being seen: bidirectional
/// embeddings, overrides, isolates and marks (a name that shows reversed, or as another
/// name), and zero-width and other invisible format characters.
fn is_invisible_or_bidi(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{206A}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF9}'..='\u{FFFB}'
    )
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

fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
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

async fn insert_email_token<C: ConnectionTrait>(
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

async fn set_password_hash<C: ConnectionTrait>(
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
