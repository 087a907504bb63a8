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
mod features;
pub mod model;
mod parse;
mod roller;
mod validate;
mod walk;
mod xds;

pub use duration::parse_go_duration;
pub use error::{ConfigError, ConfigWarning};
pub use features::features;
pub use model::*;
pub use roller::Roller;
pub use walk::closest;
pub use xds::{Xds, XdsApi, XdsNode};

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
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Eof => "the file ends early",
            serde_json::error::Category::Syntax => "syntax error",
            _ => "invalid JSON",
        };
        // serde_json's message ends with its own " at line L column C": keep only the cause.
        let text = e.to_string();
        let cause = text.split(" at line ").next().unwrap_or(&text).to_string();
        ConfigError::new(
            "",
            format!(
                "invalid JSON at line {}, column {}: {what}: {cause}",
                e.line(),
                e.column()
            ),
        )
    })?;
    from_value(&value)
}

/// Parses and validates a config from a JSON value.
///
/// Errors: any [`ConfigError`], carrying the warnings met before it. A config with no listener
/// (which would serve nothing) is an error.
pub fn from_value(value: &serde_json::Value) -> Result<Loaded, ConfigError> {
    walk::reset();
    let ctx = walk::Ctx::default();
    let with_router = with_dubbo_router(value);
    let value = with_router.as_ref().unwrap_or(value);
    let parsed = parse::config(value, &ctx).and_then(|c| validate::validate(&c).map(|()| c));
    let warnings = ctx.take();
    match parsed {
        Ok(config) => Ok(Loaded {
            config,
            raw: value.clone(),
            warnings,
        }),
        Err(mut e) => {
            e.warnings = warnings;
            Err(e)
        }
    }
}

/// With an enabled `dubbo_registry` extension and no router named `dubbo`: the config with that
/// router added (one virtual host `dubbo`, domains `*`, no routes), as MOSN's extension creates it
/// at start. `None` when nothing is to add.
fn with_dubbo_router(value: &serde_json::Value) -> Option<serde_json::Value> {
    let enabled = value.get("extends")?.as_array()?.iter().any(|e| {
        e.get("type").and_then(|t| t.as_str()) == Some("dubbo_registry")
            && e.pointer("/config/enable").and_then(|b| b.as_bool()) == Some(true)
    });
    let routers = value.pointer("/servers/0/routers");
    let has = routers.and_then(|r| r.as_array()).is_some_and(|r| {
        r.iter().any(|x| {
            x.get("router_config_name").and_then(|n| n.as_str()) == Some(model::DUBBO_ROUTER)
        })
    });
    if !enabled || has || !matches!(routers, None | Some(serde_json::Value::Array(_))) {
        return None;
    }
    let mut v = value.clone();
    let server = v.pointer_mut("/servers/0")?.as_object_mut()?;
    let routers = server
        .entry("routers")
        .or_insert_with(|| serde_json::Value::Array(Vec::new()));
    routers.as_array_mut()?.push(serde_json::json!({
        "router_config_name": model::DUBBO_ROUTER,
        "virtual_hosts": [{"name": model::DUBBO_ROUTER, "domains": ["*"], "routers": []}]
    }));
    Some(v)
}

/// Reads, parses and validates a config file.
///
/// Errors: the file cannot be read (path empty, message with the file name and the OS error), or
/// any error of [`from_str`].
pub fn from_file(path: &std::path::Path) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new("", format!("cannot read the file: {e}")))?;
    let mut loaded = from_str(&text)?;
    if let Some(dir) = path.parent() {
        resolve_paths(&mut loaded.config, dir);
    }
    Ok(loaded)
}

/// Makes the relative paths of a config read from a file in `dir` relative to `dir`: certificate,
/// key and CA files, and the pid file (what [`from_file`] does after parsing; for configs
/// re-parsed at run time).
pub fn resolve_paths(c: &mut Config, dir: &std::path::Path) {
    resolve_tls_paths(c, dir);
    // The pid file too, so `mosn stop -c FILE` finds it from any working directory.
    if let Some(p) = c.pid.as_mut() {
        if std::path::Path::new(p.as_str()).is_relative() {
            *p = dir.join(p.as_str()).to_string_lossy().into_owned();
        }
    }
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
