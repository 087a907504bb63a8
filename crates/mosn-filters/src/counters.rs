//! Request, success and failure counters by label values that come from clients (a gRPC service,
//! a Dubbo service and method), shared by the metric filters. Label sets are capped: past
//! `max` distinct sets, streams count under [`OVERFLOW`] in every label, so a client cannot grow
//! the proxy's memory without bound.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use mosn_api::FilterMetrics;

/// The label value for streams past the cap.
pub const OVERFLOW: &str = "_overflow";

/// The counters of one label set.
#[derive(Debug, Default)]
pub struct Counts {
    requests: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
}

impl Counts {
    /// Counts one finished stream.
    pub fn add(&self, ok: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let c = if ok { &self.succeeded } else { &self.failed };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counters by label values, under MOSN's names `request_total`, `response_succ_total` and
/// `response_fail_total`.
#[derive(Debug)]
pub struct Labelled {
    typ: &'static str,
    names: &'static [&'static str],
    max: usize,
    sets: RwLock<HashMap<Vec<String>, Arc<Counts>>>,
}

impl Labelled {
    /// Counters of metric type `typ` with label `names`, at most `max` label sets.
    pub fn new(typ: &'static str, names: &'static [&'static str], max: usize) -> Self {
        Labelled {
            typ,
            names,
            max,
            sets: RwLock::new(HashMap::new()),
        }
    }

    /// The counters of `values` (one per label name), or of the overflow set past the cap.
    pub fn counts(&self, values: &[&str]) -> Arc<Counts> {
        let key: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        if let Some(c) = self.read().get(&key) {
            return c.clone();
        }
        let mut map = match self.sets.write() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        let key = if map.len() >= self.max && !map.contains_key(&key) {
            vec![OVERFLOW.to_string(); values.len()]
        } else {
            key
        };
        map.entry(key).or_default().clone()
    }

    fn read(&self) -> RwLockReadGuard<'_, HashMap<Vec<String>, Arc<Counts>>> {
        match self.sets.read() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        }
    }

    /// Every label set's counters, sorted by labels.
    pub fn export(&self) -> Vec<FilterMetrics> {
        let mut out: Vec<FilterMetrics> = self
            .read()
            .iter()
            .map(|(values, c)| FilterMetrics {
                typ: self.typ,
                labels: self.names.iter().copied().zip(values.clone()).collect(),
                counters: vec![
                    ("request_total", c.requests.load(Ordering::Relaxed)),
                    ("response_succ_total", c.succeeded.load(Ordering::Relaxed)),
                    ("response_fail_total", c.failed.load(Ordering::Relaxed)),
                ],
            })
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }
}
