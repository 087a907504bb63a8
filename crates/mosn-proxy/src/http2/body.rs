//! Moving HTTP/2 bodies with flow control: data is sent only as the peer's window allows
//! (`reserve_capacity`/`poll_capacity`), and received data is released to the sender's window
//! only once it has been passed on, so a slow reader slows the writer and nothing piles up in the
//! proxy (RFC 9113 §5.2).

use std::future::poll_fn;
use std::task::{Context, Poll};

use bytes::Bytes;
use h2::{Reason, RecvStream, SendStream};

/// Why a body stopped.
#[derive(Debug)]
pub enum PipeError {
    /// The side being read from reset the stream or failed.
    Recv(h2::Error),
    /// The side being written to reset the stream or went away.
    Send(Option<Reason>),
}

/// Polls for room to send `want` bytes on `to`: the window granted now (at least 1), or the
/// reason the stream can take no more.
pub fn poll_room(
    cx: &mut Context<'_>,
    to: &mut SendStream<Bytes>,
    want: usize,
) -> Poll<Result<usize, Option<Reason>>> {
    if let Poll::Ready(r) = to.poll_reset(cx) {
        return Poll::Ready(Err(r.ok()));
    }
    to.reserve_capacity(want);
    loop {
        if to.capacity() > 0 {
            return Poll::Ready(Ok(to.capacity()));
        }
        match std::task::ready!(to.poll_capacity(cx)) {
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Poll::Ready(Err(e.reason())),
            None => return Poll::Ready(Err(None)),
        }
    }
}

/// Sends `data` on `to` as the window allows; `eos` ends the stream with the last byte.
///
/// Errors: the reason the stream was reset, `None` when it closed otherwise.
pub async fn send_all(
    to: &mut SendStream<Bytes>,
    mut data: Bytes,
    eos: bool,
) -> Result<(), Option<Reason>> {
    while !data.is_empty() {
        let room = poll_fn(|cx| poll_room(cx, to, data.len())).await?;
        let chunk = data.split_to(room.min(data.len()));
        to.send_data(chunk, eos && data.is_empty())
            .map_err(|e| e.reason())?;
    }
    if eos {
        to.send_data(Bytes::new(), true).map_err(|e| e.reason())?;
    }
    Ok(())
}

/// What [`pipe`] moved.
#[derive(Debug, Clone, Copy, Default)]
pub struct Piped {
    /// Body bytes.
    pub bytes: u64,
    /// The trailers' `grpc-status`, when there was one.
    pub grpc_status: Option<u32>,
}

/// Copies a body from `from` to `to`, trailers included, and ends `to`. Returns what moved;
/// `count` is told of each chunk as it is sent.
///
/// Errors: [`PipeError::Recv`] when `from` is reset (then `to` is left for the caller to reset),
/// [`PipeError::Send`] when `to` is reset or closed.
pub async fn pipe(
    from: &mut RecvStream,
    to: &mut SendStream<Bytes>,
    count: &dyn Fn(usize),
) -> Result<Piped, PipeError> {
    let mut total = 0u64;
    loop {
        let next = poll_fn(|cx| {
            if let Poll::Ready(r) = to.poll_reset(cx) {
                return Poll::Ready(Err(PipeError::Send(r.ok())));
            }
            from.poll_data(cx).map(Ok)
        })
        .await?;
        match next {
            Some(Ok(data)) => {
                let n = data.len();
                send_all(to, data, false).await.map_err(PipeError::Send)?;
                total += n as u64;
                count(n);
                let _ = from.flow_control().release_capacity(n);
            }
            Some(Err(e)) => return Err(PipeError::Recv(e)),
            None => break,
        }
    }
    let mut grpc_status = None;
    match poll_fn(|cx| from.poll_trailers(cx)).await {
        Ok(Some(t)) => {
            grpc_status = mosn_protocol::http2::translate::grpc_status(&t);
            to.send_trailers(t)
                .map_err(|e| PipeError::Send(e.reason()))?
        }
        Ok(None) => to
            .send_data(Bytes::new(), true)
            .map_err(|e| PipeError::Send(e.reason()))?,
        Err(e) => return Err(PipeError::Recv(e)),
    }
    Ok(Piped {
        bytes: total,
        grpc_status,
    })
}

/// The reset code passed on to the other side for a reset received from one side (RFC 9113
/// §7): stream-level codes pass as they are; connection-level failures become `INTERNAL_ERROR`,
/// and a stream that merely vanished becomes `CANCEL`.
pub fn mapped_reason(e: &h2::Error) -> Reason {
    match e.reason() {
        Some(r)
            if [
                Reason::NO_ERROR,
                Reason::CANCEL,
                Reason::REFUSED_STREAM,
                Reason::ENHANCE_YOUR_CALM,
                Reason::INADEQUATE_SECURITY,
                Reason::HTTP_1_1_REQUIRED,
            ]
            .contains(&r) =>
        {
            r
        }
        Some(_) => Reason::INTERNAL_ERROR,
        None if e.is_io() => Reason::CANCEL,
        None => Reason::INTERNAL_ERROR,
    }
}
