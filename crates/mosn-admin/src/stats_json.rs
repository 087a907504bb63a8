//! MOSN's JSON stats (`/api/v1/stats`, its console sink): `{type: {namespace: {name: "value"}}}`
//! with the namespace `k1.v1.k2.v2` of the sorted labels and every value a string. Histograms give
//! `<name>_count` and `<name>_sum` (seconds) where MOSN gives `_min`/`_max`.

use serde_json::{Map, Value as Json};

use crate::metrics::{MetricSet, Value};

fn namespace(set: &MetricSet) -> String {
    set.labels
        .iter()
        .map(|(k, v)| format!("{k}.{v}"))
        .collect::<Vec<_>>()
        .join(".")
}

/// Renders sets as MOSN's stats JSON.
pub fn render(sets: &[&MetricSet]) -> Json {
    let mut all = Map::new();
    for set in sets {
        let typ = all
            .entry(set.typ)
            .or_insert_with(|| Json::Object(Map::new()));
        let mut data = Map::new();
        for (name, v) in &set.values {
            match v {
                Value::Counter(c) => {
                    data.insert(name.to_string(), Json::String(c.to_string()));
                }
                Value::Seconds(s) => {
                    data.insert(name.to_string(), Json::String(s.to_string()));
                }
                Value::Gauge(g) => {
                    data.insert(name.to_string(), Json::String(g.to_string()));
                }
                Value::Histogram(h) => {
                    data.insert(format!("{name}_count"), Json::String(h.count.to_string()));
                    data.insert(
                        format!("{name}_sum"),
                        Json::String(h.sum_seconds.to_string()),
                    );
                }
            }
        }
        if let Json::Object(t) = typ {
            t.insert(namespace(set), Json::Object(data));
        }
    }
    Json::Object(all)
}

/// `/api/v1/stats_glob`: the `downstream.proxy.global` set as `name:value` lines.
pub fn glob(set: Option<&MetricSet>) -> String {
    let mut out = String::new();
    for (name, v) in set.map_or(&[][..], |s| s.values.as_slice()) {
        match v {
            Value::Counter(c) => out.push_str(&format!("{name}:{c}\n")),
            Value::Seconds(s) => out.push_str(&format!("{name}:{s}\n")),
            Value::Gauge(g) => out.push_str(&format!("{name}:{g}\n")),
            Value::Histogram(h) => {
                out.push_str(&format!(
                    "{name}_count:{}\n{name}_sum:{}\n",
                    h.count, h.sum_seconds
                ));
            }
        }
    }
    out
}
