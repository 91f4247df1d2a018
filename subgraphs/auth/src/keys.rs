//! Signing keys: Ed25519, generated here, private seeds sealed at rest with the key-encryption
//! key (XChaCha20-Poly1305). Rotation goes next -> current -> previous -> retired: a key is
//! published (in JWKS) one rotation before it signs, and verifies its tokens until they expire.

use std::{sync::Arc, time::Duration};

use base64::{
    Engine as _,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use chacha20poly1305::{
    XChaCha20Poly1305, XNonce,
    aead::{Aead, KeyInit},
};
use chrono::Utc;
use jsonwebtoken::EncodingKey;
use keygraph_kernel::{
    config::{Config, Mode},
    db::{begin_write, write_turn},
    http::RequestMeta,
    outbox::AuditEvent,
    token::pkcs8_from_seed,
};
use rand::RngCore as _;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QueryOrder, Set,
};
use serde::Serialize;
use tokio::sync::RwLock;
use uuid::Uuid;

use crate::entity::signing_key::{self, CURRENT, NEXT, PREVIOUS, RETIRED};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("auth.key_encryption_key: {0}")]
    Kek(String),
    #[error("signing key `{0}` cannot be unsealed: wrong key-encryption key or damaged data")]
    Unseal(String),
    #[error("no current signing key")]
    NoCurrentKey,
    #[error(transparent)]
    Database(#[from] DbErr),
    #[error("cannot store the generated key-encryption key: {0}")]
    Io(#[from] std::io::Error),
}

/// The 32-byte key that seals private keys.
#[derive(Clone)]
pub struct KeyEncryptionKey([u8; 32]);

impl KeyEncryptionKey {
    /// From `auth.key_encryption_key` (base64), or in development generated once into
    /// `<data_dir>/auth-kek` with a warning.
    pub fn from_config(config: &Config) -> Result<Self, KeyError> {
        let encoded = match &config.auth.key_encryption_key {
            Some(encoded) => encoded.clone(),
            None if config.mode == Mode::Development => {
                let path = config.data_dir.join("auth-kek");
                match std::fs::read_to_string(&path) {
                    Ok(existing) => existing.trim().to_owned(),
                    Err(_) => {
                        let mut key = [0u8; 32];
                        rand::rng().fill_bytes(&mut key);
                        let encoded = STANDARD.encode(key);
                        if let Some(parent) = path.parent() {
                            std::fs::create_dir_all(parent)?;
                        }
                        write_private(&path, &encoded)?;
                        tracing::warn!(path = %path.display(), "generated a key-encryption key for development; set auth.key_encryption_key in production");
                        encoded
                    }
                }
            }
            None => return Err(KeyError::Kek("must be set in production mode".into())),
        };
        let raw = STANDARD
            .decode(encoded.trim())
            .map_err(|_| KeyError::Kek("is not base64".into()))?;
        let key: [u8; 32] = raw
            .try_into()
            .map_err(|_| KeyError::Kek("must decode to exactly 32 bytes".into()))?;
        Ok(Self(key))
    }

    fn seal(&self, seed: &[u8; 32]) -> Result<String, KeyError> {
        self.seal_bytes(seed)
    }

    /// Seals any secret: nonce || ciphertext, base64.
    pub(crate) fn seal_bytes(&self, secret: &[u8]) -> Result<String, KeyError> {
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = cipher
            .encrypt(&XNonce::from(nonce), secret)
            .map_err(|_| KeyError::Kek("sealing failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend(sealed);
        Ok(STANDARD.encode(out))
    }

    /// What [`KeyEncryptionKey::seal_bytes`] sealed; none for a wrong key or damaged data.
    pub(crate) fn open_bytes(&self, sealed: &str) -> Option<Vec<u8>> {
        let raw = STANDARD.decode(sealed).ok()?;
        if raw.len() < 24 {
            return None;
        }
        let (nonce, ciphertext) = raw.split_at(24);
        let nonce: [u8; 24] = nonce.try_into().ok()?;
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        cipher.decrypt(&XNonce::from(nonce), ciphertext).ok()
    }

    fn unseal(&self, kid: &str, sealed: &str) -> Result<[u8; 32], KeyError> {
        let fail = || KeyError::Unseal(kid.to_owned());
        self.open_bytes(sealed)
            .ok_or_else(fail)?
            .try_into()
            .map_err(|_| fail())
    }
}

#[cfg(unix)]
fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _};
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?
        .write_all(contents.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

/// A public key as JWKS lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Jwk {
    pub kty: &'static str,
    pub crv: &'static str,
    pub alg: &'static str,
    #[serde(rename = "use")]
    pub usage: &'static str,
    pub kid: String,
    pub x: String,
}

/// The key that signs now, ready to use.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    pub key: Arc<EncodingKey>,
}

pub struct KeyRing {
    db: DatabaseConnection,
    kek: KeyEncryptionKey,
    /// How long a token lives: a previous key is kept that long after it stops signing.
    token_lifetime: Duration,
    current: RwLock<Option<SigningKey>>,
}

impl KeyRing {
    pub fn new(db: DatabaseConnection, kek: KeyEncryptionKey, token_lifetime: Duration) -> Self {
        Self {
            db,
            kek,
            token_lifetime,
            current: RwLock::new(None),
        }
    }

    /// The key-encryption key, which also seals second-factor secrets.
    pub(crate) fn sealer(&self) -> &KeyEncryptionKey {
        &self.kek
    }

    /// On first start: a current key and the next one. Checks that the current key unseals.
    pub async fn ensure_keys(&self) -> Result<(), KeyError> {
        let (_turn, txn) = begin_write(&self.db).await?;
        if find_status(&txn, CURRENT).await?.is_none() {
            self.generate(&txn, CURRENT).await?;
        }
        if find_status(&txn, NEXT).await?.is_none() {
            self.generate(&txn, NEXT).await?;
        }
        txn.commit().await?;
        self.signing_key().await.map(|_| ())
    }

    /// The key that signs new tokens.
    pub async fn signing_key(&self) -> Result<SigningKey, KeyError> {
        if let Some(key) = self.current.read().await.clone() {
            return Ok(key);
        }
        let stored = find_status(&self.db, CURRENT)
            .await?
            .ok_or(KeyError::NoCurrentKey)?;
        let seed = self.kek.unseal(&stored.kid, &stored.sealed_private_key)?;
        let key = SigningKey {
            kid: stored.kid,
            key: Arc::new(EncodingKey::from_ed_der(&pkcs8_from_seed(&seed))),
        };
        *self.current.write().await = Some(key.clone());
        Ok(key)
    }

    /// Public keys of every key that is published: next, current and previous ones whose
    /// tokens may still be valid (older ones are retired first).
    pub async fn jwks(&self) -> Result<Vec<Jwk>, KeyError> {
        let lifetime =
            chrono::Duration::from_std(self.token_lifetime).unwrap_or(chrono::Duration::hours(1));
        let cutoff = Utc::now() - lifetime - chrono::Duration::seconds(60);
        let mut keys = signing_key::Entity::find()
            .filter(signing_key::Column::Status.is_in([NEXT, CURRENT, PREVIOUS]))
            .order_by_asc(signing_key::Column::CreatedAt)
            .all(&self.db)
            .await?;
        let expired = |k: &signing_key::Model| {
            k.status == PREVIOUS && k.retired_at.is_some_and(|at| at < cutoff)
        };
        // A write (and its turn) only when a key is due: JWKS is read far more often than
        // keys rotate.
        if keys.iter().any(expired) {
            retire_before(&self.db, cutoff).await?;
            keys.retain(|k| !expired(k));
        }
        Ok(keys
            .into_iter()
            .map(|k| Jwk {
                kty: "OKP",
                crv: "Ed25519",
                alg: "EdDSA",
                usage: "sig",
                kid: k.kid,
                x: k.public_key,
            })
            .collect())
    }

    /// Rotates: current -> previous, next -> current, and a new next, recording `actor`'s
    /// rotation in the audit outbox in the same transaction. Returns the new current kid.
    pub async fn rotate(&self, meta: &RequestMeta, actor: Uuid) -> Result<String, KeyError> {
        let (_turn, txn) = begin_write(&self.db).await?;
        let now = Utc::now();
        if let Some(current) = find_status(&txn, CURRENT).await? {
            let mut active: signing_key::ActiveModel = current.into();
            active.status = Set(PREVIOUS.into());
            active.retired_at = Set(Some(now));
            active.update(&txn).await?;
        }
        let next = match find_status(&txn, NEXT).await? {
            Some(next) => next,
            None => self.generate(&txn, NEXT).await?,
        };
        let kid = next.kid.clone();
        let mut active: signing_key::ActiveModel = next.into();
        active.status = Set(CURRENT.into());
        active.activated_at = Set(Some(now));
        active.update(&txn).await?;
        self.generate(&txn, NEXT).await?;
        AuditEvent::new("auth.key.rotated", "signing_key", &kid)
            .actor(Some(actor))
            .record(&txn, meta)
            .await?;
        txn.commit().await?;
        *self.current.write().await = None;
        self.signing_key().await?;
        Ok(kid)
    }

    async fn generate<C: ConnectionTrait>(
        &self,
        db: &C,
        status: &str,
    ) -> Result<signing_key::Model, KeyError> {
        let mut seed = [0u8; 32];
        rand::rng().fill_bytes(&mut seed);
        let public = ed25519_dalek::SigningKey::from_bytes(&seed)
            .verifying_key()
            .to_bytes();
        let kid = format!("kg-{}", uuid::Uuid::now_v7().simple());
        let now = Utc::now();
        Ok(signing_key::ActiveModel {
            kid: Set(kid),
            public_key: Set(URL_SAFE_NO_PAD.encode(public)),
            sealed_private_key: Set(self.kek.seal(&seed)?),
            status: Set(status.into()),
            created_at: Set(now),
            activated_at: Set((status == CURRENT).then_some(now)),
            retired_at: Set(None),
        }
        .insert(db)
        .await?)
    }
}

/// Previous keys that stopped signing before `cutoff` (their last tokens have expired) retire.
async fn retire_before(
    db: &DatabaseConnection,
    cutoff: chrono::DateTime<Utc>,
) -> Result<(), KeyError> {
    let _turn = write_turn(db).await;
    signing_key::Entity::update_many()
        .col_expr(
            signing_key::Column::Status,
            sea_orm::sea_query::Expr::value(RETIRED),
        )
        .filter(signing_key::Column::Status.eq(PREVIOUS))
        .filter(signing_key::Column::RetiredAt.lt(cutoff))
        .exec(db)
        .await?;
    Ok(())
}

async fn find_status<C: ConnectionTrait>(
    db: &C,
    status: &str,
) -> Result<Option<signing_key::Model>, DbErr> {
    signing_key::Entity::find()
        .filter(signing_key::Column::Status.eq(status))
        .order_by_desc(signing_key::Column::CreatedAt)
        .one(db)
        .await
}
