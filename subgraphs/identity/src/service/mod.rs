//! Identity rules: registration, verification, passwords, profile and account status. No
//! GraphQL types here; resolvers check access and call these.
//!
//! This module holds the [`Identity`] service, its constructor, the types its callers use and
//! the helpers the parts share (looking users up, the per-address mail limit, sending mail
//! after the answer). Each responsibility has its own file, an `impl Identity` block each:
//!
//! - `registration`: new accounts (sign-up and the first administrator);
//! - `mailed_tokens`: links sent by mail (email verification, password reset);
//! - `passwords`: changing and checking passwords, and the password policy;
//! - `profile`: a user's own profile (display name);
//! - `administration`: enabling, disabling and deleting accounts, and the authority it needs;
//! - `reading`: reading one user and listing or searching users.

mod administration;
mod mailed_tokens;
mod passwords;
mod profile;
mod reading;
mod registration;

use std::{sync::Arc, time::Duration};

use keygraph_kernel::telemetry::InThisService as _;
use keygraph_kernel::{
    ApiError, ErrorCode,
    config::{Config, IdentityLinks},
    counters::Counters,
    internal::InternalClient,
    ratelimit::SlidingWindowLimiter,
    throttle::Throttle,
};
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter};
use tracing::Instrument as _;
use uuid::Uuid;

use crate::{
    email::EmailAddress,
    entity::user::{self, STATUS_ACTIVE, STATUS_DISABLED},
    handover::Handover,
    mail::{Mailer, OutgoingMail},
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
