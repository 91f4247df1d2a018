//! Passkeys (WebAuthn, through webauthn-rs): registration, a passkey as the second factor of a
//! sign-in or a step-up, and passwordless sign-in with a discoverable passkey.
//!
//! Every ceremony is a begin that answers the standard JSON options for
//! `navigator.credentials.create()` / `.get()` and a finish that takes the browser's
//! credential as JSON. Between them the relying party's state waits in `passkey_ceremonies`,
//! single use and short-lived, so any replica can finish what another began. The relying
//! party id and the allowed origins come from `auth.mfa.passkeys`; an answer made for another
//! origin, by a credential that is not the user's, or with a signature counter that went back
//! (a cloned authenticator) is refused.

use chrono::{DateTime, Utc};
use keygraph_kernel::{
    config::PasskeyConfig, db::begin_write, http::RequestMeta, outbox::AuditEvent,
};
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, Set,
    sea_query::Expr,
};
use serde_json::{Value, json};
use uuid::Uuid;
use webauthn_rs::prelude::{
    AuthenticationResult, DiscoverableAuthentication, DiscoverableKey, Passkey,
    PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential,
    Url, Webauthn, WebauthnBuilder,
};

use crate::{
    entity::{factor, passkey_ceremony},
    mfa::{self, Confirmed},
    service::{Auth, AuthError, AuthResult, Proven, Tokens},
};

const INVALID_CEREMONY: &str =
    "the passkey ceremony is not valid: it expired, was already used, or is not yours; begin again";

/// The relying party.
pub struct Passkeys {
    webauthn: Webauthn,
    ttl: chrono::Duration,
}

impl Passkeys {
    pub fn from_config(config: &PasskeyConfig) -> Result<Self, String> {
        let parse = |origin: &str| {
            Url::parse(origin)
                .map_err(|e| format!("auth.mfa.passkeys.origins: `{origin}` is not a URL: {e}"))
        };
        let (first, rest) = config
            .origins
            .split_first()
            .ok_or("auth.mfa.passkeys.origins: name at least one origin")?;
        let first = parse(first)?;
        let others = rest
            .iter()
            .map(|origin| parse(origin))
            .collect::<Result<Vec<_>, _>>()?;
        let mut builder = WebauthnBuilder::new(&config.rp_id, &first)
            .map_err(|e| format!("auth.mfa.passkeys: {e}"))?
            .rp_name(&config.rp_name);
        for origin in &others {
            builder = builder.append_allowed_origin(origin);
        }
        Ok(Self {
            webauthn: builder
                .build()
                .map_err(|e| format!("auth.mfa.passkeys: {e}"))?,
            ttl: chrono::Duration::seconds(i64::try_from(config.ceremony_ttl_secs).unwrap_or(300)),
        })
    }
}

/// A begun ceremony: its id, and the options for the browser.
#[derive(Debug, Clone)]
pub struct PasskeyOptions {
    pub ceremony: Uuid,
    /// `{ "publicKey": { ... } }`, the WebAuthn JSON options.
    pub options: Value,
    pub expires_at: DateTime<Utc>,
}

/// A passkey answer that verified, still to be recorded.
#[derive(Debug, Clone)]
pub(crate) struct Verified {
    pub(crate) factor: Uuid,
    pub(crate) ceremony: Uuid,
    /// The credential record after this use (counter, backup state).
    pub(crate) updated: String,
    /// `hwk` for a device-bound passkey, `swk` for one that syncs (backup eligible).
    pub(crate) amr: &'static str,
}

fn bad_credential(field: &'static str, e: impl std::fmt::Display) -> AuthError {
    AuthError::InvalidInput(field, format!("the passkey's answer does not verify: {e}"))
}

fn parse<T: serde::de::DeserializeOwned>(field: &'static str, value: &Value) -> AuthResult<T> {
    serde_json::from_value(value.clone()).map_err(|e| {
        AuthError::InvalidInput(
            field,
            format!("not a WebAuthn credential as PublicKeyCredential.toJSON() gives it: {e}"),
        )
    })
}

fn state_json<T: serde::Serialize>(state: &T) -> AuthResult<String> {
    serde_json::to_string(state)
        .map_err(|e| AuthError::Conflict(format!("the passkey ceremony cannot be kept: {e}")))
}

fn options_json<T: serde::Serialize>(options: &T) -> AuthResult<Value> {
    serde_json::to_value(options)
        .map_err(|e| AuthError::Conflict(format!("the passkey options cannot be written: {e}")))
}

fn stored_passkey(factor: &factor::Model) -> Option<Passkey> {
    factor
        .credential
        .as_deref()
        .and_then(|c| serde_json::from_str(c).ok())
}

impl Auth {
    /// The user's passkeys.
    async fn passkeys_of(&self, user: Uuid) -> AuthResult<Vec<(factor::Model, Passkey)>> {
        Ok(crate::mfa::confirmed_factors(user)
            .filter(factor::Column::Kind.eq(factor::PASSKEY))
            .all(&self.db)
            .await?
            .into_iter()
            .filter_map(|f| stored_passkey(&f).map(|p| (f, p)))
            .collect())
    }

    /// Stores a ceremony's state.
    async fn keep_ceremony(
        &self,
        txn: &DatabaseTransaction,
        user: Option<Uuid>,
        purpose: &str,
        sign_in_challenge: Option<Uuid>,
        name: Option<String>,
        state: String,
    ) -> AuthResult<(Uuid, DateTime<Utc>)> {
        let now = Utc::now();
        let id = Uuid::now_v7();
        let expires_at = now + self.passkeys.ttl;
        passkey_ceremony::ActiveModel {
            id: Set(id),
            user_id: Set(user),
            purpose: Set(purpose.to_owned()),
            sign_in_challenge: Set(sign_in_challenge),
            name: Set(name),
            state: Set(state),
            created_at: Set(now),
            expires_at: Set(expires_at),
            used_at: Set(None),
        }
        .insert(txn)
        .await?;
        Ok((id, expires_at))
    }

    /// A ceremony of `purpose` for `user` that may still finish.
    async fn open_ceremony(
        &self,
        id: Uuid,
        purpose: &str,
        user: Option<Uuid>,
    ) -> AuthResult<passkey_ceremony::Model> {
        let now = Utc::now();
        passkey_ceremony::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .filter(|c| {
                c.purpose == purpose
                    && c.used_at.is_none()
                    && c.expires_at > now
                    && (user.is_none() || c.user_id == user)
            })
            .ok_or_else(|| AuthError::Unauthenticated(INVALID_CEREMONY.into()))
    }

    /// Marks a ceremony used in `txn`; false when another request used it first.
    async fn spend_ceremony(&self, txn: &DatabaseTransaction, id: Uuid) -> AuthResult<bool> {
        Ok(passkey_ceremony::Entity::update_many()
            .col_expr(passkey_ceremony::Column::UsedAt, Expr::value(Utc::now()))
            .filter(passkey_ceremony::Column::Id.eq(id))
            .filter(passkey_ceremony::Column::UsedAt.is_null())
            .exec(txn)
            .await?
            .rows_affected
            == 1)
    }

    /// Begins adding a passkey (a discoverable one, so it can also sign in without a
    /// password).
    pub async fn begin_passkey_registration(
        &self,
        meta: &RequestMeta,
        user: Uuid,
        name: Option<&str>,
    ) -> AuthResult<PasskeyOptions> {
        let name = mfa::check_name(name.unwrap_or("Passkey"))?;
        let account = self
            .account(user)
            .await?
            .ok_or_else(|| AuthError::NotFound(format!("no user {user}")))?;
        let existing: Vec<_> = self
            .passkeys_of(user)
            .await?
            .into_iter()
            .map(|(_, p)| p.cred_id().clone())
            .collect();
        let (options, state) = self
            .passkeys
            .webauthn
            .start_passkey_registration(user, &account.email, &account.email, Some(existing))
            .map_err(|e| AuthError::Conflict(format!("a passkey cannot be begun: {e}")))?;
        let mut options = options_json(&options)?;
        // Discoverable, so that it also signs in without a password.
        if let Some(selection) = options
            .pointer_mut("/publicKey/authenticatorSelection")
            .and_then(Value::as_object_mut)
        {
            selection.insert("residentKey".into(), json!("required"));
            selection.insert("requireResidentKey".into(), json!(true));
        }
        let (_turn, txn) = begin_write(&self.db).await?;
        let (ceremony, expires_at) = self
            .keep_ceremony(
                &txn,
                Some(user),
                passkey_ceremony::REGISTER,
                None,
                Some(name),
                state_json(&state)?,
            )
            .await?;
        AuditEvent::new("auth.factor.enrolment_started", "user", user)
            .actor(Some(user))
            .metadata(json!({ "kind": factor::PASSKEY, "ceremony": ceremony }))
            .record(&txn, meta)
            .await?;
        txn.commit().await?;
        Ok(PasskeyOptions {
            ceremony,
            options,
            expires_at,
        })
    }

    /// Finishes adding a passkey with the browser's answer. The first factor of a user
    /// comes with recovery codes.
    pub async fn finish_passkey_registration(
        &self,
        meta: &RequestMeta,
        user: Uuid,
        ceremony: Uuid,
        credential: &Value,
    ) -> AuthResult<Confirmed> {
        let open = self
            .open_ceremony(ceremony, passkey_ceremony::REGISTER, Some(user))
            .await?;
        let answer: RegisterPublicKeyCredential = parse("credential", credential)?;
        let state: PasskeyRegistration = serde_json::from_str(&open.state)
            .map_err(|_| AuthError::Unauthenticated(INVALID_CEREMONY.into()))?;
        let passkey = match self
            .passkeys
            .webauthn
            .finish_passkey_registration(&answer, &state)
        {
            Ok(passkey) => passkey,
            Err(e) => {
                let error = bad_credential("credential", e);
                if let AuthError::InvalidInput(_, reason) = &error {
                    self.record_failed_check(meta, user, mfa::Method::Passkey, reason)
                        .await?;
                }
                return Err(error);
            }
        };
        let now = Utc::now();
        let (_turn, txn) = begin_write(&self.db).await?;
        if !self.spend_ceremony(&txn, ceremony).await? {
            txn.rollback().await?;
            return Err(AuthError::Unauthenticated(INVALID_CEREMONY.into()));
        }
        let id = Uuid::now_v7();
        let stored = factor::ActiveModel {
            id: Set(id),
            user_id: Set(user),
            kind: Set(factor::PASSKEY.into()),
            name: Set(open.name.unwrap_or_else(|| "Passkey".into())),
            sealed_secret: Set(None),
            credential: Set(Some(state_json(&passkey)?)),
            last_step: Set(None),
            created_at: Set(now),
            confirmed_at: Set(Some(now)),
            last_used_at: Set(None),
        }
        .insert(&txn)
        .await?;
        AuditEvent::new("auth.factor.enrolled", "factor", id)
            .actor(Some(user))
            .metadata(json!({ "kind": factor::PASSKEY, "user": user }))
            .record(&txn, meta)
            .await?;
        let recovery_codes = self.first_factor_codes(&txn, meta, user).await?;
        txn.commit().await?;
        Ok(Confirmed {
            factor: stored,
            recovery_codes,
        })
    }

    /// Options asking for one of the user's passkeys, for a sign-in challenge or a step-up;
    /// none when the user has no passkey.
    pub(crate) async fn passkey_request(
        &self,
        txn: &DatabaseTransaction,
        user: Uuid,
        purpose: &str,
        sign_in_challenge: Option<Uuid>,
    ) -> AuthResult<Option<PasskeyOptions>> {
        let passkeys: Vec<Passkey> = self
            .passkeys_of(user)
            .await?
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        if passkeys.is_empty() {
            return Ok(None);
        }
        let (options, state) = self
            .passkeys
            .webauthn
            .start_passkey_authentication(&passkeys)
            .map_err(|e| AuthError::Conflict(format!("a passkey cannot be asked for: {e}")))?;
        let (ceremony, expires_at) = self
            .keep_ceremony(
                txn,
                Some(user),
                purpose,
                sign_in_challenge,
                None,
                state_json(&state)?,
            )
            .await?;
        Ok(Some(PasskeyOptions {
            ceremony,
            options: options_json(&options)?,
            expires_at,
        }))
    }

    /// Begins a step-up with a passkey: the options to answer and send to `stepUp`.
    pub async fn begin_passkey_step_up(&self, user: Uuid) -> AuthResult<PasskeyOptions> {
        let (_turn, txn) = begin_write(&self.db).await?;
        let options = self
            .passkey_request(&txn, user, passkey_ceremony::STEP_UP, None)
            .await?
            .ok_or_else(|| AuthError::Conflict("you have no passkey".into()))?;
        txn.commit().await?;
        Ok(options)
    }

    /// Verifies a passkey answer to a second-factor or step-up ceremony of `user`.
    pub(crate) async fn verify_passkey(
        &self,
        user: Uuid,
        ceremony: Uuid,
        sign_in_challenge: Option<Uuid>,
        credential: &Value,
        field: &'static str,
    ) -> AuthResult<Verified> {
        let purpose = if sign_in_challenge.is_some() {
            passkey_ceremony::SECOND_FACTOR
        } else {
            passkey_ceremony::STEP_UP
        };
        let open = self.open_ceremony(ceremony, purpose, Some(user)).await?;
        if open.sign_in_challenge != sign_in_challenge {
            return Err(AuthError::Unauthenticated(INVALID_CEREMONY.into()));
        }
        let answer: PublicKeyCredential = parse(field, credential)?;
        let state: PasskeyAuthentication = serde_json::from_str(&open.state)
            .map_err(|_| AuthError::Unauthenticated(INVALID_CEREMONY.into()))?;
        let result = self
            .passkeys
            .webauthn
            .finish_passkey_authentication(&answer, &state)
            .map_err(|e| bad_credential(field, e))?;
        verified(self.passkeys_of(user).await?, ceremony, &result, field)
    }

    /// Records a verified passkey use in `txn`: the ceremony spent, the credential updated.
    pub(crate) async fn spend_passkey(
        &self,
        txn: &DatabaseTransaction,
        verified: &Verified,
    ) -> AuthResult<bool> {
        if !self.spend_ceremony(txn, verified.ceremony).await? {
            return Ok(false);
        }
        factor::Entity::update_many()
            .col_expr(
                factor::Column::Credential,
                Expr::value(verified.updated.clone()),
            )
            .col_expr(factor::Column::LastUsedAt, Expr::value(Utc::now()))
            .filter(factor::Column::Id.eq(verified.factor))
            .exec(txn)
            .await?;
        Ok(true)
    }

    /// Begins a passwordless sign-in: options for any discoverable passkey of this site.
    pub async fn begin_passkey_sign_in(&self) -> AuthResult<PasskeyOptions> {
        let (mut options, state) = self
            .passkeys
            .webauthn
            .start_discoverable_authentication()
            .map_err(|e| AuthError::Conflict(format!("a passkey sign-in cannot be begun: {e}")))?;
        // A plain modal request; a page wanting autofill UI asks for it itself.
        options.mediation = None;
        let (_turn, txn) = begin_write(&self.db).await?;
        let (ceremony, expires_at) = self
            .keep_ceremony(
                &txn,
                None,
                passkey_ceremony::SIGN_IN,
                None,
                None,
                state_json(&state)?,
            )
            .await?;
        txn.commit().await?;
        Ok(PasskeyOptions {
            ceremony,
            options: options_json(&options)?,
            expires_at,
        })
    }

    /// Finishes a passwordless sign-in: the passkey says who signs in, and the session opens
    /// as multi-factor (the passkey is a possession that verified its user).
    pub async fn finish_passkey_sign_in(
        &self,
        meta: &RequestMeta,
        ceremony: Uuid,
        credential: &Value,
    ) -> AuthResult<Tokens> {
        let invalid = || AuthError::Unauthenticated(INVALID_CEREMONY.into());
        let open = self
            .open_ceremony(ceremony, passkey_ceremony::SIGN_IN, None)
            .await?;
        let answer: PublicKeyCredential = parse("credential", credential)?;
        let (user, _) = self
            .passkeys
            .webauthn
            .identify_discoverable_authentication(&answer)
            .map_err(|e| bad_credential("credential", e))?;
        if !self.may_sign_in(user).await? {
            return Err(invalid());
        }
        let state: DiscoverableAuthentication =
            serde_json::from_str(&open.state).map_err(|_| invalid())?;
        let passkeys = self.passkeys_of(user).await?;
        let keys: Vec<DiscoverableKey> = passkeys
            .iter()
            .map(|(_, p)| DiscoverableKey::from(p))
            .collect();
        let attempt = self.begin_factor_attempt(meta, user).await?;
        let result = match self
            .passkeys
            .webauthn
            .finish_discoverable_authentication(&answer, state, &keys)
        {
            Ok(result) => result,
            Err(e) => {
                attempt.finish(false).await;
                let error = bad_credential("credential", e);
                if let AuthError::InvalidInput(_, reason) = &error {
                    self.record_failed_check(meta, user, mfa::Method::Passkey, reason)
                        .await?;
                }
                return Err(error);
            }
        };
        attempt.finish(true).await;
        let verified = verified(passkeys, ceremony, &result, "credential")?;
        let grants = self.grants(user).await?;
        let proven = Proven {
            amr: vec![verified.amr.to_owned(), "mfa".to_owned()],
            auth_time: Utc::now().timestamp(),
            mfa_enrolled: true,
        };
        let (_turn, txn) = begin_write(&self.db).await?;
        if !self.spend_passkey(&txn, &verified).await? {
            txn.rollback().await?;
            return Err(invalid());
        }
        AuditEvent::new("auth.factor.verified", "user", user)
            .actor(Some(user))
            .metadata(json!({ "method": "passkey", "purpose": "passwordless" }))
            .record(&txn, meta)
            .await?;
        let (session_id, refresh) = self
            .open_session(&txn, meta, user, &proven, Vec::new())
            .await?;
        txn.commit().await?;
        keygraph_kernel::metrics::Metrics::of("auth").sign_in("succeeded");
        self.issue(user, session_id, grants, refresh, &proven).await
    }
}

/// Of the user's passkeys, the one that gave `result`, updated by it.
fn verified(
    passkeys: Vec<(factor::Model, Passkey)>,
    ceremony: Uuid,
    result: &AuthenticationResult,
    field: &'static str,
) -> AuthResult<Verified> {
    let (stored, mut passkey) = passkeys
        .into_iter()
        .find(|(_, p)| p.cred_id() == result.cred_id())
        .ok_or_else(|| bad_credential(field, "it is not one of your passkeys"))?;
    passkey.update_credential(result);
    Ok(Verified {
        factor: stored.id,
        ceremony,
        updated: state_json(&passkey)?,
        amr: if result.backup_eligible() {
            "swk"
        } else {
            "hwk"
        },
    })
}
