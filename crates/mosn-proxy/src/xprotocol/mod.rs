//! The XProtocol driver (MOSN 0.26's framework): one generic connection driver that serves every
//! multiplexed RPC protocol implementing [`XProtocol`] (Bolt, Dubbo), downstream and
//! upstream ([`upstream`]).
//!
//! Downstream, one task per client connection reads frames and serves each request as a stream
//! of its own, all at once (answers go out as they complete, out of order). Heartbeats are
//! answered by the proxy itself. Each request goes through [`crate::stream`] like an HTTP request
//! (filters, route by the frame's header fields, load balancer), then out on a multiplexed
//! upstream connection with a fresh id; the response comes back with the client's id. Every
//! failure is answered with the protocol's own error response ([`XProtocol::hijack`]): no route,
//! no host, overflow, connect failure, connection closed, timeout. Oneway requests are forwarded
//! without waiting and get no answer.
//!
//! Timeouts: the route's `timeout` (MOSN's 60 s global default), shortened by the frame's own
//! timeout field when it has one ([`XProtocol::timeout`]).
//!
//! A new config snapshot (new clusters, hosts or routes applied at run time) is taken from the
//! next request on; requests in flight finish on the one they started with.
//!
//! On drain (SIGTERM), the protocol's GoAway (when it has one) tells the client to stop sending
//! on this connection; requests in flight are answered, then the connection closes.

pub mod io;
pub mod upstream;

use std::future::{poll_fn, Future};
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::stream::{FuturesUnordered, StreamExt};
use mosn_api::{LocalReply, ProxyError, ResponseFlag, StreamInfo};
use mosn_protocol::xprotocol::{FrameKind, XProtocol};
use tokio::time::Instant;

use crate::conn::Accepted;
use crate::conn::{ConnCtx, Counted};
use crate::stream::upstream::{
    begin_try, response_received, rewrite_request, rewrite_response, Failure, Tries, TryActive,
};
use crate::stream::{self, run_response_filters, Answer, Forwarding, Routed};
use crate::worker::state::Worker;
use io::{poll_drain, poll_fill};
use upstream::{wait, Outcome, XConn, XPool};

/// Requests a client may have in flight on one connection; past it the connection is not read
/// until some are answered.
pub const MAX_IN_FLIGHT: usize = 10_000;
/// Answers a client may leave unread, in bytes, before its connection is not read further.
pub const MAX_UNREAD_ANSWERS: usize = 4 << 20;

/// An XProtocol the proxy serves: the protocol and where a worker keeps its upstream pool.
pub trait Served: XProtocol + Sized {
    /// The worker's multiplexed pool for this protocol.
    fn pool(worker: &Worker) -> &XPool<Self>;
}

impl Served for mosn_protocol::bolt::Bolt {
    fn pool(worker: &Worker) -> &XPool<Self> {
        &worker.xpools.bolt
    }
}

impl Served for mosn_protocol::dubbo::Dubbo {
    fn pool(worker: &Worker) -> &XPool<Self> {
        &worker.xpools.dubbo
    }
}

/// The XProtocol pools of a worker.
#[derive(Default)]
pub struct XPools {
    /// Bolt (v1 and v2 frames on one connection, as the upstream reads both).
    pub bolt: XPool<mosn_protocol::bolt::Bolt>,
    /// Dubbo.
    pub dubbo: XPool<mosn_protocol::dubbo::Dubbo>,
}

/// Serves one downstream connection of protocol `proto` until it closes. `initial` holds bytes
/// already read (by protocol detection).
pub async fn serve<P: Served>(mut accepted: Accepted, proto: P) {
    // Moved here by a hot upgrade: answers the old process still owes this connection.
    let mut late = accepted.late.take();
    let (_conn, mut ctx, io, initial) = accepted.open();
    let peer = ctx.peer;
    let proto = Rc::new(proto);
    let mut io = Counted::new(io, BytesMut::new(), &ctx);
    let mut rbuf = initial;
    let mut wbuf = BytesMut::new();
    let mut streams = FuturesUnordered::new();
    let mut reading = true;
    let mut draining = false;
    // A hot upgrade moves this connection, between frames, instead of a GoAway.
    let mut moving = false;
    let idle = ctx.listener().idle_timeout;
    let mut last_active = Instant::now();
    loop {
        // Every complete frame in the buffer.
        while reading && streams.len() < MAX_IN_FLIGHT {
            match proto.decode(&mut rbuf) {
                Ok(Some(frame)) => match proto.kind(&frame) {
                    FrameKind::Heartbeat => proto.encode(&proto.heartbeat_reply(&frame), &mut wbuf),
                    FrameKind::Request | FrameKind::Oneway => {
                        // New clusters and routes (a registry, a reload) apply from the next
                        // request on: RPC connections live long.
                        if let Some(fresh) = ctx.refreshed() {
                            ctx = Rc::new(fresh);
                        }
                        streams.push(serve_stream(ctx.clone(), proto.clone(), frame))
                    }
                    // Replies and GoAways from a client carry nothing for the proxy.
                    _ => {}
                },
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "not a {} frame; closing", proto.protocol().mosn_name());
                    ctx.worker.stats.flag(ResponseFlag::DownstreamProtocolError);
                    reading = false;
                }
            }
        }
        if ctx.draining() && !draining {
            draining = true;
            moving = io.is_plain() && ctx.worker.transfer.get().is_some();
            if !moving {
                if let Some(g) = proto.goaway() {
                    proto.encode(&g, &mut wbuf);
                }
            }
        }
        // Between frames, every answer ready written, and owing nothing a previous process
        // still had to forward: the connection moves, with the bytes of a frame begun (calls
        // sent since stay in the socket, which moves too). The answers still owed follow it.
        let movable = moving && reading && wbuf.is_empty() && late.is_none();
        if let (true, Some(path)) = (movable, ctx.worker.transfer.get()) {
            let (stream, initial) = io.into_inner();
            let mut unread = initial.to_vec();
            unread.extend_from_slice(&rbuf);
            match crate::transfer::move_stream(stream, unread, path.clone()).await {
                Ok(id) => return forward_owed(streams, id, path).await,
                Err(None) => return,
                Err(Some(s)) => {
                    // Not taken: it drains here, told so where the protocol can.
                    io = Counted::new(s, initial, &ctx);
                    moving = false;
                    if let Some(g) = proto.goaway() {
                        proto.encode(&g, &mut wbuf);
                    }
                    continue;
                }
            }
        }
        if (!reading || (draining && late.is_none())) && streams.is_empty() && wbuf.is_empty() {
            break;
        }
        let idle_at = idle
            .filter(|_| streams.is_empty() && wbuf.is_empty() && late.is_none())
            .map(|t| last_active + t);
        let mut idle_timer = std::pin::pin!(async {
            match idle_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        });
        let mut drain = std::pin::pin!(ctx.worker.drain.notified());
        let room = wbuf.len() < MAX_UNREAD_ANSWERS && streams.len() < MAX_IN_FLIGHT;
        enum Ev {
            Done,
            Read,
            Written,
            Gone,
            Idle,
            Drain,
        }
        let ev = poll_fn(|cx| {
            // Every answer ready now goes out in one write.
            let mut done = false;
            while let Poll::Ready(Some(out)) = streams.poll_next_unpin(cx) {
                if let Some(answer) = out {
                    wbuf.extend_from_slice(&answer);
                }
                done = true;
            }
            // Whole frames from the previous process go out between this one's.
            while let Some(rx) = late.as_mut() {
                match rx.poll_recv(cx) {
                    Poll::Ready(Some(answers)) => wbuf.extend_from_slice(&answers),
                    Poll::Ready(None) => late = None,
                    Poll::Pending => break,
                }
                done = true;
            }
            if !wbuf.is_empty() {
                let before = wbuf.len();
                match poll_drain(cx, &mut io, &mut wbuf) {
                    Poll::Ready(Err(_)) => return Poll::Ready(Ev::Gone),
                    Poll::Ready(Ok(())) => return Poll::Ready(Ev::Written),
                    Poll::Pending if wbuf.len() < before => return Poll::Ready(Ev::Written),
                    Poll::Pending => {}
                }
            }
            if done {
                return Poll::Ready(Ev::Done);
            }
            if reading && room && !draining {
                match poll_fill(cx, &mut io, &mut rbuf) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Ev::Gone),
                    Poll::Ready(Ok(_)) => return Poll::Ready(Ev::Read),
                    Poll::Pending => {}
                }
            }
            if !draining && drain.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ev::Drain);
            }
            if idle_timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ev::Idle);
            }
            Poll::Pending
        })
        .await;
        match ev {
            Ev::Done | Ev::Written | Ev::Drain => {}
            Ev::Read => last_active = Instant::now(),
            Ev::Idle => break,
            Ev::Gone => {
                // The client is gone (or its bytes ended): what is in flight still finishes its
                // bookkeeping, its answers have nowhere to go.
                wbuf.clear();
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    while streams.next().await.is_some() {}
                })
                .await;
                break;
            }
        }
    }
}

/// Old process, once the connection moved as `id`: forwards each answer still owed to the new
/// process as it completes (every answer ready at once in one message), then says nothing more
/// is owed.
async fn forward_owed<F>(mut streams: FuturesUnordered<F>, id: u32, path: std::path::PathBuf)
where
    F: Future<Output = Option<BytesMut>>,
{
    use futures_util::FutureExt;
    while let Some(first) = streams.next().await {
        let mut batch = first.unwrap_or_default();
        while let Some(Some(more)) = streams.next().now_or_never() {
            if let Some(answer) = more {
                batch.extend_from_slice(&answer);
            }
        }
        if !batch.is_empty() {
            crate::transfer::forward(path.clone(), id, batch.freeze()).await;
        }
    }
    crate::transfer::forward(path, id, bytes::Bytes::new()).await;
}

/// Serves one request: route, then the upstream exchange or a local answer in the protocol's own
/// error response, then the stream's end. Returns the encoded answer (none for a oneway).
async fn serve_stream<P: Served>(
    ctx: Rc<ConnCtx>,
    proto: Rc<P>,
    mut frame: P::Frame,
) -> Option<BytesMut> {
    let stats = &ctx.worker.stats;
    if let Some(l) = stats.listeners.get(ctx.listener) {
        l.request_total.inc();
        l.request_active.inc();
    }
    stats.active_requests.inc();
    let mut info = StreamInfo::new(proto.protocol(), std::time::Instant::now());
    info.http_minor = 0;
    let oneway = proto.kind(&frame) == FrameKind::Oneway;
    let id = proto.request_id(&frame);
    let answer = match proto.refused(&frame) {
        Some(reply) => Err(Failure::Answer(Answer::plain(reply))),
        None => match stream::route(&ctx, &mut frame, &mut info, None).await {
            Routed::Answer(a) => Err(Failure::Answer(a)),
            Routed::Forward(f) => forward(&ctx, &proto, &mut frame, &f, oneway, &mut info).await,
        },
    };
    let response = match answer {
        Ok(r) => r,
        Err(Failure::Answer(a)) => Some(hijack(&ctx, &*proto, &frame, a, &mut info)),
        Err(Failure::Abort) => None,
    };
    let mut response = response;
    let out = match &mut response {
        Some(r) if !oneway => {
            proto.set_request_id(r, id);
            let mut out = BytesMut::new();
            proto.encode(r, &mut out);
            Some(out)
        }
        _ => None,
    };
    stream::finish(
        &ctx,
        info,
        &frame,
        response.as_ref().map(|r| r as &dyn mosn_api::Headers),
        true,
    );
    out
}

/// The protocol's error response for a local answer, after the BeforeSend filters.
fn hijack<P: XProtocol>(
    ctx: &ConnCtx,
    proto: &P,
    request: &P::Frame,
    a: Answer<'_>,
    info: &mut StreamInfo,
) -> P::Frame {
    let flag = a.reply.flag;
    let (head, reply) = a.render(ctx, info, |status| {
        proto.hijack(
            request,
            &LocalReply {
                flag,
                status,
                body: bytes::Bytes::new(),
            },
        )
    });
    info.status = reply.status;
    head
}

/// Sends a request upstream (with the route's retries for connection failures) and returns the
/// response, or `None` for a oneway.
pub(crate) async fn forward<'s, P: Served>(
    ctx: &'s ConnCtx,
    proto: &Rc<P>,
    frame: &mut P::Frame,
    f: &Forwarding<'s>,
    oneway: bool,
    info: &mut StreamInfo,
) -> Result<Option<P::Frame>, Failure<'s>> {
    rewrite_request(f, frame);
    let mut tries = Tries::new(f, true);
    if let Some(t) = proto.timeout(frame) {
        tries.deadline = tries.deadline.min(Instant::now() + t);
    }
    let up = &*ctx.worker.stats.upstream;
    loop {
        let attempt = tries.start_try();
        let t = begin_try(ctx, f, frame, info, attempt, None).await?;
        let (ci, hi) = (t.cluster.index, t.host.id);
        let pooled = P::pool(&ctx.worker).conn(&ctx.worker.pools, t.cluster, &t.host, proto);
        let conn: Rc<XConn<P>> = match tokio::time::timeout_at(tries.deadline, pooled).await {
            Err(_) => {
                return Err(
                    ProxyError::new(ResponseFlag::UpstreamRequestTimeout, "route timeout").into(),
                )
            }
            Ok(Err(e)) if e.retryable && tries.left() => continue,
            Ok(Err(e)) => return Err(e.into()),
            Ok(Ok(c)) => c,
        };
        if let Some(u) = &mut info.upstream {
            u.local = conn.local;
        }
        let _active = TryActive::start(up, ci, hi);
        let pending = conn.send(frame, !oneway);
        let (sent_at, until) = tries.sent(info);
        let Some(pending) = pending else {
            // A oneway is done once it is on its way.
            info.status = 200;
            return Ok(None);
        };
        match wait(&conn, pending, until).await {
            Outcome::Response(mut resp) => {
                let status = proto.http_status(&resp);
                response_received(up, ci, hi, info, sent_at, status);
                rewrite_response(f, &mut resp);
                if let Some(r) = run_response_filters(ctx, f.filters, &mut resp, info) {
                    return Err(Failure::Answer(Answer::plain(r)));
                }
                info.status = status;
                return Ok(Some(resp));
            }
            Outcome::Closed => tries.upstream_reset(up, &t.host, ci, "connection closed")?,
            Outcome::TimedOut => tries.timed_out(up, ci, hi)?,
        }
    }
}
