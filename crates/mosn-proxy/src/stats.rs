//! Per-worker counters, summed across workers when read: no lock and no shared cache line on the
//! data path. The admin API and Prometheus export build on these.

use std::sync::atomic::{AtomicU64, Ordering};

use mosn_api::ResponseFlag;

/// All response flags, in the order of [`WorkerStats::flags`].
pub const FLAGS: [ResponseFlag; 9] = [
    ResponseFlag::NoRoute,
    ResponseFlag::NoHealthyUpstream,
    ResponseFlag::UpstreamConnectionFailure,
    ResponseFlag::UpstreamConnectionTermination,
    ResponseFlag::UpstreamRequestTimeout,
    ResponseFlag::UpstreamOverflow,
    ResponseFlag::UpstreamRetryLimitExceeded,
    ResponseFlag::DownstreamConnectionTermination,
    ResponseFlag::DownstreamProtocolError,
];

/// Counters of one worker.
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Downstream requests received.
    pub downstream_requests: AtomicU64,
    /// Downstream connections accepted.
    pub downstream_connections: AtomicU64,
    /// Downstream requests in flight (a gauge).
    pub active_requests: AtomicU64,
    /// Upstream requests sent (each try counts).
    pub upstream_requests: AtomicU64,
    /// Retries sent.
    pub upstream_retries: AtomicU64,
    /// Failed requests by response flag, in [`FLAGS`] order.
    pub flags: [AtomicU64; 9],
}

impl WorkerStats {
    /// Counts one response with `flag`.
    pub fn flag(&self, flag: ResponseFlag) {
        if let Some(i) = FLAGS.iter().position(|f| *f == flag) {
            self.flags[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Adds one to a counter.
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Sums one counter across workers.
pub fn sum(stats: &[std::sync::Arc<WorkerStats>], f: impl Fn(&WorkerStats) -> &AtomicU64) -> u64 {
    stats.iter().map(|s| f(s).load(Ordering::Relaxed)).sum()
}
