//! One HTTP/2 stream forwarded to an HTTP/1 upstream over a pooled ping-pong connection. The
//! request head is translated ([`mosn_protocol::http2::translate`]), the body goes up with
//! `Content-Length` when the client gave one, else chunked (trailers included); the response
//! comes back as HTTP/2 with its body and trailers. Both directions run at once with
//! back-pressure: HTTP/2 window on one side, socket writes on the other.

use std::future::poll_fn;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use mosn_api::{Headers, ProxyError, ResponseFlag, StreamInfo};
use mosn_protocol::http1::encode::{self, RequestExtras};
use mosn_protocol::http1::{BodyDecoder, BodyEncoder, Framing, Parsed};
use mosn_protocol::http2::{translate, Head};
use mosn_upstream::UpstreamConn;

use super::body::poll_room;
use super::Sent;
use crate::conn::ConnCtx;
use crate::http1::exchange::{conn_counter, http1_conn, poll_response_head, HeadError};
use crate::http1::pump::{self, Half, HIGH_WATER};
use crate::stream::upstream::{
    begin_try, response_received, rewrite_response, Failure, Tries, TryActive,
};
use crate::stream::{self, Forwarding};

/// Why one direction stopped.
enum Stop {
    /// The client reset its stream or went away.
    Client,
    /// The upstream connection failed or cut the body short.
    Upstream,
}

/// The request body on its way up.
struct Upload<'a> {
    body: &'a mut RecvStream,
    enc: BodyEncoder,
    ended: bool,
    unreleased: usize,
    bytes: u64,
    count: &'a dyn Fn(usize),
}

impl Upload<'_> {
    fn poll(&mut self, cx: &mut Context<'_>, conn: &mut UpstreamConn) -> Poll<Result<(), Stop>> {
        loop {
            if !conn.wbuf.is_empty() {
                let UpstreamConn { io, wbuf, .. } = &mut *conn;
                let mut h = Half {
                    io,
                    buf: wbuf,
                    count: self.count,
                };
                match std::task::ready!(pump::poll_write_all(cx, &mut h)) {
                    Ok(()) => {}
                    Err(_) => return Poll::Ready(Err(Stop::Upstream)),
                }
                if self.unreleased > 0 {
                    let _ = self.body.flow_control().release_capacity(self.unreleased);
                    self.unreleased = 0;
                }
            }
            if self.ended {
                return Poll::Ready(Ok(()));
            }
            match std::task::ready!(self.body.poll_data(cx)) {
                Some(Ok(d)) => {
                    self.enc.data(&d, &mut conn.wbuf);
                    self.unreleased += d.len();
                    self.bytes += d.len() as u64;
                }
                Some(Err(_)) => return Poll::Ready(Err(Stop::Client)),
                None => match std::task::ready!(self.body.poll_trailers(cx)) {
                    Ok(t) => {
                        let mut raw = BytesMut::new();
                        if let Some(t) = &t {
                            translate::trailers_to_h1(t, &mut raw);
                        }
                        self.enc
                            .end(Some(&raw[..]).filter(|r| !r.is_empty()), &mut conn.wbuf);
                        self.ended = true;
                    }
                    Err(_) => return Poll::Ready(Err(Stop::Client)),
                },
            }
        }
    }
}

/// The response body on its way down.
struct Download {
    dec: BodyDecoder,
    out: BytesMut,
    bytes: u64,
    grpc_status: Option<u32>,
}

impl Download {
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        conn: &mut UpstreamConn,
        to: &mut SendStream<Bytes>,
        count: &dyn Fn(usize),
    ) -> Poll<Result<(), Stop>> {
        loop {
            if !self.out.is_empty() {
                let room = std::task::ready!(poll_room(cx, to, self.out.len()))
                    .map_err(|_| Stop::Client)?;
                let chunk = self.out.split_to(room.min(self.out.len())).freeze();
                to.send_data(chunk, false).map_err(|_| Stop::Client)?;
                continue;
            }
            if self.dec.is_done() {
                let trailers = translate::trailers_to_h2(self.dec.trailers());
                self.grpc_status = translate::grpc_status(&trailers);
                let r = if trailers.is_empty() {
                    to.send_data(Bytes::new(), true)
                } else {
                    to.send_trailers(trailers)
                };
                return Poll::Ready(r.map_err(|_| Stop::Client));
            }
            if !conn.buf.is_empty() {
                self.dec
                    .decode_into(
                        &mut conn.buf,
                        &mut BodyEncoder::Identity,
                        &mut self.out,
                        HIGH_WATER,
                        &mut self.bytes,
                    )
                    .map_err(|_| Stop::Upstream)?;
                continue;
            }
            if to.poll_reset(cx).is_ready() {
                return Poll::Ready(Err(Stop::Client));
            }
            let UpstreamConn { io, buf, .. } = &mut *conn;
            let mut h = Half { io, buf, count };
            match std::task::ready!(pump::poll_read(cx, &mut h)) {
                Ok(0) => self
                    .dec
                    .eof(&mut BodyEncoder::Identity, &mut self.out)
                    .map_err(|_| Stop::Upstream)?,
                Ok(_) => {}
                Err(_) => return Poll::Ready(Err(Stop::Upstream)),
            }
        }
    }
}

/// Forwards one stream to an HTTP/1 upstream. `held` is the whole request body when it was read
/// first (for retries), else `None` and `body` streams.
pub async fn forward<'s>(
    ctx: &'s ConnCtx,
    head: &mut Head,
    body: &mut RecvStream,
    held: Option<Bytes>,
    respond: &mut SendResponse<Bytes>,
    f: &Forwarding<'s>,
    info: &mut StreamInfo,
) -> Result<Sent, Failure<'s>> {
    let worker = &ctx.worker;
    let up = &*worker.stats.upstream;
    let replayable = held.is_some();
    let mut tries = Tries::new(f, replayable);
    let framing = match &held {
        Some(b) if b.is_empty() => Framing::Empty,
        Some(b) => Framing::Length(b.len() as u64),
        None => match head.get_str("content-length").and_then(|v| v.parse().ok()) {
            Some(n) => Framing::Length(n),
            None => Framing::Chunked,
        },
    };
    let is_head = head.method() == b"HEAD";
    let mut req_timer = std::pin::pin!(tokio::time::sleep_until(tries.deadline));
    loop {
        let attempt = tries.start_try();
        let held_len = held.as_ref().map(|b| b.len() as u64);
        let t = begin_try(ctx, f, head, info, attempt, held_len).await?;
        let (cluster, host) = (t.cluster, &t.host);
        let (ci, hi) = (cluster.index, host.id);
        let Some(mut conn) = http1_conn(worker, &t, &tries, req_timer.as_mut()).await? else {
            continue;
        };
        if let Some(u) = &mut info.upstream {
            u.local = conn.local;
        }
        let h1 = translate::request_to_h1(head);
        let default_host = host.address.to_string();
        conn.wbuf.clear();
        let enc = encode::request(
            &h1,
            framing,
            RequestExtras {
                forwarded_for: Some(&ctx.client_ip),
                default_host: Some(default_host.as_bytes()),
                close: false,
            },
            &mut conn.wbuf,
        );
        if let Some(b) = &held {
            conn.wbuf.put_slice(b);
        }
        let count_write = conn_counter(ci, hi, up, true);
        let mut upload = Upload {
            body: &mut *body,
            enc,
            ended: held.is_some(),
            unreleased: 0,
            bytes: 0,
            count: &count_write,
        };
        let _active = TryActive::start(up, ci, hi);
        let (sent_at, try_deadline) = tries.sent(info);
        req_timer.as_mut().reset(try_deadline);
        let reused = conn.requests > 0;
        let mut upload_done = false;
        let waited = {
            let fut = poll_fn(|cx| {
                if !upload_done {
                    match upload.poll(cx, &mut conn) {
                        Poll::Ready(Ok(())) => upload_done = true,
                        Poll::Ready(Err(Stop::Client)) => {
                            return Poll::Ready(Err(HeadError::Downstream))
                        }
                        Poll::Ready(Err(Stop::Upstream)) => {
                            return Poll::Ready(Err(HeadError::Upstream {
                                got_bytes: !conn.buf.is_empty(),
                                detail: "write failed".into(),
                            }))
                        }
                        Poll::Pending => {}
                    }
                }
                if respond.poll_reset(cx).is_ready() {
                    return Poll::Ready(Err(HeadError::Downstream));
                }
                poll_response_head(cx, &mut conn, is_head, ci, hi, up)
            });
            tokio::select! {
                biased;
                r = fut => r,
                _ = &mut req_timer => Err(HeadError::Timeout),
            }
        };
        let parsed = match waited {
            Ok(p) => p,
            Err(HeadError::Timeout) => {
                tries.timed_out(up, ci, hi)?;
                continue;
            }
            Err(HeadError::Downstream) => {
                info.flag = Some(ResponseFlag::DownstreamConnectionTermination);
                return Err(Failure::Abort);
            }
            Err(HeadError::BadBody) | Err(HeadError::Filter(_)) => {
                return Err(
                    ProxyError::new(ResponseFlag::DownstreamProtocolError, "bad body").into(),
                )
            }
            Err(HeadError::Upstream { got_bytes, detail }) => {
                let resendable = replayable || upload.bytes == 0;
                if reused && !got_bytes && resendable && tries.stale() {
                    continue;
                }
                tries.upstream_reset(up, host, ci, detail)?;
                continue;
            }
        };
        let Parsed {
            head: resp,
            framing: rframing,
        } = parsed;
        response_received(up, ci, hi, info, sent_at, resp.status);
        if tries.more() && stream::is_retry_status(f.fwd, resp.status) {
            continue;
        }
        let mut rhead = translate::response_to_h2(&resp);
        rewrite_response(f, &mut rhead);
        if let Some(r) = stream::run_response_filters(ctx, f.filters, &mut rhead, info) {
            return Err(Failure::Answer(stream::Answer::plain(r)));
        }
        let response = rhead.to_response().map_err(|e| {
            ProxyError::new(ResponseFlag::UpstreamConnectionTermination, e.to_string())
        })?;
        info.status = resp.status;
        let dec = BodyDecoder::new(if is_head { Framing::Empty } else { rframing });
        let eos = dec.is_done();
        let mut down_send = match respond.send_response(response, eos) {
            Ok(s) => s,
            Err(_) => {
                info.flag = Some(ResponseFlag::DownstreamConnectionTermination);
                return Ok(Sent {
                    head: rhead,
                    completed: false,
                });
            }
        };
        let mut download = Download {
            dec,
            out: BytesMut::new(),
            bytes: 0,
            grpc_status: None,
        };
        let count = conn_counter(ci, hi, up, false);
        let result = if eos {
            Ok(())
        } else {
            poll_fn(|cx| {
                if !upload_done {
                    match upload.poll(cx, &mut conn) {
                        Poll::Ready(Ok(())) => upload_done = true,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => {}
                    }
                }
                download.poll(cx, &mut conn, &mut down_send, &count)
            })
            .await
        };
        info.bytes_sent = download.bytes;
        info.grpc_status = download.grpc_status;
        info.bytes_received = held.as_ref().map_or(upload.bytes, |b| b.len() as u64);
        let completed = match result {
            Ok(()) => {
                if resp.keep_alive && upload_done && conn.buf.is_empty() {
                    worker.pools.release(cluster, conn);
                }
                true
            }
            Err(Stop::Upstream) => {
                down_send.send_reset(h2::Reason::INTERNAL_ERROR);
                up.both(ci, hi, |s| s.request_remote_reset.inc());
                info.flag = Some(ResponseFlag::UpstreamConnectionTermination);
                false
            }
            Err(Stop::Client) => {
                info.flag = Some(ResponseFlag::DownstreamConnectionTermination);
                false
            }
        };
        return Ok(Sent {
            head: rhead,
            completed,
        });
    }
}
