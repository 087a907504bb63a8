//! Requests sent upstream in another protocol than the client's, through the [`Transcoder`] the
//! `transcoder` stream filter chose (MOSN 0.26's dynamic upstream protocol).
//!
//! Between HTTP/1 and HTTP/2 the drivers' own streaming paths do the work: [`upstream`] only
//! tells them which to take. Toward an RPC protocol the HTTP drivers read the whole request
//! (at most [`MAX_TRANSCODED_BODY`] bytes) and call [`exchange`], which converts it with the
//! transcoder, sends it on the worker's multiplexed pool of that protocol (the XProtocol driver's
//! upstream: ids, heartbeats, retries of connect failures, timeouts) and converts the response
//! back. Every failure is an HTTP answer: 400 `TF` for a request the transcoder refuses, 500 `TF`
//! for a response it cannot convert, and the usual 502/503/504 for upstream failures.

use std::rc::Rc;

use bytes::Bytes;
use mosn_api::transcode::{Message, Transcoder, MAX_TRANSCODED_BODY};
use mosn_api::{HeaderVec, Headers, LocalReply, Protocol, ProxyError, ResponseFlag, StreamInfo};
use mosn_protocol::bolt::{Bolt, Frame, Version};

use crate::conn::ConnCtx;
use crate::stream::upstream::Failure;
use crate::stream::{Answer, Forwarding};

/// Where a request goes, by protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    /// HTTP/1 (the streaming path).
    Http1,
    /// HTTP/2 (the streaming path).
    Http2,
    /// An RPC protocol, through [`exchange`] with the stream's transcoder.
    Rpc,
    /// The listener sends RPC upstream but no transcoder took this HTTP request: it is answered
    /// 502 `TF` ([`untranscoded`]).
    Refused,
}

/// The upstream protocol of an HTTP request: the transcoder's when the `transcoder` filter chose
/// one, else the listener's `upstream_protocol` (`listener`; `Auto` already resolved by the
/// caller to the client's protocol).
pub fn upstream(info: &StreamInfo, listener: mosn_config::Protocol) -> Upstream {
    match info.transcoder.as_ref().map(|t| t.upstream()) {
        Some(Protocol::Http1) => Upstream::Http1,
        Some(Protocol::Http2) => Upstream::Http2,
        Some(_) => Upstream::Rpc,
        None if listener.is_rpc() => Upstream::Refused,
        None => match listener {
            mosn_config::Protocol::Http2 => Upstream::Http2,
            _ => Upstream::Http1,
        },
    }
}

/// The answer to an HTTP request that must be converted to reach the listener's RPC upstream but
/// that no transcoder took: 502 `TF`.
pub fn untranscoded<'s>() -> Failure<'s> {
    Failure::Answer(Answer::plain(LocalReply {
        flag: Some(ResponseFlag::TranscodeFailed),
        status: 502,
        body: Bytes::from_static(b"no transcoder took the request\n"),
    }))
}

/// The answer to a request body over [`MAX_TRANSCODED_BODY`]: 413.
pub fn too_large<'s>() -> Failure<'s> {
    Failure::Answer(Answer::plain(LocalReply::new(
        413,
        format!("a transcoded request body is limited to {MAX_TRANSCODED_BODY} bytes\n"),
    )))
}

fn transcode_failed<'s>(status: u16, why: impl std::fmt::Display) -> Failure<'s> {
    tracing::debug!(status, error = %why, "transcoding failed");
    Failure::Answer(Answer::plain(LocalReply {
        flag: Some(ResponseFlag::TranscodeFailed),
        status,
        body: Bytes::from(format!("transcoding failed: {why}\n")),
    }))
}

/// The head of an HTTP request as a transcoder reads it: its pseudo-fields and header fields.
pub fn http_message(head: &dyn Headers, body: Bytes) -> Message {
    let mut h = HeaderVec::default();
    for k in [":method", ":path", ":authority", ":scheme"] {
        if let Some(v) = head.get(k) {
            h.append(k, v);
        }
    }
    head.visit(&mut |k, v| {
        if let Ok(k) = std::str::from_utf8(k) {
            h.append(k, v);
        }
    });
    Message { head: h, body }
}

/// Converts the whole HTTP `request` with `t`, exchanges it upstream and returns the HTTP
/// response the transcoder made: `:status` and header fields in its head, and its body.
/// `info.status` is set to that status.
///
/// Errors: 400 `TF` when the transcoder refuses the request, 500 `TF` when it cannot convert the
/// response (or gives no valid `:status`), 502 `UF`/`UC`, 503, 504 `UT` for upstream failures.
pub async fn exchange<'s>(
    ctx: &'s ConnCtx,
    t: &dyn Transcoder,
    request: Message,
    f: &Forwarding<'s>,
    info: &mut StreamInfo,
) -> Result<Message, Failure<'s>> {
    let up = t.request(request).map_err(|e| transcode_failed(400, e))?;
    let response = match t.upstream() {
        p @ (Protocol::Bolt | Protocol::BoltV2) => {
            let proto = Rc::new(Bolt {
                v2: p == Protocol::BoltV2,
                goaway: false,
            });
            let mut frame = bolt_request(&up, proto.v2, f);
            match crate::xprotocol::forward(ctx, &proto, &mut frame, f, false, info).await? {
                Some(r) => bolt_message(&r),
                None => {
                    return Err(ProxyError::new(
                        ResponseFlag::UpstreamConnectionTermination,
                        "no response",
                    )
                    .into())
                }
            }
        }
        p => {
            return Err(transcode_failed(
                500,
                format!("{} upstream is not supported by mosn-rs", p.mosn_name()),
            ))
        }
    };
    if response.body.len() > MAX_TRANSCODED_BODY {
        return Err(transcode_failed(502, "response body too large"));
    }
    let out = t.response(response).map_err(|e| transcode_failed(500, e))?;
    match out.number(":status") {
        Some(s @ 200..=599) => info.status = s as u16,
        _ => {
            return Err(transcode_failed(
                500,
                "the transcoder gave no valid :status",
            ))
        }
    }
    Ok(out)
}

/// A Bolt request from a transcoded message: `:class`, `:codec` (default hessian2) and
/// `:timeout` (ms; default the route's global timeout) from its pseudo-fields, the other fields
/// as the header map, the body as the content.
fn bolt_request(m: &Message, v2: bool, f: &Forwarding<'_>) -> Frame {
    let version = if v2 {
        Version::V2 { ver1: 2, switch: 0 }
    } else {
        Version::V1
    };
    let mut frame = Frame::request(version, 0);
    frame.codec = m
        .number(":codec")
        .and_then(|c| u8::try_from(c).ok())
        .unwrap_or(1);
    frame.timeout_ms = m
        .number(":timeout")
        .unwrap_or(f.timeouts.global.as_millis() as u64)
        .min(u64::from(u32::MAX - 1)) as u32;
    for (k, v) in &m.head.0 {
        if k == ":class" {
            frame.class = Bytes::copy_from_slice(v);
        } else if !k.starts_with(':') {
            frame.append(k, v);
        }
    }
    frame.content = m.body.clone();
    frame
}

/// A Bolt response as a message: `:status` (Bolt's), `:class`, the header map, the content.
fn bolt_message(r: &Frame) -> Message {
    let mut head = HeaderVec::default();
    head.append(":status", r.status.to_string().as_bytes());
    head.append(":class", &r.class);
    r.visit(&mut |k, v| {
        if let Ok(k) = std::str::from_utf8(k) {
            head.append(k, v);
        }
    });
    Message {
        head,
        body: r.content.clone(),
    }
}

/// Fields a driver sets itself from the body it writes.
const FRAMING: [&str; 3] = ["content-length", "transfer-encoding", "connection"];

/// The HTTP response fields of a transcoded message (its head without pseudo-fields and framing
/// fields), for the drivers to write.
pub fn response_fields(m: &Message) -> impl Iterator<Item = (&str, &[u8])> {
    m.head
        .0
        .iter()
        .filter(|(k, _)| !k.starts_with(':') && !FRAMING.contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v.as_slice()))
}
