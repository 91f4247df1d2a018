//! Second factors in the API: the sign-in challenge and its completion, step-up, TOTP and
//! passkey enrolment, passwordless sign-in with a passkey, recovery codes, listing, naming
//! and removing factors, and an administrator's reset.

use async_graphql::{Context, Enum, ID, InputObject, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};
use keygraph_kernel::{
    ApiError, ApiResult,
    graphql::{parse_id, request_meta},
    guard::{
        Authenticated, HasPermission, STEP_UP_POLICY, authenticated, policy, require_principal,
        require_step_up,
    },
    permissions::auth as codes,
};

use super::{AuthPayload, announce, auth};
use crate::{
    entity::factor,
    mfa::{self, Method, Proof},
    passkeys,
};

/// The answer to a correct password when a second factor is due.
#[derive(SimpleObject)]
pub struct SecondFactorChallenge {
    /// Send back to `completeLogin` with the second factor. Single use, valid until
    /// `expiresAt`, and only from the client that signed in.
    pub challenge: String,
    /// When the challenge expires (UTC); then sign in again.
    pub expires_at: DateTime<Utc>,
    /// What completes it.
    pub methods: Vec<SecondFactorMethod>,
    /// Set when a role you hold requires a second factor and you have none: add this
    /// authenticator to your app, then complete the sign-in with its first code.
    pub enrolment: Option<TotpEnrolment>,
    /// Set when you have a passkey: answer these options with
    /// `navigator.credentials.get()` and complete with the answer as `proof.passkey`.
    pub passkey: Option<PasskeyOptions>,
}

/// A passkey ceremony begun: answer `options` in the browser, then send the answer with
/// `ceremonyId` before `expiresAt`.
#[derive(SimpleObject)]
pub struct PasskeyOptions {
    /// Names the ceremony when you send the answer.
    pub ceremony_id: ID,
    /// The WebAuthn options as JSON, `{ "publicKey": { ... } }`: pass `publicKey` to
    /// `PublicKeyCredential.parseCreationOptionsFromJSON` (registration) or
    /// `parseRequestOptionsFromJSON` (sign-in), or decode its base64url fields yourself.
    pub options: Json<serde_json::Value>,
    /// Finish before this (UTC), or begin again.
    pub expires_at: DateTime<Utc>,
}

impl From<passkeys::PasskeyOptions> for PasskeyOptions {
    fn from(o: passkeys::PasskeyOptions) -> Self {
        Self {
            ceremony_id: ID(o.ceremony.to_string()),
            options: Json(o.options),
            expires_at: o.expires_at,
        }
    }
}

/// A passkey's answer to a ceremony.
#[derive(InputObject)]
pub struct PasskeyAnswer {
    /// The ceremony it answers (`PasskeyOptions.ceremonyId`).
    pub ceremony_id: ID,
    /// The `PublicKeyCredential` as JSON (`credential.toJSON()`).
    pub credential: Json<serde_json::Value>,
}

impl From<mfa::Challenge> for SecondFactorChallenge {
    fn from(c: mfa::Challenge) -> Self {
        Self {
            challenge: c.token,
            expires_at: c.expires_at,
            methods: c.methods.into_iter().map(Into::into).collect(),
            enrolment: c.enrolment.map(Into::into),
            passkey: c.passkey.map(Into::into),
        }
    }
}

/// A way to prove the second factor.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum SecondFactorMethod {
    /// A code of an authenticator app.
    Totp,
    /// One of your recovery codes.
    RecoveryCode,
    /// One of your passkeys.
    Passkey,
}

impl From<Method> for SecondFactorMethod {
    fn from(m: Method) -> Self {
        match m {
            Method::Totp => SecondFactorMethod::Totp,
            Method::RecoveryCode => SecondFactorMethod::RecoveryCode,
            Method::Passkey => SecondFactorMethod::Passkey,
        }
    }
}

/// A kind of second factor.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum SecondFactorKind {
    /// An authenticator app (TOTP, RFC 6238).
    Totp,
    /// A passkey (WebAuthn); it also signs in without a password.
    Passkey,
}

/// The second factor presented: exactly one of the fields.
#[derive(InputObject)]
pub struct SecondFactorInput {
    /// The 6-digit code your authenticator app shows now.
    pub totp_code: Option<String>,
    /// One of your recovery codes (each works once).
    pub recovery_code: Option<String>,
    /// A passkey's answer to the ceremony of `SecondFactorChallenge.passkey` (sign-in) or
    /// of `beginPasskeyStepUp`.
    pub passkey: Option<PasskeyAnswer>,
}

impl SecondFactorInput {
    fn into_proof(self) -> ApiResult<Proof> {
        match (self.totp_code, self.recovery_code, self.passkey) {
            (Some(code), None, None) => Ok(Proof::Totp(code)),
            (None, Some(code), None) => Ok(Proof::RecoveryCode(code)),
            (None, None, Some(answer)) => Ok(Proof::Passkey {
                ceremony: parse_id(
                    "proof.passkey.ceremonyId",
                    "passkey ceremony",
                    &answer.ceremony_id,
                )?,
                credential: answer.credential.0,
            }),
            _ => Err(ApiError::bad_input(
                "proof",
                "give exactly one of `totpCode`, `recoveryCode` and `passkey`",
            )),
        }
    }
}

/// An authenticator being added: scan `qrCode` (or type `secret`) into the app, then confirm
/// with its first code before `expiresAt`.
#[derive(SimpleObject)]
pub struct TotpEnrolment {
    /// The factor being added; confirm it with `confirmTotpEnrolment`.
    pub factor_id: ID,
    /// The shared secret, base32, for typing into an app. Shown only now.
    pub secret: String,
    /// The `otpauth://totp/...` URI apps take (issuer, account, SHA1, 6 digits, 30 s).
    pub uri: String,
    /// The URI as a QR code: an SVG `data:` URL for an `<img src>`.
    pub qr_code: String,
    /// Confirm before this (UTC), or start again.
    pub expires_at: DateTime<Utc>,
}

impl From<mfa::TotpEnrolment> for TotpEnrolment {
    fn from(e: mfa::TotpEnrolment) -> Self {
        Self {
            factor_id: ID(e.factor_id.to_string()),
            secret: e.secret,
            uri: e.uri,
            qr_code: e.qr_code,
            expires_at: e.expires_at,
        }
    }
}

/// One of your second factors.
#[derive(SimpleObject)]
pub struct SecondFactor {
    /// The factor's id.
    pub id: ID,
    /// What it is.
    pub kind: SecondFactorKind,
    /// What you named it.
    pub name: String,
    /// When it was added.
    pub created_at: DateTime<Utc>,
    /// When it last proved a sign-in or step-up.
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<factor::Model> for SecondFactor {
    fn from(f: factor::Model) -> Self {
        Self {
            id: ID(f.id.to_string()),
            kind: if f.kind == factor::PASSKEY {
                SecondFactorKind::Passkey
            } else {
                SecondFactorKind::Totp
            },
            name: f.name,
            created_at: f.confirmed_at.unwrap_or(f.created_at),
            last_used_at: f.last_used_at,
        }
    }
}

/// A second factor added.
#[derive(SimpleObject)]
pub struct SecondFactorConfirmation {
    /// The factor, now in use.
    pub factor: SecondFactor,
    /// Set when this was your first second factor: your recovery codes, shown this once.
    pub recovery_codes: Option<Vec<String>>,
}

#[derive(Default)]
pub struct FactorQuery;

#[Object]
impl FactorQuery {
    /// Your second factors, oldest first.
    #[graphql(guard = "Authenticated", directive = authenticated::apply())]
    async fn second_factors(&self, ctx: &Context<'_>) -> ApiResult<Vec<SecondFactor>> {
        let principal = require_principal(ctx)?;
        Ok(auth(ctx)
            .factors(principal.user_id)
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// How many of your recovery codes are unused.
    #[graphql(guard = "Authenticated", directive = authenticated::apply())]
    async fn recovery_codes_remaining(&self, ctx: &Context<'_>) -> ApiResult<u64> {
        let principal = require_principal(ctx)?;
        Ok(auth(ctx)
            .recovery_codes_remaining(principal.user_id)
            .await?)
    }
}

#[derive(Default)]
pub struct FactorMutation;

#[Object]
impl FactorMutation {
    /// Completes a sign-in that `login` answered with a challenge: the tokens, as `login`
    /// gives them. A wrong code answers `BAD_USER_INPUT` (the challenge stays usable until it
    /// expires); repeated wrong codes are slowed down (`RATE_LIMITED`).
    async fn complete_login(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "`SecondFactorChallenge.challenge` from `login`.")] challenge: String,
        #[graphql(desc = "The second factor: a TOTP code, a recovery code or a passkey's answer.")]
        proof: SecondFactorInput,
    ) -> ApiResult<AuthPayload> {
        let proof = proof.into_proof()?;
        let tokens = auth(ctx)
            .complete_sign_in(request_meta(ctx), &challenge, &proof)
            .await?;
        Ok(announce(ctx, tokens))
    }

    /// Proves your second factor again, for sensitive changes that answered
    /// `STEP_UP_REQUIRED`: new tokens for this session with a fresh sign-in time. Use the
    /// new refresh token; the previous one is spent.
    #[graphql(guard = "Authenticated", directive = authenticated::apply())]
    async fn step_up(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The second factor: a TOTP code, a recovery code or a passkey's answer.")]
        proof: SecondFactorInput,
    ) -> ApiResult<AuthPayload> {
        let principal = require_principal(ctx)?;
        let proof = proof.into_proof()?;
        let tokens = auth(ctx)
            .step_up(
                request_meta(ctx),
                principal.user_id,
                principal.session_id,
                &proof,
            )
            .await?;
        Ok(announce(ctx, tokens))
    }

    /// Starts adding an authenticator app (needs a recent sign-in, with your second factor
    /// if you have one). It counts once `confirmTotpEnrolment` takes its first code.
    #[graphql(
        guard = "Authenticated",
        directive = authenticated::apply(),
        directive = policy::apply(vec![vec![STEP_UP_POLICY.into()]])
    )]
    async fn begin_totp_enrolment(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "What to call it, e.g. \"Phone\"; `Authenticator` when left out.")]
        name: Option<String>,
    ) -> ApiResult<TotpEnrolment> {
        let principal = require_step_up(ctx, "adding a second factor")?;
        Ok(auth(ctx)
            .begin_totp(request_meta(ctx), principal.user_id, name.as_deref())
            .await?
            .into())
    }

    /// Confirms an authenticator with its first code. Your first second factor comes with
    /// recovery codes, shown this once; from then on signing in needs the second factor.
    #[graphql(guard = "Authenticated", directive = authenticated::apply())]
    async fn confirm_totp_enrolment(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "`TotpEnrolment.factorId` from `beginTotpEnrolment`.")] factor_id: ID,
        #[graphql(desc = "The 6-digit code the app shows now.")] code: String,
    ) -> ApiResult<SecondFactorConfirmation> {
        let principal = require_principal(ctx)?;
        let factor_id = parse_id("factorId", "factor", &factor_id)?;
        let confirmed = auth(ctx)
            .confirm_totp(request_meta(ctx), principal.user_id, factor_id, &code)
            .await?;
        Ok(SecondFactorConfirmation {
            factor: confirmed.factor.into(),
            recovery_codes: confirmed.recovery_codes,
        })
    }

    /// Starts adding a passkey (needs a recent sign-in, with your second factor if you have
    /// one): answer the options with `navigator.credentials.create()`, then send the answer
    /// to `finishPasskeyRegistration`. The passkey is discoverable, so it also signs in
    /// without a password (`beginPasskeySignIn`).
    #[graphql(
        guard = "Authenticated",
        directive = authenticated::apply(),
        directive = policy::apply(vec![vec![STEP_UP_POLICY.into()]])
    )]
    async fn begin_passkey_registration(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "What to call it, e.g. \"Laptop\"; `Passkey` when left out.")]
        name: Option<String>,
    ) -> ApiResult<PasskeyOptions> {
        let principal = require_step_up(ctx, "adding a second factor")?;
        Ok(auth(ctx)
            .begin_passkey_registration(request_meta(ctx), principal.user_id, name.as_deref())
            .await?
            .into())
    }

    /// Finishes adding a passkey with the browser's answer (`credential.toJSON()`). Your
    /// first second factor comes with recovery codes, shown this once.
    #[graphql(guard = "Authenticated", directive = authenticated::apply())]
    async fn finish_passkey_registration(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "`PasskeyOptions.ceremonyId` from `beginPasskeyRegistration`.")]
        ceremony_id: ID,
        #[graphql(
            desc = "The `PublicKeyCredential` from `navigator.credentials.create()`, as JSON (`toJSON()`)."
        )]
        credential: Json<serde_json::Value>,
    ) -> ApiResult<SecondFactorConfirmation> {
        let principal = require_principal(ctx)?;
        let ceremony = parse_id("ceremonyId", "passkey ceremony", &ceremony_id)?;
        let confirmed = auth(ctx)
            .finish_passkey_registration(
                request_meta(ctx),
                principal.user_id,
                ceremony,
                &credential.0,
            )
            .await?;
        Ok(SecondFactorConfirmation {
            factor: confirmed.factor.into(),
            recovery_codes: confirmed.recovery_codes,
        })
    }

    /// Starts a sign-in without a password: answer the options with
    /// `navigator.credentials.get()` (the browser offers this site's passkeys), then send the
    /// answer to `finishPasskeySignIn`.
    async fn begin_passkey_sign_in(&self, ctx: &Context<'_>) -> ApiResult<PasskeyOptions> {
        Ok(auth(ctx).begin_passkey_sign_in().await?.into())
    }

    /// Signs in with a passkey's answer: the tokens, as `login` gives them. The session
    /// counts as multi-factor (`amr` has `hwk` or `swk`, and `mfa`).
    async fn finish_passkey_sign_in(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "`PasskeyOptions.ceremonyId` from `beginPasskeySignIn`.")] ceremony_id: ID,
        #[graphql(
            desc = "The `PublicKeyCredential` from `navigator.credentials.get()`, as JSON (`toJSON()`)."
        )]
        credential: Json<serde_json::Value>,
    ) -> ApiResult<AuthPayload> {
        let ceremony = parse_id("ceremonyId", "passkey ceremony", &ceremony_id)?;
        let tokens = auth(ctx)
            .finish_passkey_sign_in(request_meta(ctx), ceremony, &credential.0)
            .await?;
        Ok(announce(ctx, tokens))
    }

    /// Starts a step-up with one of your passkeys: answer the options, then send the answer
    /// to `stepUp` as `proof.passkey`.
    #[graphql(guard = "Authenticated", directive = authenticated::apply())]
    async fn begin_passkey_step_up(&self, ctx: &Context<'_>) -> ApiResult<PasskeyOptions> {
        let principal = require_principal(ctx)?;
        Ok(auth(ctx)
            .begin_passkey_step_up(principal.user_id)
            .await?
            .into())
    }

    /// Renames one of your second factors.
    #[graphql(guard = "Authenticated", directive = authenticated::apply())]
    async fn rename_second_factor(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The factor (`SecondFactor.id`).")] id: ID,
        #[graphql(desc = "Its new name: 1 to 64 characters.")] name: String,
    ) -> ApiResult<SecondFactor> {
        let principal = require_principal(ctx)?;
        let id = parse_id("id", "factor", &id)?;
        Ok(auth(ctx)
            .rename_factor(request_meta(ctx), principal.user_id, id, &name)
            .await?
            .into())
    }

    /// Removes one of your second factors (needs a recent sign-in with a second factor).
    /// Removing the last one removes your recovery codes too.
    #[graphql(
        guard = "Authenticated",
        directive = authenticated::apply(),
        directive = policy::apply(vec![vec![STEP_UP_POLICY.into()]])
    )]
    async fn remove_second_factor(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The factor (`SecondFactor.id`).")] id: ID,
    ) -> ApiResult<bool> {
        let principal = require_step_up(ctx, "removing a second factor")?;
        let id = parse_id("id", "factor", &id)?;
        auth(ctx)
            .remove_factor(request_meta(ctx), principal.user_id, id)
            .await?;
        Ok(true)
    }

    /// Replaces your recovery codes with 10 new ones, shown this once (needs a recent
    /// sign-in with a second factor). The old ones stop working.
    #[graphql(
        guard = "Authenticated",
        directive = authenticated::apply(),
        directive = policy::apply(vec![vec![STEP_UP_POLICY.into()]])
    )]
    async fn regenerate_recovery_codes(&self, ctx: &Context<'_>) -> ApiResult<Vec<String>> {
        let principal = require_step_up(ctx, "regenerating recovery codes")?;
        Ok(auth(ctx)
            .regenerate_recovery_codes(request_meta(ctx), principal.user_id)
            .await?)
    }

    /// Removes every second factor and recovery code of a user who lost them (needs
    /// `auth.factor.reset` and a recent multi-factor sign-in of your own). Returns how many
    /// factors went; the user signs in with the password alone until they add one.
    #[graphql(
        guard = "HasPermission(codes::FACTOR_RESET)",
        requires_scopes = "auth.factor.reset",
        directive = policy::apply(vec![vec![STEP_UP_POLICY.into()]])
    )]
    async fn reset_second_factors(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The user whose factors to remove.")] user_id: ID,
    ) -> ApiResult<u64> {
        let principal = require_step_up(ctx, "resetting a user's second factors")?;
        let target = parse_id("userId", "user", &user_id)?;
        Ok(auth(ctx)
            .reset_factors(request_meta(ctx), principal.user_id, target)
            .await?)
    }
}
