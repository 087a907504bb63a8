//! One connected byte stream type for every transport the proxy's codecs drive: TCP, unix, and
//! TLS over TCP on either side. Codecs take `&mut Stream`, so their code is written once and
//! dispatch is a `match`, not a generic parameter per transport.
//!
//! Two helpers save system calls on the request path:
//! - [`Stream::read_drained`]: after a read that returned less than asked, the socket is known to be
//!   empty; forgetting its readiness lets the next read wait for the kernel's next event instead of
//!   trying a `read(2)` that would return `EAGAIN`.
//! - [`Stream::is_reusable`]: an idle pooled connection is checked for a close or stray bytes with
//!   no system call when no event arrived since it was last read.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// A connected stream.
pub enum Stream {
    /// Plain TCP.
    Tcp(TcpStream),
    /// A unix stream socket.
    Unix(UnixStream),
    /// TLS accepted from a client.
    TlsServer(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// TLS to an upstream host.
    TlsClient(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    /// Tells the stream that its last read returned fewer bytes than asked, so the kernel buffer is
    /// empty: the next read waits for readiness instead of trying first. No-op for TLS (rustls may
    /// hold decrypted bytes).
    pub fn read_drained(&self) {
        let clear = || Err::<(), _>(io::ErrorKind::WouldBlock.into());
        match self {
            Stream::Tcp(s) => {
                let _ = s.try_io(Interest::READABLE, clear);
            }
            Stream::Unix(s) => {
                let _ = s.try_io(Interest::READABLE, clear);
            }
            Stream::TlsServer(_) | Stream::TlsClient(_) => {}
        }
    }

    /// True when an idle connection can take another request: the peer has not closed it and sent
    /// nothing unasked. Never blocks.
    pub fn is_reusable(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        let tcp_like = |ready: Poll<io::Result<()>>,
                        try_read: &dyn Fn(&mut [u8]) -> io::Result<usize>| {
            match ready {
                Poll::Pending => true,
                Poll::Ready(Err(_)) => false,
                Poll::Ready(Ok(())) => {
                    let mut b = [0u8; 1];
                    matches!(try_read(&mut b), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
                }
            }
        };
        match self {
            Stream::Tcp(s) => tcp_like(s.poll_read_ready(&mut cx), &|b| s.try_read(b)),
            Stream::Unix(s) => tcp_like(s.poll_read_ready(&mut cx), &|b| s.try_read(b)),
            Stream::TlsServer(_) | Stream::TlsClient(_) => {
                let mut b = [0u8; 1];
                let mut rb = ReadBuf::new(&mut b);
                matches!(Pin::new(self).poll_read(&mut cx, &mut rb), Poll::Pending)
            }
        }
    }

    /// The local address of a TCP (or TLS over TCP) stream.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Stream::Tcp(s) => s.local_addr().ok(),
            Stream::TlsServer(s) => s.get_ref().0.local_addr().ok(),
            Stream::TlsClient(s) => s.get_ref().0.local_addr().ok(),
            Stream::Unix(_) => None,
        }
    }
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Stream::Tcp($s) => $e,
            Stream::Unix($s) => $e,
            Stream::TlsServer($s) => $e,
            Stream::TlsClient($s) => $e,
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write(cx, buf))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.is_write_vectored(),
            Stream::Unix(s) => s.is_write_vectored(),
            Stream::TlsServer(s) => s.is_write_vectored(),
            Stream::TlsClient(s) => s.is_write_vectored(),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

impl From<TcpStream> for Stream {
    fn from(s: TcpStream) -> Self {
        Stream::Tcp(s)
    }
}

impl From<UnixStream> for Stream {
    fn from(s: UnixStream) -> Self {
        Stream::Unix(s)
    }
}
