//! One HTTP/1 stream forwarded upstream: host choice, circuit breakers, the pooled connection the
//! request drives itself, retries and timeouts, then the response streamed back while any request
//! body still streams up (both directions in one task, with back-pressure).
//!
//! Retries follow the route's `retry_policy` exactly `num_retries` times, and only while the request
//! body can be sent again: no body, or a `Content-Length` body of at most
//! [`REPLAY_LIMIT_BYTES`], which is then read whole first. A pooled connection found closed before
//! any response byte is retried without counting a try.

use std::future::poll_fn;
use std::task::Poll;

use bytes::{BufMut, Bytes};
use mosn_api::{Headers, LocalReply, Phase, ProxyError, ResponseFlag, StreamInfo, UpstreamRef};
use mosn_protocol::http1::encode::{self, RequestExtras, ResponseOptions};
use mosn_protocol::http1::{
    parse_response, BodyDecoder, BodyEncoder, Framing, Parsed, RequestHead, ResponseHead,
};
use mosn_upstream::cluster::Gauges;
use mosn_upstream::stats::UpstreamStatsSet;
use mosn_upstream::UpstreamConn;
use tokio::time::Instant;

use super::pump::{self, BodyPump, Half, PumpError};
use super::{Downstream, Outcome};
use crate::stream::{self, Answer, Forwarding};

/// A request body with a `Content-Length` up to this many bytes is held in memory when the route
/// has retries, so it can be sent again; larger or chunked bodies stream and are not retried once
/// sent.
pub const REPLAY_LIMIT_BYTES: u64 = 64 * 1024;

/// Stale pooled connections skipped per request before a fresh connection is opened.
const STALE_TRIES: u32 = 4;

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

/// Why a stream could not be forwarded.
enum Failure<'s> {
    /// Answer the client locally.
    Answer(Answer<'s>),
    /// The client is gone, or its request body is broken: nothing more can be sent.
    Abort,
}

impl<'s> From<ProxyError> for Failure<'s> {
    fn from(e: ProxyError) -> Self {
        Failure::Answer(Answer::error(&e))
    }
}

/// Why the wait for a response head ended without one.
pub(crate) enum HeadError {
    Timeout,
    /// The client went away.
    Downstream,
    /// The client's body framing is invalid.
    BadBody,
    /// A filter refused the request body.
    Filter(LocalReply),
    /// The upstream closed, reset or sent garbage; `got_bytes` when part of a response arrived.
    Upstream {
        got_bytes: bool,
        detail: String,
    },
}

/// Forwards one request and streams the response back.
pub async fn forward(
    d: &mut Downstream,
    req: &mut RequestHead,
    framing: Framing,
    f: Forwarding<'_>,
    info: &mut StreamInfo,
) -> Outcome {
    if let crate::snapshot::ListenerKind::Proxy {
        upstream: mosn_config::Protocol::Http2,
        ..
    } = d.ctx.listener().kind
    {
        return super::to_h2::forward(d, req, framing, f, info).await;
    }
    let mut pump = BodyPump::new(BodyDecoder::new(framing), BodyEncoder::Identity);
    match forward_inner(d, req, framing, &f, info, &mut pump).await {
        Ok(o) => o,
        Err(Failure::Answer(a)) => {
            // What is left of the request body decides whether the connection can go on.
            let left = if pump.decoded() {
                Framing::Empty
            } else if pump.touched {
                Framing::Chunked
            } else {
                framing
            };
            d.answer(req, left, a, info).await
        }
        Err(Failure::Abort) => Outcome {
            keep_alive: false,
            response: None,
            completed: false,
        },
    }
}

/// Reads a `Content-Length` body of `n` bytes whole (after `100 Continue` when the client waits
/// for it), for retries.
pub(crate) async fn read_held_body(
    d: &mut Downstream,
    req: &RequestHead,
    n: u64,
) -> Result<Bytes, std::io::Error> {
    if req.expect_continue && (d.rbuf.len() as u64) < n {
        d.wbuf.put_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        d.flush().await?;
    }
    let ctx = d.ctx.clone();
    let l = ctx.worker.stats.listeners.get(ctx.listener);
    let count = move |n: usize| {
        if let Some(l) = l {
            l.bytes_read_total.add(n as u64)
        }
    };
    while (d.rbuf.len() as u64) < n {
        let mut h = Half {
            io: &mut d.io,
            buf: &mut d.rbuf,
            count: &count,
        };
        if poll_fn(|cx| pump::poll_read(cx, &mut h)).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(d.rbuf.split_to(n as usize).freeze())
}

async fn forward_inner<'s>(
    d: &mut Downstream,
    req: &mut RequestHead,
    framing: Framing,
    f: &Forwarding<'s>,
    info: &mut StreamInfo,
    pump: &mut BodyPump,
) -> Result<Outcome, Failure<'s>> {
    let ctx = d.ctx.clone();
    let worker = &ctx.worker;
    let snap = &ctx.snapshot;
    let up = &*worker.stats.upstream;
    let target = snap
        .clusters
        .targets
        .get(f.target)
        .ok_or_else(|| ProxyError::new(ResponseFlag::NoHealthyUpstream, "no target"))?;
    let cluster = &target.cluster;
    let fwd = f.fwd;

    f.table.headers.apply_request(req);
    f.vh.headers.apply_request(req);
    fwd.headers.apply_request(req);
    if let Some(h) = &fwd.host_rewrite {
        req.set(":authority", h.as_bytes());
    }
    let rewritten = std::str::from_utf8(req.path_and_query())
        .ok()
        .and_then(|pq| fwd.rewrite_path(pq));
    if let Some(p) = rewritten {
        req.set_path_and_query(p.as_bytes());
    }

    let deadline = Instant::now() + f.timeouts.global;
    let max_attempts = 1 + fwd.retry.as_ref().map_or(0, |r| r.num_retries);
    let held: Option<Bytes> = match framing {
        Framing::Empty => Some(Bytes::new()),
        Framing::Length(n) if max_attempts > 1 && n <= REPLAY_LIMIT_BYTES => {
            match read_held_body(d, req, n).await {
                Ok(b) => {
                    info.bytes_received = n;
                    *pump = BodyPump::new(BodyDecoder::new(Framing::Empty), BodyEncoder::Identity);
                    Some(b)
                }
                Err(_) => {
                    info.flag = Some(ResponseFlag::DownstreamConnectionTermination);
                    return Err(Failure::Abort);
                }
            }
        }
        _ => None,
    };
    let replayable = held.is_some();
    let default_host = match req.host() {
        Some(_) => None,
        None => cluster.hosts.first().map(|h| h.address.to_string()),
    };
    let mut expect_pending = !replayable && req.expect_continue && d.rbuf.is_empty();
    let has_filters = !ctx.listener().filters.is_empty();

    let mut attempt = 0u32;
    let mut stale = 0u32;
    let mut _retry_slot = None;
    loop {
        attempt += 1;
        if attempt > 1 {
            let cs = up.clusters.get(cluster.index);
            match cluster.try_take(|g: &Gauges| &g.retries, cluster.limits.max_retries) {
                Some(s) => _retry_slot = Some(s),
                None => {
                    if let Some(c) = cs {
                        c.request_retry_overflow.inc();
                    }
                    return Err(
                        ProxyError::new(ResponseFlag::UpstreamOverflow, "max_retries").into(),
                    );
                }
            }
            if let Some(c) = cs {
                c.request_retry.inc();
            }
        }
        let more = attempt < max_attempts;
        let host = worker
            .pick_host(snap, f.target, &info.metadata)
            .and_then(|i| cluster.hosts.get(i))
            .ok_or_else(|| ProxyError::new(ResponseFlag::NoHealthyUpstream, "no host"))?;
        if has_filters {
            let addr = host.address.to_string();
            if let Some(r) = stream::run_filters(
                &ctx,
                Phase::AfterChooseHost,
                f.filters,
                req,
                info,
                Some(&cluster.name),
                Some(&addr),
                held.as_ref().map(|b| b.len() as u64),
            )
            .await
            {
                return Err(Failure::Answer(Answer::plain(r)));
            }
        }
        let (ci, hi) = (cluster.index, host.id);
        let _rq = cluster
            .try_take(|g: &Gauges| &g.requests, cluster.limits.max_requests)
            .ok_or_else(|| {
                up.both(ci, hi, |s| s.request_pending_overflow.inc());
                ProxyError::new(ResponseFlag::UpstreamOverflow, "max_requests")
            })?;
        let _busy = worker.busy(hi);
        info.upstream = Some(UpstreamRef {
            cluster: ci,
            host: hi,
            local: None,
        });

        let mut conn = match worker.pools.take_idle(cluster, host) {
            Some(c) => c,
            None => {
                if d.req_timer.deadline() != deadline {
                    d.req_timer.as_mut().reset(deadline);
                }
                let connected = tokio::select! {
                    r = worker.pools.connect(cluster, host) => r,
                    _ = &mut d.req_timer => {
                        return Err(ProxyError::new(ResponseFlag::UpstreamRequestTimeout, "route timeout").into());
                    }
                };
                match connected {
                    Ok(c) => c,
                    Err(e) if e.retryable && more => {
                        tracing::debug!(detail = %e.detail, "retrying after connect failure");
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        if let Some(u) = &mut info.upstream {
            u.local = conn.local;
        }
        let up_framing = match &held {
            Some(b) if b.is_empty() => Framing::Empty,
            Some(b) => Framing::Length(b.len() as u64),
            None => framing,
        };
        conn.wbuf.clear();
        let enc = encode::request(
            req,
            up_framing,
            RequestExtras {
                forwarded_for: Some(&ctx.client_ip),
                default_host: default_host.as_deref().map(str::as_bytes),
                // A request another parser could frame differently is the last on the upstream
                // connection too (see mosn_protocol::http1::parse).
                close: req.ambiguous.is_some(),
            },
            &mut conn.wbuf,
        );
        if let Some(b) = &held {
            conn.wbuf.put_slice(b);
            // The pump only writes the head and held body out, on every try.
            *pump = BodyPump::new(BodyDecoder::new(Framing::Empty), BodyEncoder::Identity);
        } else {
            pump.set_encoder(enc);
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
        info.request_sent = Some(sent_at.into_std() - info.start);
        if expect_pending {
            expect_pending = false;
            d.wbuf.put_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            if d.flush().await.is_err() {
                info.flag = Some(ResponseFlag::DownstreamConnectionTermination);
                return Err(Failure::Abort);
            }
        }
        let try_deadline = match f.timeouts.per_try {
            Some(p) => deadline.min(sent_at + p),
            None => deadline,
        };
        if d.req_timer.deadline() != try_deadline {
            d.req_timer.as_mut().reset(try_deadline);
        }
        let reused = conn.requests > 0;
        let is_head = req.is_head();
        let head = {
            let Downstream {
                io,
                rbuf,
                req_timer,
                ctx: dctx,
                ..
            } = &mut *d;
            let dl = dctx.worker.stats.listeners.get(dctx.listener);
            let count_down = move |n: usize| {
                if let Some(l) = dl {
                    l.bytes_read_total.add(n as u64)
                }
            };
            let mut seen = pump.bytes;
            let fut = poll_fn(|cx| {
                if !pump.finished {
                    let UpstreamConn { io: uio, wbuf, .. } = &mut conn;
                    let c = &conn_counter(ci, hi, up, true);
                    let r = pump.poll(
                        cx,
                        &mut Half {
                            io,
                            buf: rbuf,
                            count: &count_down,
                        },
                        &mut Half {
                            io: uio,
                            buf: wbuf,
                            count: c,
                        },
                    );
                    match r {
                        Poll::Ready(Ok(())) | Poll::Pending => {}
                        Poll::Ready(Err(PumpError::Source(_))) => {
                            return Poll::Ready(Err(HeadError::Downstream))
                        }
                        Poll::Ready(Err(PumpError::Body(_))) => {
                            return Poll::Ready(Err(HeadError::BadBody))
                        }
                        Poll::Ready(Err(PumpError::Dest(e))) => {
                            return Poll::Ready(Err(HeadError::Upstream {
                                got_bytes: !conn.buf.is_empty(),
                                detail: e.to_string(),
                            }))
                        }
                    }
                    if has_filters && pump.bytes != seen {
                        seen = pump.bytes;
                        if let Some(r) = stream::run_data_filters(&ctx, f.filters, seen, info) {
                            return Poll::Ready(Err(HeadError::Filter(r)));
                        }
                    }
                }
                poll_response_head(cx, &mut conn, is_head, ci, hi, up)
            });
            tokio::select! {
                biased;
                r = fut => r,
                _ = req_timer => Err(HeadError::Timeout),
            }
        };
        let parsed = match head {
            Ok(p) => p,
            Err(HeadError::Timeout) => {
                up.both(ci, hi, |s| {
                    s.request_timeout.inc();
                    s.response_failed.inc();
                });
                let overall = Instant::now() >= deadline;
                if more && !overall && replayable {
                    continue;
                }
                return Err(
                    ProxyError::new(ResponseFlag::UpstreamRequestTimeout, "route timeout").into(),
                );
            }
            Err(HeadError::Downstream) => {
                info.flag = Some(ResponseFlag::DownstreamConnectionTermination);
                return Err(Failure::Abort);
            }
            Err(HeadError::BadBody) => {
                return Err(
                    ProxyError::new(ResponseFlag::DownstreamProtocolError, "bad body").into(),
                )
            }
            Err(HeadError::Filter(r)) => return Err(Failure::Answer(Answer::plain(r))),
            Err(HeadError::Upstream { got_bytes, detail }) => {
                if reused && !got_bytes && (replayable || !pump.touched) && stale < STALE_TRIES {
                    // The pooled connection was closed by the upstream while idle.
                    stale += 1;
                    attempt -= 1;
                    continue;
                }
                up.both(ci, hi, |s| {
                    s.request_remote_reset.inc();
                    s.response_failed.inc();
                });
                let e = ProxyError::new(
                    ResponseFlag::UpstreamConnectionTermination,
                    format!("upstream {}: {detail}", host.address),
                );
                if more && replayable {
                    continue;
                }
                return Err(e.into());
            }
        };
        let now = Instant::now();
        info.response_head = Some(now.into_std() - info.start);
        let Parsed {
            head: mut resp,
            framing: rframing,
        } = parsed;
        let failed = resp.status >= 500;
        up.both(ci, hi, |s| {
            s.request_duration_time.observe(now - sent_at);
            if failed {
                s.response_failed.inc();
            } else {
                s.response_success.inc();
            }
        });
        if more && replayable && stream::is_retry_status(fwd, resp.status) {
            tracing::debug!(status = resp.status, "retrying after status");
            continue;
        }
        f.table.headers.apply_response(&mut resp);
        f.vh.headers.apply_response(&mut resp);
        fwd.headers.apply_response(&mut resp);
        if let Some(r) = stream::run_response_filters(&ctx, f.filters, &mut resp, info) {
            return Err(Failure::Answer(Answer::plain(r)));
        }
        let opts = ResponseOptions {
            client_minor: req.minor,
            close: !req.keep_alive || worker.draining.get(),
            head_request: is_head,
        };
        let (enc, close) = encode::response(&resp, rframing, opts, &mut d.wbuf);
        info.status = resp.status;
        let dec = if enc == BodyEncoder::Discard {
            BodyDecoder::new(Framing::Empty)
        } else {
            BodyDecoder::new(rframing)
        };
        let mut resp_pump = BodyPump::new(dec, enc);
        let body = {
            let Downstream {
                io,
                rbuf,
                wbuf,
                ctx: dctx,
                ..
            } = &mut *d;
            let dl = dctx.worker.stats.listeners.get(dctx.listener);
            let count_down_read = move |n: usize| {
                if let Some(l) = dl {
                    l.bytes_read_total.add(n as u64)
                }
            };
            let count_down_write = move |n: usize| {
                if let Some(l) = dl {
                    l.bytes_write_total.add(n as u64)
                }
            };
            let mut abandoned = false;
            poll_fn(|cx| {
                if !pump.finished && !abandoned {
                    let UpstreamConn {
                        io: uio, wbuf: uw, ..
                    } = &mut conn;
                    let c = &conn_counter(ci, hi, up, true);
                    match pump.poll(
                        cx,
                        &mut Half {
                            io: &mut *io,
                            buf: &mut *rbuf,
                            count: &count_down_read,
                        },
                        &mut Half {
                            io: uio,
                            buf: uw,
                            count: c,
                        },
                    ) {
                        Poll::Ready(Ok(())) | Poll::Pending => {}
                        Poll::Ready(Err(PumpError::Dest(_))) => abandoned = true,
                        Poll::Ready(Err(_)) => return Poll::Ready(Err(false)),
                    }
                }
                let UpstreamConn {
                    io: uio, buf: ub, ..
                } = &mut conn;
                let c = &conn_counter(ci, hi, up, false);
                match resp_pump.poll(
                    cx,
                    &mut Half {
                        io: uio,
                        buf: ub,
                        count: c,
                    },
                    &mut Half {
                        io: &mut *io,
                        buf: &mut *wbuf,
                        count: &count_down_write,
                    },
                ) {
                    Poll::Ready(Ok(())) => Poll::Ready(Ok(abandoned)),
                    // The upstream cut the body short, or the client stopped reading.
                    Poll::Ready(Err(PumpError::Dest(_))) => Poll::Ready(Err(false)),
                    Poll::Ready(Err(_)) => Poll::Ready(Err(true)),
                    Poll::Pending => Poll::Pending,
                }
            })
            .await
        };
        info.bytes_sent = resp_pump.bytes;
        if !replayable {
            info.bytes_received = pump.bytes;
        }
        return Ok(match body {
            Ok(abandoned) => {
                let reusable = resp.keep_alive
                    && pump.finished
                    && !abandoned
                    && conn.buf.is_empty()
                    && req.ambiguous.is_none();
                if reusable {
                    worker.pools.release(cluster, conn);
                }
                Outcome {
                    keep_alive: !close && pump.finished,
                    response: Some(resp),
                    completed: true,
                }
            }
            Err(upstream_cut) => {
                if upstream_cut {
                    up.both(ci, hi, |s| s.request_remote_reset.inc());
                    info.flag = Some(ResponseFlag::UpstreamConnectionTermination);
                } else {
                    info.flag = Some(ResponseFlag::DownstreamConnectionTermination);
                }
                Outcome {
                    keep_alive: false,
                    response: Some(resp),
                    completed: false,
                }
            }
        });
    }
}

/// A byte counter for an upstream connection's stats (`write`: bytes written, else read).
pub(crate) fn conn_counter(
    cluster: usize,
    host: usize,
    up: &UpstreamStatsSet,
    write: bool,
) -> impl Fn(usize) + '_ {
    move |n| {
        up.both(cluster, host, |s| {
            if write {
                s.connection_bytes_write.add(n as u64)
            } else {
                s.connection_bytes_read_total.add(n as u64)
            }
        })
    }
}

/// Reads the upstream's response head, skipping 1xx interim responses.
pub(crate) fn poll_response_head(
    cx: &mut std::task::Context<'_>,
    conn: &mut UpstreamConn,
    is_head: bool,
    ci: usize,
    hi: usize,
    up: &UpstreamStatsSet,
) -> Poll<Result<Parsed<ResponseHead>, HeadError>> {
    loop {
        if !conn.buf.is_empty() {
            match parse_response(&mut conn.buf, is_head) {
                Ok(Some(p)) if p.head.status == 101 => {
                    return Poll::Ready(Err(HeadError::Upstream {
                        got_bytes: true,
                        detail: "unexpected 101 Switching Protocols".into(),
                    }))
                }
                Ok(Some(p)) if p.head.status < 200 => continue,
                Ok(Some(p)) => return Poll::Ready(Ok(p)),
                Ok(None) => {}
                Err(e) => {
                    return Poll::Ready(Err(HeadError::Upstream {
                        got_bytes: true,
                        detail: format!("bad response: {e}"),
                    }))
                }
            }
        }
        let got_bytes = !conn.buf.is_empty();
        let UpstreamConn { io, buf, .. } = conn;
        let c = conn_counter(ci, hi, up, false);
        let mut h = Half { io, buf, count: &c };
        match std::task::ready!(pump::poll_read(cx, &mut h)) {
            Ok(0) => {
                return Poll::Ready(Err(HeadError::Upstream {
                    got_bytes,
                    detail: "closed before the response head".into(),
                }))
            }
            Ok(_) => {}
            Err(e) => {
                return Poll::Ready(Err(HeadError::Upstream {
                    got_bytes,
                    detail: e.to_string(),
                }))
            }
        }
    }
}
