//! Metrics carried over a hot upgrade, so Prometheus sees no counter reset: the old process
//! sends the counters it exported (its own plus what it carried itself) when it hands the admin
//! API over, and again, final, once it has drained; the new process exports each counter as that
//! base plus its own count. Gauges (connections and requests open now) are not carried: they
//! describe the process that answers.
//!
//! The JSON sent is an array of sets:
//! `{"type": "downstream", "labels": [["listener", "l"]], "counters": {"request_total": 5},
//! "seconds": {}, "histograms": {"request_time": {"buckets": [15 counts], "sum": 1.5,
//! "count": 5}}}`. The `process` set (this process's CPU time, memory, descriptors) is not sent.

use std::collections::HashSet;
use std::sync::Mutex;

use mosn_api::metrics::HistogramSnapshot;
use serde_json::{json, Map, Value as Json};

use crate::metrics::{MetricSet, Value};

/// A carried value.
#[derive(Debug, Clone)]
enum Carry {
    Counter(u64),
    Seconds(f64),
    Histogram(HistogramSnapshot),
}

/// A carried set: type, labels, values.
#[derive(Debug, Clone)]
struct Base {
    typ: String,
    labels: Vec<(String, String)>,
    values: Vec<(String, Carry)>,
}

/// Why a carried snapshot was refused.
#[derive(Debug, thiserror::Error)]
pub enum CarryError {
    /// Not the shape above; names the set (by index) and what is wrong.
    #[error("carried metrics, set {index}: {what}")]
    Shape {
        /// The set's index in the array.
        index: usize,
        /// What is wrong.
        what: String,
    },
}

/// The counters a previous process handed over (none until an upgrade brings some).
#[derive(Debug, Default)]
pub struct Carried(Mutex<Vec<Base>>);

impl Carried {
    /// The JSON to send a new process: the counters of `sets`, as exported (so with what this
    /// process carried itself).
    pub fn export(sets: &[MetricSet]) -> Json {
        let out: Vec<Json> = sets
            .iter()
            .filter(|s| s.typ != "process")
            .map(|s| {
                let (mut counters, mut seconds, mut histograms) =
                    (Map::new(), Map::new(), Map::new());
                for (name, v) in &s.values {
                    match v {
                        Value::Counter(c) => {
                            counters.insert(name.to_string(), json!(c));
                        }
                        Value::Seconds(x) => {
                            seconds.insert(name.to_string(), json!(x));
                        }
                        Value::Histogram(h) => {
                            histograms.insert(
                                name.to_string(),
                                json!({"buckets": h.buckets, "sum": h.sum_seconds, "count": h.count}),
                            );
                        }
                        Value::Gauge(_) => {}
                    }
                }
                json!({
                    "type": s.typ,
                    "labels": s.labels.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
                    "counters": counters,
                    "seconds": seconds,
                    "histograms": histograms,
                })
            })
            .collect();
        Json::Array(out)
    }

    /// Takes a previous process's export as the base, replacing the one held (each export
    /// holds everything up to its time, so a later one supersedes an earlier one). Returns the
    /// number of sets.
    ///
    /// Errors: [`CarryError`] when the JSON is not an export; the base held is then kept.
    pub fn replace(&self, v: &Json) -> Result<usize, CarryError> {
        let sets = v.as_array().ok_or(CarryError::Shape {
            index: 0,
            what: "not an array".into(),
        })?;
        let mut base = Vec::with_capacity(sets.len());
        for (index, s) in sets.iter().enumerate() {
            let bad = |what: &str| CarryError::Shape {
                index,
                what: what.to_string(),
            };
            let typ = s["type"].as_str().ok_or_else(|| bad("no type"))?;
            let mut labels = Vec::new();
            for l in s["labels"].as_array().ok_or_else(|| bad("no labels"))? {
                match (l[0].as_str(), l[1].as_str()) {
                    (Some(k), Some(v)) => labels.push((k.to_string(), v.to_string())),
                    _ => return Err(bad("a label is not [key, value]")),
                }
            }
            let mut values = Vec::new();
            for (k, c) in s["counters"].as_object().into_iter().flatten() {
                let c = c.as_u64().ok_or_else(|| bad("a counter is not a count"))?;
                values.push((k.clone(), Carry::Counter(c)));
            }
            for (k, x) in s["seconds"].as_object().into_iter().flatten() {
                let x = x.as_f64().ok_or_else(|| bad("seconds are not a number"))?;
                values.push((k.clone(), Carry::Seconds(x)));
            }
            for (k, h) in s["histograms"].as_object().into_iter().flatten() {
                let mut snap = HistogramSnapshot::default();
                let buckets = h["buckets"]
                    .as_array()
                    .filter(|b| b.len() == snap.buckets.len())
                    .ok_or_else(|| bad("a histogram does not have 15 buckets"))?;
                for (o, b) in snap.buckets.iter_mut().zip(buckets) {
                    *o = b.as_u64().ok_or_else(|| bad("a bucket is not a count"))?;
                }
                snap.sum_seconds = h["sum"].as_f64().unwrap_or(0.0);
                snap.count = h["count"].as_u64().unwrap_or(0);
                values.push((k.clone(), Carry::Histogram(snap)));
            }
            base.push(Base {
                typ: typ.to_string(),
                labels,
                values,
            });
        }
        let n = base.len();
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = base;
        Ok(n)
    }

    /// Adds the base to `sets`: each carried counter to the same-named value of the set with the
    /// same type and labels; a set this process does not have (a listener or host it has not, or
    /// not yet) is added as carried, so no exported counter goes down.
    pub fn add_to(&self, sets: &mut Vec<MetricSet>) {
        let base = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for b in base.iter() {
            let same = |s: &MetricSet| {
                s.typ == b.typ
                    && s.labels.len() == b.labels.len()
                    && s.labels
                        .iter()
                        .zip(&b.labels)
                        .all(|((k, v), (bk, bv))| *k == bk && v == bv)
            };
            let i = match sets.iter().position(same) {
                Some(i) => i,
                None => {
                    sets.push(MetricSet {
                        typ: intern(&b.typ),
                        labels: b
                            .labels
                            .iter()
                            .map(|(k, v)| (intern(k), v.clone()))
                            .collect(),
                        values: Vec::new(),
                    });
                    sets.len() - 1
                }
            };
            let values = &mut sets[i].values;
            for (name, carry) in &b.values {
                match (values.iter_mut().find(|(n, _)| n == name), carry) {
                    (Some((_, Value::Counter(c))), Carry::Counter(x)) => *c += x,
                    (Some((_, Value::Seconds(c))), Carry::Seconds(x)) => *c += x,
                    (Some((_, Value::Histogram(h))), Carry::Histogram(x)) => h.merge(x),
                    // Another kind under the same name: this process's value stands.
                    (Some(_), _) => {}
                    (None, c) => values.push((
                        intern(name),
                        match c {
                            Carry::Counter(x) => Value::Counter(*x),
                            Carry::Seconds(x) => Value::Seconds(*x),
                            Carry::Histogram(h) => Value::Histogram(h.clone()),
                        },
                    )),
                }
            }
        }
    }
}

/// A `'static` copy of a metric or label name that came over the wire: names are few and
/// repeat, so each distinct one is kept once for the life of the process.
fn intern(s: &str) -> &'static str {
    static NAMES: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    let names = names.get_or_insert_with(HashSet::new);
    match names.get(s) {
        Some(n) => n,
        None => {
            let n: &'static str = Box::leak(s.to_string().into_boxed_str());
            names.insert(n);
            n
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(listener: &str, total: u64, active: i64) -> MetricSet {
        let mut h = HistogramSnapshot::default();
        h.buckets[2] = total;
        h.count = total;
        h.sum_seconds = 0.5;
        MetricSet {
            typ: "downstream",
            labels: vec![("listener", listener.to_string())],
            values: vec![
                ("request_total", Value::Counter(total)),
                ("request_active", Value::Gauge(active)),
                ("request_time", Value::Histogram(h)),
            ],
        }
    }

    #[test]
    fn counters_and_histograms_add_up_gauges_do_not() {
        let old = vec![set("l", 100, 3), set("gone", 7, 0)];
        let carried = Carried::default();
        assert_eq!(carried.replace(&Carried::export(&old)).unwrap(), 2);
        let mut now = vec![set("l", 5, 1)];
        carried.add_to(&mut now);
        assert_eq!(now[0].values[0], ("request_total", Value::Counter(105)));
        assert_eq!(now[0].values[1], ("request_active", Value::Gauge(1)));
        let Value::Histogram(h) = &now[0].values[2].1 else {
            panic!("{:?}", now[0].values[2]);
        };
        assert_eq!((h.count, h.buckets[2], h.sum_seconds), (105, 105, 1.0));
        // A listener this process does not have keeps its carried counters.
        assert_eq!(now[1].labels, vec![("listener", "gone".to_string())]);
        assert_eq!(now[1].values[0], ("request_total", Value::Counter(7)));
    }

    #[test]
    fn a_later_export_replaces_the_base() {
        let carried = Carried::default();
        carried
            .replace(&Carried::export(&[set("l", 10, 0)]))
            .unwrap();
        carried
            .replace(&Carried::export(&[set("l", 30, 0)]))
            .unwrap();
        let mut now = vec![set("l", 1, 0)];
        carried.add_to(&mut now);
        assert_eq!(now[0].values[0], ("request_total", Value::Counter(31)));
    }

    #[test]
    fn a_bad_export_is_refused_and_the_base_kept() {
        let carried = Carried::default();
        carried
            .replace(&Carried::export(&[set("l", 10, 0)]))
            .unwrap();
        let e = carried
            .replace(
                &json!([{"type": "downstream", "labels": [["listener", "l"]],
                "counters": {"request_total": -1}}]),
            )
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "carried metrics, set 0: a counter is not a count"
        );
        let mut now = vec![set("l", 1, 0)];
        carried.add_to(&mut now);
        assert_eq!(now[0].values[0], ("request_total", Value::Counter(11)));
    }
}
