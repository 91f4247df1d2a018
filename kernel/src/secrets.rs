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
        crate::files::create_private_dir(parent)?;
    }
    crate::files::write_private(path, secret.as_bytes())?;
    tracing::warn!(
        path = %path.display(),
        setting,
        "generated a secret for development; set it explicitly in production"
    );
    Ok(secret)
}
