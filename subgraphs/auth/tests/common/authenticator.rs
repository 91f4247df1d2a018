//! An authenticator app for tests: codes of an enrolled TOTP secret, each step used once, as
//! a real app and its user would.

use keygraph_auth::totp;

/// An authenticator app in the test: the secret, and the newest step it gave a code of.
pub struct App {
    pub secret: Vec<u8>,
    pub last_step: Option<i64>,
}

impl App {
    pub fn new(base32: &str) -> Self {
        Self {
            secret: data_encoding::BASE32_NOPAD
                .decode(base32.as_bytes())
                .expect("base32 secret"),
            last_step: None,
        }
    }

    /// A code the server takes now: of a step after the last one used and inside the
    /// window (waiting for the next step when the window is used up).
    pub async fn code(&mut self) -> String {
        let (step, code) = self.peek().await;
        self.last_step = Some(step);
        code
    }

    /// The step and code [`App::code`] would give, without using them up.
    pub async fn peek(&self) -> (i64, String) {
        loop {
            let now = chrono::Utc::now().timestamp();
            let current = totp::step_at(now);
            // Near a step's end, the previous step may leave the window before the request
            // arrives.
            let earliest = if now % totp::STEP_SECS >= totp::STEP_SECS - 3 {
                current
            } else {
                current - 1
            };
            let step = self
                .last_step
                .map_or(earliest, |last| (last + 1).max(earliest));
            if step <= current + 1 {
                return (step, totp::code_at_step(&self.secret, step));
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }

    /// A code the server refuses: of no step in the window.
    pub fn wrong_code(&self) -> String {
        let now = totp::step_at(chrono::Utc::now().timestamp());
        let taken: Vec<String> = (now - 2..=now + 2)
            .map(|s| totp::code_at_step(&self.secret, s))
            .collect();
        (0..1_000_000)
            .map(|n| format!("{n:06}"))
            .find(|c| !taken.contains(c))
            .expect("a wrong code")
    }
}
