//! What the admin API and the metrics show of xDS: whether the stream is up, the last accepted
//! version of each type, and how many responses were accepted and rejected.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// The xDS client's state, shared with the admin API. All methods lock briefly.
#[derive(Debug, Default)]
pub struct Status {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default, Clone)]
struct Inner {
    connected: bool,
    connects: u64,
    acks: BTreeMap<&'static str, u64>,
    nacks: BTreeMap<&'static str, u64>,
    versions: BTreeMap<&'static str, String>,
    last_nack: Option<String>,
    resources: BTreeMap<&'static str, usize>,
    ignored_filters: BTreeMap<String, u64>,
}

impl Status {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The stream to the control plane opened (`true`) or closed.
    pub fn set_connected(&self, up: bool) {
        self.with(|i| {
            i.connected = up;
            if up {
                i.connects += 1;
            }
        })
    }

    /// True while the ADS stream is up.
    pub fn connected(&self) -> bool {
        self.with(|i| i.connected)
    }

    /// A response of `kind` (`lds`, ...) was accepted at `version`, leaving `count` resources.
    pub fn acked(&self, kind: &'static str, version: &str, count: usize) {
        self.with(|i| {
            *i.acks.entry(kind).or_default() += 1;
            i.versions.insert(kind, version.to_string());
            i.resources.insert(kind, count);
        })
    }

    /// A response of `kind` was rejected with `message`.
    pub fn nacked(&self, kind: &'static str, message: &str) {
        self.with(|i| {
            *i.nacks.entry(kind).or_default() += 1;
            i.last_nack = Some(message.to_string());
        })
    }

    /// Filters accepted without effect in the last applied translation, by name.
    pub fn set_ignored_filters(&self, counts: BTreeMap<String, u64>) {
        self.with(|i| i.ignored_filters = counts)
    }

    /// Rejected responses of every type.
    pub fn nack_count(&self) -> u64 {
        self.with(|i| i.nacks.values().sum())
    }

    /// The last accepted version of `kind`.
    pub fn version(&self, kind: &str) -> Option<String> {
        self.with(|i| i.versions.get(kind).cloned())
    }

    /// The state as JSON, for `GET /api/v1/xds`:
    /// `{"connected", "connects", "types": {"lds": {"version", "acks", "nacks", "resources"}, ...},
    /// "last_nack", "ignored_filters": {name: count}}`.
    pub fn to_json(&self) -> serde_json::Value {
        let i = self.with(|i| i.clone());
        let mut types = serde_json::Map::new();
        for kind in ["lds", "rds", "cds", "eds", "sds"] {
            types.insert(
                kind.to_string(),
                serde_json::json!({
                    "version": i.versions.get(kind),
                    "acks": i.acks.get(kind).copied().unwrap_or(0),
                    "nacks": i.nacks.get(kind).copied().unwrap_or(0),
                    "resources": i.resources.get(kind).copied().unwrap_or(0),
                }),
            );
        }
        serde_json::json!({
            "connected": i.connected,
            "connects": i.connects,
            "types": types,
            "last_nack": i.last_nack,
            "ignored_filters": i.ignored_filters,
        })
    }
}
