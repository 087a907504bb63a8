//! A point-in-time view of every metric, summed across workers: the one model both the Prometheus
//! exposition and MOSN's JSON stats are written from.
//!
//! Metric sets follow MOSN: a type (`downstream`, `upstream`, `process`), sorted labels
//! (`proxy=global`, `listener=NAME`, `cluster=NAME`, `cluster=NAME,host=ADDR`) and named values.

use std::sync::Arc;

use mosn_api::metrics::HistogramSnapshot;
use mosn_proxy::stats::{DownstreamStats, WorkerStats, STATUS_CODES};
use mosn_proxy::Snapshot;
use mosn_upstream::stats::UpstreamStats;

/// One value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A monotonic counter.
    Counter(u64),
    /// A monotonic counter of seconds.
    Seconds(f64),
    /// A gauge.
    Gauge(i64),
    /// A histogram of durations in seconds.
    Histogram(HistogramSnapshot),
}

/// Metrics sharing a type and labels.
#[derive(Debug, Clone)]
pub struct MetricSet {
    /// `downstream`, `upstream`, `process`, or a filter's type (`grpc`).
    pub typ: &'static str,
    /// Sorted `(key, value)` labels.
    pub labels: Vec<(&'static str, String)>,
    /// `(name, value)`; the exported name is `<typ>_<name>`.
    pub values: Vec<(&'static str, Value)>,
}

impl MetricSet {
    /// MOSN's key for the set: `type.k1.v1.k2.v2` (as `?key=` of `/api/v1/stats` takes it).
    pub fn key(&self) -> String {
        let mut k = self.typ.to_string();
        for (l, v) in &self.labels {
            k.push('.');
            k.push_str(l);
            k.push('.');
            k.push_str(v);
        }
        k
    }
}

fn downstream(sets: &[&DownstreamStats]) -> Vec<(&'static str, Value)> {
    let c = |f: fn(&DownstreamStats) -> u64| Value::Counter(sets.iter().map(|s| f(s)).sum());
    let g = |f: fn(&DownstreamStats) -> i64| Value::Gauge(sets.iter().map(|s| f(s)).sum());
    let mut v = vec![
        ("connection_total", c(|s| s.connection_total.get())),
        ("connection_destroy", c(|s| s.connection_destroy.get())),
        ("connection_active", g(|s| s.connection_active.get())),
        ("bytes_read_total", c(|s| s.bytes_read_total.get())),
        ("bytes_write_total", c(|s| s.bytes_write_total.get())),
        ("request_total", c(|s| s.request_total.get())),
        ("request_active", g(|s| s.request_active.get())),
        ("request_failed", c(|s| s.request_failed.get())),
        ("tls_handshake_failed", c(|s| s.tls_handshake_failed.get())),
        ("udp_session_overflow", c(|s| s.udp_session_overflow.get())),
    ];
    const NAMES: [&str; 14] = [
        "request_200_total",
        "request_206_total",
        "request_302_total",
        "request_304_total",
        "request_400_total",
        "request_403_total",
        "request_404_total",
        "request_416_total",
        "request_499_total",
        "request_500_total",
        "request_502_total",
        "request_503_total",
        "request_504_total",
        "request_other_code",
    ];
    debug_assert_eq!(NAMES.len(), STATUS_CODES.len() + 1);
    for (i, n) in NAMES.iter().enumerate() {
        v.push((
            n,
            Value::Counter(sets.iter().map(|s| s.status[i].get()).sum()),
        ));
    }
    let mut h = HistogramSnapshot::default();
    for s in sets {
        h.merge(&s.request_time.snapshot());
    }
    v.push(("request_time", Value::Histogram(h)));
    v
}

fn upstream(sets: &[&UpstreamStats]) -> Vec<(&'static str, Value)> {
    let c = |f: fn(&UpstreamStats) -> u64| Value::Counter(sets.iter().map(|s| f(s)).sum());
    let g = |f: fn(&UpstreamStats) -> i64| Value::Gauge(sets.iter().map(|s| f(s)).sum());
    let mut h = HistogramSnapshot::default();
    for s in sets {
        h.merge(&s.request_duration_time.snapshot());
    }
    vec![
        ("connection_total", c(|s| s.connection_total.get())),
        ("connection_close", c(|s| s.connection_close.get())),
        ("connection_active", g(|s| s.connection_active.get())),
        ("connection_con_fail", c(|s| s.connection_con_fail.get())),
        (
            "connection_bytes_read_total",
            c(|s| s.connection_bytes_read_total.get()),
        ),
        (
            "connection_bytes_write",
            c(|s| s.connection_bytes_write.get()),
        ),
        ("request_total", c(|s| s.request_total.get())),
        ("request_active", g(|s| s.request_active.get())),
        ("request_timeout", c(|s| s.request_timeout.get())),
        ("request_remote_reset", c(|s| s.request_remote_reset.get())),
        (
            "request_pending_overflow",
            c(|s| s.request_pending_overflow.get()),
        ),
        ("request_retry", c(|s| s.request_retry.get())),
        (
            "request_retry_overflow",
            c(|s| s.request_retry_overflow.get()),
        ),
        ("response_success", c(|s| s.response_success.get())),
        ("response_failed", c(|s| s.response_failed.get())),
        ("request_duration_time", Value::Histogram(h)),
    ]
}

/// Process figures, as Prometheus' process collector names them: resident memory (bytes), CPU
/// time (seconds), open file descriptors. Read from `/proc/self`; absent values are skipped.
fn process() -> MetricSet {
    let mut values = Vec::new();
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name (which may hold spaces) start at ") ".
        if let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) {
            let f: Vec<&str> = rest.split_whitespace().collect();
            let tick = 100.0; // USER_HZ on Linux
            if let (Some(u), Some(s)) = (f.get(11), f.get(12)) {
                if let (Ok(u), Ok(s)) = (u.parse::<f64>(), s.parse::<f64>()) {
                    values.push(("cpu_seconds_total", Value::Seconds((u + s) / tick)));
                }
            }
            if let Some(Ok(pages)) = f.get(21).map(|r| r.parse::<i64>()) {
                values.push(("resident_memory_bytes", Value::Gauge(pages * 4096)));
            }
        }
    }
    if let Ok(d) = std::fs::read_dir("/proc/self/fd") {
        values.push(("open_fds", Value::Gauge(d.count() as i64)));
    }
    MetricSet {
        typ: "process",
        labels: Vec::new(),
        values,
    }
}

/// Reads every metric: `downstream{proxy=global}`, `downstream{listener}`, `upstream{cluster}`,
/// `upstream{cluster,host}`, the stream filters' sets (`grpc{service}`) and `process`.
pub fn collect(snapshot: &Snapshot, workers: &[Arc<WorkerStats>]) -> Vec<MetricSet> {
    let mut out = Vec::new();
    let all: Vec<&DownstreamStats> = workers.iter().flat_map(|w| w.listeners.iter()).collect();
    out.push(MetricSet {
        typ: "downstream",
        labels: vec![("proxy", "global".into())],
        values: downstream(&all),
    });
    for (i, l) in snapshot.listeners.iter().enumerate() {
        if l.removed_at.is_some() {
            continue;
        }
        let sets: Vec<&DownstreamStats> =
            workers.iter().filter_map(|w| w.listeners.get(i)).collect();
        out.push(MetricSet {
            typ: "downstream",
            labels: vec![("listener", l.name.clone())],
            values: downstream(&sets),
        });
    }
    for c in &snapshot.clusters.clusters {
        let sets: Vec<&UpstreamStats> = workers
            .iter()
            .filter_map(|w| w.upstream.clusters.get(c.index))
            .collect();
        out.push(MetricSet {
            typ: "upstream",
            labels: vec![("cluster", c.name.clone())],
            values: upstream(&sets),
        });
        for h in &c.hosts {
            let sets: Vec<&UpstreamStats> = workers
                .iter()
                .filter_map(|w| w.upstream.hosts.get(h.id))
                .collect();
            out.push(MetricSet {
                typ: "upstream",
                labels: vec![("cluster", c.name.clone()), ("host", h.address.to_string())],
                values: upstream(&sets),
            });
        }
    }
    out.extend(filter_sets(snapshot));
    out.push(process());
    out
}

/// The stream filters' own counters (e.g. `grpc{service}`), sets with equal type and labels
/// summed across listeners.
fn filter_sets(snapshot: &Snapshot) -> Vec<MetricSet> {
    let mut sets: Vec<MetricSet> = Vec::new();
    for m in snapshot
        .listeners
        .iter()
        .flat_map(|l| l.filters.iter())
        .flat_map(|f| f.metrics())
    {
        match sets
            .iter_mut()
            .find(|s| s.typ == m.typ && s.labels == m.labels)
        {
            Some(s) => {
                for (v, (_, n)) in s.values.iter_mut().zip(&m.counters) {
                    if let (_, Value::Counter(c)) = v {
                        *c += n;
                    }
                }
            }
            None => sets.push(MetricSet {
                typ: m.typ,
                labels: m.labels,
                values: m
                    .counters
                    .into_iter()
                    .map(|(k, n)| (k, Value::Counter(n)))
                    .collect(),
            }),
        }
    }
    sets
}
