//! Prometheus text exposition (format 0.0.4) of the metric sets, with MOSN's names:
//! `<type>_<name>{labels}`, e.g. `downstream_request_total{listener="serverListener"}`.
//!
//! Written here rather than with `prometheus-client`: that crate follows OpenMetrics and appends
//! `_total` to every counter, which would rename MOSN's `downstream_request_total` to
//! `downstream_request_total_total` and break existing dashboards. Histograms export real buckets
//! (`_bucket`, `_sum`, `_count`, in seconds) where MOSN exports only `_min`/`_max` gauges.

use std::fmt::Write;

use mosn_api::metrics::BUCKETS_SECONDS;
use mosn_config::Metrics;

use crate::metrics::{MetricSet, Value};

/// What `metrics.stats_matcher` lets through.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    reject_all: bool,
    exclusion_labels: Vec<String>,
    exclusion_keys: Vec<String>,
}

impl Matcher {
    /// From the config's `metrics.stats_matcher`.
    pub fn new(m: &Metrics) -> Self {
        Matcher {
            reject_all: m.reject_all,
            exclusion_labels: m.exclusion_labels.clone(),
            exclusion_keys: m.exclusion_keys.clone(),
        }
    }

    fn set_ok(&self, s: &MetricSet) -> bool {
        !self.reject_all
            && !s
                .labels
                .iter()
                .any(|(k, _)| self.exclusion_labels.iter().any(|e| e == k))
    }

    fn key_ok(&self, name: &str) -> bool {
        !self.exclusion_keys.iter().any(|e| e == name)
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels(set: &MetricSet, extra: Option<(&str, &str)>) -> String {
    let mut parts: Vec<String> = set
        .labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

/// Renders the sets that `matcher` lets through. Samples of one metric are grouped under one
/// `# TYPE` line, as the format requires.
pub fn render(sets: &[MetricSet], matcher: &Matcher) -> String {
    // (name, type, lines) in first-seen order.
    let mut families: Vec<(String, &'static str, String)> = Vec::new();
    let mut family = |name: String, kind: &'static str| -> usize {
        match families.iter().position(|(n, _, _)| *n == name) {
            Some(i) => i,
            None => {
                families.push((name, kind, String::new()));
                families.len() - 1
            }
        }
    };
    let mut out_lines: Vec<(usize, String)> = Vec::new();
    for set in sets.iter().filter(|s| matcher.set_ok(s)) {
        for (name, value) in set.values.iter().filter(|(n, _)| matcher.key_ok(n)) {
            let full = format!("{}_{name}", set.typ);
            match value {
                Value::Counter(c) => {
                    let i = family(full.clone(), "counter");
                    out_lines.push((i, format!("{full}{} {c}\n", labels(set, None))));
                }
                Value::Seconds(s) => {
                    let i = family(full.clone(), "counter");
                    out_lines.push((i, format!("{full}{} {s}\n", labels(set, None))));
                }
                Value::Gauge(g) => {
                    let i = family(full.clone(), "gauge");
                    out_lines.push((i, format!("{full}{} {g}\n", labels(set, None))));
                }
                Value::Histogram(h) => {
                    let i = family(full.clone(), "histogram");
                    let mut text = String::new();
                    let mut cumulative = 0;
                    for (k, b) in h.buckets.iter().enumerate() {
                        cumulative += b;
                        let le = BUCKETS_SECONDS
                            .get(k)
                            .map_or("+Inf".to_string(), |v| v.to_string());
                        let _ = writeln!(
                            text,
                            "{full}_bucket{} {cumulative}",
                            labels(set, Some(("le", &le)))
                        );
                    }
                    let _ = writeln!(text, "{full}_sum{} {}", labels(set, None), h.sum_seconds);
                    let _ = writeln!(text, "{full}_count{} {}", labels(set, None), h.count);
                    out_lines.push((i, text));
                }
            }
        }
    }
    for (i, line) in out_lines {
        families[i].2.push_str(&line);
    }
    let mut out = String::new();
    for (name, kind, lines) in families {
        let _ = writeln!(out, "# TYPE {name} {kind}");
        out.push_str(&lines);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mosn_api::metrics::HistogramSnapshot;

    fn sets() -> Vec<MetricSet> {
        let mut h = HistogramSnapshot::default();
        h.buckets[0] = 2;
        h.buckets[14] = 1;
        h.count = 3;
        h.sum_seconds = 7.5;
        vec![
            MetricSet {
                typ: "downstream",
                labels: vec![("listener", "a\"b".into())],
                values: vec![
                    ("request_total", Value::Counter(3)),
                    ("request_time", Value::Histogram(h)),
                ],
            },
            MetricSet {
                typ: "downstream",
                labels: vec![("proxy", "global".into())],
                values: vec![("request_total", Value::Counter(5))],
            },
        ]
    }

    #[test]
    fn groups_families_and_renders_buckets() {
        let t = render(&sets(), &Matcher::default());
        assert_eq!(
            t.matches("# TYPE downstream_request_total counter").count(),
            1
        );
        let i = t
            .find("downstream_request_total{listener=\"a\\\"b\"} 3")
            .unwrap();
        let j = t
            .find("downstream_request_total{proxy=\"global\"} 5")
            .unwrap();
        let k = t.find("# TYPE downstream_request_time histogram").unwrap();
        assert!(i < j && j < k, "one family's samples stay together:\n{t}");
        assert!(t.contains("downstream_request_time_bucket{listener=\"a\\\"b\",le=\"0.0001\"} 2"));
        assert!(t.contains("downstream_request_time_bucket{listener=\"a\\\"b\",le=\"5\"} 2"));
        assert!(t.contains("downstream_request_time_bucket{listener=\"a\\\"b\",le=\"+Inf\"} 3"));
        assert!(t.contains("downstream_request_time_count{listener=\"a\\\"b\"} 3"));
    }

    #[test]
    fn stats_matcher_excludes() {
        let m = Matcher::new(&Metrics {
            exclusion_labels: vec!["listener".into()],
            exclusion_keys: vec!["request_time".into()],
            ..Default::default()
        });
        let t = render(&sets(), &m);
        assert!(!t.contains("listener="), "{t}");
        assert!(t.contains("downstream_request_total{proxy=\"global\"} 5"));
        let none = render(
            &sets(),
            &Matcher::new(&Metrics {
                reject_all: true,
                ..Default::default()
            }),
        );
        assert!(none.is_empty());
    }
}
