//! A walker over `serde_json::Value` that keeps the JSON path, matches keys case-insensitively (as
//! Go's `encoding/json`, and so MOSN, does) and reports keys nobody read.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use crate::duration::parse_go_duration;
use crate::error::{ConfigError, ConfigWarning, Result};

/// Collects warnings while a config is read.
#[derive(Default)]
pub struct Ctx {
    pub(crate) warnings: RefCell<Vec<ConfigWarning>>,
}

impl Ctx {
    pub(crate) fn warn(&self, path: &str, message: impl Into<String>) {
        self.warnings.borrow_mut().push(ConfigWarning {
            path: path.to_string(),
            message: message.into(),
            unknown_key: false,
        });
    }

    /// Every warning: this context's, then those of objects left unfinished by an error.
    pub(crate) fn take(&self) -> Vec<ConfigWarning> {
        let mut w = std::mem::take(&mut *self.warnings.borrow_mut());
        UNFINISHED.with(|u| w.append(&mut u.borrow_mut()));
        w
    }
}

thread_local! {
    /// Unknown-key warnings of objects dropped without [`Obj::finish`] (parsing stopped at an
    /// error inside them). Drained by [`Ctx::take`]; cleared by [`reset`].
    static UNFINISHED: RefCell<Vec<ConfigWarning>> = const { RefCell::new(Vec::new()) };
}

/// Clears warnings left by an earlier parse on this thread.
pub(crate) fn reset() {
    UNFINISHED.with(|u| u.borrow_mut().clear());
}

/// The known key closest to `key`, when it is close enough to be a typo of it (a Damerau-
/// Levenshtein distance of 1, or 2 for keys of 6 characters and more).
pub fn closest<'k>(key: &str, known: impl IntoIterator<Item = &'k str>) -> Option<&'k str> {
    let key = key.to_ascii_lowercase();
    let limit = if key.len() >= 6 { 2 } else { 1 };
    known
        .into_iter()
        .filter(|k| *k != key)
        .map(|k| (strsim::damerau_levenshtein(&key, k), k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn unknown_key_warning(path: &str, key: &str, used: &[String]) -> ConfigWarning {
    let message = match closest(key, used.iter().map(String::as_str)) {
        Some(k) => format!("unknown key, ignored: did you mean \"{k}\"?"),
        None => "unknown key, ignored".to_string(),
    };
    ConfigWarning {
        path: join(path, key),
        message,
        unknown_key: true,
    }
}

/// Short JSON rendering of a value for messages (strings quoted, long values cut at 60 chars).
pub fn show(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        let cut: String = s.chars().take(57).collect();
        format!("{cut}...")
    } else {
        s
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Joins a parent path and a key (`a.b`), or the key alone at the root.
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// True when a value carries something: not null, false, 0, "", [] or {}.
pub fn is_set(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// One JSON object being read. Every key must be read, declared ignored or declared unsupported;
/// [`Obj::finish`] warns about the rest.
pub struct Obj<'a> {
    path: String,
    keys: HashMap<String, (&'a str, &'a Value)>,
    used: RefCell<Vec<String>>,
    finished: Cell<bool>,
}

impl Drop for Obj<'_> {
    /// An object dropped unfinished was cut short by an error: its unknown keys that are close to
    /// a key already asked for are surely typos (`adress`), and are reported with the error.
    fn drop(&mut self) {
        if self.finished.get() || std::thread::panicking() {
            return;
        }
        let used = self.used.borrow();
        let mut typos: Vec<&str> = self
            .keys
            .iter()
            .filter(|(k, _)| !used.iter().any(|u| u == *k))
            .filter(|(k, _)| closest(k, used.iter().map(String::as_str)).is_some())
            .map(|(_, (orig, _))| *orig)
            .collect();
        typos.sort_unstable();
        UNFINISHED.with(|u| {
            let mut u = u.borrow_mut();
            for k in typos {
                u.push(unknown_key_warning(&self.path, k, &used));
            }
        });
    }
}

impl<'a> Obj<'a> {
    /// Reads `v` as an object at `path`. Errors when it is not an object.
    pub fn new(v: &'a Value, path: &str) -> Result<Obj<'a>> {
        let map = v.as_object().ok_or_else(|| {
            ConfigError::new(path, format!("expected an object, found {}", kind(v)))
        })?;
        let keys = map
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), (k.as_str(), v)))
            .collect();
        Ok(Obj {
            path: path.to_string(),
            keys,
            used: RefCell::new(Vec::new()),
            finished: Cell::new(false),
        })
    }

    /// The JSON path of this object.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The path of `key` inside this object, spelled as the file spells it.
    pub fn key_path(&self, key: &str) -> String {
        let shown = self.keys.get(key).map(|(k, _)| *k).unwrap_or(key);
        join(&self.path, shown)
    }

    /// The raw value of `key` (lower-case), marking it read. `null` counts as absent.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.used.borrow_mut().push(key.to_string());
        self.keys.get(key).map(|(_, v)| *v).filter(|v| !v.is_null())
    }

    /// Like [`Obj::get`] but an absent key is an error.
    pub fn req(&self, key: &str) -> Result<&'a Value> {
        self.get(key)
            .ok_or_else(|| ConfigError::new(self.key_path(key), "is required"))
    }

    /// Optional string.
    pub fn opt_str(&self, key: &str) -> Result<Option<&'a str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(v) => Err(self.type_err(key, "a string", v)),
        }
    }

    /// Required, non-empty string.
    pub fn req_str(&self, key: &str) -> Result<&'a str> {
        match self.opt_str(key)? {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(ConfigError::new(self.key_path(key), "is required")),
        }
    }

    /// Optional boolean.
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.type_err(key, "a boolean", v)),
        }
    }

    /// Optional unsigned integer no larger than `max`.
    pub fn opt_u64(&self, key: &str, max: u64) -> Result<Option<u64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if n <= max => Ok(Some(n)),
                Some(n) => Err(ConfigError::new(
                    self.key_path(key),
                    format!("{n} is out of range (at most {max})"),
                )),
                None => Err(self.type_err(key, "an unsigned integer", v)),
            },
        }
    }

    /// Optional Go duration string (`"3s"`); a JSON number is read as nanoseconds, as Go's
    /// `time.Duration` would.
    pub fn opt_duration(&self, key: &str) -> Result<Option<Duration>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => parse_go_duration(s).map(Some).map_err(|e| {
                ConfigError::new(
                    self.key_path(key),
                    format!("{:?} is not a duration: {e}", s),
                )
            }),
            Some(v) => match v.as_u64() {
                Some(ns) => Ok(Some(Duration::from_nanos(ns))),
                None => Err(self.type_err(key, "a duration string such as \"3s\"", v)),
            },
        }
    }

    /// Optional array: its items with their paths.
    pub fn opt_array(&self, key: &str) -> Result<Vec<(String, &'a Value)>> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(a)) => {
                let p = self.key_path(key);
                Ok(a.iter()
                    .enumerate()
                    .map(|(i, v)| (format!("{p}[{i}]"), v))
                    .collect())
            }
            Some(v) => Err(self.type_err(key, "an array", v)),
        }
    }

    /// Optional array of strings.
    pub fn opt_str_array(&self, key: &str) -> Result<Vec<String>> {
        self.opt_array(key)?
            .into_iter()
            .map(|(p, v)| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(ConfigError::new(
                    p,
                    format!("expected a string, found {}", kind(other)),
                )),
            })
            .collect()
    }

    /// Optional nested object.
    pub fn opt_obj(&self, key: &str) -> Result<Option<Obj<'a>>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => Obj::new(v, &self.key_path(key)).map(Some),
        }
    }

    /// Keys MOSN knows that change traffic but that mosn-rs does not implement yet: present with a
    /// value ([`is_set`]) they are an error naming the key, so nothing is silently half-applied.
    pub fn unsupported(&self, keys: &[&str], why: &str) -> Result<()> {
        for k in keys {
            if let Some(v) = self.get(k) {
                if is_set(v) {
                    return Err(ConfigError::new(
                        self.key_path(k),
                        format!("is not supported by mosn-rs yet ({why})"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Keys MOSN knows that mosn-rs accepts without effect (tuning knobs of Go's runtime, fields
    /// MOSN itself marks unused). They are read silently.
    pub fn ignored(&self, keys: &[&str]) {
        for k in keys {
            let _ = self.get(k);
        }
    }

    /// Ends reading an object whose other keys are deliberately not looked at (a part already
    /// warned about as a whole).
    pub fn finish_silently(self) {
        self.finished.set(true);
    }

    /// Warns, with its path, about every key that was not read.
    pub fn finish(self, ctx: &Ctx) {
        self.finished.set(true);
        let used = self.used.borrow();
        let mut unknown: Vec<&str> = self
            .keys
            .iter()
            .filter(|(k, _)| !used.iter().any(|u| u == *k))
            .map(|(_, (orig, _))| *orig)
            .collect();
        unknown.sort_unstable();
        let mut w = ctx.warnings.borrow_mut();
        for k in unknown {
            w.push(unknown_key_warning(&self.path, k, &used));
        }
    }

    fn type_err(&self, key: &str, want: &str, got: &Value) -> ConfigError {
        ConfigError::new(
            self.key_path(key),
            format!("expected {want}, found {} {}", kind(got), show(got)),
        )
    }
}
