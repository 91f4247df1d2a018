//! Typed configuration: `config/default.yaml` (built in), then an optional `--config` file,
//! then `KEYGRAPH__SECTION__KEY` environment variables. Unknown keys and bad values fail with
//! the key's path and what is accepted.
//!
//! - [`sections`]: one struct per section of `config/default.yaml`;
//! - `layers`: the defaults, a file and the environment merged into one tree;
//! - `validate`: the rules beyond types, each naming its key.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The defaults, compiled in so the binary runs without the repository beside it.
pub const DEFAULT_YAML: &str = include_str!("../../../config/default.yaml");

/// Prefix of environment variables that override settings.
pub const ENV_PREFIX: &str = "KEYGRAPH__";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {origin} is not valid YAML: {message}")]
    Syntax { origin: String, message: String },
    #[error("config file {origin}: the top level must be a mapping of sections")]
    NotAMapping { origin: String },
    #[error("unknown setting `{key}` (from {origin}); known keys at this level: {known}")]
    UnknownKey {
        key: String,
        origin: String,
        known: String,
    },
    #[error("setting `{path}`: {message}")]
    Invalid { path: String, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Development,
    Production,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub mode: Mode,
    pub data_dir: PathBuf,
    /// Whether `__schema` and `__type` are answered, by the router and by every subgraph.
    /// Unset in the file: on in development mode, off in production (resolved when the
    /// config loads).
    pub introspection: Option<bool>,
    pub log: LogConfig,
    pub telemetry: TelemetryConfig,
    pub http: HttpConfig,
    pub database: PoolConfig,
    pub tokens: TokenConfig,
    pub internal: InternalConfig,
    pub mail: MailConfig,
    pub identity: IdentityConfig,
    pub authz: AuthzConfig,
    pub auth: AuthConfig,
    pub audit: AuditConfig,
    pub outbox: OutboxConfig,
    pub router: RouterConfig,
    pub redis: RedisConfig,
}

mod layers;
pub mod sections;
mod validate;

pub use sections::*;

use layers::{apply_env, merge, parse_yaml};

impl Config {
    /// Defaults, then `file`, then `KEYGRAPH__*` variables of this process.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let overlay = match file {
            Some(path) => Some((
                path.display().to_string(),
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?,
            )),
            None => None,
        };
        Self::from_sources(
            overlay.as_ref().map(|(o, t)| (o.as_str(), t.as_str())),
            std::env::vars(),
        )
    }

    /// Builds the config from the built-in defaults, an optional `(origin, yaml)` overlay and
    /// environment variables (only those starting with [`ENV_PREFIX`] are read).
    pub fn from_sources(
        overlay: Option<(&str, &str)>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut tree = parse_yaml("the built-in defaults", DEFAULT_YAML)?;
        if let Some((origin, text)) = overlay {
            let layer = parse_yaml(origin, text)?;
            merge(&mut tree, layer, origin, "")?;
        }
        let mut env: Vec<_> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        env.sort();
        for (name, value) in env {
            apply_env(&mut tree, &name, &value)?;
        }
        let config: Config =
            serde_path_to_error::deserialize(tree).map_err(|e| ConfigError::Invalid {
                path: e.path().to_string(),
                message: e.into_inner().to_string(),
            })?;
        let mut config = config;
        let development = config.mode == Mode::Development;
        config
            .router
            .cors
            .allow_localhost
            .get_or_insert(development);
        config.router.graphiql.get_or_insert(development);
        config
            .router
            .metrics
            .require_token
            .get_or_insert(!development);
        config.router.introspection = *config.introspection.get_or_insert(development);
        config.validate()?;
        Ok(config)
    }

    /// Whether introspection is answered (the `introspection` setting, resolved by mode).
    pub fn introspection(&self) -> bool {
        self.introspection.unwrap_or(self.mode == Mode::Development)
    }

    pub fn database_url_for(&self, service: &str, configured: Option<&str>) -> String {
        match configured {
            Some(url) => url.to_owned(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join(format!("{service}.db")).display()
            ),
        }
    }
}

/// A schema name safe to quote into DDL.
pub fn is_sql_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63
}

#[cfg(test)]
mod tests;
