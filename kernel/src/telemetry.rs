//! Logging set-up: text or JSON lines, filtered by the configured directives, coloured only
//! on a terminal.

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
    // Colours only for a person at a terminal: never into files, pipes or log collectors.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_ansi(ansi);
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
