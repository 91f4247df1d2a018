//! A user's own profile: changing the display name, and the rules a display name follows
//! (also applied at registration).

use chrono::Utc;
use keygraph_kernel::{db::begin_write, http::RequestMeta, outbox::AuditEvent};
use sea_orm::{ActiveModelTrait, Set};
use serde_json::json;
use uuid::Uuid;

use super::{Identity, IdentityError, IdentityResult, MAX_DISPLAY_NAME};
use crate::entity::user;

impl Identity {
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
}

pub(super) fn validate_display_name(input: &str) -> IdentityResult<String> {
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
