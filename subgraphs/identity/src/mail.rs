//! Outgoing mail: over SMTP when `mail.smtp_url` is set; otherwise each message goes to
//! `<data_dir>/mail/` as an `.eml` file a developer can open (and tests read), readable by
//! its owner only. The file's text is plain (`Content-Transfer-Encoding: 8bit`), so a link
//! can be copied from it as it is. The log says that a mail was written and where, never
//! what it says: a mail holds a link with a single-use token.

use std::{path::PathBuf, sync::Arc};

use chrono::Utc;
use keygraph_kernel::config::MailConfig;
use lettre::{
    AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor,
    message::{
        Body, Mailbox,
        header::{ContentTransferEncoding, ContentType},
    },
};

/// RFC 5322's limit on a line, without its CRLF.
const MAX_LINE_OCTETS: usize = 998;

/// One plain-text message.
#[derive(Debug, Clone)]
pub struct OutgoingMail {
    pub to: String,
    pub subject: String,
    pub text: String,
}

#[derive(Clone)]
pub struct Mailer(Arc<Transport>);

enum Transport {
    Smtp {
        from: Mailbox,
        transport: AsyncSmtpTransport<Tokio1Executor>,
    },
    Directory {
        from: Mailbox,
        dir: PathBuf,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("mail.from `{0}` is not a valid mailbox")]
    From(String),
    #[error("mail.smtp_url is not usable: {0}")]
    SmtpUrl(String),
    #[error("cannot build the message: {0}")]
    Build(String),
    #[error("SMTP delivery failed: {0}")]
    Smtp(String),
    #[error("cannot write the message to {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Mailer {
    /// `dir` receives messages when no SMTP relay is configured.
    pub fn from_config(config: &MailConfig, dir: PathBuf) -> Result<Self, MailError> {
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|_| MailError::From(config.from.clone()))?;
        let transport = match &config.smtp_url {
            Some(url) => Transport::Smtp {
                from,
                transport: AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map_err(|e| MailError::SmtpUrl(e.to_string()))?
                    .build(),
            },
            None => Transport::Directory { from, dir },
        };
        Ok(Self(Arc::new(transport)))
    }

    pub async fn send(&self, mail: &OutgoingMail) -> Result<(), MailError> {
        let from = match &*self.0 {
            Transport::Smtp { from, .. } | Transport::Directory { from, .. } => from.clone(),
        };
        let to: Mailbox = mail
            .to
            .parse()
            .map_err(|e: lettre::address::AddressError| MailError::Build(e.to_string()))?;
        let body = match &*self.0 {
            // Lettre picks the transfer encoding: quoted-printable where a line (a link) is
            // long. It refuses to send 8-bit text (a display name such as "Zoë") to a relay
            // that does not announce 8BITMIME, while quoted-printable goes through any relay
            // and every mail client decodes it; so over SMTP its choice stays.
            Transport::Smtp { .. } => Body::new(mail.text.clone()),
            Transport::Directory { .. } => readable_body(&mail.text),
        };
        let message = Message::builder()
            .from(from)
            .to(to)
            .subject(mail.subject.clone())
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| MailError::Build(e.to_string()))?;
        match &*self.0 {
            Transport::Smtp { transport, .. } => {
                transport
                    .send(message)
                    .await
                    .map_err(|e| MailError::Smtp(e.to_string()))?;
                tracing::info!(to = %mail.to, subject = %mail.subject, "mail sent over SMTP");
            }
            Transport::Directory { dir, .. } => {
                let name = format!(
                    "{}-{}.eml",
                    Utc::now().format("%Y%m%dT%H%M%S%.6fZ"),
                    uuid::Uuid::now_v7().simple()
                );
                let path = dir.join(name);
                write_atomically(dir, &path, &message.formatted()).await?;
                tracing::info!(
                    to = %mail.to,
                    subject = %mail.subject,
                    file = %path.display(),
                    "mail written to file (no SMTP relay configured)"
                );
            }
        }
        Ok(())
    }
}

/// `text` as it reads, for a file a developer opens: `8bit` with CRLF line ends, so a link is
/// whole on its line. When `text` cannot be 8bit data (RFC 2045 section 2.8: a line over
/// [`MAX_LINE_OCTETS`], a NUL, a CR of its own), lettre's choice instead.
fn readable_body(text: &str) -> Body {
    let is_8bit_data =
        !text.contains(['\0', '\r']) && text.split('\n').all(|line| line.len() <= MAX_LINE_OCTETS);
    if !is_8bit_data {
        return Body::new(text.to_owned());
    }
    // Lettre's checked constructor (`Body::new_with_encoding`) refuses 8bit for any line of
    // 76 characters or more, which is the link's line; the checks above are the ones 8bit
    // needs, and the line ends are made CRLF here as lettre would.
    Body::dangerous_pre_encoded(
        text.replace('\n', "\r\n").into_bytes(),
        ContentTransferEncoding::EightBit,
    )
}

/// Writes to a temporary name, then renames: readers never see half a message.
async fn write_atomically(
    dir: &std::path::Path,
    path: &std::path::Path,
    bytes: &[u8],
) -> Result<(), MailError> {
    let fail = |source| MailError::Write {
        path: path.to_owned(),
        source,
    };
    keygraph_kernel::files::create_private_dir(dir).map_err(fail)?;
    let partial = path.with_extension("eml.partial");
    let (partial_path, bytes) = (partial.clone(), bytes.to_vec());
    tokio::task::spawn_blocking(move || {
        keygraph_kernel::files::write_private(&partial_path, &bytes)
    })
    .await
    .map_err(|e| fail(std::io::Error::other(e)))?
    .map_err(fail)?;
    tokio::fs::rename(&partial, path).await.map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directory_mailer(dir: &std::path::Path) -> Mailer {
        let config = MailConfig {
            smtp_url: None,
            from: "Keygraph <noreply@keygraph.localhost>".into(),
        };
        Mailer::from_config(&config, dir.to_owned()).expect("mailer")
    }

    /// These tests send mail one at a time, each under its own log capture. Sending from a
    /// thread with no subscriber while another test installs its capture races in tracing's
    /// per-callsite interest cache, and the capture then misses "mail written to file" (seen
    /// in CI under `cargo test`'s parallel threads).
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    /// Sends `text` to a fresh directory and answers the file's text.
    async fn written(text: String) -> String {
        let _one = ONE_AT_A_TIME.lock().await;
        let log = keygraph_kernel::testing::LogCapture::default();
        let _guard = tracing::subscriber::set_default(log.subscriber());
        let data = tempfile::tempdir().expect("tempdir");
        let dir = data.path().join("mail");
        directory_mailer(&dir)
            .send(&OutgoingMail {
                to: "ada@example.com".into(),
                subject: "Confirm your email address".into(),
                text,
            })
            .await
            .expect("written");
        let file = std::fs::read_dir(&dir)
            .expect("dir")
            .flatten()
            .next()
            .expect("one mail")
            .path();
        std::fs::read_to_string(file).expect("read")
    }

    /// What `grep -o 'http[^[:space:]]*'` prints for `text`.
    fn grep_links(text: &str) -> Vec<&str> {
        let mut found = Vec::new();
        for line in text.split('\n') {
            let mut rest = line;
            while let Some(start) = rest.find("http") {
                let tail = &rest[start..];
                let end = tail
                    .find(|c: char| c.is_ascii_whitespace())
                    .unwrap_or(tail.len());
                found.push(&tail[..end]);
                rest = &tail[end..];
            }
        }
        found
    }

    #[tokio::test]
    async fn a_mail_written_to_a_file_is_private_and_its_text_stays_out_of_the_log() {
        use std::os::unix::fs::PermissionsExt as _;
        let _one = ONE_AT_A_TIME.lock().await;
        let data = tempfile::tempdir().expect("tempdir");
        let dir = data.path().join("mail");
        let mailer = directory_mailer(&dir);
        let log = keygraph_kernel::testing::LogCapture::default();
        let _guard = tracing::subscriber::set_default(log.subscriber());
        mailer
            .send(&OutgoingMail {
                to: "ada@example.com".into(),
                subject: "Reset your password".into(),
                text: "open https://example.com/reset?token=secret-token-1234".into(),
            })
            .await
            .expect("written");
        let logged = log.text();
        assert!(logged.contains("mail written to file"), "{logged}");
        assert!(!logged.contains("secret-token-1234"), "{logged}");
        let mode = |p: &std::path::Path| {
            std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
        };
        assert_eq!(mode(&dir), 0o700);
        let file = std::fs::read_dir(&dir)
            .expect("dir")
            .flatten()
            .next()
            .expect("one mail")
            .path();
        assert_eq!(mode(&file), 0o600);
    }

    #[tokio::test]
    async fn a_long_link_in_a_mail_file_can_be_copied_from_it_as_is() {
        let token = "Zq3-xY_8".repeat(6);
        let link = format!("http://127.0.0.1:4001/verify-email?token={token}");
        assert!(link.len() > 76, "long enough for lettre to wrap it");
        let raw = written(format!(
            "Hello Zoë,\n\nPlease confirm by opening this link:\n\n{link}\n\nIf you did not ask, ignore this.\n"
        ))
        .await;
        assert!(
            raw.lines().any(|line| line.trim_end_matches('\r') == link),
            "the link is whole on one line:\n{raw}"
        );
        assert_eq!(grep_links(&raw), [link.as_str()], "{raw}");
        assert!(raw.contains("Content-Transfer-Encoding: 8bit\r\n"), "{raw}");
        assert!(
            raw.contains("Hello Zoë,\r\n"),
            "the text is as written:\n{raw}"
        );
        assert!(!raw.replace("\r\n", "").contains('\n'), "CRLF only:\n{raw}");
    }

    #[tokio::test]
    async fn a_line_too_long_for_8bit_keeps_lettres_encoding() {
        let long = "x".repeat(MAX_LINE_OCTETS + 1);
        let raw = written(format!("Hello,\n{long}\n")).await;
        assert!(
            raw.contains("Content-Transfer-Encoding: quoted-printable\r\n"),
            "{raw}"
        );
        let decoded = keygraph_kernel::testing::decode_mail(&raw);
        assert!(decoded.contains(&long), "{decoded}");
        let exactly = "y".repeat(MAX_LINE_OCTETS);
        let raw = written(format!("Hello,\n{exactly}\n")).await;
        assert!(raw.contains("Content-Transfer-Encoding: 8bit\r\n"), "{raw}");
        assert!(raw.contains(&format!("\r\n{exactly}\r\n")), "{raw}");
    }
}
