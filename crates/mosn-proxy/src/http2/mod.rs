//! The HTTP/2 downstream driver (RFC 9113) on the `h2` crate: one task per client connection
//! drives the connection and every stream on it (no task per stream). Each stream goes through
//! [`crate::stream`] like an HTTP/1 request and is forwarded to an HTTP/2 upstream
//! ([`to_h2`]) or an HTTP/1 upstream ([`to_h1`]) by the proxy's `upstream_protocol`.
//!
//! Defences (Envoy's and nginx's defaults where they have one): at most
//! [`MAX_CONCURRENT_STREAMS`] streams at once, a header list of at most [`MAX_HEADER_LIST`]
//! bytes across HEADERS and CONTINUATION frames (CVE-2024-27316), and `h2`'s limits on streams
//! reset before they were served (Rapid Reset, CVE-2023-44487) and on locally reset streams; a
//! client over them gets GOAWAY `ENHANCE_YOUR_CALM`, as does a client that floods PING, SETTINGS,
//! RST_STREAM or PRIORITY frames past the budget of [`guard`]. Flow-control windows bound the body
//! bytes a client can make the proxy hold.
//!
//! Lifecycle: the connection closes after `connection_idle_timeout` without a stream; on drain
//! (SIGTERM) it sends GOAWAY, lets the streams in flight finish and refuses new ones.

pub mod body;
pub mod client;
pub mod guard;
pub mod to_h1;
pub mod to_h2;

use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::stream::{FuturesUnordered, StreamExt};
use h2::server::SendResponse;
use h2::RecvStream;
use mosn_api::{Headers, Protocol, ResponseFlag, StreamInfo};
use mosn_protocol::http2::Head;
use tokio::time::Instant;

use crate::conn::Accepted;
use crate::conn::{ConnCtx, Counted};
use crate::snapshot::ListenerKind;
use crate::stream::upstream::{rewrite_request, Failure};
use crate::stream::{self, Answer, Forwarding, Routed};
use crate::transcode::Upstream;

/// Streams a client may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
pub const MAX_CONCURRENT_STREAMS: u32 = 256;
/// Largest request header list, in bytes (SETTINGS_MAX_HEADER_LIST_SIZE), over HEADERS and
/// CONTINUATION frames.
pub const MAX_HEADER_LIST: u32 = 64 * 1024;
/// Initial stream window advertised to clients, in bytes.
pub const STREAM_WINDOW: u32 = 1024 * 1024;
/// Initial connection window advertised to clients, in bytes.
pub const CONNECTION_WINDOW: u32 = 4 * 1024 * 1024;
/// Streams a client may reset before the proxy accepted them, at once (Rapid Reset defence).
pub const MAX_PENDING_ACCEPT_RESETS: usize = 50;
/// A request body with a length up to this is read whole first when the route has retries, so
/// it can be sent again.
pub const REPLAY_LIMIT_BYTES: u64 = 64 * 1024;

/// A response sent (or begun) for a stream.
pub struct Sent {
    /// The response head as sent.
    pub head: Head,
    /// The whole response went out.
    pub completed: bool,
}

/// Serves one downstream HTTP/2 connection until it closes. `initial` holds bytes already read
/// from the connection (the client preface, by protocol detection).
pub async fn serve(accepted: Accepted) {
    let (_conn, ctx, io, initial) = accepted.open();
    let peer = ctx.peer;
    let (io, tripped) = Counted::guarded(io, initial, &ctx);
    let handshake = h2::server::Builder::new()
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_header_list_size(MAX_HEADER_LIST)
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESETS)
        .handshake::<_, Bytes>(io);
    let header_timeout = ctx.listener().header_timeout;
    let mut conn = match tokio::time::timeout(header_timeout, handshake).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "HTTP/2 handshake failed");
            ctx.worker.stats.flag(ResponseFlag::DownstreamProtocolError);
            return;
        }
        Err(_) => return,
    };
    let idle = ctx.listener().idle_timeout;
    let mut idle_timer = std::pin::pin!(tokio::time::sleep(Duration::from_secs(86400)));
    let mut idle_armed = false;
    let mut draining = false;
    let mut streams = FuturesUnordered::new();
    // The context new streams start with: a new config snapshot applies from the next stream.
    let mut current = ctx.clone();
    let mut calm = false;
    let mut calm_deadline = std::pin::pin!(tokio::time::sleep(Duration::from_secs(86400)));
    loop {
        // A busy connection may not be waiting on `drain` when the drain starts (another branch
        // won that turn and the notification went with the dropped future): look every turn.
        if !draining && ctx.draining() {
            conn.graceful_shutdown();
            draining = true;
        }
        match idle {
            Some(t) if streams.is_empty() && !idle_armed => {
                idle_timer.as_mut().reset(Instant::now() + t);
                idle_armed = true;
            }
            _ if !streams.is_empty() => idle_armed = false,
            _ => {}
        }
        let drain = ctx.worker.drain.notified();
        tokio::select! {
            biased;
            Some(()) = streams.next(), if !streams.is_empty() => {}
            r = conn.accept() => match r {
                Some(Ok((req, respond))) => {
                    if let Some(fresh) = current.refreshed() {
                        current = Rc::new(fresh);
                    }
                    streams.push(serve_stream(current.clone(), req, respond))
                }
                Some(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "HTTP/2 connection error");
                    if e.is_go_away() || e.reason().is_some() {
                        ctx.worker.stats.flag(ResponseFlag::DownstreamProtocolError);
                    }
                    break;
                }
                None => break,
            },
            // The server drains, or this connection's listener was removed.
            _ = drain, if !draining => {
                if ctx.draining() {
                    conn.graceful_shutdown();
                    draining = true;
                }
            }
            _ = &mut idle_timer, if idle_armed && streams.is_empty() && !draining => {
                conn.graceful_shutdown();
                draining = true;
            }
            () = tripped.wait(), if !calm => {
                tracing::debug!(%peer, "HTTP/2 control frame flood: GOAWAY ENHANCE_YOUR_CALM");
                ctx.worker.stats.flag(ResponseFlag::DownstreamProtocolError);
                conn.abrupt_shutdown(h2::Reason::ENHANCE_YOUR_CALM);
                calm = true;
                calm_deadline.as_mut().reset(Instant::now() + Duration::from_secs(1));
            }
            _ = &mut calm_deadline, if calm => break,
        }
    }
    // The connection ended: streams still running finish their bookkeeping.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while streams.next().await.is_some() {}
    })
    .await;
}

/// Serves one stream: route, then a local answer or the upstream exchange, then the stream's end.
async fn serve_stream(
    ctx: Rc<ConnCtx>,
    req: http::Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
) {
    let stats = &ctx.worker.stats;
    if let Some(l) = stats.listeners.get(ctx.listener) {
        l.request_total.inc();
        l.request_active.inc();
    }
    stats.active_requests.inc();
    let mut info = StreamInfo::new(Protocol::Http2, std::time::Instant::now());
    let (parts, mut body) = req.into_parts();
    let mut head = Head::from_request(parts);
    let content_length = if body.is_end_stream() {
        Some(0)
    } else {
        head.get_str("content-length")
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let sent = match stream::route(&ctx, &mut head, &mut info, content_length).await {
        Routed::Answer(a) => Some(answer(&ctx, &mut respond, a, &mut info)),
        Routed::Forward(f) => {
            match forward(
                &ctx,
                &mut head,
                &mut body,
                &mut respond,
                &f,
                content_length,
                &mut info,
            )
            .await
            {
                Ok(s) => Some(s),
                Err(Failure::Answer(a)) => Some(answer(&ctx, &mut respond, a, &mut info)),
                Err(Failure::Abort) => {
                    respond.send_reset(h2::Reason::CANCEL);
                    None
                }
            }
        }
    };
    let (response, completed) = match &sent {
        Some(s) => (Some(&s.head as &dyn Headers), s.completed),
        None => (None, false),
    };
    stream::finish(&ctx, info, &head, response, completed);
}

/// Reads a request body of at most [`REPLAY_LIMIT_BYTES`] whole, for retries.
async fn read_held(body: &mut RecvStream, limit: u64) -> Result<Bytes, h2::Error> {
    let mut out = BytesMut::new();
    while let Some(d) = body.data().await {
        let d = d?;
        let _ = body.flow_control().release_capacity(d.len());
        out.extend_from_slice(&d);
        if out.len() as u64 > limit {
            break;
        }
    }
    Ok(out.freeze())
}

/// The upstream protocol of the listener: `Auto` follows the client's (HTTP/2 here).
fn upstream_protocol(ctx: &ConnCtx) -> mosn_config::Protocol {
    match &ctx.listener().kind {
        ListenerKind::Proxy { upstream, .. } => match upstream {
            mosn_config::Protocol::Auto => mosn_config::Protocol::Http2,
            p => *p,
        },
        _ => mosn_config::Protocol::Http1,
    }
}

async fn forward<'s>(
    ctx: &'s ConnCtx,
    head: &mut Head,
    body: &mut RecvStream,
    respond: &mut SendResponse<Bytes>,
    f: &Forwarding<'s>,
    content_length: Option<u64>,
    info: &mut StreamInfo,
) -> Result<Sent, Failure<'s>> {
    let upstream = crate::transcode::upstream(info, upstream_protocol(ctx));
    match upstream {
        Upstream::Refused => return Err(crate::transcode::untranscoded()),
        Upstream::Rpc => return transcoded(ctx, head, body, respond, f, info).await,
        Upstream::Http1 | Upstream::Http2 => {}
    }
    rewrite_request(f, head);
    let retries = f.fwd.retry.as_ref().map_or(0, |r| r.num_retries);
    let held = if body.is_end_stream() {
        Some(Bytes::new())
    } else if retries > 0 && content_length.is_some_and(|n| n <= REPLAY_LIMIT_BYTES) {
        match read_held(body, REPLAY_LIMIT_BYTES).await {
            Ok(b) => {
                info.bytes_received = b.len() as u64;
                Some(b)
            }
            Err(_) => {
                info.flag = Some(ResponseFlag::DownstreamConnectionTermination);
                return Err(Failure::Abort);
            }
        }
    } else {
        None
    };
    match upstream {
        Upstream::Http2 => {
            append_forwarded_for(head, &ctx.client_ip);
            to_h2::forward(ctx, head, body, held, respond, f, info).await
        }
        _ => to_h1::forward(ctx, head, body, held, respond, f, info).await,
    }
}

/// Sends the request upstream in an RPC protocol through the stream's transcoder (see
/// [`crate::transcode`]): the body read whole (at most `MAX_TRANSCODED_BODY` bytes, else 413),
/// the converted response sent with its body.
async fn transcoded<'s>(
    ctx: &'s ConnCtx,
    head: &Head,
    body: &mut RecvStream,
    respond: &mut SendResponse<Bytes>,
    f: &Forwarding<'s>,
    info: &mut StreamInfo,
) -> Result<Sent, Failure<'s>> {
    use mosn_api::transcode::MAX_TRANSCODED_BODY;
    let Some(t) = info.transcoder.clone() else {
        return Err(crate::transcode::untranscoded());
    };
    let whole = if body.is_end_stream() {
        Bytes::new()
    } else {
        match read_held(body, MAX_TRANSCODED_BODY as u64).await {
            Ok(b) if b.len() > MAX_TRANSCODED_BODY => return Err(crate::transcode::too_large()),
            Ok(b) => b,
            Err(_) => {
                info.flag = Some(ResponseFlag::DownstreamConnectionTermination);
                return Err(Failure::Abort);
            }
        }
    };
    info.bytes_received = whole.len() as u64;
    let request = crate::transcode::http_message(head, whole);
    let m = crate::transcode::exchange(ctx, &*t, request, f, info).await?;
    let mut out = Head::response(info.status);
    for (k, v) in crate::transcode::response_fields(&m) {
        out.append(k, v);
    }
    Ok(send_whole(respond, out, m.body, info))
}

/// Appends the client's address to `X-Forwarded-For` (as the HTTP/1 encoder does).
fn append_forwarded_for(head: &mut Head, client: &[u8]) {
    let v = match head.get("x-forwarded-for") {
        Some(prev) => {
            let mut v = prev.to_vec();
            v.extend_from_slice(b", ");
            v.extend_from_slice(client);
            v
        }
        None => client.to_vec(),
    };
    head.set("x-forwarded-for", &v);
}

/// Sends a local answer: status, body, `Location`, mutations, BeforeSend filters.
fn answer(
    ctx: &ConnCtx,
    respond: &mut SendResponse<Bytes>,
    answer: Answer<'_>,
    info: &mut StreamInfo,
) -> Sent {
    let (head, reply) = answer.render(ctx, info, Head::response);
    send_whole(respond, head, reply.body, info)
}

/// Sends a response head with a whole body (a local answer, a transcoded response); h2 holds the
/// body until the client's window allows.
fn send_whole(
    respond: &mut SendResponse<Bytes>,
    head: Head,
    body: Bytes,
    info: &mut StreamInfo,
) -> Sent {
    info.status = head.status();
    let eos = body.is_empty();
    let completed = match head.to_response() {
        Ok(resp) => match respond.send_response(resp, eos) {
            Ok(mut s) if !eos => {
                info.bytes_sent = body.len() as u64;
                s.send_data(body, true).is_ok()
            }
            Ok(_) => true,
            Err(_) => false,
        },
        Err(_) => {
            respond.send_reset(h2::Reason::INTERNAL_ERROR);
            false
        }
    };
    Sent { head, completed }
}
