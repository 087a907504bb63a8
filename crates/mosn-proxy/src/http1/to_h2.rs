//! One HTTP/1 request forwarded to an HTTP/2 upstream (`upstream_protocol: "Http2"`): the head is
//! translated ([`mosn_protocol::http2::translate`]), the body streams up within the stream's
//! window, and the response comes back as HTTP/1 (`Content-Length` when the upstream gave one,
//! else chunked to HTTP/1.1 clients with trailers, or until close to HTTP/1.0 clients). Both
//! directions run at once with back-pressure.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use h2::{RecvStream, SendStream};
use mosn_api::{Headers, ProxyError, ResponseFlag, StreamInfo};
use mosn_protocol::http1::encode::{self, ResponseOptions};
use mosn_protocol::http1::{BodyDecoder, BodyEncoder, Framing, RequestHead};
use mosn_protocol::http2::translate;

use super::exchange::hold_body;
use super::pump::{self, Half, HIGH_WATER};
use super::{Downstream, Outcome};
use crate::http2::body::poll_room;
use crate::http2::client::{self, Opened};
use crate::stream::upstream::{
    begin_try, response_received, rewrite_request, rewrite_response, Failure, Tries, TryActive,
};
use crate::stream::{self, Forwarding};

/// Why one direction stopped.
enum Stop {
    Client,
    Upstream(Option<h2::Reason>),
    BadBody,
}

/// The client's body on its way to the upstream stream.
struct Upload {
    dec: BodyDecoder,
    chunk: BytesMut,
    bytes: u64,
    done: bool,
}

impl Upload {
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        d: &mut Downstream,
        to: &mut SendStream<Bytes>,
        count: &dyn Fn(usize),
    ) -> Poll<Result<(), Stop>> {
        loop {
            if !self.chunk.is_empty() {
                let room = std::task::ready!(poll_room(cx, to, self.chunk.len()))
                    .map_err(Stop::Upstream)?;
                let c = self.chunk.split_to(room.min(self.chunk.len())).freeze();
                to.send_data(c, false)
                    .map_err(|e| Stop::Upstream(e.reason()))?;
                continue;
            }
            if self.done {
                return Poll::Ready(Ok(()));
            }
            if self.dec.is_done() {
                to.send_data(Bytes::new(), true)
                    .map_err(|e| Stop::Upstream(e.reason()))?;
                self.done = true;
                continue;
            }
            if !d.rbuf.is_empty() {
                self.dec
                    .decode_into(
                        &mut d.rbuf,
                        &mut BodyEncoder::Identity,
                        &mut self.chunk,
                        HIGH_WATER,
                        &mut self.bytes,
                    )
                    .map_err(|_| Stop::BadBody)?;
                continue;
            }
            let mut h = Half {
                io: &mut d.io,
                buf: &mut d.rbuf,
                count,
            };
            match std::task::ready!(pump::poll_read(cx, &mut h)) {
                Ok(0) => return Poll::Ready(Err(Stop::Client)),
                Ok(_) => {}
                Err(_) => return Poll::Ready(Err(Stop::Client)),
            }
        }
    }
}

/// The upstream's body on its way to the client.
struct Download {
    enc: BodyEncoder,
    unreleased: usize,
    bytes: u64,
    ended: bool,
    grpc_status: Option<u32>,
}

impl Download {
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        from: &mut RecvStream,
        d: &mut Downstream,
        count: &dyn Fn(usize),
    ) -> Poll<Result<(), Stop>> {
        loop {
            if !d.wbuf.is_empty() {
                let mut h = Half {
                    io: &mut d.io,
                    buf: &mut d.wbuf,
                    count,
                };
                std::task::ready!(pump::poll_write_all(cx, &mut h)).map_err(|_| Stop::Client)?;
                if self.unreleased > 0 {
                    let _ = from.flow_control().release_capacity(self.unreleased);
                    self.unreleased = 0;
                }
            }
            if self.ended {
                return Poll::Ready(Ok(()));
            }
            match std::task::ready!(from.poll_data(cx)) {
                Some(Ok(data)) => {
                    self.enc.data(&data, &mut d.wbuf);
                    self.unreleased += data.len();
                    self.bytes += data.len() as u64;
                }
                Some(Err(e)) => return Poll::Ready(Err(Stop::Upstream(e.reason()))),
                None => {
                    let t = std::task::ready!(from.poll_trailers(cx))
                        .map_err(|e| Stop::Upstream(e.reason()))?;
                    let mut raw = BytesMut::new();
                    if let Some(t) = &t {
                        translate::trailers_to_h1(t, &mut raw);
                        self.grpc_status = translate::grpc_status(t);
                    }
                    self.enc
                        .end(Some(&raw[..]).filter(|r| !r.is_empty()), &mut d.wbuf);
                    self.ended = true;
                }
            }
        }
    }
}

/// Forwards one HTTP/1 request to an HTTP/2 upstream and streams the response back.
pub async fn forward(
    d: &mut Downstream,
    req: &mut RequestHead,
    framing: Framing,
    f: Forwarding<'_>,
    info: &mut StreamInfo,
) -> Outcome {
    let mut consumed = false;
    match forward_inner(d, req, framing, &f, info, &mut consumed).await {
        Ok(o) => o,
        Err(Failure::Answer(a)) => {
            let left = if consumed { Framing::Chunked } else { framing };
            d.answer(req, left, a, info).await
        }
        Err(Failure::Abort) => Outcome {
            keep_alive: false,
            response: None,
            completed: false,
        },
    }
}

async fn forward_inner<'s>(
    d: &mut Downstream,
    req: &mut RequestHead,
    framing: Framing,
    f: &Forwarding<'s>,
    info: &mut StreamInfo,
    consumed: &mut bool,
) -> Result<Outcome, Failure<'s>> {
    let ctx = d.ctx.clone();
    let worker = &ctx.worker;
    let up = &*worker.stats.upstream;
    rewrite_request(f, req);
    let held = hold_body(d, req, framing, f, info).await?;
    // A body held for retries was read here; one that streams is read once a try sends it.
    *consumed = held.as_ref().is_some_and(|b| !b.is_empty());
    let replayable = held.is_some();
    let mut tries = Tries::new(f, replayable);
    let (count_read, count_write) = (ctx.read_counter(), ctx.write_counter());
    let mut expect_pending = !replayable && req.expect_continue && d.rbuf.is_empty();
    loop {
        let attempt = tries.start_try();
        let held_len = held.as_ref().map(|b| b.len() as u64);
        let t = begin_try(&ctx, f, req, info, attempt, held_len).await?;
        let (ci, hi) = (t.cluster.index, t.host.id);
        let scheme: &[u8] = if t.cluster.tls.is_some() && !t.host.tls_disable {
            b"https"
        } else {
            b"http"
        };
        let default_host = t.host.address.to_string();
        let head = translate::request_to_h2(
            req,
            scheme,
            Some(&ctx.client_ip),
            Some(default_host.as_bytes()),
        );
        let request = head
            .to_request()
            .map_err(|e| ProxyError::new(ResponseFlag::DownstreamProtocolError, e.to_string()))?;
        let body_empty = held.as_ref().is_some_and(Bytes::is_empty);
        let Some(Opened {
            response: resp_fut,
            body: mut up_send,
            ..
        }) = client::open(&ctx, &t, &mut tries, request, body_empty, info).await?
        else {
            continue;
        };
        let _active = TryActive::start(up, ci, hi);
        let (sent_at, try_deadline) = tries.sent(info);
        if expect_pending {
            expect_pending = false;
            d.wbuf.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            if d.flush().await.is_err() {
                info.flag = Some(ResponseFlag::DownstreamConnectionTermination);
                return Err(Failure::Abort);
            }
        }
        let mut upload = Upload {
            dec: BodyDecoder::new(if replayable { Framing::Empty } else { framing }),
            chunk: BytesMut::new(),
            bytes: 0,
            done: body_empty,
        };
        if let Some(b) = held.as_ref().filter(|b| !b.is_empty()) {
            upload.chunk.extend_from_slice(b);
        }
        if !replayable {
            *consumed = true;
        }
        let mut upload_done = upload.done;
        let waited = {
            let mut resp_fut = pin!(resp_fut);
            let fut = poll_fn(|cx| {
                if !upload_done {
                    match upload.poll(cx, d, &mut up_send, &count_read) {
                        Poll::Ready(Ok(())) => upload_done = true,
                        Poll::Ready(Err(Stop::Upstream(_))) => upload_done = true,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => {}
                    }
                }
                resp_fut
                    .as_mut()
                    .poll(cx)
                    .map(|r| r.map_err(|e| Stop::Upstream(e.reason())))
            });
            tokio::select! {
                biased;
                r = fut => Some(r),
                _ = tokio::time::sleep_until(try_deadline) => None,
            }
        };
        let resp = match waited {
            Some(Ok(r)) => r,
            None => {
                tries.timed_out(up, ci, hi)?;
                continue;
            }
            Some(Err(Stop::Client)) => {
                info.flag = Some(ResponseFlag::DownstreamConnectionTermination);
                return Err(Failure::Abort);
            }
            Some(Err(Stop::BadBody)) => {
                return Err(
                    ProxyError::new(ResponseFlag::DownstreamProtocolError, "bad body").into(),
                )
            }
            Some(Err(Stop::Upstream(reason))) => {
                let refused = reason == Some(h2::Reason::REFUSED_STREAM);
                if refused && replayable && tries.stale() {
                    continue;
                }
                tries.upstream_reset(up, &t.host, ci, "stream reset")?;
                continue;
            }
        };
        let (parts, mut up_body) = resp.into_parts();
        let rh2 = mosn_protocol::http2::Head::from_response(parts);
        let status = rh2.status();
        response_received(up, ci, hi, info, sent_at, status);
        if tries.more() && stream::is_retry_status(f.fwd, status) {
            continue;
        }
        let mut resp = translate::response_to_h1(&rh2);
        rewrite_response(f, &mut resp);
        if let Some(r) = stream::run_response_filters(&ctx, f.filters, &mut resp, info) {
            return Err(Failure::Answer(stream::Answer::plain(r)));
        }
        let rframing = if up_body.is_end_stream() {
            Framing::Empty
        } else {
            match rh2
                .get_str("content-length")
                .and_then(|v| v.trim().parse().ok())
            {
                Some(n) => Framing::Length(n),
                None => Framing::Chunked,
            }
        };
        let opts = ResponseOptions {
            client_minor: req.minor,
            close: d.closing(req.keep_alive),
            head_request: req.is_head(),
        };
        let (enc, close) = encode::response(&resp, rframing, opts, &mut d.wbuf);
        info.status = status;
        let mut download = Download {
            enc,
            unreleased: 0,
            bytes: 0,
            ended: rframing == Framing::Empty,
            grpc_status: None,
        };
        let result = poll_fn(|cx| {
            if !upload_done {
                match upload.poll(cx, d, &mut up_send, &count_read) {
                    Poll::Ready(Ok(())) | Poll::Ready(Err(Stop::Upstream(_))) => upload_done = true,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {}
                }
            }
            download.poll(cx, &mut up_body, d, &count_write)
        })
        .await;
        info.bytes_sent = download.bytes;
        info.grpc_status = download.grpc_status;
        if !replayable {
            info.bytes_received = upload.bytes;
        }
        return Ok(match result {
            Ok(()) => Outcome {
                keep_alive: !close && upload_done,
                response: Some(resp),
                completed: true,
            },
            Err(e) => {
                info.flag = Some(match e {
                    Stop::Upstream(_) => {
                        up.both(ci, hi, |s| s.request_remote_reset.inc());
                        ResponseFlag::UpstreamConnectionTermination
                    }
                    _ => ResponseFlag::DownstreamConnectionTermination,
                });
                Outcome {
                    keep_alive: false,
                    response: Some(resp),
                    completed: false,
                }
            }
        });
    }
}
