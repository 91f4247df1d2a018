//! The layers of a configuration: the built-in defaults, an optional file and `KEYGRAPH__*`
//! variables, merged into one tree whose keys all exist in the defaults.
//!
//! Not figment: its environment provider reads a value's type from its text, so a secret
//! made of digits arrives as a number and fails as "invalid type: found unsigned int,
//! expected a string"; this reads each variable by the type of the key's default.

use serde_json::Value;

use super::{ConfigError, ENV_PREFIX};

pub(super) fn parse_yaml(origin: &str, text: &str) -> Result<Value, ConfigError> {
    let value: Value = serde_norway::from_str(text).map_err(|e| ConfigError::Syntax {
        origin: origin.to_owned(),
        message: e.to_string(),
    })?;
    match value {
        Value::Object(_) => Ok(value),
        // An empty file is an empty overlay.
        Value::Null => Ok(Value::Object(Default::default())),
        _ => Err(ConfigError::NotAMapping {
            origin: origin.to_owned(),
        }),
    }
}

pub(super) fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

pub(super) fn known_keys(map: &serde_json::Map<String, Value>) -> String {
    map.keys().cloned().collect::<Vec<_>>().join(", ")
}

/// Overlays `layer` on `base`; every key of `layer` must exist in the defaults.
pub(super) fn merge(
    base: &mut Value,
    layer: Value,
    origin: &str,
    prefix: &str,
) -> Result<(), ConfigError> {
    match (base, layer) {
        (Value::Object(base), Value::Object(layer)) => {
            for (key, value) in layer {
                let path = join(prefix, &key);
                let known = known_keys(base);
                let Some(slot) = base.get_mut(&key) else {
                    return Err(ConfigError::UnknownKey {
                        key: path,
                        origin: origin.to_owned(),
                        known,
                    });
                };
                if slot.is_object() && value.is_object() {
                    merge(slot, value, origin, &path)?;
                } else {
                    *slot = value;
                }
            }
            Ok(())
        }
        (base, layer) => {
            *base = layer;
            Ok(())
        }
    }
}

/// `KEYGRAPH__IDENTITY__PASSWORD__MIN_LENGTH=10` sets `identity.password.min_length`.
/// The value is taken as a string where the default is a string, and as YAML otherwise
/// (numbers, booleans, lists such as `[a, b]`).
pub(super) fn apply_env(tree: &mut Value, name: &str, raw: &str) -> Result<(), ConfigError> {
    let origin = format!("environment variable {name}");
    let segments: Vec<String> = name[ENV_PREFIX.len()..]
        .split("__")
        .map(str::to_ascii_lowercase)
        .collect();
    let mut node = tree;
    let mut path = String::new();
    for (i, segment) in segments.iter().enumerate() {
        let here = join(&path, segment);
        let Value::Object(map) = node else {
            return Err(ConfigError::UnknownKey {
                key: here,
                origin,
                known: format!("none (`{path}` is not a section)"),
            });
        };
        let known = known_keys(map);
        let Some(child) = map.get_mut(segment) else {
            return Err(ConfigError::UnknownKey {
                key: here,
                origin,
                known,
            });
        };
        path = here;
        if i + 1 == segments.len() {
            // `null` turns an optional setting off (e.g. KEYGRAPH__TOKENS__JWKS_URL=null).
            *child = if raw == "null" {
                Value::Null
            } else if child.is_string() {
                Value::String(raw.to_owned())
            } else {
                serde_norway::from_str(raw).map_err(|e| ConfigError::Invalid {
                    path: path.clone(),
                    message: format!("{origin} is not a valid value: {e}"),
                })?
            };
            return Ok(());
        }
        node = child;
    }
    Err(ConfigError::UnknownKey {
        key: name.to_owned(),
        origin,
        known: "a variable needs at least one KEYGRAPH__SECTION__KEY segment".into(),
    })
}
