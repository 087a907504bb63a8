//! What the proxy records about one request while it is served, for the metrics and the access
//! log written when its response ends.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue, Version};
use mosn_api::ResponseFlag;
use tokio::time::Instant;

use super::stream::ConnCtx;

/// The upstream a request went to (its last try).
#[derive(Debug, Clone)]
pub struct UpstreamInfo {
    /// Cluster index.
    pub cluster: usize,
    /// Host id.
    pub host: usize,
    /// Host address.
    pub addr: mosn_config::HostAddr,
    /// Local address of the upstream connection.
    pub local: Option<SocketAddr>,
}

/// Request body bytes received.
#[derive(Debug, Clone, Default)]
pub enum BytesReceived {
    /// A known count (no body, or a body held in memory).
    #[default]
    Known,
    /// Counted as the body streams.
    Counted(Rc<Cell<u64>>),
}

/// One request's record.
pub struct RequestInfo {
    /// When the request head was handed to the proxy.
    pub start: Instant,
    /// HTTP version of the request.
    pub version: Version,
    /// Status sent to the client.
    pub status: u16,
    /// Response flag, when the response is not the upstream's as asked.
    pub flag: Option<ResponseFlag>,
    /// The upstream of the last try.
    pub upstream: Option<UpstreamInfo>,
    /// Time until the request was handed to the upstream connection.
    pub request_sent: Option<Duration>,
    /// Time until the upstream response head arrived.
    pub response_head: Option<Duration>,
    /// Request body bytes passed upstream: a held body's length, or a counter shared with a
    /// streamed body.
    pub bytes_received: BytesReceived,
    /// Request body bytes when [`BytesReceived::Known`].
    pub known_bytes_received: u64,
    /// Response body bytes sent to the client.
    pub bytes_sent: u64,
    /// Per access log of the listener: the request headers its format prints.
    pub request_headers: Vec<Vec<Option<HeaderValue>>>,
    /// Per access log of the listener: the response headers its format prints.
    pub response_headers: Vec<Vec<Option<HeaderValue>>>,
}

impl RequestInfo {
    /// Starts the record of a request, capturing the request headers the listener's access logs
    /// print.
    pub fn start(ctx: &ConnCtx, version: Version, headers: &HeaderMap) -> Self {
        let logs = ctx.logs();
        RequestInfo {
            start: Instant::now(),
            version,
            status: 0,
            flag: None,
            upstream: None,
            request_sent: None,
            response_head: None,
            bytes_received: BytesReceived::Known,
            known_bytes_received: 0,
            bytes_sent: 0,
            request_headers: logs
                .iter()
                .map(|l| {
                    l.format
                        .request_headers
                        .iter()
                        .map(|n| headers.get(n).cloned())
                        .collect()
                })
                .collect(),
            response_headers: Vec::new(),
        }
    }

    /// Captures the response headers the listener's access logs print.
    pub fn capture_response(&mut self, ctx: &ConnCtx, headers: &HeaderMap) {
        let logs = ctx.logs();
        if logs.is_empty() {
            return;
        }
        self.response_headers = logs
            .iter()
            .map(|l| {
                l.format
                    .response_headers
                    .iter()
                    .map(|n| headers.get(n).cloned())
                    .collect()
            })
            .collect();
    }

    /// Records the end of the request: listener metrics, response flags and access-log lines.
    /// `completed` is false when the response was cut short.
    pub fn finish(mut self, ctx: &ConnCtx, completed: bool) {
        if !completed && self.flag.is_none() {
            self.flag = Some(ResponseFlag::DownstreamConnectionTermination);
        }
        let stats = &ctx.worker.stats;
        let elapsed = self.start.elapsed();
        if let Some(l) = stats.listeners.get(ctx.listener) {
            l.request_time.observe(elapsed);
            l.count_status(self.status);
            l.request_active.dec();
            if self.flag.is_some() {
                l.request_failed.inc();
            }
        }
        stats.active_requests.dec();
        ctx.activity
            .in_flight
            .set(ctx.activity.in_flight.get().saturating_sub(1));
        if let Some(f) = self.flag {
            stats.flag(f);
        }
        let logs = ctx.logs();
        if logs.is_empty() {
            return;
        }
        let start = SystemTime::now()
            .checked_sub(elapsed)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let protocol = match self.version {
            Version::HTTP_10 => "HTTP/1.0",
            Version::HTTP_2 => "HTTP/2",
            _ => "HTTP/1.1",
        };
        let cluster = self
            .upstream
            .as_ref()
            .and_then(|u| ctx.snapshot.clusters.clusters.get(u.cluster))
            .map(|c| c.name.as_str());
        for (i, log) in logs.iter().enumerate() {
            let e = crate::access_log::Entry {
                start,
                request_received: self.request_sent,
                response_received: self.response_head,
                duration: elapsed,
                bytes_sent: self.bytes_sent,
                bytes_received: match &self.bytes_received {
                    BytesReceived::Known => self.known_bytes_received,
                    BytesReceived::Counted(c) => c.get(),
                },
                protocol,
                status: self.status,
                flag: self.flag,
                upstream_host: self.upstream.as_ref().map(|u| &u.addr),
                upstream_cluster: cluster,
                upstream_local: self.upstream.as_ref().and_then(|u| u.local),
                downstream_local: ctx.local,
                downstream_remote: ctx.peer,
                request_headers: self.request_headers.get(i).map_or(&[], Vec::as_slice),
                response_headers: self.response_headers.get(i).map_or(&[], Vec::as_slice),
                connection_id: ctx.id,
                listener_name: &ctx.snapshot.listeners[ctx.listener].name,
            };
            ctx.worker
                .local_logs
                .write(log.writer, |out| log.format.render(&e, out));
        }
    }
}
