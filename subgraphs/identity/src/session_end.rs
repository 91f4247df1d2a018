//! Tells auth to end a user's sessions: the other ones when the password changes, all of them
//! when it is reset or the account is disabled or deleted. Sent after the change commits, in
//! the background, retried with backoff for about a minute.

use std::time::Duration;

use keygraph_kernel::internal::InternalClient;
use uuid::Uuid;

/// Attempts before giving up (the error is logged).
const ATTEMPTS: u32 = 6;

#[derive(Clone)]
pub struct SessionEnd {
    auth: InternalClient,
}

impl SessionEnd {
    pub fn new(auth: InternalClient) -> Self {
        Self { auth }
    }

    /// Ends the user's sessions except `keep`.
    pub fn end_sessions(&self, user: Uuid, keep: Option<Uuid>, reason: &'static str) {
        let auth = self.auth.clone();
        tokio::spawn(async move {
            let body = serde_json::json!({ "keepSession": keep, "reason": reason });
            let path = format!("/internal/users/{user}/sessions/revoke");
            for attempt in 0..ATTEMPTS {
                match auth.post_json::<_, serde_json::Value>(&path, &body).await {
                    Ok(_) => return,
                    Err(err) if attempt + 1 == ATTEMPTS => {
                        tracing::error!(%user, reason, error = %err, "auth did not end the user's sessions; giving up");
                    }
                    Err(err) => {
                        tracing::warn!(%user, reason, error = %err, "auth did not end the user's sessions yet; retrying");
                        tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
                    }
                }
            }
        });
    }
}
