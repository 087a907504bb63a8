//! Upstream metrics of one worker, per cluster and per host, with MOSN's names
//! (`pkg/metrics/upstream.go`): exported as `upstream_<name>{cluster=...}` and
//! `upstream_<name>{cluster=...,host=...}`.

use mosn_api::metrics::{Counter, Gauge, Histogram};

/// Counters of one cluster or one host.
#[derive(Debug, Default)]
pub struct UpstreamStats {
    /// `connection_total`: connections opened.
    pub connection_total: Counter,
    /// `connection_close`: connections closed.
    pub connection_close: Counter,
    /// `connection_active`: connections open.
    pub connection_active: Gauge,
    /// `connection_con_fail`: connects that failed or timed out.
    pub connection_con_fail: Counter,
    /// `connection_bytes_read_total`: bytes read from the upstream.
    pub connection_bytes_read_total: Counter,
    /// `connection_bytes_write`: bytes written to the upstream.
    pub connection_bytes_write: Counter,
    /// `request_total`: requests sent (each try counts).
    pub request_total: Counter,
    /// `request_active`: requests in flight.
    pub request_active: Gauge,
    /// `request_timeout`: tries that hit the route or per-try timeout.
    pub request_timeout: Counter,
    /// `request_remote_reset`: the upstream closed or reset mid-request.
    pub request_remote_reset: Counter,
    /// `request_pending_overflow`: requests refused by a circuit breaker.
    pub request_pending_overflow: Counter,
    /// `request_retry`: retries sent.
    pub request_retry: Counter,
    /// `request_retry_overflow`: retries refused by `max_retries`.
    pub request_retry_overflow: Counter,
    /// `response_success`: responses with a status below 500.
    pub response_success: Counter,
    /// `response_failed`: 5xx responses and failed tries.
    pub response_failed: Counter,
    /// `request_duration_time`: from sending the request to its response head, in seconds.
    pub request_duration_time: Histogram,
}

/// The upstream metrics of one worker: one entry per cluster and per host id.
#[derive(Debug, Default)]
pub struct UpstreamStatsSet {
    /// By cluster index.
    pub clusters: Vec<UpstreamStats>,
    /// By host id.
    pub hosts: Vec<UpstreamStats>,
}

impl UpstreamStatsSet {
    /// Zeroed stats for `clusters` clusters and `hosts` hosts.
    pub fn new(clusters: usize, hosts: usize) -> Self {
        UpstreamStatsSet {
            clusters: (0..clusters).map(|_| UpstreamStats::default()).collect(),
            hosts: (0..hosts).map(|_| UpstreamStats::default()).collect(),
        }
    }

    /// Applies `f` to the cluster's and the host's stats.
    #[inline]
    pub fn both(&self, cluster: usize, host: usize, f: impl Fn(&UpstreamStats)) {
        if let Some(c) = self.clusters.get(cluster) {
            f(c);
        }
        if let Some(h) = self.hosts.get(host) {
            f(h);
        }
    }
}
