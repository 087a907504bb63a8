//! The end of a stream: listener metrics, response-flag counters and access-log lines, read from
//! its [`StreamInfo`] and heads. Every protocol ends its streams here.

use std::time::SystemTime;

use mosn_api::{Headers, ResponseFlag, StreamInfo};

use crate::conn::ConnCtx;

/// Records the end of a stream. `completed` is false when the response was cut short (then a
/// missing flag becomes `DC`).
pub fn finish(
    ctx: &ConnCtx,
    mut info: StreamInfo,
    request: &dyn Headers,
    response: Option<&dyn Headers>,
    completed: bool,
) {
    if !completed && info.flag.is_none() {
        info.flag = Some(ResponseFlag::DownstreamConnectionTermination);
    }
    let filters = &ctx.listener().filters;
    if !filters.is_empty() {
        if info.grpc_status.is_none() {
            // A trailers-only gRPC response carries its status in the head.
            info.grpc_status = response
                .and_then(|r| r.get_str("grpc-status"))
                .and_then(|v| v.trim().parse().ok());
        }
        for f in filters.iter() {
            f.on_stream_end(request, &info);
        }
    }
    let stats = &ctx.worker.stats;
    let elapsed = info.start.elapsed();
    let failed = info.flag.is_some_and(|f| f != ResponseFlag::DelayInjected);
    if let Some(l) = stats.listeners.get(ctx.listener) {
        l.request_time.observe(elapsed);
        l.count_status(info.status);
        l.request_active.dec();
        if failed {
            l.request_failed.inc();
        }
    }
    stats.active_requests.dec();
    if let Some(f) = info.flag {
        stats.flag(f);
    }
    if tracing::enabled!(tracing::Level::DEBUG) {
        tracing::debug!(
            method = request.get_str(":method").unwrap_or("-"),
            path = request.get_str(":path").unwrap_or("-"),
            status = info.status,
            flag = info.flag.map_or("-", |f| f.short()),
            upstream = %info
                .upstream
                .and_then(|u| host_addr(ctx, u.cluster, u.host))
                .map_or_else(|| "-".to_string(), |a| a.to_string()),
            duration = ?elapsed,
            "request"
        );
    }
    let logs = ctx.logs();
    if logs.is_empty() {
        return;
    }
    let start = SystemTime::now()
        .checked_sub(elapsed)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let cluster = info
        .upstream
        .and_then(|u| ctx.snapshot.clusters.clusters.get(u.cluster));
    let host = info
        .upstream
        .and_then(|u| host_addr(ctx, u.cluster, u.host));
    for log in logs {
        let e = crate::access_log::Entry {
            start,
            request_received: info.request_sent,
            response_received: info.response_head,
            duration: elapsed,
            bytes_sent: info.bytes_sent,
            bytes_received: info.bytes_received,
            protocol: info.protocol_text(),
            status: info.status,
            flag: info.flag,
            upstream_host: host,
            upstream_cluster: cluster.map(|c| c.name.as_str()),
            upstream_local: info.upstream.and_then(|u| u.local),
            downstream_local: ctx.local,
            downstream_remote: ctx.peer,
            request: Some(request),
            response,
            connection_id: ctx.id,
            listener_name: &ctx.listener().name,
        };
        ctx.worker
            .local_logs
            .write(log.writer, |out| log.format.render(&e, out));
    }
}

fn host_addr(ctx: &ConnCtx, cluster: usize, host: usize) -> Option<&mosn_config::HostAddr> {
    ctx.snapshot
        .clusters
        .clusters
        .get(cluster)?
        .hosts
        .iter()
        .find(|h| h.id == host)
        .map(|h| &h.address)
}
