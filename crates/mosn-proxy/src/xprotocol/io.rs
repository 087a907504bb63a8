//! Reading and writing one connection from one task, for the XProtocol drivers: a read buffer
//! filled and a write buffer drained by polling, so a connection is read and written at once
//! without splitting it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};

/// Bytes reserved in the read buffer before each read.
pub const READ_CHUNK: usize = 16 * 1024;

/// Writes from `wbuf` until it is empty (then flushes) or the socket is full. `Ready(Ok)` once
/// everything is written.
///
/// Errors: the socket's write error (the peer is gone).
pub fn poll_drain<T: AsyncWrite + Unpin>(
    cx: &mut Context<'_>,
    io: &mut T,
    wbuf: &mut BytesMut,
) -> Poll<io::Result<()>> {
    while !wbuf.is_empty() {
        match Pin::new(&mut *io).poll_write(cx, wbuf) {
            Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(n)) => wbuf.advance(n),
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
    }
    Pin::new(io).poll_flush(cx)
}

/// Reads more bytes into `rbuf`; `Ready(Ok(0))` at the end of the stream.
///
/// Errors: the socket's read error.
pub fn poll_fill<T: AsyncRead + Unpin>(
    cx: &mut Context<'_>,
    io: &mut T,
    rbuf: &mut BytesMut,
) -> Poll<io::Result<usize>> {
    if rbuf.capacity() - rbuf.len() < READ_CHUNK / 4 {
        rbuf.reserve(READ_CHUNK);
    }
    tokio_util::io::poll_read_buf(Pin::new(io), cx, rbuf)
}
