//! An IO wrapper that counts the bytes read and written, for the `bytes_read_total` /
//! `bytes_write_total` metrics.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Where counted bytes go.
pub trait ByteSink {
    /// `n` bytes were read.
    fn read(&self, n: usize);
    /// `n` bytes were written.
    fn written(&self, n: usize);
}

/// Wraps an IO object and reports every read and write to a [`ByteSink`].
pub struct CountingIo<T, S> {
    inner: T,
    sink: S,
}

impl<T, S> CountingIo<T, S> {
    /// Wraps `inner`.
    pub fn new(inner: T, sink: S) -> Self {
        CountingIo { inner, sink }
    }

    /// The wrapped IO object.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

impl<T: AsyncRead + Unpin, S: ByteSink + Unpin> AsyncRead for CountingIo<T, S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            this.sink.read(n);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin, S: ByteSink + Unpin> AsyncWrite for CountingIo<T, S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            this.sink.written(*n);
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &r {
            this.sink.written(*n);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
