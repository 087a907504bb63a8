//! MOSN's admin API (`pkg/admin/server/apis.go`): the same paths, methods and answers, so scripts
//! written for MOSN keep working.
//!
//! | path | method | answer |
//! |---|---|---|
//! | `/` | GET | the list of paths |
//! | `/api/v1/version` | GET | the version string |
//! | `/api/v1/config_dump` | GET | the effective config; `mosnconfig`, `allrouters`, `allclusters`, `alllisteners`, `router=NAME`, `cluster=NAME`, `listener=NAME`; `private_key` values redacted |
//! | `/api/v1/stats` | GET | every metric as MOSN's JSON; `?key=type.label.value` for one set |
//! | `/api/v1/stats_glob` | GET | `downstream.proxy.global` as `name:value` lines |
//! | `/api/v1/states` | GET | `pid=<pid>&state=<stage>` (6 running, 8 draining) |
//! | `/api/v1/update_loglevel` | POST | `{"log_path": P, "log_level": L}` |
//! | `/api/v1/get_loglevel` | GET | `{log_path: level}` |
//! | `/api/v1/features` | GET | the features this build has |
//! | `/api/v1/env` | GET | `?key=A&key=B` → `{"env": {...}, "not_found": [...]}` |
//!
//! An unknown path is 404 with the list of paths, a wrong method 405, a bad body or query 400 with a
//! message saying what is wrong.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use http::{Method, StatusCode};
use serde_json::{json, Value as Json};

use crate::metrics;
use crate::prometheus::Matcher;
use crate::stats_json;

/// MOSN's stage numbers (`pkg/stagemanager`): `Running`.
pub const STAGE_RUNNING: u8 = 6;
/// MOSN's stage numbers: `GracefulStopping`.
pub const STAGE_GRACEFUL_STOPPING: u8 = 8;

/// Changes the error log's level; returns an error message for an unknown level.
pub type SetLevel = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Everything the admin API reads or changes.
pub struct AdminState {
    /// The effective config (as loaded, then as reloaded or extended at run time), with
    /// `private_key` values redacted; `config_dump` shows it.
    pub config: Arc<Mutex<Json>>,
    /// The stats of the running server.
    pub stats: mosn_proxy::server::StatsView,
    /// What `metrics.stats_matcher` lets through (Prometheus sinks only).
    pub matcher: Matcher,
    /// The error log's path as configured (`stdout`, `stderr` or a file).
    pub log_path: String,
    /// The error log's current level.
    pub log_level: Mutex<String>,
    /// Changes the level.
    pub set_level: SetLevel,
    /// The process stage (MOSN's numbering).
    pub stage: AtomicU8,
    /// Extensions (`extends`) that report state: `/api/v1/extends` answers `{name: state}`, and
    /// their metric sets join the others.
    pub extensions: Vec<Extension>,
    /// Counters a previous process handed over on a hot upgrade, added to this one's.
    pub carried: crate::carried::Carried,
}

/// A running extension's reports (e.g. `dubbo_registry`).
pub struct Extension {
    /// The `extends` type name.
    pub name: &'static str,
    /// Its state, as JSON.
    pub state: Box<dyn Fn() -> Json + Send + Sync>,
    /// Its metric sets.
    pub metrics: Box<dyn Fn() -> Vec<metrics::MetricSet> + Send + Sync>,
}

impl AdminState {
    /// Every metric set: the server's and the extensions'.
    pub fn metric_sets(&self) -> Vec<metrics::MetricSet> {
        let mut sets = metrics::collect(&self.stats.snapshot(), &self.stats.workers);
        for e in &self.extensions {
            sets.extend((e.metrics)());
        }
        self.carried.add_to(&mut sets);
        sets
    }
}

const PATHS: [&str; 12] = [
    "/",
    "/api/v1/version",
    "/api/v1/config_dump",
    "/api/v1/stats",
    "/api/v1/stats_glob",
    "/api/v1/states",
    "/api/v1/update_loglevel",
    "/api/v1/get_loglevel",
    "/api/v1/features",
    "/api/v1/env",
    "/api/v1/extends",
    "/metrics (on the prometheus sink's port)",
];

/// An admin answer: status, content type, body.
pub struct Answer {
    /// HTTP status.
    pub status: StatusCode,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Body.
    pub body: String,
}

fn text(status: StatusCode, body: impl Into<String>) -> Answer {
    Answer {
        status,
        content_type: "text/plain; charset=utf-8",
        body: body.into(),
    }
}

fn json_answer(v: &Json) -> Answer {
    Answer {
        status: StatusCode::OK,
        content_type: "application/json",
        body: serde_json::to_string_pretty(v).unwrap_or_default(),
    }
}

fn paths_text() -> String {
    let mut s = String::from("mosn-rs admin API; paths:\n");
    for p in PATHS {
        s.push_str(p);
        s.push('\n');
    }
    s
}

/// Replaces every `private_key` value (any case, any depth) with `"[redacted]"`.
pub fn redact(v: &mut Json) {
    match v {
        Json::Object(m) => {
            for (k, x) in m.iter_mut() {
                if k.eq_ignore_ascii_case("private_key") && !x.is_null() {
                    *x = Json::String("[redacted]".into());
                } else {
                    redact(x);
                }
            }
        }
        Json::Array(a) => a.iter_mut().for_each(redact),
        _ => {}
    }
}

fn query_pairs(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// Percent-decoding of a query component (`+` is a space); a bad escape is kept as is.
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Case-insensitive key lookup in a JSON object.
fn get_ci<'a>(v: &'a Json, key: &str) -> Option<&'a Json> {
    v.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

fn named<'a>(list: Option<&'a Json>, key: &str, name: &str) -> Option<&'a Json> {
    list?
        .as_array()?
        .iter()
        .find(|x| get_ci(x, key).and_then(Json::as_str) == Some(name))
}

fn config_dump(state: &AdminState, q: &[(String, String)]) -> Answer {
    let cfg = &*state.config.lock().unwrap_or_else(|e| e.into_inner());
    let server = get_ci(cfg, "servers").and_then(|s| s.get(0));
    let routers = server.and_then(|s| get_ci(s, "routers"));
    let listeners = server.and_then(|s| get_ci(s, "listeners"));
    let clusters = get_ci(cfg, "cluster_manager").and_then(|c| get_ci(c, "clusters"));
    let empty = Json::Array(Vec::new());
    if q.is_empty() {
        return json_answer(cfg);
    }
    let mut out = serde_json::Map::new();
    for (k, v) in q {
        let (key, found) = match k.as_str() {
            "mosnconfig" => ("mosn_config", Some(cfg.clone())),
            "allrouters" => ("routers", Some(routers.unwrap_or(&empty).clone())),
            "allclusters" => ("clusters", Some(clusters.unwrap_or(&empty).clone())),
            "alllisteners" => ("listeners", Some(listeners.unwrap_or(&empty).clone())),
            "router" => ("router", named(routers, "router_config_name", v).cloned()),
            "cluster" => ("cluster", named(clusters, "name", v).cloned()),
            "listener" => ("listener", named(listeners, "name", v).cloned()),
            other => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("unknown config_dump parameter {other:?} (mosnconfig, allrouters, allclusters, alllisteners, router=NAME, cluster=NAME, listener=NAME)\n"),
                )
            }
        };
        match found {
            Some(x) => {
                out.insert(key.to_string(), x);
            }
            None => return text(StatusCode::NOT_FOUND, format!("no {key} named {v:?}\n")),
        }
    }
    match out.len() {
        1 => json_answer(out.values().next().unwrap_or(&Json::Null)),
        _ => json_answer(&Json::Object(out)),
    }
}

fn update_loglevel(state: &AdminState, body: &[u8]) -> Answer {
    let v: Json = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("body is not JSON: {e}\n")),
    };
    let (Some(path), Some(level)) = (
        v.get("log_path").and_then(Json::as_str),
        v.get("log_level").and_then(Json::as_str),
    ) else {
        return text(
            StatusCode::BAD_REQUEST,
            "body needs string fields \"log_path\" and \"log_level\"\n",
        );
    };
    if path != state.log_path {
        return text(
            StatusCode::BAD_REQUEST,
            format!(
                "unknown log_path {path:?} (this process logs to {:?})\n",
                state.log_path
            ),
        );
    }
    match (state.set_level)(level) {
        Ok(()) => {
            if let Ok(mut l) = state.log_level.lock() {
                *l = level.to_ascii_uppercase();
            }
            text(StatusCode::OK, "update log level success\n")
        }
        Err(e) => text(StatusCode::BAD_REQUEST, format!("{e}\n")),
    }
}

/// Answers one admin request.
pub fn answer(
    state: &Arc<AdminState>,
    method: &Method,
    path: &str,
    query: Option<&str>,
    body: &[u8],
) -> Answer {
    let want = |m: &Method| -> Option<Answer> {
        (method != m).then(|| {
            text(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{path} takes {m}\n"),
            )
        })
    };
    let q = query_pairs(query);
    match path {
        "/" => want(&Method::GET).unwrap_or_else(|| text(StatusCode::OK, paths_text())),
        "/api/v1/version" => want(&Method::GET).unwrap_or_else(|| {
            text(
                StatusCode::OK,
                format!("mosn-rs {}", env!("CARGO_PKG_VERSION")),
            )
        }),
        "/api/v1/config_dump" => want(&Method::GET).unwrap_or_else(|| config_dump(state, &q)),
        "/api/v1/stats" => want(&Method::GET).unwrap_or_else(|| {
            let sets = state.metric_sets();
            match q.as_slice() {
                [] => json_answer(&stats_json::render(&sets.iter().collect::<Vec<_>>())),
                [(k, v)] if k == "key" => match sets.iter().find(|s| s.key() == *v) {
                    Some(s) => json_answer(&stats_json::render(&[s])),
                    None => text(StatusCode::OK, format!("no metrics key: {v}")),
                },
                _ => text(StatusCode::BAD_REQUEST, "only support one parameter: key\n"),
            }
        }),
        "/api/v1/stats_glob" => want(&Method::GET).unwrap_or_else(|| {
            let sets = state.metric_sets();
            text(
                StatusCode::OK,
                stats_json::glob(sets.iter().find(|s| s.key() == "downstream.proxy.global")),
            )
        }),
        "/api/v1/states" => want(&Method::GET).unwrap_or_else(|| {
            text(
                StatusCode::OK,
                format!(
                    "pid={}&state={}\n",
                    std::process::id(),
                    state.stage.load(Ordering::Relaxed)
                ),
            )
        }),
        "/api/v1/update_loglevel" => {
            want(&Method::POST).unwrap_or_else(|| update_loglevel(state, body))
        }
        "/api/v1/get_loglevel" => want(&Method::GET).unwrap_or_else(|| {
            let level = state
                .log_level
                .lock()
                .map(|l| l.clone())
                .unwrap_or_default();
            json_answer(&json!({ state.log_path.clone(): level }))
        }),
        "/api/v1/features" => want(&Method::GET).unwrap_or_else(|| {
            // Probed from the config parser: what this build accepts, never a kept list.
            let f: serde_json::Map<String, serde_json::Value> = mosn_config::features()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.into()))
                .collect();
            json_answer(&serde_json::Value::Object(f))
        }),
        "/api/v1/extends" => want(&Method::GET).unwrap_or_else(|| {
            let m: serde_json::Map<String, Json> = state
                .extensions
                .iter()
                .map(|e| (e.name.to_string(), (e.state)()))
                .collect();
            json_answer(&Json::Object(m))
        }),
        "/api/v1/env" => want(&Method::GET).unwrap_or_else(|| {
            let keys: Vec<&String> = q
                .iter()
                .filter(|(k, _)| k == "key")
                .map(|(_, v)| v)
                .collect();
            if keys.is_empty() {
                return text(
                    StatusCode::BAD_REQUEST,
                    "no env key: pass ?key=NAME (repeatable)\n",
                );
            }
            let mut env = serde_json::Map::new();
            let mut not_found = Vec::new();
            for k in keys {
                match std::env::var(k) {
                    Ok(v) => {
                        env.insert(k.clone(), Json::String(v));
                    }
                    Err(_) => not_found.push(Json::String(k.clone())),
                }
            }
            json_answer(&json!({"env": env, "not_found": not_found}))
        }),
        _ => text(
            StatusCode::NOT_FOUND,
            format!("no such path {path}\n{}", paths_text()),
        ),
    }
}
