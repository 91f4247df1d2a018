//! Checking a presented second factor and spending it: the throttled check of a TOTP code,
//! recovery code or passkey answer (a wrong one is audited), and its single use in the
//! transaction of the change it allows.

use chrono::Utc;
use keygraph_kernel::{
    db::write_turn,
    http::RequestMeta,
    outbox::{AuditEvent, Outcome},
    throttle::Refused,
};
use sea_orm::{
    ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter,
    sea_query::{Expr, ExprTrait as _},
};
use serde_json::json;
use uuid::Uuid;

use super::{
    Method, Proof, confirmed_factors, recovery::recovery_code_hash, secs, unused_recovery_codes,
};
use crate::{
    entity::{factor, recovery_code},
    passkeys::Verified,
    service::{Auth, AuthError, AuthResult},
    totp,
};

/// A proof that checked out, still to be spent.
#[derive(Debug, Clone)]
pub(super) enum Accepted {
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

fn field_of(proof: &Proof, prefix: &'static str) -> &'static str {
    match (proof, prefix) {
        (Proof::Totp(_), "proof") => "proof.totpCode",
        (Proof::RecoveryCode(_), "proof") => "proof.recoveryCode",
        (Proof::Passkey { .. }, "proof") => "proof.passkey",
        _ => "code",
    }
}

/// `amr` after a second factor: the first step's values, then the factor's and `mfa`.
pub(super) fn with_factor(first: &str, accepted: &Accepted) -> Vec<String> {
    let mut amr: Vec<String> = first.split_whitespace().map(str::to_owned).collect();
    for value in [accepted.amr(), "mfa"] {
        if !amr.iter().any(|a| a == value) {
            amr.push(value.to_owned());
        }
    }
    amr
}

impl Auth {
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
    pub(super) async fn check_proof(
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
    pub(super) async fn spend(
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
}
