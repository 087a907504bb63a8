//! The steps of one upstream try that every protocol's exchange shares: the retry budget, the
//! load balancer's host, the AfterChooseHost filters, the `max_requests` circuit breaker, and the
//! per-try counters.

use std::sync::Arc;

use mosn_api::{Headers, Phase, ProxyError, ResponseFlag, StreamInfo, UpstreamRef};
use mosn_upstream::cluster::Gauges;
use mosn_upstream::stats::UpstreamStatsSet;
use mosn_upstream::{Cluster, Host, Slot};
use tokio::time::Instant;

use super::{Answer, Forwarding};
use crate::conn::ConnCtx;
use crate::worker::state::Busy;

/// Why a stream could not be forwarded.
pub enum Failure<'s> {
    /// Answer the client locally.
    Answer(Answer<'s>),
    /// The client is gone, or its request body is broken: nothing more can be sent.
    Abort,
}

impl From<ProxyError> for Failure<'_> {
    fn from(e: ProxyError) -> Self {
        Failure::Answer(Answer::error(&e))
    }
}

/// Counts one upstream try in flight for its cluster and host until dropped.
pub struct TryActive<'a> {
    up: &'a UpstreamStatsSet,
    cluster: usize,
    host: usize,
}

impl<'a> TryActive<'a> {
    /// Counts `request_total` and `request_active` for the host and its cluster.
    pub fn start(up: &'a UpstreamStatsSet, cluster: usize, host: usize) -> Self {
        up.both(cluster, host, |s| {
            s.request_total.inc();
            s.request_active.inc();
        });
        TryActive { up, cluster, host }
    }
}

impl Drop for TryActive<'_> {
    fn drop(&mut self) {
        self.up
            .both(self.cluster, self.host, |s| s.request_active.dec());
    }
}

/// One try's host and the guards that hold its circuit-breaker slot and load-balancer weight.
pub struct Try<'s> {
    /// The cluster.
    pub cluster: &'s Arc<Cluster>,
    /// The host picked: one of the cluster's, or for an ORIGINAL_DST cluster the connection's
    /// original destination (made for this try).
    pub host: std::borrow::Cow<'s, Arc<Host>>,
    _request: Slot,
    /// A retry holds a `max_retries` slot while it runs.
    _retry: Option<Slot>,
    _busy: Busy<'s>,
}

/// Starts try number `attempt` (1-based) of a stream: takes a retry slot for a retry, picks a
/// host, runs the AfterChooseHost filters and takes a `max_requests` slot. Sets
/// `info.upstream`.
///
/// Errors: `UO` when `max_retries` or `max_requests` is reached, `UH` when no host is left, and a
/// filter's reply.
pub async fn begin_try<'s>(
    ctx: &'s ConnCtx,
    f: &Forwarding<'s>,
    head: &mut dyn Headers,
    info: &mut StreamInfo,
    attempt: u32,
    content_length: Option<u64>,
) -> Result<Try<'s>, Failure<'static>> {
    let worker = &ctx.worker;
    let snap = &ctx.snapshot;
    let up = &*worker.stats.upstream;
    let target = snap
        .clusters
        .targets
        .get(f.target)
        .ok_or_else(|| ProxyError::new(ResponseFlag::NoHealthyUpstream, "no target"))?;
    let cluster = &target.cluster;
    let mut retry = None;
    if attempt > 1 {
        let cs = up.clusters.get(cluster.index);
        retry = cluster.try_take(|g: &Gauges| &g.retries, cluster.limits.max_retries);
        if retry.is_none() {
            if let Some(c) = cs {
                c.request_retry_overflow.inc();
            }
            return Err(ProxyError::new(ResponseFlag::UpstreamOverflow, "max_retries").into());
        }
        if let Some(c) = cs {
            c.request_retry.inc();
        }
    }
    let host = if cluster.original_dst {
        // ORIGINAL_DST (Istio's inbound and passthrough clusters): where the client meant to go.
        let address = mosn_config::HostAddr::Tcp(ctx.local);
        std::borrow::Cow::Owned(Arc::new(Host {
            id: mosn_upstream::host_id(&cluster.name, &address.to_string()),
            address,
            weight: 1,
            metadata: Default::default(),
            tls_disable: false,
        }))
    } else {
        worker
            .pick_host(snap, f.target, &info.metadata)
            .and_then(|i| cluster.hosts.get(i))
            .map(std::borrow::Cow::Borrowed)
            .ok_or_else(|| ProxyError::new(ResponseFlag::NoHealthyUpstream, "no host"))?
    };
    if !ctx.listener().filters.is_empty() {
        let addr = host.address.to_string();
        if let Some(r) = super::run_filters(
            ctx,
            Phase::AfterChooseHost,
            f.filters,
            head,
            info,
            Some(&cluster.name),
            Some(&addr),
            content_length,
        )
        .await
        {
            return Err(Failure::Answer(Answer::plain(r)));
        }
    }
    let (ci, hi) = (cluster.index, host.id);
    let request = cluster
        .try_take(|g: &Gauges| &g.requests, cluster.limits.max_requests)
        .ok_or_else(|| {
            up.both(ci, hi, |s| s.request_pending_overflow.inc());
            ProxyError::new(ResponseFlag::UpstreamOverflow, "max_requests")
        })?;
    let busy = worker.busy(hi);
    info.upstream = Some(UpstreamRef {
        cluster: ci,
        host: hi,
        local: None,
    });
    Ok(Try {
        cluster,
        host,
        _request: request,
        _retry: retry,
        _busy: busy,
    })
}

/// Applies the route's request changes to a head: header mutations of the table, virtual host
/// and route, `host_rewrite`, and the path rewrite.
pub fn rewrite_request(f: &Forwarding<'_>, head: &mut dyn Headers) {
    f.table.headers.apply_request(head);
    f.vh.headers.apply_request(head);
    f.fwd.headers.apply_request(head);
    if let Some(h) = &f.fwd.host_rewrite {
        head.set(":authority", h.as_bytes());
    }
    let rewritten = head.get_str(":path").and_then(|pq| f.fwd.rewrite_path(pq));
    if let Some(p) = rewritten {
        head.set(":path", p.as_bytes());
    }
}

/// Applies the route's response header mutations.
pub fn rewrite_response(f: &Forwarding<'_>, head: &mut dyn Headers) {
    f.table.headers.apply_response(head);
    f.vh.headers.apply_response(head);
    f.fwd.headers.apply_response(head);
}

/// Stale pooled connections skipped per stream before a try counts: a pooled connection the
/// upstream closed (or sent GOAWAY on) while idle is replaced without using up a retry.
pub const STALE_TRIES: u32 = 4;

/// The tries of one stream: the count against the route's `num_retries`, stale connections
/// skipped, the overall deadline (`timeout`) and each try's (`retry_timeout`).
pub struct Tries {
    attempt: u32,
    stale: u32,
    max_attempts: u32,
    replayable: bool,
    /// When the whole stream times out (the route's global timeout from now).
    pub deadline: Instant,
    per_try: Option<std::time::Duration>,
}

impl Tries {
    /// The tries of a stream on `f`; `replayable` when its request body can be sent again.
    pub fn new(f: &Forwarding<'_>, replayable: bool) -> Self {
        Tries {
            attempt: 0,
            stale: 0,
            max_attempts: 1 + f.fwd.retry.as_ref().map_or(0, |r| r.num_retries),
            replayable,
            deadline: Instant::now() + f.timeouts.global,
            per_try: f.timeouts.per_try,
        }
    }

    /// Starts the next try; returns its number (1-based).
    pub fn start_try(&mut self) -> u32 {
        self.attempt += 1;
        self.attempt
    }

    /// True when the route allows another try after this one (a connect failure can use it
    /// whatever the body, as nothing was sent).
    pub fn left(&self) -> bool {
        self.attempt < self.max_attempts
    }

    /// True when a failure after the request was sent may be retried: a try is left and the
    /// body can be sent again.
    pub fn more(&self) -> bool {
        self.left() && self.replayable
    }

    /// True when the request body can be sent again.
    pub fn replayable(&self) -> bool {
        self.replayable
    }

    /// The current try met a stale pooled connection: true (and the try does not count) while
    /// [`STALE_TRIES`] allows another.
    pub fn stale(&mut self) -> bool {
        if self.stale >= STALE_TRIES {
            return false;
        }
        self.stale += 1;
        self.attempt -= 1;
        true
    }

    /// The request went out now: records it in `info` and returns (when it was sent, when this
    /// try times out).
    pub fn sent(&self, info: &mut StreamInfo) -> (Instant, Instant) {
        let at = Instant::now();
        info.request_sent = Some(at.into_std() - info.start);
        let until = match self.per_try {
            Some(p) => self.deadline.min(at + p),
            None => self.deadline,
        };
        (at, until)
    }

    /// The try ran out of time waiting for the response head: counts it; `Ok` to try again,
    /// else the `UT` error.
    pub fn timed_out(
        &self,
        up: &UpstreamStatsSet,
        cluster: usize,
        host: usize,
    ) -> Result<(), ProxyError> {
        up.both(cluster, host, |s| {
            s.request_timeout.inc();
            s.response_failed.inc();
        });
        if self.more() && Instant::now() < self.deadline {
            return Ok(());
        }
        Err(ProxyError::new(
            ResponseFlag::UpstreamRequestTimeout,
            "route timeout",
        ))
    }

    /// The upstream closed or reset the try before its response head: counts it; `Ok` to try
    /// again, else the `UC` error with `detail`.
    pub fn upstream_reset(
        &self,
        up: &UpstreamStatsSet,
        host: &Host,
        cluster: usize,
        detail: impl std::fmt::Display,
    ) -> Result<(), ProxyError> {
        up.both(cluster, host.id, |s| {
            s.request_remote_reset.inc();
            s.response_failed.inc();
        });
        if self.more() {
            return Ok(());
        }
        Err(ProxyError::new(
            ResponseFlag::UpstreamConnectionTermination,
            format!("upstream {}: {detail}", host.address),
        ))
    }
}

/// The response head of a try arrived now, with `status`: records the time in `info` and the
/// outcome (5xx fails) and duration in the host's and cluster's stats.
pub fn response_received(
    up: &UpstreamStatsSet,
    cluster: usize,
    host: usize,
    info: &mut StreamInfo,
    sent_at: Instant,
    status: u16,
) {
    let now = Instant::now();
    info.response_head = Some(now.into_std() - info.start);
    up.both(cluster, host, |s| {
        s.request_duration_time.observe(now - sent_at);
        if status >= 500 {
            s.response_failed.inc();
        } else {
            s.response_success.inc();
        }
    });
}
