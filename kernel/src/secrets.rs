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

/// The audit service's Ed25519 seed: `audit.signing_key` (base64), or generated into
/// `<data_dir>/audit-signing-key` (hex, development mode only). Only the audit service needs
/// it, so only its start-up asks for it: other services never hold the key.
pub fn audit_signing_seed(config: &Config) -> anyhow::Result<[u8; 32]> {
    use base64::Engine as _;
    let bytes = match &config.audit.signing_key {
        Some(key) => base64::engine::general_purpose::STANDARD
            .decode(key.trim())
            .map_err(|e| anyhow::anyhow!("audit.signing_key is not base64: {e}"))?,
        None if config.mode == Mode::Production => {
            anyhow::bail!(
                "audit.signing_key must be set in production mode (KEYGRAPH__AUDIT__SIGNING_KEY, 32 bytes base64, e.g. `openssl rand -base64 32`)"
            )
        }
        None => {
            let path = config.data_dir.join("audit-signing-key");
            let hex = generated_secret(&path, "audit.signing_key")?;
            decode_hex(&hex).filter(|b| b.len() == 32).ok_or_else(|| {
                anyhow::anyhow!(
                    "{} does not hold 64 hex digits; remove it to have a new key generated",
                    path.display()
                )
            })?
        }
    };
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("audit.signing_key must be 32 bytes"))
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_key_is_configured_generated_once_or_required() {
        let data = tempfile::tempdir().expect("tempdir");
        let mut config = Config::from_sources(None, Vec::new()).expect("defaults");
        config.data_dir = data.path().to_owned();
        let generated = audit_signing_seed(&config).expect("generated in development");
        assert_eq!(
            audit_signing_seed(&config).expect("again"),
            generated,
            "kept"
        );
        config.audit.signing_key = Some("AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=".into());
        assert_eq!(
            audit_signing_seed(&config).expect("configured")[..3],
            [1, 2, 3]
        );
        config.audit.signing_key = None;
        config.mode = Mode::Production;
        let err = audit_signing_seed(&config).expect_err("production needs it");
        assert!(
            err.to_string().contains("KEYGRAPH__AUDIT__SIGNING_KEY"),
            "{err}"
        );
    }
}
