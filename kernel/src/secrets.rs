//! Secrets of the embedded default: configured values win; in development mode a missing one
//! is generated once into the data directory (with a warning), in production it is an error.

use std::path::Path;

use rand::RngCore as _;

use crate::config::{Config, Mode};

/// The internal service token: from config, or generated into `<data_dir>/internal-token`.
pub fn internal_token(config: &Config) -> anyhow::Result<String> {
    if let Some(token) = &config.internal.token {
        return Ok(token.clone());
    }
    if config.mode == Mode::Production {
        anyhow::bail!("internal.token must be set in production mode");
    }
    generated_secret(&config.data_dir.join("internal-token"), "internal.token")
}

fn generated_secret(path: &Path, setting: &str) -> anyhow::Result<String> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        let existing = existing.trim();
        if existing.len() >= 32 {
            return Ok(existing.to_owned());
        }
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    write_private(path, &secret)?;
    tracing::warn!(
        path = %path.display(),
        setting,
        "generated a secret for development; set it explicitly in production"
    );
    Ok(secret)
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}
