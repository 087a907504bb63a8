//! The xDS client wired to the running server: its translated resources are composed with the
//! config file's JSON (MOSN's mixed mode: `servers` and `dynamic_resources` together) and applied
//! through [`crate::live::Live`]; its state shows in the admin API (`/api/v1/extends`, key
//! `xds`) and the metrics (`xds_*`).

use std::sync::Arc;

use mosn_admin::metrics::{MetricSet, Value as MetricValue};
use serde_json::{json, Value};

/// Where each xDS entry landed in a composed config, to name the resource behind a JSON-path
/// error.
#[derive(Debug, Default)]
pub struct Origin {
    /// `(first index, names)` of the xDS entries in `servers[0].listeners`.
    listeners: (usize, Vec<String>),
    /// The same in `servers[0].routers`.
    routers: (usize, Vec<String>),
    /// The same in `cluster_manager.clusters`.
    clusters: (usize, Vec<String>),
}

impl Origin {
    /// The xDS resource a JSON path of the composed config points into.
    pub fn culprit(&self, path: &str) -> Option<(&'static str, String)> {
        let index = |prefix: &str| -> Option<usize> {
            let rest = path.strip_prefix(prefix)?;
            rest.split(']').next()?.parse().ok()
        };
        for (prefix, (first, names), ty) in [
            (
                "servers[0].listeners[",
                &self.listeners,
                mosn_xds::types::LISTENER,
            ),
            ("servers[0].routers[", &self.routers, mosn_xds::types::ROUTE),
            (
                "cluster_manager.clusters[",
                &self.clusters,
                mosn_xds::types::CLUSTER,
            ),
        ] {
            if let Some(i) = index(prefix) {
                return i
                    .checked_sub(*first)
                    .and_then(|k| names.get(k))
                    .map(|n| (ty, n.clone()));
            }
        }
        None
    }

    /// The LDS resource that made the listener named `name`.
    pub fn listener(&self, name: &str) -> Option<(&'static str, String)> {
        self.listeners
            .1
            .iter()
            .any(|n| n == name)
            .then(|| (mosn_xds::types::LISTENER, name.to_string()))
    }
}

/// Appends the translated entries to the config's arrays (creating `servers[0]` and
/// `cluster_manager` when the file has none). A router or cluster of the file with the same name
/// wins, as static resources do in Envoy.
pub fn compose(mut v: Value, t: &mosn_xds::Translated) -> (Value, Origin) {
    if v.pointer("/servers/0").is_none() {
        v["servers"] = json!([{}]);
    }
    if v.pointer("/cluster_manager").is_none() {
        v["cluster_manager"] = json!({});
    }
    let mut origin = Origin::default();
    let mut append = |ptr: &str, key: &str, items: &[(String, Value)], name_key: &str| {
        let Some(parent) = v.pointer_mut(ptr).and_then(Value::as_object_mut) else {
            return (0, Vec::new());
        };
        let arr = parent.entry(key).or_insert_with(|| json!([]));
        if !arr.is_array() {
            *arr = json!([]);
        }
        let Some(arr) = arr.as_array_mut() else {
            return (0, Vec::new());
        };
        let first = arr.len();
        let mut names = Vec::new();
        for (resource, item) in items {
            let name = item.get(name_key).and_then(Value::as_str);
            let taken = arr
                .iter()
                .any(|x| name.is_some() && x.get(name_key).and_then(Value::as_str) == name);
            if !taken {
                arr.push(item.clone());
                names.push(resource.clone());
            }
        }
        (first, names)
    };
    origin.listeners = append("/servers/0", "listeners", &t.listeners, "name");
    origin.routers = append("/servers/0", "routers", &t.routers, "router_config_name");
    origin.clusters = append("/cluster_manager", "clusters", &t.clusters, "name");
    (v, origin)
}

/// Starts the xDS client when the config has `dynamic_resources`.
///
/// Errors: the client thread cannot start.
pub fn start(
    loaded: &mosn_config::Loaded,
    live: Arc<crate::live::Live>,
) -> anyhow::Result<Option<(mosn_xds::Handle, Arc<mosn_xds::Status>)>> {
    let Some(cfg) = loaded.config.xds.clone() else {
        return Ok(None);
    };
    tracing::info!(server = %cfg.server, api = ?cfg.api, node = cfg.node.id, "xds: starting the ADS client");
    let status = Arc::new(mosn_xds::Status::default());
    let handle = mosn_xds::spawn(cfg, live, status.clone())?;
    Ok(Some((handle, status)))
}

/// The admin API's view of the client: `/api/v1/extends` key `xds`, and metric sets
/// `xds{type}` with `acks`, `nacks`, `resources`, plus `xds_connected`.
pub fn extension(status: &Arc<mosn_xds::Status>) -> mosn_admin::Extension {
    let (s1, s2) = (status.clone(), status.clone());
    mosn_admin::Extension {
        name: "xds",
        state: Box::new(move || s1.to_json()),
        metrics: Box::new(move || {
            let j = s2.to_json();
            let mut sets = vec![MetricSet {
                typ: "xds",
                labels: Vec::new(),
                values: vec![(
                    "connected",
                    MetricValue::Gauge(i64::from(j["connected"].as_bool().unwrap_or(false))),
                )],
            }];
            for (kind, t) in j["types"].as_object().into_iter().flatten() {
                let n = |k: &str| t[k].as_u64().unwrap_or(0);
                sets.push(MetricSet {
                    typ: "xds",
                    labels: vec![("type", kind.clone())],
                    values: vec![
                        ("acks", MetricValue::Counter(n("acks"))),
                        ("nacks", MetricValue::Counter(n("nacks"))),
                        ("resources", MetricValue::Gauge(n("resources") as i64)),
                    ],
                });
            }
            sets
        }),
    }
}
