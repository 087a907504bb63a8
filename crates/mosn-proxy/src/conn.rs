//! What a downstream connection knows while it serves streams, whatever its protocol.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use mosn_net::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::access_log::ListenerLog;
use crate::snapshot::{ListenerInfo, Snapshot};
use crate::worker::state::{Worker, UNIX_PEER};

/// A downstream connection's context.
pub struct ConnCtx {
    /// The worker that owns the connection.
    pub worker: Rc<Worker>,
    /// The config snapshot read when the connection started.
    pub snapshot: Arc<Snapshot>,
    /// Index of the listener in the snapshot.
    pub listener: usize,
    /// The client's IP as text, for `X-Forwarded-For` (`unix` on a unix socket).
    pub client_ip: Bytes,
    /// The client's address.
    pub peer: SocketAddr,
    /// The local address the client connected to (the original destination when redirected).
    pub local: SocketAddr,
    /// Connection id, unique within the process.
    pub id: u64,
}

impl ConnCtx {
    /// A context for a new connection on `listener`.
    pub fn new(
        worker: Rc<Worker>,
        snapshot: Arc<Snapshot>,
        listener: usize,
        peer: SocketAddr,
        local: SocketAddr,
    ) -> Self {
        let client_ip = if peer == UNIX_PEER {
            Bytes::from_static(b"unix")
        } else {
            Bytes::from(peer.ip().to_string())
        };
        let id = worker.next_connection_id();
        ConnCtx {
            worker,
            snapshot,
            listener,
            client_ip,
            peer,
            local,
            id,
        }
    }

    /// This connection's context on the worker's current snapshot, when it changed since this
    /// one was made (a `Rerouter` applied new clusters and routes) and still has the listener.
    /// Streams started with the result route on the new snapshot.
    pub fn refreshed(&self) -> Option<ConnCtx> {
        let current = self.worker.config.load();
        if Arc::ptr_eq(&self.snapshot, &current) {
            return None;
        }
        // Listener slots are stable across snapshots. A removed listener's connections stay on
        // the snapshot they had (its tombstone's route table index means nothing in the new one).
        let listener = self.listener;
        if current.listeners.get(listener)?.removed_at.is_some() {
            return None;
        }
        Some(ConnCtx {
            worker: self.worker.clone(),
            snapshot: arc_swap::Guard::into_inner(current),
            listener,
            client_ip: self.client_ip.clone(),
            peer: self.peer,
            local: self.local,
            id: self.id,
        })
    }

    /// True when this connection should close after its current request: the server drains,
    /// or a config applied at run time removed its listener.
    pub fn draining(&self) -> bool {
        self.worker.draining.get() || self.removed_at().is_some()
    }

    /// When the drain that concerns this connection started: the server's, else its listener's
    /// removal.
    pub fn drain_started(&self) -> Option<tokio::time::Instant> {
        self.worker
            .drain_started
            .get()
            .or_else(|| self.removed_at().map(tokio::time::Instant::from_std))
    }

    fn removed_at(&self) -> Option<std::time::Instant> {
        if !self.worker.listener_removed.get() {
            return None;
        }
        self.worker
            .config
            .load()
            .listeners
            .get(self.listener)
            .map_or(Some(std::time::Instant::now()), |l| l.removed_at)
    }

    /// The listener's compiled config.
    pub fn listener(&self) -> &ListenerInfo {
        &self.snapshot.listeners[self.listener]
    }

    /// Counts bytes read from the client in the listener's `bytes_read_total`.
    pub fn read_counter(&self) -> impl Fn(usize) + '_ {
        let l = self.worker.stats.listeners.get(self.listener);
        move |n| {
            if let Some(l) = l {
                l.bytes_read_total.add(n as u64)
            }
        }
    }

    /// Counts bytes written to the client in the listener's `bytes_write_total`.
    pub fn write_counter(&self) -> impl Fn(usize) + '_ {
        let l = self.worker.stats.listeners.get(self.listener);
        move |n| {
            if let Some(l) = l {
                l.bytes_write_total.add(n as u64)
            }
        }
    }

    /// The access logs of this connection's listener.
    pub fn logs(&self) -> &[ListenerLog] {
        self.worker
            .logs
            .by_listener
            .get(self.listener)
            .map_or(&[], Vec::as_slice)
    }
}

/// Counts an open downstream `proxy` connection (listener `connection_total`,
/// `connection_active`, `connection_destroy`, and the worker's active connections, which a
/// drain waits for) until dropped.
pub struct ListenerConn {
    stats: Arc<crate::stats::WorkerStats>,
    listener: usize,
}

impl ListenerConn {
    /// Counts a connection opened on `listener`.
    pub fn open(worker: &Worker, listener: usize) -> Self {
        let stats = worker.stats.clone();
        if let Some(l) = stats.listeners.get(listener) {
            l.connection_total.inc();
            l.connection_active.inc();
        }
        stats.active_connections.inc();
        ListenerConn { stats, listener }
    }
}

impl Drop for ListenerConn {
    fn drop(&mut self) {
        if let Some(l) = self.stats.listeners.get(self.listener) {
            l.connection_active.dec();
            l.connection_destroy.inc();
        }
        self.stats.active_connections.dec();
    }
}

/// A downstream connection handed to a protocol driver (HTTP/1, HTTP/2, XProtocol).
pub struct Accepted {
    /// The worker serving it.
    pub worker: Rc<Worker>,
    /// The config snapshot it started under.
    pub snapshot: Arc<Snapshot>,
    /// Index of its listener in the snapshot.
    pub listener: usize,
    /// The stream (after TLS, when the listener has it).
    pub io: Stream,
    /// The client's address ([`UNIX_PEER`] on a unix socket) and the local one.
    pub addrs: (SocketAddr, SocketAddr),
    /// Bytes already read from it (by protocol detection), to be served first.
    pub initial: bytes::BytesMut,
    /// A connection moved here by a hot upgrade: the answers the old process still owes it.
    pub late: Option<crate::transfer::LateAnswers>,
}

impl Accepted {
    /// Counts the connection on its listener (until the guard drops) and makes its context;
    /// returns them with the stream and the bytes already read.
    pub fn open(self) -> (ListenerConn, Rc<ConnCtx>, Stream, bytes::BytesMut) {
        let guard = ListenerConn::open(&self.worker, self.listener);
        let (peer, local) = self.addrs;
        let ctx = Rc::new(ConnCtx::new(
            self.worker,
            self.snapshot,
            self.listener,
            peer,
            local,
        ));
        (guard, ctx, self.io, self.initial)
    }
}

/// A downstream stream that first yields bytes already read from it (by protocol detection) and
/// counts the listener's `bytes_read_total` and `bytes_write_total`, for codecs that own their
/// I/O (HTTP/2).
pub struct Counted {
    io: Stream,
    initial: bytes::BytesMut,
    stats: Arc<crate::stats::WorkerStats>,
    listener: usize,
    budget: Option<crate::http2::guard::Budget>,
}

impl Counted {
    /// True for a plaintext TCP connection (one a hot upgrade can move).
    pub fn is_plain(&self) -> bool {
        matches!(self.io, Stream::Tcp(_) | Stream::Unix(_))
    }

    /// The stream back, with the initial bytes not read yet.
    pub fn into_inner(self) -> (Stream, bytes::BytesMut) {
        (self.io, self.initial)
    }

    /// Wraps `io` with `initial` bytes to read first.
    pub fn new(io: Stream, initial: bytes::BytesMut, ctx: &ConnCtx) -> Self {
        Counted {
            io,
            initial,
            stats: ctx.worker.stats.clone(),
            listener: ctx.listener,
            budget: None,
        }
    }

    /// As [`Counted::new`], for an HTTP/2 server connection whose control frames draw on a
    /// [`crate::http2::guard::Budget`]; once it is exceeded nothing more is read, and the handle
    /// returned wakes the driver.
    pub fn guarded(
        io: Stream,
        initial: bytes::BytesMut,
        ctx: &ConnCtx,
    ) -> (Self, Rc<crate::http2::guard::Tripped>) {
        let (budget, tripped) = crate::http2::guard::Budget::new();
        let mut c = Counted::new(io, initial, ctx);
        c.budget = Some(budget);
        (c, tripped)
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.budget.as_ref().is_some_and(|b| b.is_tripped()) {
            // The driver is closing the connection; nothing more is read.
            return Poll::Pending;
        }
        let before = buf.filled().len();
        let r = if !self.initial.is_empty() {
            let n = self.initial.len().min(buf.remaining());
            buf.put_slice(&self.initial.split_to(n));
            Poll::Ready(Ok(()))
        } else {
            let r = Pin::new(&mut self.io).poll_read(cx, buf);
            let n = buf.filled().len() - before;
            if n > 0 {
                if let Some(l) = self.stats.listeners.get(self.listener) {
                    l.bytes_read_total.add(n as u64);
                }
            }
            r
        };
        if let Some(b) = &mut self.budget {
            b.read(&buf.filled()[before..]);
        }
        r
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            if let Some(l) = self.stats.listeners.get(self.listener) {
                l.bytes_write_total.add(n as u64);
            }
        }
        r
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            if let Some(l) = self.stats.listeners.get(self.listener) {
                l.bytes_write_total.add(n as u64);
            }
        }
        r
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
