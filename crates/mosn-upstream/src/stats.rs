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

/// Entries of `T` by index that can grow while readers hold references: chunks of
/// [`Slots::CHUNK`] entries, each made once and never moved, so clusters and hosts added at run
/// time (a registry, a reload) get counters without a lock on the data path.
#[derive(Debug)]
pub struct Slots<T> {
    chunks: Box<[std::sync::OnceLock<Box<[T]>>]>,
}

impl<T: Default> Slots<T> {
    /// Entries per chunk.
    pub const CHUNK: usize = 64;
    /// Most entries a set can hold (65536).
    pub const MAX: usize = Self::CHUNK * 1024;

    /// A set with at least `n` entries ready.
    pub fn new(n: usize) -> Self {
        let s = Slots {
            chunks: (0..Self::MAX / Self::CHUNK)
                .map(|_| std::sync::OnceLock::new())
                .collect(),
        };
        s.grow(n);
        s
    }

    /// Makes entries `0..n` ready (at most [`Slots::MAX`]).
    pub fn grow(&self, n: usize) {
        for c in self.chunks.iter().take(n.div_ceil(Self::CHUNK)) {
            c.get_or_init(|| (0..Self::CHUNK).map(|_| T::default()).collect());
        }
    }

    /// Every ready entry, in index order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks
            .iter()
            .map_while(|c| c.get())
            .flat_map(|c| c.iter())
    }

    /// Entry `i`, when it is ready.
    #[inline]
    pub fn get(&self, i: usize) -> Option<&T> {
        self.chunks
            .get(i / Self::CHUNK)?
            .get()?
            .get(i % Self::CHUNK)
    }
}

impl<T: Default> Default for Slots<T> {
    fn default() -> Self {
        Slots::new(0)
    }
}

/// The upstream metrics of one worker: one entry per cluster and per host id.
#[derive(Debug, Default)]
pub struct UpstreamStatsSet {
    /// By cluster index.
    pub clusters: Slots<UpstreamStats>,
    /// By host id.
    pub hosts: Slots<UpstreamStats>,
}

impl UpstreamStatsSet {
    /// Zeroed stats for `clusters` clusters and `hosts` hosts.
    pub fn new(clusters: usize, hosts: usize) -> Self {
        UpstreamStatsSet {
            clusters: Slots::new(clusters),
            hosts: Slots::new(hosts),
        }
    }

    /// Makes room for `clusters` clusters and `hosts` hosts (a new config at run time).
    pub fn grow(&self, clusters: usize, hosts: usize) {
        self.clusters.grow(clusters);
        self.hosts.grow(hosts);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_grow_without_moving_entries() {
        let s: Slots<UpstreamStats> = Slots::new(3);
        assert!(s.get(2).is_some());
        assert!(s.get(Slots::<UpstreamStats>::CHUNK).is_none());
        let first = s.get(0).unwrap() as *const UpstreamStats;
        s.get(0).unwrap().request_total.inc();
        s.grow(200);
        assert!(s.get(199).is_some());
        assert_eq!(s.get(0).unwrap() as *const UpstreamStats, first);
        assert_eq!(s.get(0).unwrap().request_total.get(), 1);
        assert!(s.get(Slots::<UpstreamStats>::MAX).is_none());
    }
}
