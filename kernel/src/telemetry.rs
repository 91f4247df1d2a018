//! Logging set-up: text or JSON lines, filtered by the configured directives.

use tracing_subscriber::{EnvFilter, fmt};

use crate::config::{ConfigError, LogConfig, LogFormat};

/// Installs the global subscriber. `RUST_LOG`, when set, takes precedence over `log.filter`.
/// A second call (tests) keeps the first subscriber.
pub fn init(log: &LogConfig) -> Result<(), ConfigError> {
    let directives = std::env::var("RUST_LOG").unwrap_or_else(|_| log.filter.clone());
    let filter = EnvFilter::try_new(&directives).map_err(|e| ConfigError::Invalid {
        path: "log.filter".into(),
        message: format!("`{directives}` is not a valid filter: {e}"),
    })?;
    let builder = fmt().with_env_filter(filter).with_target(true);
    // Err only when a subscriber is already installed, which is fine.
    let _ = match log.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    Ok(())
}
