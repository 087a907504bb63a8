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
use mosn_api::{LocalReply, ProxyError, ResponseFlag, StreamInfo};
use mosn_protocol::http1::encode::{self, RequestExtras, ResponseOptions};
use mosn_protocol::http1::{
    parse_response, BodyDecoder, BodyEncoder, Framing, Parsed, RequestHead, ResponseHead,
};
use mosn_upstream::stats::UpstreamStatsSet;
use mosn_upstream::UpstreamConn;

use super::pump::{self, BodyPump, Half, PumpError};
use super::{Downstream, Outcome};
use crate::stream::upstream::{
    begin_try, response_received, rewrite_request, rewrite_response, Failure, Tries, Try, TryActive,
};
use crate::stream::{self, Answer, Forwarding};
use crate::transcode::{self, Upstream};

/// A request body with a `Content-Length` up to this many bytes is held in memory when the route
/// has retries, so it can be sent again; larger or chunked bodies stream and are not retried once
/// sent.
pub const REPLAY_LIMIT_BYTES: u64 = 64 * 1024;

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
    let listener = match d.ctx.listener().kind {
        crate::snapshot::ListenerKind::Proxy { upstream, .. } => upstream,
        _ => mosn_config::Protocol::Http1,
    };
    match transcode::upstream(info, listener) {
        Upstream::Http2 => return super::to_h2::forward(d, req, framing, f, info).await,
        Upstream::Rpc => return super::transcode::forward(d, req, framing, f, info).await,
        Upstream::Refused => {
            return d
                .failed(req, framing, transcode::untranscoded(), info)
                .await
        }
        Upstream::Http1 => {}
    }
    let mut pump = BodyPump::new(BodyDecoder::new(framing), BodyEncoder::Identity);
    match forward_inner(d, req, framing, &f, info, &mut pump).await {
        Ok(o) => o,
        Err(e) => {
            // What is left of the request body decides whether the connection can go on.
            let left = if pump.decoded() {
                Framing::Empty
            } else if pump.touched {
                Framing::Chunked
            } else {
                framing
            };
            d.failed(req, left, e, info).await
        }
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
    let count = ctx.read_counter();
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
    let up = &*worker.stats.upstream;
    rewrite_request(f, req);
    let held = hold_body(d, req, framing, f, info).await?;
    if matches!(framing, Framing::Length(_)) && held.is_some() {
        *pump = BodyPump::new(BodyDecoder::new(Framing::Empty), BodyEncoder::Identity);
    }
    let replayable = held.is_some();
    let mut tries = Tries::new(f, replayable);
    let default_host = match req.host() {
        Some(_) => None,
        None => ctx
            .snapshot
            .clusters
            .targets
            .get(f.target)
            .and_then(|t| t.cluster.hosts.first())
            .map(|h| h.address.to_string()),
    };
    let mut expect_pending = !replayable && req.expect_continue && d.rbuf.is_empty();
    let has_filters = !ctx.listener().filters.is_empty();

    loop {
        let attempt = tries.start_try();
        let held_len = held.as_ref().map(|b| b.len() as u64);
        let t = begin_try(&ctx, f, req, info, attempt, held_len).await?;
        let (cluster, host) = (t.cluster, &t.host);
        let (ci, hi) = (cluster.index, host.id);
        let Some(mut conn) = http1_conn(worker, &t, &tries, d.req_timer.as_mut()).await? else {
            continue;
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
        let _try_active = TryActive::start(up, ci, hi);
        let (sent_at, try_deadline) = tries.sent(info);
        if expect_pending {
            expect_pending = false;
            d.wbuf.put_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            if d.flush().await.is_err() {
                info.flag = Some(ResponseFlag::DownstreamConnectionTermination);
                return Err(Failure::Abort);
            }
        }
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
            let count_down = dctx.read_counter();
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
                tries.timed_out(up, ci, hi)?;
                continue;
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
                // A pooled connection the upstream closed while idle: not a try.
                if reused && !got_bytes && (replayable || !pump.touched) && tries.stale() {
                    continue;
                }
                tries.upstream_reset(up, host, ci, detail)?;
                continue;
            }
        };
        let Parsed {
            head: mut resp,
            framing: rframing,
        } = parsed;
        response_received(up, ci, hi, info, sent_at, resp.status);
        if tries.more() && stream::is_retry_status(f.fwd, resp.status) {
            tracing::debug!(status = resp.status, "retrying after status");
            continue;
        }
        rewrite_response(f, &mut resp);
        if let Some(r) = stream::run_response_filters(&ctx, f.filters, &mut resp, info) {
            return Err(Failure::Answer(Answer::plain(r)));
        }
        let opts = ResponseOptions {
            client_minor: req.minor,
            close: d.closing(req.keep_alive),
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
            let count_down_read = dctx.read_counter();
            let count_down_write = dctx.write_counter();
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

/// The request body to send on every try, when it can be held: none (empty), or a
/// `Content-Length` body of at most [`REPLAY_LIMIT_BYTES`] on a route with retries, read whole
/// now. `None`: the body streams and cannot be retried once sent.
///
/// Errors: `Abort` (flag `DC`) when the client goes away while the body is read.
pub(crate) async fn hold_body(
    d: &mut Downstream,
    req: &RequestHead,
    framing: Framing,
    f: &Forwarding<'_>,
    info: &mut StreamInfo,
) -> Result<Option<Bytes>, Failure<'static>> {
    let retries = f.fwd.retry.as_ref().is_some_and(|r| r.num_retries > 0);
    match framing {
        Framing::Empty => Ok(Some(Bytes::new())),
        Framing::Length(n) if retries && n <= REPLAY_LIMIT_BYTES => {
            match read_held_body(d, req, n).await {
                Ok(b) => {
                    info.bytes_received = n;
                    Ok(Some(b))
                }
                Err(_) => {
                    info.flag = Some(ResponseFlag::DownstreamConnectionTermination);
                    Err(Failure::Abort)
                }
            }
        }
        _ => Ok(None),
    }
}

/// A pooled HTTP/1 connection to the try's host, or a new one opened before the stream's deadline
/// (`timer` is reset to it). `Ok(None)`: the connect failed and the route has a try left.
///
/// Errors: `UT` when the deadline passes while connecting; the pool's `UF`/`UO`.
pub(crate) async fn http1_conn(
    worker: &crate::worker::state::Worker,
    t: &Try<'_>,
    tries: &Tries,
    mut timer: std::pin::Pin<&mut tokio::time::Sleep>,
) -> Result<Option<UpstreamConn>, ProxyError> {
    if let Some(c) = worker.pools.take_idle(t.cluster, &t.host) {
        return Ok(Some(c));
    }
    if timer.deadline() != tries.deadline {
        timer.as_mut().reset(tries.deadline);
    }
    let connected = tokio::select! {
        r = worker.pools.connect(t.cluster, &t.host) => r,
        _ = timer => {
            return Err(ProxyError::new(ResponseFlag::UpstreamRequestTimeout, "route timeout"));
        }
    };
    match connected {
        Ok(c) => Ok(Some(c)),
        Err(e) if e.retryable && tries.left() => {
            tracing::debug!(detail = %e.detail, "retrying after connect failure");
            Ok(None)
        }
        Err(e) => Err(e),
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
