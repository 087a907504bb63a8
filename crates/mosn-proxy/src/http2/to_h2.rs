//! One HTTP/2 stream forwarded to an HTTP/2 upstream: the request body streams up while the
//! response streams down (bidirectional gRPC), each with flow control, trailers passed through.
//!
//! Resets: a client's RST_STREAM (or a client gone) cancels the upstream stream (`CANCEL`); an
//! upstream reset before the response head is a local 502 (`UC`), or a retry for
//! `REFUSED_STREAM`; after the head it reaches the client as a reset with a mapped code
//! ([`super::body::mapped_reason`]).

use std::future::poll_fn;
use std::pin::pin;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::RecvStream;
use mosn_api::{ProxyError, ResponseFlag, StreamInfo};
use mosn_protocol::http2::Head;

use super::body::{mapped_reason, pipe, send_all, PipeError};
use super::client::{self, Opened};
use super::Sent;
use crate::conn::ConnCtx;
use crate::stream::upstream::{
    begin_try, response_received, rewrite_response, Failure, Tries, TryActive,
};
use crate::stream::{self, Forwarding};

/// How the wait for the upstream's response head ended.
enum HeadWait {
    Head(http::Response<RecvStream>),
    Reset(h2::Error),
    Timeout,
}

/// How the body phase ended.
enum BodyEnd {
    Done,
    /// The upstream reset the stream mid-body: reset the client's with this code.
    UpstreamReset(h2::Reason),
    ClientGone,
}

/// Forwards one stream to an HTTP/2 upstream. `held` is the whole request body when it was read
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
    let up = &*ctx.worker.stats.upstream;
    let mut tries = Tries::new(f, held.is_some());
    let content_length = held.as_ref().map(|b| b.len() as u64);
    loop {
        let attempt = tries.start_try();
        let t = begin_try(ctx, f, head, info, attempt, content_length).await?;
        let (ci, hi) = (t.cluster.index, t.host.id);
        let req = head
            .to_request()
            .map_err(|e| ProxyError::new(ResponseFlag::DownstreamProtocolError, e.to_string()))?;
        let eos = held.as_ref().is_some_and(Bytes::is_empty);
        let Some(Opened {
            slot,
            response: resp_fut,
            body: mut up_send,
        }) = client::open(ctx, &t, &mut tries, req, eos, info).await?
        else {
            continue;
        };
        let _active = TryActive::start(up, ci, hi);
        let (sent_at, try_deadline) = tries.sent(info);
        let count_up = |_n: usize| {};
        let mut upload_done = eos;
        let upload = async {
            match &held {
                Some(b) if b.is_empty() => Ok(0),
                Some(b) => send_all(&mut up_send, b.clone(), true)
                    .await
                    .map(|()| b.len() as u64)
                    .map_err(PipeError::Send),
                None => pipe(body, &mut up_send, &count_up).await.map(|p| p.bytes),
            }
        };
        let mut upload = pin!(upload);
        let mut resp_fut = pin!(resp_fut);
        let waited = loop {
            tokio::select! {
                biased;
                _ = poll_fn(|cx| respond.poll_reset(cx)) => {
                    info.flag = Some(ResponseFlag::DownstreamConnectionTermination);
                    return Err(Failure::Abort);
                }
                r = &mut upload, if !upload_done => match r {
                    Ok(n) => {
                        upload_done = true;
                        info.bytes_received = n;
                    }
                    Err(PipeError::Recv(_)) => {
                        info.flag = Some(ResponseFlag::DownstreamConnectionTermination);
                        return Err(Failure::Abort);
                    }
                    // The upstream stopped reading the body; its response says why.
                    Err(PipeError::Send(_)) => upload_done = true,
                },
                r = &mut resp_fut => break match r {
                    Ok(resp) => HeadWait::Head(resp),
                    Err(e) => HeadWait::Reset(e),
                },
                _ = tokio::time::sleep_until(try_deadline) => break HeadWait::Timeout,
            }
        };
        let resp = match waited {
            HeadWait::Head(r) => r,
            HeadWait::Timeout => {
                tries.timed_out(up, ci, hi)?;
                continue;
            }
            HeadWait::Reset(e) => {
                if !e.is_reset() {
                    slot.retire();
                }
                let refused = e.reason() == Some(h2::Reason::REFUSED_STREAM);
                // Not processed by the upstream (RFC 9113 §8.7): safe to send again.
                let unprocessed = refused || (!slot.fresh && e.is_go_away());
                if unprocessed && tries.replayable() && tries.stale() {
                    continue;
                }
                tries.upstream_reset(up, &t.host, ci, &e)?;
                continue;
            }
        };
        let (parts, mut up_body) = resp.into_parts();
        let mut rhead = Head::from_response(parts);
        let status = rhead.status();
        response_received(up, ci, hi, info, sent_at, status);
        if tries.more() && stream::is_retry_status(f.fwd, status) {
            continue;
        }
        rewrite_response(f, &mut rhead);
        if let Some(r) = stream::run_response_filters(ctx, f.filters, &mut rhead, info) {
            return Err(Failure::Answer(stream::Answer::plain(r)));
        }
        let response = rhead.to_response().map_err(|e| {
            ProxyError::new(ResponseFlag::UpstreamConnectionTermination, e.to_string())
        })?;
        info.status = status;
        let eos = up_body.is_end_stream();
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
        if eos {
            return Ok(Sent {
                head: rhead,
                completed: true,
            });
        }
        let count_down = |_n: usize| {};
        let end = {
            let mut download = pin!(pipe(&mut up_body, &mut down_send, &count_down));
            loop {
                tokio::select! {
                    r = &mut upload, if !upload_done => match r {
                        Ok(n) => {
                            upload_done = true;
                            info.bytes_received = n;
                        }
                        Err(PipeError::Recv(_)) => break BodyEnd::ClientGone,
                        Err(PipeError::Send(_)) => upload_done = true,
                    },
                    r = &mut download => break match r {
                        Ok(p) => {
                            info.bytes_sent = p.bytes;
                            info.grpc_status = p.grpc_status;
                            BodyEnd::Done
                        }
                        Err(PipeError::Recv(e)) => BodyEnd::UpstreamReset(mapped_reason(&e)),
                        Err(PipeError::Send(_)) => BodyEnd::ClientGone,
                    },
                }
            }
        };
        let completed = match end {
            BodyEnd::Done => true,
            BodyEnd::UpstreamReset(reason) => {
                down_send.send_reset(reason);
                up.both(ci, hi, |s| s.request_remote_reset.inc());
                info.flag = Some(ResponseFlag::UpstreamConnectionTermination);
                false
            }
            BodyEnd::ClientGone => {
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
