//! Per-worker counters, summed across workers when read: no lock and no shared cache line on the
//! data path. Names follow MOSN (`pkg/metrics/downstream.go`): exported as
//! `downstream_<name>{listener=...}` and, summed over listeners, `{proxy="global"}`.

use std::sync::Arc;

use mosn_api::metrics::{Counter, Gauge, Histogram};
use mosn_api::ResponseFlag;
use mosn_upstream::stats::{Slots, UpstreamStatsSet};

/// All response flags, in the order of [`WorkerStats::flags`].
pub const FLAGS: [ResponseFlag; 13] = [
    ResponseFlag::NoRoute,
    ResponseFlag::NoHealthyUpstream,
    ResponseFlag::UpstreamConnectionFailure,
    ResponseFlag::UpstreamConnectionTermination,
    ResponseFlag::UpstreamRequestTimeout,
    ResponseFlag::UpstreamOverflow,
    ResponseFlag::UpstreamRetryLimitExceeded,
    ResponseFlag::DownstreamConnectionTermination,
    ResponseFlag::DownstreamProtocolError,
    ResponseFlag::FaultInjected,
    ResponseFlag::DelayInjected,
    ResponseFlag::AccessDenied,
    ResponseFlag::TranscodeFailed,
];

/// Statuses with their own `request_<code>_total` counter; the rest count in `request_other_code`.
pub const STATUS_CODES: [u16; 13] = [
    200, 206, 302, 304, 400, 403, 404, 416, 499, 500, 502, 503, 504,
];

/// Downstream metrics of one listener on one worker.
#[derive(Debug, Default)]
pub struct DownstreamStats {
    /// `connection_total`: connections accepted.
    pub connection_total: Counter,
    /// `connection_destroy`: connections closed.
    pub connection_destroy: Counter,
    /// `connection_active`: connections open.
    pub connection_active: Gauge,
    /// `bytes_read_total`: bytes read from clients.
    pub bytes_read_total: Counter,
    /// `bytes_write_total`: bytes written to clients.
    pub bytes_write_total: Counter,
    /// `request_total`: requests received.
    pub request_total: Counter,
    /// `request_active`: requests in flight.
    pub request_active: Gauge,
    /// `request_failed`: requests answered with a response flag (a local error reply, or a
    /// response cut short).
    pub request_failed: Counter,
    /// `request_<code>_total` for [`STATUS_CODES`], then `request_other_code`.
    pub status: [Counter; 14],
    /// `request_time`: from the request head to the end of the response, in seconds.
    pub request_time: Histogram,
    /// `tls_handshake_failed`: TLS handshakes that failed or timed out (mosn-rs's own metric).
    pub tls_handshake_failed: Counter,
    /// `udp_session_overflow`: datagrams dropped because the `udp_proxy` listener had
    /// `max_sessions` sessions open (mosn-rs's own metric).
    pub udp_session_overflow: Counter,
}

impl DownstreamStats {
    /// Counts a response status.
    #[inline]
    pub fn count_status(&self, status: u16) {
        let i = STATUS_CODES
            .iter()
            .position(|c| *c == status)
            .unwrap_or(STATUS_CODES.len());
        self.status[i].inc();
    }
}

/// Counters of one worker.
#[derive(Debug)]
pub struct WorkerStats {
    /// Downstream stats by listener slot (grown when listeners are added at run time).
    pub listeners: Slots<DownstreamStats>,
    /// Upstream stats by cluster index and host id.
    pub upstream: Arc<UpstreamStatsSet>,
    /// Requests in flight on this worker (all listeners), watched by a draining shutdown.
    pub active_requests: Gauge,
    /// Open downstream `proxy` and `tcp_proxy` connections (a drain waits for them to close or,
    /// on a hot upgrade, to move).
    pub active_connections: Gauge,
    /// Requests with a response flag, in [`FLAGS`] order.
    pub flags: [Counter; 13],
}

impl WorkerStats {
    /// Zeroed stats for the given numbers of listeners, clusters and hosts.
    pub fn new(listeners: usize, clusters: usize, hosts: usize) -> Self {
        WorkerStats {
            listeners: Slots::new(listeners),
            upstream: Arc::new(UpstreamStatsSet::new(clusters, hosts)),
            active_requests: Gauge::default(),
            active_connections: Gauge::default(),
            flags: Default::default(),
        }
    }

    /// Counts one response with `flag`.
    pub fn flag(&self, flag: ResponseFlag) {
        if let Some(i) = FLAGS.iter().position(|f| *f == flag) {
            self.flags[i].inc();
        }
    }

    /// Requests received on every listener of this worker.
    pub fn requests_total(&self) -> u64 {
        self.listeners.iter().map(|l| l.request_total.get()).sum()
    }
}

/// Sums a counter across workers.
pub fn sum(stats: &[Arc<WorkerStats>], f: impl Fn(&WorkerStats) -> u64) -> u64 {
    stats.iter().map(|s| f(s)).sum()
}
