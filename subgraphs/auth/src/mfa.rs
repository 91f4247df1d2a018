//! Second factors: TOTP authenticators and recovery codes, the challenge a correct password
//! answers when one is due, its completion, and step-up for sensitive changes.
//!
//! - An account with a confirmed factor, or holding a role of `auth.mfa.required_for_roles`,
//!   gets a [`Challenge`] from `login` instead of tokens. It is single use, expires after
//!   `auth.mfa.challenge_ttl_secs`, and is bound to the client address and user agent that
//!   signed in. A role's holder without a factor enrols one in the same step.
//! - Codes are throttled per account from every address (and per address, with sign-ins).
//!   A TOTP step is accepted once per factor: a code of it, or of an earlier step, is a
//!   replay. A recovery code is accepted once.
//! - Every enrolment, removal, reset and factor check, successful or not, writes its audit
//!   event in the transaction of the change (a failed check in one of its own).

use chrono::{DateTime, Utc};
use keygraph_kernel::{
    db::{begin_write, write_turn},
    http::RequestMeta,
    outbox::{AuditEvent, Outcome},
    throttle::Refused,
};
use rand::RngCore as _;
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait,
    PaginatorTrait as _, QueryFilter, QueryOrder, Select, Set,
    sea_query::{Expr, ExprTrait as _},
};
use serde_json::json;
use uuid::Uuid;

use crate::{
    entity::{factor, passkey_ceremony, recovery_code, refresh_token, session, sign_in_challenge},
    passkeys::{PasskeyOptions, Verified},
    service::{
        Account, Auth, AuthError, AuthResult, Grants, Proven, Tokens, hash_token, insert_refresh,
        new_refresh_token,
    },
    totp,
};

/// Recovery codes handed out at a time.
pub const RECOVERY_CODES: usize = 10;
/// Confirmed factors one user may have.
pub const MAX_FACTORS: u64 = 10;
/// Longest name of a factor, in characters.
pub const NAME_MAX_CHARS: usize = 64;

const INVALID_CHALLENGE: &str = "the sign-in challenge is not valid: it expired, was already used, or comes from another client; sign in again";

/// What completes a sign-in challenge or a step-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Totp,
    RecoveryCode,
    Passkey,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Totp => "totp",
            Method::RecoveryCode => "recovery_code",
            Method::Passkey => "passkey",
        }
    }
}

/// A second factor as the user presents it.
#[derive(Debug, Clone)]
pub enum Proof {
    Totp(String),
    RecoveryCode(String),
    /// A passkey's answer (`PublicKeyCredential` JSON) to the ceremony begun for it.
    Passkey {
        ceremony: Uuid,
        credential: serde_json::Value,
    },
}

impl Proof {
    fn method(&self) -> Method {
        match self {
            Proof::Totp(_) => Method::Totp,
            Proof::RecoveryCode(_) => Method::RecoveryCode,
            Proof::Passkey { .. } => Method::Passkey,
        }
    }
}

/// A TOTP authenticator waiting for its first code.
#[derive(Debug, Clone)]
pub struct TotpEnrolment {
    pub factor_id: Uuid,
    /// Base32, for typing into an app.
    pub secret: String,
    pub uri: String,
    /// The URI as a QR code, an SVG `data:` URL.
    pub qr_code: String,
    pub expires_at: DateTime<Utc>,
}

/// What `login` answers when a second factor is due.
#[derive(Debug, Clone)]
pub struct Challenge {
    /// Handed to the client once; only its hash is stored.
    pub token: String,
    pub expires_at: DateTime<Utc>,
    /// What completes it.
    pub methods: Vec<Method>,
    /// Set when a role requires a factor the user does not have: the authenticator to add,
    /// whose first code completes the sign-in.
    pub enrolment: Option<TotpEnrolment>,
    /// Set when the user has a passkey: the options to answer with one.
    pub passkey: Option<PasskeyOptions>,
}

/// A confirmed enrolment.
#[derive(Debug, Clone)]
pub struct Confirmed {
    pub factor: factor::Model,
    /// The recovery codes, when this was the user's first factor: shown once.
    pub recovery_codes: Option<Vec<String>>,
}

/// A proof that checked out, still to be spent.
#[derive(Debug, Clone)]
enum Accepted {
    Totp {
        factor: Uuid,
        step: i64,
        /// The factor is a pending enrolment this code confirms.
        confirms: bool,
    },
    Recovery {
        code: Uuid,
    },
    Passkey(Verified),
}

impl Accepted {
    fn method(&self) -> Method {
        match self {
            Accepted::Totp { .. } => Method::Totp,
            Accepted::Recovery { .. } => Method::RecoveryCode,
            Accepted::Passkey(_) => Method::Passkey,
        }
    }

    /// What it adds to the session's `amr` (with `mfa`).
    fn amr(&self) -> &'static str {
        match self {
            Accepted::Totp { .. } | Accepted::Recovery { .. } => "otp",
            Accepted::Passkey(verified) => verified.amr,
        }
    }
}

/// 80 random bits as `xxxx-xxxx-xxxx-xxxx` (lowercase base32), and its stored hash.
fn new_recovery_code() -> (String, String) {
    let mut bytes = [0u8; 10];
    rand::rng().fill_bytes(&mut bytes);
    let text = data_encoding::BASE32_NOPAD
        .encode(&bytes)
        .to_ascii_lowercase();
    let grouped = text
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("-");
    let hash = recovery_code_hash(&grouped);
    (grouped, hash)
}

/// The hash of a recovery code as typed: dashes, spaces and case do not matter.
fn recovery_code_hash(typed: &str) -> String {
    let normalised: String = typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    hash_token(&normalised)
}

/// A factor's name: trimmed, 1 to 64 characters, no control characters.
pub fn check_name(name: &str) -> AuthResult<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > NAME_MAX_CHARS {
        return Err(AuthError::InvalidInput(
            "name",
            format!("a factor's name is 1 to {NAME_MAX_CHARS} characters"),
        ));
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(AuthError::InvalidInput(
            "name",
            format!(
                "a factor's name may not contain the control character U+{:04X}",
                u32::from(c)
            ),
        ));
    }
    Ok(name.to_owned())
}

fn field_of(proof: &Proof, prefix: &'static str) -> &'static str {
    match (proof, prefix) {
        (Proof::Totp(_), "proof") => "proof.totpCode",
        (Proof::RecoveryCode(_), "proof") => "proof.recoveryCode",
        (Proof::Passkey { .. }, "proof") => "proof.passkey",
        _ => "code",
    }
}

/// `amr` after a second factor: the first step's values, then the factor's and `mfa`.
fn with_factor(first: &str, accepted: &Accepted) -> Vec<String> {
    let mut amr: Vec<String> = first.split_whitespace().map(str::to_owned).collect();
    for value in [accepted.amr(), "mfa"] {
        if !amr.iter().any(|a| a == value) {
            amr.push(value.to_owned());
        }
    }
    amr
}

impl Auth {
    /// Whether the user has a confirmed second factor.
    pub async fn has_second_factor(&self, user: Uuid) -> AuthResult<bool> {
        Ok(confirmed_factors(user).count(&self.db).await? > 0)
    }

    /// Whether one of the roles held is in `auth.mfa.required_for_roles`.
    pub(crate) fn role_requires_second_factor(&self, grants: &Grants) -> bool {
        grants
            .roles
            .iter()
            .any(|role| self.mfa.required_for_roles.contains(role))
    }

    /// The user's confirmed factors, oldest first.
    pub async fn factors(&self, user: Uuid) -> AuthResult<Vec<factor::Model>> {
        Ok(confirmed_factors(user)
            .order_by_asc(factor::Column::CreatedAt)
            .all(&self.db)
            .await?)
    }

    /// Recovery codes of the user not yet used.
    pub async fn recovery_codes_remaining(&self, user: Uuid) -> AuthResult<u64> {
        Ok(unused_recovery_codes(user).count(&self.db).await?)
    }

    /// Answers a correct password with a challenge (and, with `enrol`, a TOTP enrolment).
    pub(crate) async fn challenge(
        &self,
        meta: &RequestMeta,
        account: &Account,
        enrol: bool,
        amr: &[&str],
    ) -> AuthResult<Challenge> {
        let now = Utc::now();
        let (token, token_hash) = new_refresh_token();
        let expires_at = now + chrono::Duration::seconds(secs(self.mfa.challenge_ttl_secs));
        let (_turn, txn) = begin_write(&self.db).await?;
        let enrolment = if enrol {
            Some(
                self.pending_totp(&txn, account.id, &account.email, "Authenticator", now)
                    .await?,
            )
        } else {
            None
        };
        let id = Uuid::now_v7();
        let passkey = if enrol {
            None
        } else {
            self.passkey_request(&txn, account.id, passkey_ceremony::SECOND_FACTOR, Some(id))
                .await?
        };
        let methods = if enrol {
            vec![Method::Totp]
        } else {
            let mut methods = Vec::new();
            let totp = confirmed_factors(account.id)
                .filter(factor::Column::Kind.eq(factor::TOTP))
                .count(&txn)
                .await?;
            if totp > 0 {
                methods.push(Method::Totp);
            }
            if passkey.is_some() {
                methods.push(Method::Passkey);
            }
            let codes = unused_recovery_codes(account.id).count(&txn).await?;
            if codes > 0 {
                methods.push(Method::RecoveryCode);
            }
            methods
        };
        sign_in_challenge::ActiveModel {
            id: Set(id),
            token_hash: Set(token_hash),
            user_id: Set(account.id),
            amr: Set(amr.join(" ")),
            client_addr: Set(meta.client_addr.map(|a| a.to_string())),
            user_agent: Set(meta.user_agent.clone()),
            enrol_factor: Set(enrolment.as_ref().map(|e| e.factor_id)),
            created_at: Set(now),
            expires_at: Set(expires_at),
            used_at: Set(None),
        }
        .insert(&txn)
        .await?;
        AuditEvent::new("auth.login.second_factor_due", "user", account.id)
            .actor(Some(account.id))
            .metadata(json!({ "challenge": id, "enrolment": enrol }))
            .record(&txn, meta)
            .await?;
        txn.commit().await?;
        Ok(Challenge {
            token,
            expires_at,
            methods,
            enrolment,
            passkey,
        })
    }

    /// A new unconfirmed TOTP factor; the user's other unconfirmed ones are dropped.
    async fn pending_totp(
        &self,
        txn: &DatabaseTransaction,
        user: Uuid,
        account_label: &str,
        name: &str,
        now: DateTime<Utc>,
    ) -> AuthResult<TotpEnrolment> {
        factor::Entity::delete_many()
            .filter(factor::Column::UserId.eq(user))
            .filter(factor::Column::ConfirmedAt.is_null())
            .exec(txn)
            .await?;
        let confirmed = factor::Entity::find()
            .filter(factor::Column::UserId.eq(user))
            .count(txn)
            .await?;
        if confirmed >= MAX_FACTORS {
            return Err(AuthError::Conflict(format!(
                "you have {MAX_FACTORS} second factors, the most there may be; remove one first"
            )));
        }
        let secret = totp::new_secret();
        let sealed = self.keys.sealer().seal_bytes(&secret)?;
        let uri = totp::otpauth_uri(&secret, &self.mfa.totp_issuer, account_label);
        let qr_code = totp::qr_svg_data_url(&uri).map_err(AuthError::Conflict)?;
        let factor_id = Uuid::now_v7();
        factor::ActiveModel {
            id: Set(factor_id),
            user_id: Set(user),
            kind: Set(factor::TOTP.into()),
            name: Set(name.to_owned()),
            sealed_secret: Set(Some(sealed)),
            credential: Set(None),
            last_step: Set(None),
            created_at: Set(now),
            confirmed_at: Set(None),
            last_used_at: Set(None),
        }
        .insert(txn)
        .await?;
        Ok(TotpEnrolment {
            factor_id,
            secret: totp::encode_secret(&secret),
            uri,
            qr_code,
            expires_at: now + chrono::Duration::seconds(secs(self.mfa.enrolment_ttl_secs)),
        })
    }

    /// Starts adding an authenticator app: it counts once [`Auth::confirm_totp`] takes its
    /// first code.
    pub async fn begin_totp(
        &self,
        meta: &RequestMeta,
        user: Uuid,
        name: Option<&str>,
    ) -> AuthResult<TotpEnrolment> {
        let name = check_name(name.unwrap_or("Authenticator"))?;
        let account = self
            .account(user)
            .await?
            .ok_or_else(|| AuthError::NotFound(format!("no user {user}")))?;
        let (_turn, txn) = begin_write(&self.db).await?;
        let enrolment = self
            .pending_totp(&txn, user, &account.email, &name, Utc::now())
            .await?;
        AuditEvent::new(
            "auth.factor.enrolment_started",
            "factor",
            enrolment.factor_id,
        )
        .actor(Some(user))
        .metadata(json!({ "kind": factor::TOTP, "user": user }))
        .record(&txn, meta)
        .await?;
        txn.commit().await?;
        Ok(enrolment)
    }

    /// Confirms a pending authenticator with its first code. The first factor of a user
    /// comes with recovery codes.
    pub async fn confirm_totp(
        &self,
        meta: &RequestMeta,
        user: Uuid,
        factor_id: Uuid,
        code: &str,
    ) -> AuthResult<Confirmed> {
        let proof = Proof::Totp(code.to_owned());
        let accepted = self
            .check_proof(meta, user, &proof, Some(factor_id), None, "code")
            .await?;
        let (_turn, txn) = begin_write(&self.db).await?;
        let recovery_codes = self.spend(&txn, meta, user, accepted, "enrolment").await?;
        let factor = factor::Entity::find_by_id(factor_id)
            .one(&txn)
            .await?
            .ok_or_else(|| AuthError::NotFound(format!("no pending factor {factor_id}")))?;
        txn.commit().await?;
        Ok(Confirmed {
            factor,
            recovery_codes,
        })
    }

    /// Completes a sign-in challenge with a second factor: the session opens.
    pub async fn complete_sign_in(
        &self,
        meta: &RequestMeta,
        challenge: &str,
        proof: &Proof,
    ) -> AuthResult<Tokens> {
        let invalid = || AuthError::Unauthenticated(INVALID_CHALLENGE.into());
        if challenge.len() != 43 {
            return Err(invalid());
        }
        let now = Utc::now();
        let stored = sign_in_challenge::Entity::find()
            .filter(sign_in_challenge::Column::TokenHash.eq(hash_token(challenge)))
            .one(&self.db)
            .await?
            .filter(|c| {
                c.used_at.is_none()
                    && c.expires_at > now
                    && c.client_addr == meta.client_addr.map(|a| a.to_string())
                    && c.user_agent == meta.user_agent
            })
            .ok_or_else(invalid)?;
        let user = stored.user_id;
        if !self.may_sign_in(user).await? {
            return Err(invalid());
        }
        if stored.enrol_factor.is_some() && !matches!(proof, Proof::Totp(_)) {
            return Err(AuthError::InvalidInput(
                "proof.totpCode",
                "this sign-in adds an authenticator: complete it with a code of that authenticator"
                    .into(),
            ));
        }
        let accepted = self
            .check_proof(
                meta,
                user,
                proof,
                stored.enrol_factor,
                Some(stored.id),
                "proof",
            )
            .await?;
        let grants = self.grants(user).await?;
        let (_turn, txn) = begin_write(&self.db).await?;
        let claimed = sign_in_challenge::Entity::update_many()
            .col_expr(sign_in_challenge::Column::UsedAt, Expr::value(now))
            .filter(sign_in_challenge::Column::Id.eq(stored.id))
            .filter(sign_in_challenge::Column::UsedAt.is_null())
            .exec(&txn)
            .await?;
        if claimed.rows_affected != 1 {
            txn.rollback().await?;
            return Err(invalid());
        }
        let amr = with_factor(&stored.amr, &accepted);
        let recovery_codes = self.spend(&txn, meta, user, accepted, "sign_in").await?;
        let proven = Proven {
            amr,
            auth_time: now.timestamp(),
            mfa_enrolled: true,
        };
        let (session_id, refresh) = self
            .open_session(&txn, meta, user, &proven, Vec::new())
            .await?;
        txn.commit().await?;
        keygraph_kernel::metrics::Metrics::of("auth").sign_in("succeeded");
        let mut tokens = self
            .issue(user, session_id, grants, refresh, &proven)
            .await?;
        tokens.recovery_codes = recovery_codes;
        Ok(tokens)
    }

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

    /// Starts a throttled check of one of `user`'s factors.
    pub(crate) async fn begin_factor_attempt(
        &self,
        meta: &RequestMeta,
        user: Uuid,
    ) -> AuthResult<keygraph_kernel::throttle::Attempt> {
        self.factor_throttle
            .begin(&format!("factor:{user}"), meta.client_addr)
            .await
            .map_err(|refused| {
                keygraph_kernel::metrics::Metrics::of("auth").throttled("second_factor");
                match refused {
                    Refused::Wait(secs) => AuthError::Throttled(secs),
                    Refused::Unavailable => AuthError::ThrottleUnavailable,
                }
            })
    }

    /// Checks a proof (throttled), writing the failure's audit event when it is wrong.
    /// `pending` is the unconfirmed TOTP factor the code must be of, when enrolling;
    /// `challenge` the sign-in challenge a passkey ceremony belongs to.
    async fn check_proof(
        &self,
        meta: &RequestMeta,
        user: Uuid,
        proof: &Proof,
        pending: Option<Uuid>,
        challenge: Option<Uuid>,
        field_prefix: &'static str,
    ) -> AuthResult<Accepted> {
        let attempt = self.begin_factor_attempt(meta, user).await?;
        let field = field_of(proof, field_prefix);
        let checked = self
            .match_proof(user, proof, pending, challenge, field)
            .await;
        match checked {
            Ok(accepted) => {
                attempt.finish(true).await;
                Ok(accepted)
            }
            Err(AuthError::InvalidInput(field, reason)) => {
                attempt.finish(false).await;
                self.record_failed_check(meta, user, proof.method(), &reason)
                    .await?;
                Err(AuthError::InvalidInput(field, reason))
            }
            // Anything else (a pending factor not found, the database) is no guess.
            Err(other) => Err(other),
        }
    }

    async fn match_proof(
        &self,
        user: Uuid,
        proof: &Proof,
        pending: Option<Uuid>,
        challenge: Option<Uuid>,
        field: &'static str,
    ) -> AuthResult<Accepted> {
        match proof {
            Proof::Passkey {
                ceremony,
                credential,
            } => Ok(Accepted::Passkey(
                self.verify_passkey(user, *ceremony, challenge, credential, field)
                    .await?,
            )),
            Proof::Totp(code) => {
                let now = Utc::now();
                let candidates = match pending {
                    Some(id) => factor::Entity::find_by_id(id)
                        .filter(factor::Column::UserId.eq(user))
                        .filter(factor::Column::ConfirmedAt.is_null())
                        .all(&self.db)
                        .await?
                        .into_iter()
                        .filter(|f| {
                            now - f.created_at
                                <= chrono::Duration::seconds(secs(self.mfa.enrolment_ttl_secs))
                        })
                        .collect::<Vec<_>>(),
                    None => {
                        confirmed_factors(user)
                            .filter(factor::Column::Kind.eq(factor::TOTP))
                            .all(&self.db)
                            .await?
                    }
                };
                if pending.is_some() && candidates.is_empty() {
                    return Err(AuthError::NotFound(
                        "no pending authenticator of yours with this id (it may have expired); start again".into(),
                    ));
                }
                let mut refusal = totp::Refusal::Wrong;
                for candidate in &candidates {
                    let Some(secret) = candidate
                        .sealed_secret
                        .as_deref()
                        .and_then(|sealed| self.keys.sealer().open_bytes(sealed))
                    else {
                        tracing::error!(factor = %candidate.id, "a TOTP secret does not unseal: wrong key-encryption key or damaged data");
                        continue;
                    };
                    match totp::verify(&secret, code, now.timestamp(), candidate.last_step) {
                        Ok(step) => {
                            return Ok(Accepted::Totp {
                                factor: candidate.id,
                                step,
                                confirms: pending.is_some(),
                            });
                        }
                        Err(totp::Refusal::Malformed) => {
                            return Err(AuthError::InvalidInput(
                                field,
                                format!("a code is {} digits", totp::DIGITS),
                            ));
                        }
                        Err(totp::Refusal::Replayed) => refusal = totp::Refusal::Replayed,
                        Err(totp::Refusal::Wrong) => {}
                    }
                }
                Err(AuthError::InvalidInput(
                    field,
                    match refusal {
                        totp::Refusal::Replayed => {
                            "this code was already used; wait for your authenticator's next one"
                                .into()
                        }
                        _ => "the code is not correct".into(),
                    },
                ))
            }
            Proof::RecoveryCode(code) => unused_recovery_codes(user)
                .filter(recovery_code::Column::CodeHash.eq(recovery_code_hash(code)))
                .one(&self.db)
                .await?
                .map(|c| Accepted::Recovery { code: c.id })
                .ok_or_else(|| {
                    AuthError::InvalidInput(
                        field,
                        "the recovery code is not correct or was already used".into(),
                    )
                }),
        }
    }

    /// Spends an accepted proof in `txn` (once: a concurrent use of the same code loses),
    /// with its audit events. Confirming the user's first factor makes recovery codes,
    /// which are returned.
    async fn spend(
        &self,
        txn: &DatabaseTransaction,
        meta: &RequestMeta,
        user: Uuid,
        accepted: Accepted,
        purpose: &str,
    ) -> AuthResult<Option<Vec<String>>> {
        let now = Utc::now();
        let replay = || {
            AuthError::InvalidInput(
                "code",
                "this code was just used by another request; wait for the next one".into(),
            )
        };
        let mut recovery_codes = None;
        let method = accepted.method();
        match accepted {
            Accepted::Totp {
                factor: id,
                step,
                confirms,
            } => {
                let mut update = factor::Entity::update_many()
                    .col_expr(factor::Column::LastStep, Expr::value(step))
                    .col_expr(factor::Column::LastUsedAt, Expr::value(now))
                    .filter(factor::Column::Id.eq(id))
                    .filter(
                        factor::Column::LastStep
                            .is_null()
                            .or(factor::Column::LastStep.lt(step)),
                    );
                if confirms {
                    update = update
                        .col_expr(factor::Column::ConfirmedAt, Expr::value(now))
                        .filter(factor::Column::ConfirmedAt.is_null());
                }
                if update.exec(txn).await?.rows_affected != 1 {
                    return Err(replay());
                }
                if confirms {
                    AuditEvent::new("auth.factor.enrolled", "factor", id)
                        .actor(Some(user))
                        .metadata(json!({ "kind": factor::TOTP, "user": user }))
                        .record(txn, meta)
                        .await?;
                    recovery_codes = self.first_factor_codes(txn, meta, user).await?;
                }
            }
            Accepted::Passkey(verified) => {
                if !self.spend_passkey(txn, &verified).await? {
                    return Err(replay());
                }
            }
            Accepted::Recovery { code } => {
                let spent = recovery_code::Entity::update_many()
                    .col_expr(recovery_code::Column::UsedAt, Expr::value(now))
                    .filter(recovery_code::Column::Id.eq(code))
                    .filter(recovery_code::Column::UsedAt.is_null())
                    .exec(txn)
                    .await?;
                if spent.rows_affected != 1 {
                    return Err(replay());
                }
            }
        }
        AuditEvent::new("auth.factor.verified", "user", user)
            .actor(Some(user))
            .metadata(json!({ "method": method.as_str(), "purpose": purpose }))
            .record(txn, meta)
            .await?;
        Ok(recovery_codes)
    }

    /// Recovery codes for a user who has none unused (their first factor was just added).
    pub(crate) async fn first_factor_codes(
        &self,
        txn: &DatabaseTransaction,
        meta: &RequestMeta,
        user: Uuid,
    ) -> AuthResult<Option<Vec<String>>> {
        let unused = unused_recovery_codes(user).count(txn).await?;
        if unused > 0 {
            return Ok(None);
        }
        Ok(Some(self.replace_recovery_codes(txn, meta, user).await?))
    }

    pub(crate) async fn record_failed_check(
        &self,
        meta: &RequestMeta,
        user: Uuid,
        method: Method,
        reason: &str,
    ) -> AuthResult<()> {
        let _turn = write_turn(&self.db).await;
        AuditEvent::new("auth.factor.failed", "user", user)
            .actor(Some(user))
            .outcome(Outcome::Failure)
            .metadata(json!({ "method": method.as_str(), "reason": reason }))
            .record(&self.db, meta)
            .await?;
        Ok(())
    }

    /// Replaces the user's recovery codes with new ones, returned in the clear (only now).
    async fn replace_recovery_codes<C: ConnectionTrait>(
        &self,
        db: &C,
        meta: &RequestMeta,
        user: Uuid,
    ) -> AuthResult<Vec<String>> {
        recovery_code::Entity::delete_many()
            .filter(recovery_code::Column::UserId.eq(user))
            .exec(db)
            .await?;
        let now = Utc::now();
        let mut codes = Vec::with_capacity(RECOVERY_CODES);
        let mut rows = Vec::with_capacity(RECOVERY_CODES);
        for _ in 0..RECOVERY_CODES {
            let (code, hash) = new_recovery_code();
            codes.push(code);
            rows.push(recovery_code::ActiveModel {
                id: Set(Uuid::now_v7()),
                user_id: Set(user),
                code_hash: Set(hash),
                created_at: Set(now),
                used_at: Set(None),
            });
        }
        recovery_code::Entity::insert_many(rows).exec(db).await?;
        AuditEvent::new("auth.recovery_codes.generated", "user", user)
            .actor(Some(user))
            .metadata(json!({ "count": RECOVERY_CODES }))
            .record(db, meta)
            .await?;
        Ok(codes)
    }

    /// New recovery codes for a user with a second factor; the old ones stop working.
    pub async fn regenerate_recovery_codes(
        &self,
        meta: &RequestMeta,
        user: Uuid,
    ) -> AuthResult<Vec<String>> {
        if !self.has_second_factor(user).await? {
            return Err(AuthError::Conflict(
                "recovery codes stand in for a second factor: add one first".into(),
            ));
        }
        let (_turn, txn) = begin_write(&self.db).await?;
        let codes = self.replace_recovery_codes(&txn, meta, user).await?;
        txn.commit().await?;
        Ok(codes)
    }

    /// Renames one of the user's factors.
    pub async fn rename_factor(
        &self,
        meta: &RequestMeta,
        user: Uuid,
        id: Uuid,
        name: &str,
    ) -> AuthResult<factor::Model> {
        let name = check_name(name)?;
        let (_turn, txn) = begin_write(&self.db).await?;
        let found = self.own_factor(&txn, user, id).await?;
        let mut active: factor::ActiveModel = found.into();
        active.name = Set(name.clone());
        let renamed = active.update(&txn).await?;
        AuditEvent::new("auth.factor.renamed", "factor", id)
            .actor(Some(user))
            .metadata(json!({ "name": name }))
            .record(&txn, meta)
            .await?;
        txn.commit().await?;
        Ok(renamed)
    }

    /// Removes one of the user's factors. Removing the last one also removes the recovery
    /// codes, and is refused while a role the user holds requires a second factor.
    pub async fn remove_factor(&self, meta: &RequestMeta, user: Uuid, id: Uuid) -> AuthResult<()> {
        let grants = self.grants(user).await?;
        let (_turn, txn) = begin_write(&self.db).await?;
        let found = self.own_factor(&txn, user, id).await?;
        let others = confirmed_factors(user)
            .filter(factor::Column::Id.ne(id))
            .count(&txn)
            .await?;
        if others == 0 && self.role_requires_second_factor(&grants) {
            txn.rollback().await?;
            return Err(AuthError::Conflict(
                "a role you hold requires a second factor: add another before removing this one"
                    .into(),
            ));
        }
        factor::Entity::delete_by_id(id).exec(&txn).await?;
        if others == 0 {
            recovery_code::Entity::delete_many()
                .filter(recovery_code::Column::UserId.eq(user))
                .exec(&txn)
                .await?;
        }
        AuditEvent::new("auth.factor.removed", "factor", id)
            .actor(Some(user))
            .metadata(json!({ "kind": found.kind, "user": user, "last": others == 0 }))
            .record(&txn, meta)
            .await?;
        txn.commit().await?;
        Ok(())
    }

    async fn own_factor(
        &self,
        txn: &DatabaseTransaction,
        user: Uuid,
        id: Uuid,
    ) -> AuthResult<factor::Model> {
        factor::Entity::find_by_id(id)
            .one(txn)
            .await?
            .filter(|f| f.user_id == user && f.confirmed_at.is_some())
            .ok_or_else(|| AuthError::NotFound(format!("no second factor {id} of yours")))
    }

    /// Removes every factor and recovery code of `target` (a user who lost them), if `actor`
    /// holds `auth.factor.reset` now (per authz's current grants). Returns how many factors
    /// went.
    pub async fn reset_factors(
        &self,
        meta: &RequestMeta,
        actor: Uuid,
        target: Uuid,
    ) -> AuthResult<u64> {
        self.require_current_permission(actor, keygraph_kernel::permissions::auth::FACTOR_RESET)
            .await?;
        let (_turn, txn) = begin_write(&self.db).await?;
        let removed = remove_all_factors(&txn, target).await?;
        AuditEvent::new("auth.factor.reset", "user", target)
            .actor(Some(actor))
            .metadata(json!({ "factors": removed }))
            .record(&txn, meta)
            .await?;
        txn.commit().await?;
        Ok(removed)
    }

    /// Removes what auth keeps of a deleted user's factors (identity asks, after the
    /// deletion). Idempotent; returns how many factors went.
    pub async fn drop_factors(&self, meta: &RequestMeta, user: Uuid) -> AuthResult<u64> {
        let (_turn, txn) = begin_write(&self.db).await?;
        let removed = remove_all_factors(&txn, user).await?;
        if removed > 0 {
            AuditEvent::new("auth.factor.dropped", "user", user)
                .metadata(json!({ "factors": removed, "reason": "account deleted" }))
                .record(&txn, meta)
                .await?;
        }
        txn.commit().await?;
        Ok(removed)
    }
}

/// Deletes every factor, recovery code, sign-in challenge and passkey ceremony of `user`.
async fn remove_all_factors(txn: &DatabaseTransaction, user: Uuid) -> AuthResult<u64> {
    let removed = factor::Entity::delete_many()
        .filter(factor::Column::UserId.eq(user))
        .exec(txn)
        .await?
        .rows_affected;
    recovery_code::Entity::delete_many()
        .filter(recovery_code::Column::UserId.eq(user))
        .exec(txn)
        .await?;
    sign_in_challenge::Entity::delete_many()
        .filter(sign_in_challenge::Column::UserId.eq(user))
        .exec(txn)
        .await?;
    passkey_ceremony::Entity::delete_many()
        .filter(passkey_ceremony::Column::UserId.eq(user))
        .exec(txn)
        .await?;
    Ok(removed)
}

/// The user's confirmed factors (an enrolment still waiting for its first code is not one).
pub(crate) fn confirmed_factors(user: Uuid) -> Select<factor::Entity> {
    factor::Entity::find()
        .filter(factor::Column::UserId.eq(user))
        .filter(factor::Column::ConfirmedAt.is_not_null())
}

/// The user's recovery codes not used yet.
fn unused_recovery_codes(user: Uuid) -> Select<recovery_code::Entity> {
    recovery_code::Entity::find()
        .filter(recovery_code::Column::UserId.eq(user))
        .filter(recovery_code::Column::UsedAt.is_null())
}

fn secs(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX / 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_codes_are_grouped_and_typed_loosely() {
        let (code, hash) = new_recovery_code();
        assert_eq!(code.len(), 19, "{code}");
        assert_eq!(code.matches('-').count(), 3);
        assert_eq!(recovery_code_hash(&code.to_uppercase()), hash);
        assert_eq!(recovery_code_hash(&code.replace('-', " ")), hash);
        assert_ne!(new_recovery_code().0, code);
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(check_name("  Phone ").ok().as_deref(), Some("Phone"));
        assert!(check_name("").is_err());
        assert!(check_name(&"x".repeat(65)).is_err());
        assert!(check_name("a\u{7}b").is_err());
    }
}
