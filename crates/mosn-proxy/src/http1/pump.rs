//! Moving one HTTP/1 body from one stream to another with back-pressure: read into the source's
//! buffer, decode its framing, encode the other side's framing into the destination's buffer,
//! write. Written as a poll function so one task can drive both directions of an exchange at once
//! (a request body still streaming up while the response streams down) without splitting sockets.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use mosn_net::Stream;
use mosn_protocol::http1::{BodyDecoder, BodyEncoder, BodyError};
use tokio::io::AsyncWrite;

/// Most bytes buffered for the destination before the pump stops reading the source.
pub const HIGH_WATER: usize = 64 * 1024;

/// Bytes asked for per read.
pub const READ_CHUNK: usize = 16 * 1024;

/// Why a pump stopped.
#[derive(Debug)]
pub enum PumpError {
    /// Reading the source failed, or it closed before the body ended.
    Source(io::Error),
    /// Writing the destination failed.
    Dest(io::Error),
    /// The body's framing is invalid.
    Body(BodyError),
}

/// One side of a pump: its stream, its buffer, and a byte counter for its stats.
pub struct Half<'a> {
    /// The stream.
    pub io: &'a mut Stream,
    /// Read side: bytes read not yet decoded. Write side: bytes encoded not yet written.
    pub buf: &'a mut BytesMut,
    /// Called with the number of bytes of each read or write.
    pub count: &'a dyn Fn(usize),
}

/// Reads once into `h.buf`. `Ok(0)` is the end of the stream.
pub fn poll_read(cx: &mut Context<'_>, h: &mut Half<'_>) -> Poll<io::Result<usize>> {
    if h.buf.capacity() - h.buf.len() < READ_CHUNK / 4 {
        h.buf.reserve(READ_CHUNK);
    }
    let spare = h.buf.capacity() - h.buf.len();
    let n = std::task::ready!(tokio_util::io::poll_read_buf(
        Pin::new(&mut *h.io),
        cx,
        &mut *h.buf
    ))?;
    if n > 0 {
        (h.count)(n);
        if n < spare {
            h.io.read_drained();
        }
    }
    Poll::Ready(Ok(n))
}

/// Writes `h.buf` until it is empty (then flushes). `Ready(Ok)` once everything is out.
pub fn poll_write_all(cx: &mut Context<'_>, h: &mut Half<'_>) -> Poll<io::Result<()>> {
    while !h.buf.is_empty() {
        let n = std::task::ready!(Pin::new(&mut *h.io).poll_write(cx, h.buf))?;
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        (h.count)(n);
        h.buf.advance(n);
    }
    Pin::new(&mut *h.io).poll_flush(cx)
}

/// One body in motion.
pub struct BodyPump {
    dec: BodyDecoder,
    enc: BodyEncoder,
    /// Body bytes decoded so far (framing excluded).
    pub bytes: u64,
    /// True once any input was given to the decoder (a stale-connection retry must not resend a
    /// body it already started to consume).
    pub touched: bool,
    /// True once the body ended and every byte was written.
    pub finished: bool,
}

impl BodyPump {
    /// A pump decoding with `dec` and encoding with `enc`.
    pub fn new(dec: BodyDecoder, enc: BodyEncoder) -> Self {
        BodyPump {
            dec,
            enc,
            bytes: 0,
            touched: false,
            finished: false,
        }
    }

    /// Sets the encoder for the other side (chosen when the head is written).
    pub fn set_encoder(&mut self, enc: BodyEncoder) {
        self.enc = enc;
    }

    /// True when the whole body was decoded (it may still be waiting to be written).
    pub fn decoded(&self) -> bool {
        self.dec.is_done()
    }

    /// Drives the body from `src` to `dst` until it is complete (`Ready(Ok)`), blocked on I/O
    /// (`Pending`), or failed.
    pub fn poll(
        &mut self,
        cx: &mut Context<'_>,
        src: &mut Half<'_>,
        dst: &mut Half<'_>,
    ) -> Poll<Result<(), PumpError>> {
        if self.finished {
            return Poll::Ready(Ok(()));
        }
        loop {
            // Decode what is already buffered first, so a head and its body leave in one write.
            if !self.dec.is_done() && !src.buf.is_empty() && dst.buf.len() < HIGH_WATER {
                self.touched = true;
                self.dec
                    .decode_into(src.buf, &mut self.enc, dst.buf, HIGH_WATER, &mut self.bytes)
                    .map_err(PumpError::Body)?;
            }
            let write_blocked = match poll_write_all(cx, dst) {
                Poll::Ready(Ok(())) => false,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(PumpError::Dest(e))),
                Poll::Pending => true,
            };
            if self.dec.is_done() {
                if write_blocked {
                    return Poll::Pending;
                }
                self.finished = true;
                return Poll::Ready(Ok(()));
            }
            if !src.buf.is_empty() {
                if write_blocked {
                    return Poll::Pending;
                }
                // More decoded input waits for room in the output: go round again.
                continue;
            }
            if write_blocked && dst.buf.len() >= HIGH_WATER {
                return Poll::Pending;
            }
            match poll_read(cx, src) {
                Poll::Ready(Ok(0)) => {
                    self.dec
                        .eof(&mut self.enc, dst.buf)
                        .map_err(|_| PumpError::Source(io::ErrorKind::UnexpectedEof.into()))?;
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(PumpError::Source(e))),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
