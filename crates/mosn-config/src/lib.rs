//! The MOSN v2 JSON config: parsing, defaults and validation.
//!
//! Keys match case-insensitively, as in MOSN (Go's `encoding/json`). An unknown key is a
//! [`ConfigWarning`] naming its JSON path; a MOSN key that would change traffic but is not
//! implemented yet, a wrong type, a missing required key, a bad address or a dangling reference is a
//! [`ConfigError`] naming the JSON path and the value.
//!
//! Source: MOSN `pkg/config/v2` and <https://mosn.io/docs/configuration/>.

mod duration;
mod error;
pub mod model;
mod parse;
mod roller;
mod validate;
mod walk;

pub use duration::parse_go_duration;
pub use error::{ConfigError, ConfigWarning};
pub use model::*;
pub use roller::Roller;

/// A config that parsed and validated, with the warnings met on the way.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The config.
    pub config: Config,
    /// The JSON document it was read from (for the admin config dump).
    pub raw: serde_json::Value,
    /// Unknown or ignored keys, with their paths.
    pub warnings: Vec<ConfigWarning>,
}

/// Parses and validates a config from JSON text.
///
/// Errors: invalid JSON (path empty, message with line and column) or any [`ConfigError`].
pub fn from_str(text: &str) -> Result<Loaded, ConfigError> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| ConfigError::new("", format!("invalid JSON: {e}")))?;
    from_value(&value)
}

/// Parses and validates a config from a JSON value.
pub fn from_value(value: &serde_json::Value) -> Result<Loaded, ConfigError> {
    let ctx = walk::Ctx::default();
    let config = parse::config(value, &ctx)?;
    validate::validate(&config)?;
    Ok(Loaded {
        config,
        raw: value.clone(),
        warnings: ctx.warnings.into_inner(),
    })
}

/// Reads, parses and validates a config file.
///
/// Errors: the file cannot be read (path empty, message with the file name and the OS error), or
/// any error of [`from_str`].
pub fn from_file(path: &std::path::Path) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new("", format!("cannot read {}: {e}", path.display())))?;
    let mut loaded = from_str(&text)?;
    if let Some(dir) = path.parent() {
        resolve_tls_paths(&mut loaded.config, dir);
    }
    Ok(loaded)
}

/// Makes relative certificate, key and CA paths relative to `dir` (the config file's folder), so a
/// config works from any working directory. Inline PEM and absolute paths are left alone.
fn resolve_tls_paths(c: &mut Config, dir: &std::path::Path) {
    let fix = |v: &mut Option<String>| {
        if let Some(p) = v.as_mut() {
            if !p.contains("-----BEGIN") && std::path::Path::new(p.as_str()).is_relative() {
                *p = dir.join(p.as_str()).to_string_lossy().into_owned();
            }
        }
    };
    let contexts = c
        .server
        .listeners
        .iter_mut()
        .flat_map(|l| l.tls.iter_mut())
        .chain(c.clusters.iter_mut().filter_map(|c| c.tls.as_mut()));
    for t in contexts {
        fix(&mut t.cert_chain);
        fix(&mut t.private_key);
        fix(&mut t.ca_cert);
    }
}
