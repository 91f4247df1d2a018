//! Outgoing mail: over SMTP when `mail.smtp_url` is set; otherwise each message goes to
//! `<data_dir>/mail/` as an `.eml` file a developer can open (and tests read), readable by
//! its owner only. The log says that a mail was written and where, never what it says: a
//! mail holds a link with a single-use token.

use std::{path::PathBuf, sync::Arc};

use chrono::Utc;
use keygraph_kernel::config::MailConfig;
use lettre::{
    AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor,
    message::{Body, Mailbox, header::ContentType},
};

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
        // Lettre picks the transfer encoding: quoted-printable where a line (a link) is long.
        let body = Body::new(mail.text.clone());
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

    #[tokio::test]
    async fn a_mail_written_to_a_file_is_private_and_its_text_stays_out_of_the_log() {
        use std::os::unix::fs::PermissionsExt as _;
        let data = tempfile::tempdir().expect("tempdir");
        let dir = data.path().join("mail");
        let config = MailConfig {
            smtp_url: None,
            from: "Keygraph <noreply@keygraph.localhost>".into(),
        };
        let mailer = Mailer::from_config(&config, dir.clone()).expect("mailer");
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
}
