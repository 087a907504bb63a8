//! One HTTP/1 request sent upstream in an RPC protocol through the stream's transcoder (see
//! [`crate::transcode`]): the body is read whole (`Content-Length` or chunked, at most
//! [`MAX_TRANSCODED_BODY`] bytes), converted, exchanged, and the converted response written with
//! a `Content-Length`.

use std::future::poll_fn;

use bytes::{BufMut, Bytes, BytesMut};
use mosn_api::transcode::MAX_TRANSCODED_BODY;
use mosn_api::{Headers, LocalReply, ProxyError, ResponseFlag, StreamInfo};
use mosn_protocol::http1::body::Progress;
use mosn_protocol::http1::{BodyDecoder, BodyEncoder, Framing, RequestHead, ResponseHead};

use super::exchange::read_held_body;
use super::pump::{self, Half};
use super::{Downstream, Outcome};
use crate::stream::upstream::Failure;
use crate::stream::Forwarding;
use crate::transcode::{self, exchange, http_message, response_fields};

/// Forwards one request through the stream's transcoder and writes the converted response.
pub async fn forward(
    d: &mut Downstream,
    req: &mut RequestHead,
    framing: Framing,
    f: Forwarding<'_>,
    info: &mut StreamInfo,
) -> Outcome {
    let Some(t) = info.transcoder.clone() else {
        return d
            .failed(req, framing, transcode::untranscoded(), info)
            .await;
    };
    let body = match read_whole(d, req, framing).await {
        Ok(b) => b,
        Err(e) => {
            if matches!(e, Failure::Abort) {
                info.flag = Some(ResponseFlag::DownstreamConnectionTermination);
            }
            // The body was not read to its end: the connection cannot serve another request.
            return d.failed(req, Framing::Chunked, e, info).await;
        }
    };
    info.bytes_received = body.len() as u64;
    let ctx = d.ctx.clone();
    match exchange(&ctx, &*t, http_message(req, body), &f, info).await {
        Ok(m) => {
            let mut head = ResponseHead::local(info.status);
            for (k, v) in response_fields(&m) {
                head.append(k, v);
            }
            let close = d.closing(req.keep_alive);
            let reply = LocalReply::new(info.status, m.body);
            d.write_local(req, &mut head, &reply, close, info).await
        }
        Err(e) => d.failed(req, Framing::Empty, e, info).await,
    }
}

/// Reads the request body whole.
///
/// Errors: 413 over [`MAX_TRANSCODED_BODY`]; 400 `DPE` for bad chunked framing; `Abort` when the
/// client goes away.
async fn read_whole<'s>(
    d: &mut Downstream,
    req: &RequestHead,
    framing: Framing,
) -> Result<Bytes, Failure<'s>> {
    match framing {
        Framing::Empty => return Ok(Bytes::new()),
        Framing::Length(n) if n > MAX_TRANSCODED_BODY as u64 => return Err(transcode::too_large()),
        Framing::Length(n) => return read_held_body(d, req, n).await.map_err(|_| Failure::Abort),
        _ => {}
    }
    if req.expect_continue && d.rbuf.is_empty() {
        d.wbuf.put_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        d.flush().await.map_err(|_| Failure::Abort)?;
    }
    let mut dec = BodyDecoder::new(framing);
    let mut enc = BodyEncoder::Identity;
    let mut out = BytesMut::new();
    let mut data = 0;
    let count = d.ctx.read_counter();
    loop {
        match dec.decode_into(
            &mut d.rbuf,
            &mut enc,
            &mut out,
            MAX_TRANSCODED_BODY + 1,
            &mut data,
        ) {
            Ok(Progress::Done) => return Ok(out.freeze()),
            Ok(Progress::OutputFull) => return Err(transcode::too_large()),
            Ok(Progress::NeedInput) => {}
            Err(e) => {
                return Err(
                    ProxyError::new(ResponseFlag::DownstreamProtocolError, e.to_string()).into(),
                )
            }
        }
        let mut h = Half {
            io: &mut d.io,
            buf: &mut d.rbuf,
            count: &count,
        };
        match poll_fn(|cx| pump::poll_read(cx, &mut h)).await {
            Ok(0) | Err(_) => return Err(Failure::Abort),
            Ok(_) => {}
        }
    }
}
