//! Reading filter configs: keys match case-insensitively (as MOSN's Go JSON does), every error
//! names its JSON path.

use mosn_api::FilterConfigError;
use serde_json::{Map, Value};

pub(crate) type Result<T> = std::result::Result<T, FilterConfigError>;

/// A config object with its JSON path.
pub(crate) struct Obj<'a> {
    pub map: &'a Map<String, Value>,
    pub path: String,
}

impl<'a> Obj<'a> {
    pub fn new(v: &'a Value, path: &str) -> Result<Self> {
        match v {
            Value::Object(map) => Ok(Obj {
                map,
                path: path.to_string(),
            }),
            Value::Null => {
                static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
                Ok(Obj {
                    map: EMPTY.get_or_init(Map::new),
                    path: path.to_string(),
                })
            }
            other => Err(FilterConfigError::new(
                path,
                format!("expected an object, found {other}"),
            )),
        }
    }

    pub fn key_path(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }

    /// The value of `key`, matched without case and ignoring surrounding spaces (MOSN's own
    /// `payload_limit` key is spelled `"max_entity_size "`).
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map
            .iter()
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
            .filter(|v| !v.is_null())
    }

    pub fn str(&self, key: &str) -> Result<Option<&'a str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(FilterConfigError::new(
                self.key_path(key),
                format!("expected a string, found {v}"),
            )),
        }
    }

    pub fn u64(&self, key: &str, max: u64) -> Result<Option<u64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if n <= max => Ok(Some(n)),
                _ => Err(FilterConfigError::new(
                    self.key_path(key),
                    format!("expected an integer from 0 to {max}, found {v}"),
                )),
            },
        }
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(FilterConfigError::new(
                self.key_path(key),
                format!("expected true or false, found {v}"),
            )),
        }
    }

    pub fn array(&self, key: &str) -> Result<Vec<(String, &'a Value)>> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(a)) => Ok(a
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("{}[{i}]", self.key_path(key)), v))
                .collect()),
            Some(v) => Err(FilterConfigError::new(
                self.key_path(key),
                format!("expected an array, found {v}"),
            )),
        }
    }

    pub fn obj(&self, key: &str) -> Result<Option<Obj<'a>>> {
        self.get(key)
            .map(|v| Obj::new(v, &self.key_path(key)))
            .transpose()
    }

    /// A Go duration string (`"1s"`, `"250ms"`) or nanoseconds.
    pub fn duration(&self, key: &str) -> Result<Option<std::time::Duration>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => mosn_config::parse_go_duration(s)
                .map(Some)
                .map_err(|e| FilterConfigError::new(self.key_path(key), e)),
            Some(v) => match v.as_u64() {
                Some(ns) => Ok(Some(std::time::Duration::from_nanos(ns))),
                None => Err(FilterConfigError::new(
                    self.key_path(key),
                    format!("expected a duration such as \"1s\", found {v}"),
                )),
            },
        }
    }
}

/// A request-header matcher as MOSN writes it (`{"name", "value", "regex"}`), compiled by the
/// router's own matcher so routes and filters match headers the same way.
pub(crate) fn header_match(v: &Value, path: &str) -> Result<mosn_router::matcher::HeaderCheck> {
    let o = Obj::new(v, path)?;
    let name = o
        .str("name")?
        .ok_or_else(|| FilterConfigError::new(o.key_path("name"), "is required"))?;
    let m = mosn_config::HeaderMatcher {
        name: name.to_string(),
        value: o.str("value")?.unwrap_or("").to_string(),
        regex: o.bool("regex")?.unwrap_or(false),
        present: o.bool("present_match")?.unwrap_or(false),
        invert: o.bool("invert_match")?.unwrap_or(false),
    };
    mosn_router::matcher::HeaderCheck::new(&m)
        .ok_or_else(|| FilterConfigError::new(o.key_path("value"), "invalid regex"))
}

/// True with probability `percent`/100.
pub(crate) fn roll(percent: u64) -> bool {
    percent >= 100 || (percent > 0 && fastrand::u64(0..100) < percent)
}
