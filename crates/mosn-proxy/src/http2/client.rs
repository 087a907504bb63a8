//! Opening a stream on a pooled HTTP/2 upstream connection, for either downstream protocol.

use std::future::poll_fn;

use bytes::Bytes;
use h2::client::ResponseFuture;
use h2::SendStream;
use mosn_api::{ProxyError, ResponseFlag, StreamInfo};
use mosn_upstream::H2Stream;

use crate::conn::ConnCtx;
use crate::stream::upstream::{Tries, Try};

/// A request sent on an upstream HTTP/2 stream.
pub struct Opened {
    /// The stream's slot on its pooled connection (given back when dropped).
    pub slot: H2Stream,
    /// The response head to wait for.
    pub response: ResponseFuture,
    /// Where the request body goes.
    pub body: SendStream<Bytes>,
}

/// Sends `req` (ending the stream when `eos`) on a pooled HTTP/2 connection to the try's host,
/// opening one when none has room. Sets the upstream local address in `info`.
///
/// Returns `Ok(None)` when the stream should try again: a connect failure with a try left, or a
/// pooled connection found gone (GOAWAY, closed) before the request left, which does not count
/// as a try. Errors: `UT` when the stream's deadline passes while connecting, the pool's
/// connect errors (`UF`, `UO`), and `UF` when the request cannot be sent.
pub async fn open(
    ctx: &ConnCtx,
    t: &Try<'_>,
    tries: &mut Tries,
    req: http::Request<()>,
    eos: bool,
    info: &mut StreamInfo,
) -> Result<Option<Opened>, ProxyError> {
    let pooled = ctx.worker.pools.h2_stream(t.cluster, &t.host);
    let slot = match tokio::time::timeout_at(tries.deadline, pooled).await {
        Err(_) => {
            return Err(ProxyError::new(
                ResponseFlag::UpstreamRequestTimeout,
                "route timeout",
            ))
        }
        Ok(Err(e)) if e.retryable && tries.left() => return Ok(None),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(s)) => s,
    };
    if let Some(u) = &mut info.upstream {
        u.local = slot.local;
    }
    let mut sender = slot.send.clone();
    let sent = match poll_fn(|cx| sender.poll_ready(cx)).await {
        Ok(()) => sender.send_request(req, eos),
        Err(e) => Err(e),
    };
    match sent {
        Ok((response, body)) => Ok(Some(Opened {
            slot,
            response,
            body,
        })),
        Err(e) => {
            slot.retire();
            if !slot.fresh && tries.stale() {
                return Ok(None);
            }
            Err(ProxyError::new(
                ResponseFlag::UpstreamConnectionFailure,
                format!("upstream {}: {e}", t.host.address),
            ))
        }
    }
}
