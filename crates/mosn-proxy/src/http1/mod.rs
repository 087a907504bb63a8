//! The HTTP/1 downstream driver: one task per client connection reads request heads (pipelined
//! requests are served in order), runs each stream through [`crate::stream`], and writes the
//! answer, local or from the upstream ([`exchange`]).
//!
//! Timers are per connection, not per request: one for the idle and header timeouts, one for the
//! request deadline, each reset in place. Lifecycle:
//! - idle for `connection_idle_timeout` between requests: closed;
//! - a request head not complete within `client_header_timeout` (60 s, nginx's default): 408, close;
//! - drain (SIGTERM): a busy connection gets `Connection: close` on its next response and then
//!   closes; an idle one closes [`DRAIN_IDLE_GRACE`] after the drain started unless a request
//!   arrives first (which is then served with `Connection: close`), so a request already on its
//!   way never meets a closed socket.

pub mod exchange;
pub mod pump;
pub mod to_h2;
pub mod transcode;

use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use mosn_api::{Headers, LocalReply, Protocol, ResponseFlag, StreamInfo};
use mosn_net::Stream;
use mosn_protocol::http1::encode::{self, ResponseOptions};
use mosn_protocol::http1::{parse_request, Framing, Parsed, RequestHead, ResponseHead};
use tokio::io::AsyncWriteExt;
use tokio::time::{Instant, Sleep};

use crate::conn::Accepted;
use crate::conn::ConnCtx;
use crate::stream::{self, Answer, Routed};
use pump::Half;

/// nginx's `client_header_timeout` default: a request head must be complete this long after its
/// first byte arrived.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(60);

/// How long an idle keep-alive connection stays open once the drain has started, for a request
/// the client may already have sent.
pub const DRAIN_IDLE_GRACE: Duration = Duration::from_secs(1);

/// A deadline far enough away to mean "none".
fn never() -> Instant {
    Instant::now() + Duration::from_secs(86400 * 365)
}

/// A client connection being served.
pub struct Downstream {
    /// The client stream.
    pub io: Stream,
    /// Bytes read from the client not yet consumed.
    pub rbuf: BytesMut,
    /// Bytes for the client not yet written.
    pub wbuf: BytesMut,
    /// Idle and header timeout.
    idle_timer: Pin<Box<Sleep>>,
    /// Request deadlines (route timeout).
    pub req_timer: Pin<Box<Sleep>>,
    /// The connection's context.
    pub ctx: Rc<ConnCtx>,
    last_active: Instant,
    /// A hot upgrade's new process did not take this connection: it drains here.
    stays: bool,
}

/// How a request head read ended.
enum HeadRead {
    Head(Box<Parsed<RequestHead>>),
    /// The client closed, the connection idled out, or the drain closed it.
    Closed,
    /// A bad head: answer with this status and close.
    Refused(u16),
    /// A hot upgrade: move this idle connection to the new process's `conn.sock` at this path.
    Transfer(std::path::PathBuf),
}

/// How a stream ended, for the connection.
pub struct Outcome {
    /// The connection can serve another request.
    pub keep_alive: bool,
    /// The response head sent, for the access log.
    pub response: Option<ResponseHead>,
    /// The response was sent whole.
    pub completed: bool,
}

impl Downstream {
    /// True when the response to a request must close the connection: the client asked, or the
    /// server drains (the listener removed, or SIGTERM), unless a hot upgrade will move this
    /// connection to the new process once idle.
    pub fn closing(&self, keep_alive: bool) -> bool {
        let movable = || {
            !self.stays
                && matches!(self.io, Stream::Tcp(_) | Stream::Unix(_))
                && self.ctx.worker.transfer.get().is_some()
        };
        !keep_alive || (self.ctx.draining() && !movable())
    }

    /// Writes everything in `wbuf` to the client.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        let count = self.ctx.write_counter();
        let mut h = Half {
            io: &mut self.io,
            buf: &mut self.wbuf,
            count: &count,
        };
        std::future::poll_fn(|cx| pump::poll_write_all(cx, &mut h)).await
    }

    async fn read_head(&mut self) -> HeadRead {
        let listener = self.ctx.listener();
        let header_timeout = listener.header_timeout;
        let idle_timeout = listener.idle_timeout;
        let mut head_started: Option<Instant> = None;
        loop {
            if !self.rbuf.is_empty() {
                match parse_request(&mut self.rbuf) {
                    Ok(Some(p)) => return HeadRead::Head(Box::new(p)),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::debug!(peer = %self.ctx.peer, error = %e, "bad request head");
                        return HeadRead::Refused(e.status());
                    }
                }
                head_started.get_or_insert_with(Instant::now);
            }
            let idle = head_started.is_none();
            // A hot upgrade drains this process: an idle plaintext connection moves to the new
            // one (MOSN closes it) instead of waiting to close.
            if idle
                && !self.stays
                && self.ctx.worker.draining.get()
                && matches!(self.io, Stream::Tcp(_) | Stream::Unix(_))
            {
                if let Some(path) = self.ctx.worker.transfer.get() {
                    return HeadRead::Transfer(path);
                }
            }
            let drain_close = match self.ctx.drain_started() {
                Some(t) if idle => {
                    let at = t + DRAIN_IDLE_GRACE;
                    if Instant::now() >= at {
                        return HeadRead::Closed;
                    }
                    at
                }
                _ => never(),
            };
            // A head in progress must complete within the header timeout, and like an idle
            // connection it closes when no byte came for the idle timeout.
            let idle_deadline = idle_timeout.map_or_else(never, |i| self.last_active + i);
            let deadline = match head_started {
                Some(t) => idle_deadline.min(t + header_timeout),
                None => idle_deadline.min(drain_close),
            };
            if self.idle_timer.deadline() != deadline {
                self.idle_timer.as_mut().reset(deadline);
            }
            let count = self.ctx.read_counter();
            let drain = self.ctx.worker.drain.notified();
            let mut h = Half {
                io: &mut self.io,
                buf: &mut self.rbuf,
                count: &count,
            };
            tokio::select! {
                biased;
                r = std::future::poll_fn(|cx| pump::poll_read(cx, &mut h)) => match r {
                    Ok(0) | Err(_) => return HeadRead::Closed,
                    Ok(_) => {
                        if idle_timeout.is_some() {
                            self.last_active = Instant::now();
                        }
                    }
                },
                _ = &mut self.idle_timer => {
                    let header_late = head_started.is_some_and(|t| Instant::now() >= t + header_timeout);
                    return if header_late { HeadRead::Refused(408) } else { HeadRead::Closed };
                }
                // The drain started: go round to set the idle connection's closing time.
                _ = drain, if idle => {}
            }
        }
    }

    /// Answers locally: status, body, `Location`, mutations, BeforeSend filters. The body of the
    /// request, if not read, makes the connection close after the answer.
    pub async fn answer(
        &mut self,
        req: &RequestHead,
        framing: Framing,
        answer: Answer<'_>,
        info: &mut StreamInfo,
    ) -> Outcome {
        let (mut head, reply) = answer.render(&self.ctx, info, ResponseHead::local);
        // The request body must be consumed before another request can be read.
        let unread = match framing {
            Framing::Empty => false,
            Framing::Length(n) if (self.rbuf.len() as u64) >= n => {
                bytes::Buf::advance(&mut self.rbuf, n as usize);
                false
            }
            _ => true,
        };
        let close = unread || self.closing(req.keep_alive);
        self.write_local(req, &mut head, &reply, close, info).await
    }

    /// Answers a request that could not be forwarded: a local answer, or nothing for an abort
    /// (the connection closes). `framing` is what is left of the request body.
    pub async fn failed(
        &mut self,
        req: &RequestHead,
        framing: Framing,
        failure: crate::stream::upstream::Failure<'_>,
        info: &mut StreamInfo,
    ) -> Outcome {
        match failure {
            crate::stream::upstream::Failure::Answer(a) => self.answer(req, framing, a, info).await,
            crate::stream::upstream::Failure::Abort => Outcome {
                keep_alive: false,
                response: None,
                completed: false,
            },
        }
    }

    pub(crate) async fn write_local(
        &mut self,
        req: &RequestHead,
        head: &mut ResponseHead,
        reply: &LocalReply,
        close: bool,
        info: &mut StreamInfo,
    ) -> Outcome {
        let framing = if reply.body.is_empty() {
            Framing::Empty
        } else {
            Framing::Length(reply.body.len() as u64)
        };
        let opts = ResponseOptions {
            client_minor: req.minor,
            close,
            head_request: req.is_head(),
        };
        let (enc, close) = encode::response(head, framing, opts, &mut self.wbuf);
        if enc != mosn_protocol::http1::BodyEncoder::Discard {
            self.wbuf.put_slice(&reply.body);
            info.bytes_sent = reply.body.len() as u64;
        }
        info.status = head.status;
        // Written after the stream is finished (see `serve_request`), so metrics and logs are
        // complete by the time the client sees the answer.
        Outcome {
            keep_alive: !close,
            response: Some(std::mem::replace(head, ResponseHead::local(0))),
            completed: true,
        }
    }

    /// Serves one request; returns whether the connection may serve another.
    async fn serve_request(&mut self, parsed: Parsed<RequestHead>) -> bool {
        let Parsed {
            head: mut req,
            framing,
        } = parsed;
        // A new config snapshot (clusters, routes applied at run time) applies from this request.
        if let Some(fresh) = self.ctx.refreshed() {
            self.ctx = Rc::new(fresh);
        }
        let ctx = self.ctx.clone();
        let stats = &ctx.worker.stats;
        if let Some(l) = stats.listeners.get(ctx.listener) {
            l.request_total.inc();
            l.request_active.inc();
        }
        stats.active_requests.inc();
        let mut info = StreamInfo::new(Protocol::Http1, std::time::Instant::now());
        info.http_minor = req.minor;
        if let Some(why) = req.ambiguous {
            tracing::debug!(peer = %ctx.peer, reason = why, "ambiguous framing: the last request on both connections");
        }
        let content_length = match framing {
            Framing::Length(n) => Some(n),
            Framing::Empty => Some(0),
            _ => None,
        };
        let outcome = match stream::route(&ctx, &mut req, &mut info, content_length).await {
            Routed::Answer(a) => self.answer(&req, framing, a, &mut info).await,
            Routed::Forward(f) => exchange::forward(self, &mut req, framing, f, &mut info).await,
        };
        let keep = outcome.keep_alive;
        stream::finish(
            &ctx,
            info,
            &req,
            outcome.response.as_ref().map(|r| r as &dyn Headers),
            outcome.completed,
        );
        self.last_active = Instant::now();
        if !self.wbuf.is_empty() && self.flush().await.is_err() {
            return false;
        }
        keep
    }

    /// Writes a refusal for a head that could not be read (400, 408, 431, 501, 505) and closes.
    async fn refuse(&mut self, status: u16) {
        let head = ResponseHead::local(status);
        let opts = ResponseOptions {
            client_minor: 1,
            close: true,
            head_request: false,
        };
        encode::response(&head, Framing::Empty, opts, &mut self.wbuf);
        if status == 408 || status == 400 {
            self.ctx
                .worker
                .stats
                .flag(ResponseFlag::DownstreamProtocolError);
        }
        let _ = self.flush().await;
    }
}

/// Serves one downstream HTTP/1 connection until it closes; the bytes already read from it (by
/// protocol detection) are served first.
pub async fn serve(accepted: Accepted) {
    let (_conn, ctx, io, initial) = accepted.open();
    let _peer = ctx.peer;
    let now = Instant::now();
    let mut rbuf = BytesMut::with_capacity(pump::READ_CHUNK.max(initial.len()));
    rbuf.extend_from_slice(&initial);
    let mut d = Downstream {
        io,
        rbuf,
        wbuf: BytesMut::with_capacity(pump::READ_CHUNK),
        idle_timer: Box::pin(tokio::time::sleep_until(never())),
        req_timer: Box::pin(tokio::time::sleep_until(never())),
        ctx,
        last_active: now,
        stays: false,
    };
    loop {
        match d.read_head().await {
            HeadRead::Head(p) => {
                if !d.serve_request(*p).await {
                    break;
                }
            }
            HeadRead::Closed => break,
            HeadRead::Refused(status) => {
                d.refuse(status).await;
                break;
            }
            HeadRead::Transfer(path) => match transfer(d, path).await {
                // Not moved: it drains here (closed after its next response, or when idle).
                Some(back) => {
                    d = back;
                    d.stays = true;
                }
                None => return,
            },
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), d.io.shutdown()).await;
}

/// Moves an idle connection and its unread bytes to the new process (see
/// [`crate::transfer`]); `Some` with the connection when the new process did not take it.
async fn transfer(d: Downstream, path: std::path::PathBuf) -> Option<Downstream> {
    let Downstream {
        io,
        rbuf,
        wbuf,
        idle_timer,
        req_timer,
        ctx,
        last_active,
        stays,
    } = d;
    let back = |io| {
        Some(Downstream {
            io,
            rbuf: rbuf.clone(),
            wbuf: wbuf.clone(),
            idle_timer,
            req_timer,
            ctx: ctx.clone(),
            last_active,
            stays,
        })
    };
    match crate::transfer::move_stream(io, rbuf.to_vec(), path).await {
        Ok(_) => None,
        Err(Some(s)) => back(s),
        Err(None) => None,
    }
}
