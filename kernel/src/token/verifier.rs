//! Checking access tokens: signature (Ed25519 keys from the JWKS URL, cached, or from
//! config), header, claims, and the list of ended sessions polled from auth.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, RwLock as SyncRwLock, Weak},
    time::{Duration, Instant},
};

use crate::telemetry::InThisService as _;
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde::Deserialize;
use tokio::sync::{Mutex, RwLock, watch};
use uuid::Uuid;

use crate::config::TokenConfig;

use super::*;

/// How long a token with a session waits for a verifier's first list of ended sessions
/// before it is refused (only just after start, or while auth has never been reachable).
const FIRST_REVOCATIONS_WAIT: Duration = Duration::from_secs(3);

/// The age of a verifier's list of ended sessions, for the metrics (see
/// [`TokenVerifier::revocations_age_probe`]).
pub struct RevocationsAge(Weak<VerifierInner>);

impl RevocationsAge {
    /// `None` once the verifier is gone; then `None` until its first list arrived, or how
    /// long ago the last one did.
    pub fn get(&self) -> Option<Option<Duration>> {
        let inner = self.0.upgrade()?;
        let loaded = *inner
            .revocations_loaded
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Some(loaded.map(|at| at.elapsed()))
    }
}

/// Verifies access tokens. Cheap to clone.
#[derive(Clone)]
pub struct TokenVerifier {
    inner: Arc<VerifierInner>,
}

struct VerifierInner {
    validation: Validation,
    /// `tokens.step_up_max_age_secs`.
    step_up_max_age_secs: u64,
    static_keys: HashMap<String, Arc<DecodingKey>>,
    jwks: Option<JwksSource>,
    /// Sessions that have ended, as last fetched from auth (see [`TokenVerifier::watch_revocations`]).
    revoked: SyncRwLock<HashSet<Uuid>>,
    /// False from when ended sessions are watched until their first list arrives: meanwhile
    /// a token with a session is not accepted, so a restarted service does not take a
    /// signed-out session's token it would have refused before.
    revocations_ready: watch::Sender<bool>,
    /// When the list of ended sessions was last replaced.
    revocations_loaded: SyncRwLock<Option<Instant>>,
}

struct JwksSource {
    url: String,
    http: reqwest::Client,
    cache_for: Duration,
    min_refetch: Duration,
    state: RwLock<JwksState>,
    /// One refetch at a time; others wait and then read the result.
    fetching: Mutex<()>,
}

#[derive(Default)]
struct JwksState {
    keys: HashMap<String, Arc<DecodingKey>>,
    fetched_at: Option<Instant>,
    attempted_at: Option<Instant>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyConfigError {
    #[error("tokens.static_keys: key `{kid}`: {message}")]
    StaticKey { kid: String, message: String },
    #[error("tokens.jwks_url: cannot build HTTP client: {0}")]
    Client(String),
}

impl TokenVerifier {
    pub fn from_config(config: &TokenConfig) -> Result<Self, KeyConfigError> {
        let mut static_keys = HashMap::new();
        for key in &config.static_keys {
            let decoded =
                ed25519_key_from_x(&key.x).map_err(|message| KeyConfigError::StaticKey {
                    kid: key.kid.clone(),
                    message,
                })?;
            static_keys.insert(key.kid.clone(), Arc::new(decoded));
        }
        let jwks = match &config.jwks_url {
            Some(url) => Some(JwksSource {
                url: url.clone(),
                http: reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .map_err(|e| KeyConfigError::Client(e.to_string()))?,
                cache_for: Duration::from_secs(config.jwks_cache_secs),
                min_refetch: Duration::from_secs(config.jwks_min_refetch_secs),
                state: RwLock::default(),
                fetching: Mutex::new(()),
            }),
            None => None,
        };
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = config.leeway_secs;
        Ok(Self {
            inner: Arc::new(VerifierInner {
                validation,
                step_up_max_age_secs: config.step_up_max_age_secs,
                static_keys,
                jwks,
                revoked: SyncRwLock::default(),
                revocations_ready: watch::Sender::new(true),
                revocations_loaded: SyncRwLock::default(),
            }),
        })
    }

    /// `service`'s verifier: keys from config, and revoked sessions watched when
    /// `tokens.revocations_url` is set (the list's age among the service's metrics).
    pub fn for_service(
        service: &str,
        config: &TokenConfig,
        internal_token: &str,
    ) -> Result<Self, KeyConfigError> {
        let verifier = Self::from_config(config)?;
        if let Some(url) = &config.revocations_url {
            verifier.watch_revocations(
                url,
                internal_token,
                Duration::from_secs(config.revocations_poll_secs),
            )?;
            crate::metrics::Metrics::of(service)
                .watch_revocations(verifier.revocations_age_probe());
        }
        Ok(verifier)
    }

    /// Verifies `token` and returns the principal it proves.
    pub async fn verify(&self, token: &str) -> Result<Principal, TokenError> {
        let header = read_header(token)?;
        let key = self.key(&header.kid).await?;
        let data = jsonwebtoken::decode::<AccessClaims>(token, &key, &self.inner.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
                ErrorKind::InvalidAudience => TokenError::WrongAudience,
                ErrorKind::MissingRequiredClaim(claim) => {
                    TokenError::InvalidClaims(format!("`{claim}` is missing"))
                }
                ErrorKind::Json(_) => {
                    TokenError::InvalidClaims("claims do not have the expected shape".into())
                }
                ErrorKind::InvalidAlgorithm => TokenError::UnsupportedAlgorithm("unknown".into()),
                _ => TokenError::Malformed(e.to_string()),
            })?;
        let claims = data.claims;
        // jsonwebtoken checks `exp` and `nbf` only; a token issued later than now (beyond
        // the clock leeway) was made with a wrong clock or a forged one.
        let now = chrono::Utc::now().timestamp();
        let leeway = i64::try_from(self.inner.validation.leeway).unwrap_or(i64::MAX);
        if claims.iat > now.saturating_add(leeway) {
            return Err(TokenError::IssuedInFuture);
        }
        let user_id = Uuid::parse_str(&claims.sub)
            .map_err(|_| TokenError::InvalidClaims("`sub` is not a user id".into()))?;
        let session_id = claims
            .sid
            .as_deref()
            .ok_or_else(|| {
                TokenError::InvalidClaims(
                    "`sid` is missing: only tokens of a session are accepted".into(),
                )
            })
            .and_then(|sid| {
                Uuid::parse_str(sid)
                    .map_err(|_| TokenError::InvalidClaims("`sid` is not a session id".into()))
            })?;
        self.revocations_ready().await?;
        if self.is_revoked(session_id) {
            return Err(TokenError::Revoked);
        }
        let step_up_until = claims.step_up_until(self.inner.step_up_max_age_secs);
        Ok(Principal {
            user_id,
            session_id,
            token_id: claims.jti,
            roles: claims.roles,
            scopes: claims.scope.split_whitespace().map(str::to_owned).collect(),
            step_up_until,
        })
    }

    /// Waits (a bounded time) for the first list of ended sessions when they are watched.
    async fn revocations_ready(&self) -> Result<(), TokenError> {
        if *self.inner.revocations_ready.borrow() {
            return Ok(());
        }
        let mut ready = self.inner.revocations_ready.subscribe();
        match tokio::time::timeout(FIRST_REVOCATIONS_WAIT, ready.wait_for(|r| *r)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(TokenError::RevocationsUnavailable),
        }
    }

    fn is_revoked(&self, session: Uuid) -> bool {
        // A poisoned list refuses rather than lets a revoked session through.
        self.inner
            .revoked
            .read()
            .map(|revoked| revoked.contains(&session))
            .unwrap_or(true)
    }

    /// Reads the age of this verifier's list of ended sessions without keeping the verifier
    /// alive (its polling stops with it).
    pub fn revocations_age_probe(&self) -> RevocationsAge {
        RevocationsAge(Arc::downgrade(&self.inner))
    }

    /// Replaces the set of ended sessions whose tokens are refused.
    pub fn set_revoked(&self, sessions: HashSet<Uuid>) {
        let mut revoked = self
            .inner
            .revoked
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *revoked = sessions;
        drop(revoked);
        *self
            .inner
            .revocations_loaded
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
        self.inner.revocations_ready.send_replace(true);
    }

    /// Fetches the ended sessions from `url` (auth's `/internal/revocations`) every `every`,
    /// so their tokens are refused here within that time, without a call per request. Stops
    /// when the verifier is dropped. If auth cannot be reached, the last list stays in force;
    /// until a first list has arrived, tokens with a session are refused (after a short wait)
    /// and auth is asked again sooner, backing off from 100 ms to `every`.
    pub fn watch_revocations(
        &self,
        url: &str,
        internal_token: &str,
        every: Duration,
    ) -> Result<(), KeyConfigError> {
        #[derive(Deserialize)]
        struct Revocations {
            sessions: Vec<Uuid>,
        }
        let client = crate::internal::InternalClient::new(url, internal_token)
            .map_err(|e| KeyConfigError::Client(e.to_string()))?;
        self.inner.revocations_ready.send_replace(false);
        let weak: Weak<VerifierInner> = Arc::downgrade(&self.inner);
        let poll = async move {
            let mut first_retry = Duration::from_millis(100).min(every);
            let mut failures = 0u32;
            loop {
                let fetched = client.get_json::<Revocations>("").await;
                let Some(inner) = weak.upgrade() else { return };
                let loaded = *inner.revocations_ready.borrow();
                // Before the first list, failures are expected while auth starts: say so
                // once it has taken a few seconds (and now and then after), not on every
                // early retry.
                let say = loaded || failures % 20 == 5;
                match fetched {
                    Ok(Some(list)) => {
                        failures = 0;
                        TokenVerifier { inner }.set_revoked(list.sessions.into_iter().collect())
                    }
                    Ok(None) => {
                        failures += 1;
                        if say {
                            tracing::warn!("the revocation list is not found; keeping the last one")
                        }
                    }
                    Err(err) => {
                        failures += 1;
                        if say {
                            tracing::warn!(error = %err, "cannot fetch revoked sessions; keeping the last list")
                        }
                    }
                }
                if loaded || failures == 0 {
                    tokio::time::sleep(every).await;
                } else {
                    tokio::time::sleep(first_retry).await;
                    first_retry = (first_retry * 2).min(every);
                }
            }
        };
        tokio::spawn(poll.in_this_service());
        Ok(())
    }

    async fn key(&self, kid: &str) -> Result<Arc<DecodingKey>, TokenError> {
        if let Some(key) = self.inner.static_keys.get(kid) {
            return Ok(key.clone());
        }
        let Some(jwks) = &self.inner.jwks else {
            return Err(TokenError::UnknownKey(kid.to_owned()));
        };
        {
            let state = jwks.state.read().await;
            let fresh = state
                .fetched_at
                .is_some_and(|at| at.elapsed() < jwks.cache_for);
            if fresh && let Some(key) = state.keys.get(kid) {
                return Ok(key.clone());
            }
        }
        let _one_at_a_time = jwks.fetching.lock().await;
        {
            let state = jwks.state.read().await;
            let fresh = state
                .fetched_at
                .is_some_and(|at| at.elapsed() < jwks.cache_for);
            let recently_tried = state
                .attempted_at
                .is_some_and(|at| at.elapsed() < jwks.min_refetch);
            if let Some(key) = state.keys.get(kid)
                && (fresh || recently_tried)
            {
                return Ok(key.clone());
            }
            if recently_tried {
                return Err(TokenError::UnknownKey(kid.to_owned()));
            }
        }
        let fetched = jwks.fetch().await;
        let mut state = jwks.state.write().await;
        state.attempted_at = Some(Instant::now());
        match fetched {
            Ok(keys) => {
                state.keys = keys;
                state.fetched_at = Some(Instant::now());
            }
            Err(err) => {
                tracing::warn!(url = %jwks.url, error = %err, "cannot fetch JWKS; keeping the keys already known");
                if state.keys.is_empty() {
                    return Err(TokenError::KeysUnavailable);
                }
            }
        }
        state
            .keys
            .get(kid)
            .cloned()
            .ok_or_else(|| TokenError::UnknownKey(kid.to_owned()))
    }
}

/// One JWK as far as we read it. Not `jsonwebtoken::jwk::Jwk`: that folds every `alg` it does
/// not list into one unknown value, so RFC 9864's fully-specified `Ed25519` could not be told
/// from any other name.
#[derive(Deserialize)]
struct JwkEntry {
    kty: String,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    usage: Option<String>,
}

impl JwksSource {
    async fn fetch(&self) -> Result<HashMap<String, Arc<DecodingKey>>, String> {
        #[derive(Deserialize)]
        struct Set {
            keys: Vec<serde_json::Value>,
        }
        let response = self
            .http
            .get(&self.url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status()));
        }
        let set: Set = response.json().await.map_err(|e| e.to_string())?;
        let mut keys = HashMap::new();
        for raw in set.keys {
            // Pin the algorithm per key: only Ed25519 signing keys are taken.
            let Ok(entry) = serde_json::from_value::<JwkEntry>(raw) else {
                continue;
            };
            let usable = entry.kty == "OKP"
                && entry.crv.as_deref() == Some("Ed25519")
                && entry
                    .alg
                    .as_deref()
                    .is_none_or(|a| a == "EdDSA" || a == "Ed25519")
                && entry.usage.as_deref().is_none_or(|u| u == "sig");
            let (true, Some(kid), Some(x)) = (usable, entry.kid, entry.x) else {
                continue;
            };
            match ed25519_key_from_x(&x) {
                Ok(key) => {
                    keys.insert(kid, Arc::new(key));
                }
                Err(message) => tracing::warn!(%kid, %message, "ignoring unusable JWKS key"),
            }
        }
        Ok(keys)
    }
}

struct CheckedHeader {
    kid: String,
}

/// Reads the header before any key is looked up, so `alg: none`, a wrong `typ` or a missing
/// `kid` are refused with their own reason.
fn read_header(token: &str) -> Result<CheckedHeader, TokenError> {
    let mut parts = token.split('.');
    let (Some(head), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed(
            "expected three dot-separated parts".into(),
        ));
    };
    let raw = URL_SAFE_NO_PAD
        .decode(head)
        .map_err(|_| TokenError::Malformed("the header is not base64url".into()))?;
    let json: serde_json::Value = serde_json::from_slice(&raw)
        .map_err(|_| TokenError::Malformed("the header is not JSON".into()))?;
    let alg = json.get("alg").and_then(|v| v.as_str()).unwrap_or("(none)");
    if alg != "EdDSA" {
        return Err(TokenError::UnsupportedAlgorithm(alg.to_owned()));
    }
    match json.get("typ").and_then(|v| v.as_str()) {
        Some(typ)
            if typ.eq_ignore_ascii_case(ACCESS_TOKEN_TYPE)
                || typ.eq_ignore_ascii_case("application/at+jwt") => {}
        Some(other) => return Err(TokenError::WrongType(format!("`{other}`"))),
        None => return Err(TokenError::WrongType("missing".into())),
    }
    if json.get("crit").is_some() {
        return Err(TokenError::Malformed(
            "unsupported critical header parameters".into(),
        ));
    }
    let kid = json
        .get("kid")
        .and_then(|v| v.as_str())
        .ok_or(TokenError::MissingKeyId)?;
    Ok(CheckedHeader {
        kid: kid.to_owned(),
    })
}

fn ed25519_key_from_x(x: &str) -> Result<DecodingKey, String> {
    let raw = URL_SAFE_NO_PAD
        .decode(x)
        .map_err(|_| "`x` is not base64url without padding".to_owned())?;
    if raw.len() != 32 {
        return Err(format!("`x` must be 32 bytes, it is {}", raw.len()));
    }
    DecodingKey::from_ed_components(x).map_err(|e| e.to_string())
}
