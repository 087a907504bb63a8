//! One downstream HTTP/1 request through the proxy: route, then answer locally (direct response,
//! redirect, error) or forward to a host chosen by the cluster's load balancer, with retries and
//! a route timeout, and stream the upstream response back.
//!
//! Failure mapping (ARCHITECTURE.md, "Errors"): no route 404 `NR`; no host 503 `UH`; circuit
//! breaker 503 `UO`; connect failure 502 `UF`; upstream reset 502 `UC`; timeout 504 `UT`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use mosn_api::{ProxyError, ResponseFlag};
use mosn_router::{Action, Forward, RouteTable, VirtualHost};
use mosn_upstream::cluster::Gauges;
use mosn_upstream::stats::UpstreamStatsSet;
use mosn_upstream::RequestBody;
use tokio::time::Instant;

use super::body::ResponseBody;
use super::headers::{append_xff, strip_hop_by_hop};
use super::info::{BytesReceived, RequestInfo, UpstreamInfo};
use crate::access_log::ListenerLog;
use crate::snapshot::Snapshot;
use crate::worker::Worker;

/// A request body with a `Content-Length` up to this many bytes is held in memory when the route
/// has retries, so it can be sent again; larger or chunked bodies stream and are not retried once
/// sent.
pub const REPLAY_LIMIT_BYTES: u64 = 64 * 1024;

/// Stale pooled connections skipped per request before a fresh connection is opened.
const STALE_TRIES: u32 = 4;

/// What a downstream connection knows while it serves requests.
pub struct ConnCtx {
    /// The worker that owns the connection.
    pub worker: Rc<Worker>,
    /// The config snapshot read when the connection started.
    pub snapshot: Arc<Snapshot>,
    /// Index of the listener in the snapshot.
    pub listener: usize,
    /// The client's IP, ready for `X-Forwarded-For`.
    pub client_ip: HeaderValue,
    /// The client's address.
    pub peer: SocketAddr,
    /// The local address the client connected to.
    pub local: SocketAddr,
    /// Connection id, unique within the process.
    pub id: u64,
    /// Activity seen by the idle timeout.
    pub activity: Rc<super::Activity>,
}

impl ConnCtx {
    /// The access logs of this connection's listener.
    pub fn logs(&self) -> &[ListenerLog] {
        self.worker
            .logs
            .by_listener
            .get(self.listener)
            .map_or(&[], Vec::as_slice)
    }
}

/// Counts one upstream try in flight for its cluster and host until dropped.
struct TryActive<'a> {
    up: &'a UpstreamStatsSet,
    cluster: usize,
    host: usize,
}

impl Drop for TryActive<'_> {
    fn drop(&mut self) {
        self.up
            .both(self.cluster, self.host, |s| s.request_active.dec());
    }
}

/// Serves one request. Never fails: errors become responses with their status.
pub async fn handle(
    ctx: Rc<ConnCtx>,
    req: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    let stats = &ctx.worker.stats;
    if let Some(l) = stats.listeners.get(ctx.listener) {
        l.request_total.inc();
        l.request_active.inc();
    }
    stats.active_requests.inc();
    ctx.activity.in_flight.set(ctx.activity.in_flight.get() + 1);
    let mut info = RequestInfo::start(&ctx, req.version(), req.headers());
    let mut resp = if head_size(&req) > super::MAX_HEADER_BYTES {
        info.flag = Some(ResponseFlag::DownstreamProtocolError);
        let mut r = local(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "");
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        r
    } else {
        match route(&ctx, req, &mut info).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(flag = %e.flag, detail = %e.detail, "local reply");
                info.flag = Some(e.flag);
                local(e.status(), format!("{}\n", e.flag.short()))
            }
        }
    };
    info.status = resp.status().as_u16();
    info.capture_response(&ctx, resp.headers());
    let ctx2 = ctx.clone();
    resp.body_mut().finish_with(ctx2, info);
    Ok(resp)
}

/// Bytes of the request head as sent: the target plus each header line.
fn head_size<B>(req: &Request<B>) -> usize {
    let target = req.uri().path_and_query().map_or(1, |p| p.as_str().len());
    req.headers()
        .iter()
        .fold(target, |n, (k, v)| n + k.as_str().len() + v.len() + 4)
}

fn local(status: StatusCode, body: impl Into<Bytes>) -> Response<ResponseBody> {
    let mut r = Response::new(ResponseBody::local(body));
    *r.status_mut() = status;
    r
}

fn request_host<B>(req: &Request<B>) -> &str {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("")
}

async fn route(
    ctx: &ConnCtx,
    req: Request<Incoming>,
    info: &mut RequestInfo,
) -> Result<Response<ResponseBody>, ProxyError> {
    let snap = &ctx.snapshot;
    let table = &snap.tables[snap.listeners[ctx.listener].table()];
    let (vh, route) = table
        .route(
            request_host(&req),
            req.method(),
            req.uri().path(),
            req.headers(),
        )
        .ok_or_else(|| ProxyError::new(ResponseFlag::NoRoute, "no route"))?;
    match &route.action {
        Action::Direct { status, body } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::OK);
            let mut r = local(status, Bytes::copy_from_slice(body.as_bytes()));
            table.headers.apply_response(r.headers_mut());
            vh.headers.apply_response(r.headers_mut());
            Ok(r)
        }
        Action::Redirect {
            code,
            path,
            host,
            scheme,
        } => {
            let scheme = scheme.as_deref().unwrap_or("http");
            let host = host.as_deref().unwrap_or(request_host(&req));
            let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
            let path = path.as_deref().unwrap_or(pq);
            let location = format!("{scheme}://{host}{path}");
            let mut r = local(
                StatusCode::from_u16(*code).unwrap_or(StatusCode::MOVED_PERMANENTLY),
                "",
            );
            if let Ok(v) = HeaderValue::from_str(&location) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            table.headers.apply_response(r.headers_mut());
            vh.headers.apply_response(r.headers_mut());
            Ok(r)
        }
        Action::Forward(f) => forward(ctx, req, table, vh, f, info).await,
    }
}

fn is_retry_status(f: &Forward, status: StatusCode) -> bool {
    match &f.retry {
        None => false,
        Some(r) if r.status_codes.is_empty() => status.is_server_error(),
        Some(r) => r.status_codes.contains(&status.as_u16()),
    }
}

/// The request head sent upstream, kept so a retry can rebuild the request.
struct Head {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl Head {
    /// The request for one try. On the `last` possible try the headers are moved, not copied.
    fn request(&mut self, body: RequestBody, last: bool) -> Request<RequestBody> {
        let mut r = Request::new(body);
        *r.method_mut() = self.method.clone();
        *r.uri_mut() = self.uri.clone();
        *r.headers_mut() = if last {
            std::mem::take(&mut self.headers)
        } else {
            self.headers.clone()
        };
        *r.version_mut() = Version::HTTP_11;
        r
    }
}

async fn forward(
    ctx: &ConnCtx,
    req: Request<Incoming>,
    table: &RouteTable,
    vh: &VirtualHost,
    f: &Forward,
    info: &mut RequestInfo,
) -> Result<Response<ResponseBody>, ProxyError> {
    let target_id = f.pick();
    let target = &ctx.snapshot.clusters.targets[target_id];
    let cluster = &target.cluster;
    let deadline = f.timeout.map(|t| Instant::now() + t);

    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    append_xff(&mut parts.headers, &ctx.client_ip);
    table.headers.apply_request(&mut parts.headers);
    vh.headers.apply_request(&mut parts.headers);
    f.headers.apply_request(&mut parts.headers);
    if let Some(h) = &f.host_rewrite {
        parts.headers.insert(header::HOST, h.clone());
    }
    let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let uri = match f.rewrite_path(pq) {
        Some(p) => p.parse::<Uri>().map_err(|e| {
            ProxyError::new(ResponseFlag::NoRoute, format!("rewritten path {p:?}: {e}"))
        })?,
        None if parts.uri.authority().is_some() => pq
            .parse::<Uri>()
            .map_err(|e| ProxyError::new(ResponseFlag::DownstreamProtocolError, e.to_string()))?,
        None => parts.uri,
    };

    let max_attempts = 1 + f.retry.as_ref().map_or(0, |r| r.num_retries);
    let body = if body.is_end_stream() {
        RequestBody::Empty
    } else if max_attempts > 1
        && body
            .size_hint()
            .exact()
            .is_some_and(|n| n <= REPLAY_LIMIT_BYTES)
    {
        let bytes = body.collect().await.map_err(|e| {
            ProxyError::new(ResponseFlag::DownstreamConnectionTermination, e.to_string())
        })?;
        let bytes = bytes.to_bytes();
        info.known_bytes_received = bytes.len() as u64;
        RequestBody::Full(Some(bytes))
    } else {
        let counter = Rc::new(std::cell::Cell::new(0));
        info.bytes_received = BytesReceived::Counted(counter.clone());
        RequestBody::Stream(body, counter)
    };
    let replayable = body.replay().is_some();
    let mut head = Head {
        method: parts.method,
        uri,
        headers: parts.headers,
    };
    if !head.headers.contains_key(header::HOST) {
        // An HTTP/1.0 client may send no Host; HTTP/1.1 upstreams require one.
        if let Some(v) = cluster
            .hosts
            .first()
            .and_then(|h| HeaderValue::from_str(&h.address.to_string()).ok())
        {
            head.headers.insert(header::HOST, v);
        }
    }
    send_with_retries(
        ctx,
        target_id,
        head,
        body,
        replayable,
        max_attempts,
        deadline,
        (table, vh, f),
        info,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn send_with_retries(
    ctx: &ConnCtx,
    target_id: usize,
    mut head: Head,
    body: RequestBody,
    replayable: bool,
    max_attempts: u32,
    deadline: Option<Instant>,
    (table, vh, f): (&RouteTable, &VirtualHost, &Forward),
    info: &mut RequestInfo,
) -> Result<Response<ResponseBody>, ProxyError> {
    let worker = &ctx.worker;
    let up = &*worker.stats.upstream;
    let target = &ctx.snapshot.clusters.targets[target_id];
    let cluster = &target.cluster;
    let per_try = f.retry.as_ref().and_then(|r| r.retry_timeout);
    let mut body = Some(body);
    let mut recovered: Option<Request<RequestBody>> = None;
    let mut attempt = 0u32;
    let mut stale = 0u32;
    let mut _retry_slot = None;
    let timed_out = || ProxyError::new(ResponseFlag::UpstreamRequestTimeout, "route timeout");

    loop {
        attempt += 1;
        if attempt > 1 {
            // A retry needs a replayable body (or one not yet sent) and a free max_retries slot.
            let cs = up.clusters.get(cluster.index);
            match cluster.try_take(|g: &Gauges| &g.retries, cluster.limits.max_retries) {
                Some(s) => _retry_slot = Some(s),
                None => {
                    if let Some(c) = cs {
                        c.request_retry_overflow.inc();
                    }
                    return Err(ProxyError::new(
                        ResponseFlag::UpstreamOverflow,
                        "max_retries",
                    ));
                }
            }
            if let Some(c) = cs {
                c.request_retry.inc();
            }
        }
        let more = attempt < max_attempts;
        let host_idx = worker
            .pick_host(&ctx.snapshot, target_id)
            .ok_or_else(|| ProxyError::new(ResponseFlag::NoHealthyUpstream, "no host"))?;
        let host = &cluster.hosts[host_idx];
        let (ci, hi) = (cluster.index, host.id);
        let _rq = cluster
            .try_take(|g: &Gauges| &g.requests, cluster.limits.max_requests)
            .ok_or_else(|| {
                up.both(ci, hi, |s| s.request_pending_overflow.inc());
                ProxyError::new(ResponseFlag::UpstreamOverflow, "max_requests")
            })?;
        let _busy = worker.busy(host.id);
        // Known before connecting, so a connect failure is logged with its cluster and host.
        info.upstream = Some(UpstreamInfo {
            cluster: ci,
            host: hi,
            addr: host.address.clone(),
            local: None,
        });

        let acquired = match deadline {
            Some(d) => tokio::time::timeout_at(d, worker.pools.acquire(cluster, host))
                .await
                .map_err(|_| timed_out())?,
            None => worker.pools.acquire(cluster, host).await,
        };
        let mut conn = match acquired {
            Ok(c) => c,
            Err(e) if e.retryable && more => {
                tracing::debug!(detail = %e.detail, "retrying after connect failure");
                continue;
            }
            Err(e) => return Err(e),
        };

        let req = match recovered.take() {
            Some(r) => r,
            None => {
                let b = if replayable {
                    body.as_ref().and_then(RequestBody::replay)
                } else {
                    body.take()
                };
                match b {
                    // After this try nothing can be resent but a request hyper hands back unsent.
                    Some(b) => head.request(b, !(more && replayable)),
                    None => {
                        return Err(ProxyError::new(
                            ResponseFlag::UpstreamConnectionTermination,
                            "request body already sent; cannot retry",
                        ))
                    }
                }
            }
        };
        if let Some(u) = &mut info.upstream {
            u.local = conn.local_addr();
        }
        up.both(ci, hi, |s| {
            s.request_total.inc();
            s.request_active.inc();
        });
        let _try_active = TryActive {
            up,
            cluster: ci,
            host: hi,
        };
        let sent_at = Instant::now();
        info.request_sent = Some(sent_at - info.start);
        let send = conn.sender().try_send_request(req);
        let try_deadline = match (deadline, per_try) {
            (Some(d), Some(p)) => Some(d.min(Instant::now() + p)),
            (None, Some(p)) => Some(Instant::now() + p),
            (d, None) => d,
        };
        let sent = match try_deadline {
            Some(d) => match tokio::time::timeout_at(d, send).await {
                Ok(r) => r,
                Err(_) => {
                    up.both(ci, hi, |s| {
                        s.request_timeout.inc();
                        s.response_failed.inc();
                    });
                    let overall = deadline.is_some_and(|d| Instant::now() >= d);
                    if more && !overall && replayable {
                        continue;
                    }
                    return Err(timed_out());
                }
            },
            None => send.await,
        };
        match sent {
            Ok(resp) => {
                let now = Instant::now();
                info.response_head = Some(now - info.start);
                let failed = resp.status().is_server_error();
                up.both(ci, hi, |s| {
                    s.request_duration_time.observe(now - sent_at);
                    if failed {
                        s.response_failed.inc();
                    } else {
                        s.response_success.inc();
                    }
                });
                if more && replayable && is_retry_status(f, resp.status()) {
                    tracing::debug!(status = %resp.status(), "retrying after status");
                    continue;
                }
                let (mut rp, rb) = resp.into_parts();
                strip_hop_by_hop(&mut rp.headers);
                table.headers.apply_response(&mut rp.headers);
                vh.headers.apply_response(&mut rp.headers);
                f.headers.apply_response(&mut rp.headers);
                return Ok(Response::from_parts(
                    rp,
                    ResponseBody::upstream(worker.pools.pooled_body(rb, conn)),
                ));
            }
            Err(mut e) => {
                if let Some(req) = e.take_message() {
                    // Not sent: the pooled connection was stale. Try again without counting it.
                    if stale < STALE_TRIES {
                        stale += 1;
                        attempt -= 1;
                        recovered = Some(req);
                        continue;
                    }
                }
                up.both(ci, hi, |s| {
                    s.request_remote_reset.inc();
                    s.response_failed.inc();
                });
                let err = ProxyError::new(
                    ResponseFlag::UpstreamConnectionTermination,
                    format!("upstream {}: {}", host.address, e.into_error()),
                );
                if more && replayable {
                    continue;
                }
                return Err(err);
            }
        }
    }
}
