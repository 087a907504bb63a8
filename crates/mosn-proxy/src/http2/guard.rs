//! A per-connection budget for the control frames a client sends (PING, SETTINGS, RST_STREAM,
//! PRIORITY): `h2` answers PING and SETTINGS by itself and bounds what it queues, but each frame
//! still costs the worker CPU. A client that sends more than [`BURST`] such frames at once, or
//! more than [`PER_SECOND`] per second sustained, gets GOAWAY `ENHANCE_YOUR_CALM` and is closed.
//!
//! The budget is a token bucket over frame headers read beside `h2`
//! ([`mosn_protocol::http2::frames::FrameScanner`]). Once tripped, the connection reads nothing
//! more. Real clients stay far below it: gRPC's BDP and keepalive PINGs come one at a time,
//! each waiting for its ACK.

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use mosn_protocol::http2::frames::FrameScanner;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Control frames a client may send at once.
pub const BURST: f64 = 2000.0;
/// Control frames a client may send per second, sustained.
pub const PER_SECOND: f64 = 1000.0;

/// Shared between the guarded stream (inside `h2`) and the connection's driver.
#[derive(Default)]
pub struct Tripped {
    flag: Cell<bool>,
    notify: tokio::sync::Notify,
}

impl Tripped {
    /// Waits until the budget is exceeded.
    pub async fn wait(&self) {
        if !self.flag.get() {
            self.notify.notified().await;
        }
    }
}

/// A client stream whose control frames are counted against the budget.
pub struct Guarded<T> {
    io: T,
    scanner: FrameScanner,
    tokens: f64,
    last: Instant,
    tripped: Rc<Tripped>,
}

impl<T> Guarded<T> {
    /// Wraps the server side of a connection (the client preface comes first).
    pub fn new(io: T) -> (Self, Rc<Tripped>) {
        let tripped = Rc::new(Tripped::default());
        (
            Guarded {
                io,
                scanner: FrameScanner::server(),
                tokens: BURST,
                last: Instant::now(),
                tripped: tripped.clone(),
            },
            tripped,
        )
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.tripped.flag.get() {
            // The driver is closing the connection; nothing more is read.
            return Poll::Pending;
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        let this = &mut *self;
        let mut control = 0u32;
        this.scanner.feed(&buf.filled()[before..], |f| {
            if f.is_control() {
                control += 1;
            }
        });
        if control > 0 {
            let now = Instant::now();
            let refill = now.duration_since(this.last).as_secs_f64() * PER_SECOND;
            this.tokens = (this.tokens + refill).min(BURST) - f64::from(control);
            this.last = now;
            if this.tokens < 0.0 {
                this.tripped.flag.set(true);
                this.tripped.notify.notify_one();
            }
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
