//! Recovery codes: single-use stand-ins for a lost second factor, made with the user's first
//! factor and on request, shown once and stored only as hashes.

use chrono::Utc;
use keygraph_kernel::{db::begin_write, http::RequestMeta, outbox::AuditEvent};
use rand::RngCore as _;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, PaginatorTrait as _,
    QueryFilter, Set,
};
use serde_json::json;
use uuid::Uuid;

use super::{RECOVERY_CODES, unused_recovery_codes};
use crate::{
    entity::recovery_code,
    service::{Auth, AuthError, AuthResult, hash_token},
};

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
pub(super) fn recovery_code_hash(typed: &str) -> String {
    let normalised: String = typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    hash_token(&normalised)
}

impl Auth {
    /// Recovery codes of the user not yet used.
    pub async fn recovery_codes_remaining(&self, user: Uuid) -> AuthResult<u64> {
        Ok(unused_recovery_codes(user).count(&self.db).await?)
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
}
