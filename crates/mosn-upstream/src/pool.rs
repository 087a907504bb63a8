//! Per-worker upstream connection pools, keyed by a stable host id.
//!
//! A ping-pong pool (HTTP/1) holds idle connections; a request checks one out, drives it itself
//! (no connection task, no channel) and gives it back when its response has been read to the end.
//! The pool is generic over the connection kind ([`Reusable`]); the multiplexed HTTP/2 pool is in
//! [`crate::multiplex`]. Idle lists are LIFO, so the warmest connection goes
//! first and surplus ones age out by `idle_timeout`.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mosn_api::{ProxyError, ResponseFlag};
use mosn_net::Stream;
use tokio::net::TcpStream;

use crate::cluster::{Cluster, Gauges, Host, Slot};
use crate::stats::UpstreamStatsSet;

/// A connection a ping-pong pool can hold.
pub trait Reusable {
    /// Stable id of the host it is connected to.
    fn host_id(&self) -> usize;
    /// True when it can take another request now (not closed, nothing unasked pending).
    fn is_reusable(&mut self) -> bool;
    /// When it went idle.
    fn idle_since(&self) -> Instant;
}

/// Idle connections of one kind, per host id.
pub struct PingPongPool<C> {
    idle: RefCell<Vec<Vec<C>>>,
}

impl<C> Default for PingPongPool<C> {
    fn default() -> Self {
        PingPongPool {
            idle: RefCell::new(Vec::new()),
        }
    }
}

impl<C: Reusable> PingPongPool<C> {
    /// Takes the most recently used idle connection to `host` that is still usable; connections
    /// idle for `idle_timeout` or more, closed or with stray bytes are dropped on the way.
    pub fn take(&self, host: usize, idle_timeout: Option<Duration>) -> Option<C> {
        loop {
            let mut c = self.idle.borrow_mut().get_mut(host)?.pop()?;
            let expired = idle_timeout.is_some_and(|t| c.idle_since().elapsed() >= t);
            if !expired && c.is_reusable() {
                return Some(c);
            }
        }
    }

    /// Puts an idle connection back.
    pub fn put(&self, c: C) {
        let host = c.host_id();
        let mut idle = self.idle.borrow_mut();
        if idle.len() <= host {
            idle.resize_with(host + 1, Vec::new);
        }
        idle[host].push(c);
    }

    /// Idle connections held for a host.
    pub fn idle_count(&self, host: usize) -> usize {
        self.idle.borrow().get(host).map_or(0, Vec::len)
    }
}

/// An upstream HTTP/1 connection: the stream, the bytes read past the last response, and what the
/// pool and the stats need. Closing it (drop) counts `connection_close`.
pub struct UpstreamConn {
    /// The stream.
    pub io: Stream,
    /// Bytes read but not yet consumed.
    pub buf: BytesMut,
    /// Bytes to write, kept with the connection so requests reuse its memory.
    pub wbuf: BytesMut,
    /// Requests sent on it so far.
    pub requests: u32,
    /// Local address (for `upstream_local_address`).
    pub local: Option<std::net::SocketAddr>,
    host: usize,
    cluster: usize,
    idle_since: Instant,
    stats: Arc<UpstreamStatsSet>,
    _slot: Slot,
}

impl UpstreamConn {
    /// Counts `n` bytes read from the upstream.
    #[inline]
    pub fn count_read(&self, n: usize) {
        self.stats.both(self.cluster, self.host, |s| {
            s.connection_bytes_read_total.add(n as u64)
        });
    }

    /// Counts `n` bytes written to the upstream.
    #[inline]
    pub fn count_written(&self, n: usize) {
        self.stats.both(self.cluster, self.host, |s| {
            s.connection_bytes_write.add(n as u64)
        });
    }
}

impl Reusable for UpstreamConn {
    fn host_id(&self) -> usize {
        self.host
    }
    fn is_reusable(&mut self) -> bool {
        self.buf.is_empty() && self.io.is_reusable()
    }
    fn idle_since(&self) -> Instant {
        self.idle_since
    }
}

impl Drop for UpstreamConn {
    fn drop(&mut self) {
        self.stats.both(self.cluster, self.host, |s| {
            s.connection_active.dec();
            s.connection_close.inc();
        });
    }
}

/// Initial read buffer of an upstream connection, in bytes.
pub const READ_BUFFER: usize = 16 * 1024;

/// The upstream pools of one worker. Not `Send`: each worker owns its own.
pub struct Pools {
    http1: PingPongPool<UpstreamConn>,
    pub(crate) h2: crate::multiplex::MultiplexPool,
    stats: Arc<UpstreamStatsSet>,
}

impl Pools {
    /// Empty pools counting into `stats`.
    pub fn new(stats: Arc<UpstreamStatsSet>) -> Self {
        Pools {
            http1: PingPongPool::default(),
            h2: Default::default(),
            stats,
        }
    }

    /// This worker's upstream stats.
    pub fn stats(&self) -> &Arc<UpstreamStatsSet> {
        &self.stats
    }

    /// Idle HTTP/1 connections held for a host.
    pub fn idle_count(&self, host_id: usize) -> usize {
        self.http1.idle_count(host_id)
    }

    /// A usable idle HTTP/1 connection to `host`, if any (see [`PingPongPool::take`]).
    pub fn take_idle(&self, cluster: &Cluster, host: &Host) -> Option<UpstreamConn> {
        self.http1.take(host.id, cluster.idle_timeout)
    }

    /// Gives back a connection whose response was read to its end and that may be reused; it is
    /// closed instead once it reached the cluster's `max_request_per_conn`.
    pub fn release(&self, cluster: &Cluster, mut c: UpstreamConn) {
        c.requests += 1;
        if cluster
            .max_request_per_conn
            .is_some_and(|m| c.requests >= m)
        {
            return;
        }
        if cluster.idle_timeout.is_some() {
            c.idle_since = Instant::now();
        }
        self.http1.put(c);
    }

    /// An idle connection to `host` if one is usable, else a new one.
    ///
    /// Errors: see [`Pools::connect`].
    pub async fn acquire(
        &self,
        cluster: &Arc<Cluster>,
        host: &Host,
    ) -> Result<UpstreamConn, ProxyError> {
        match self.take_idle(cluster, host) {
            Some(c) => Ok(c),
            None => self.connect(cluster, host).await,
        }
    }

    /// Opens a new connection to `host`, with TLS when the cluster has it. Counts
    /// `request_pending_overflow` and `connection_con_fail` for the cluster and the host.
    ///
    /// Errors: `UO` when `max_connections` or `max_pending_requests` is reached; `UF` when the
    /// connection is refused, fails, or does not complete within `connect_timeout`.
    pub async fn connect(
        &self,
        cluster: &Arc<Cluster>,
        host: &Host,
    ) -> Result<UpstreamConn, ProxyError> {
        let (ci, hi) = (cluster.index, host.id);
        let overflow = |what: &str| {
            self.stats
                .both(ci, hi, |s| s.request_pending_overflow.inc());
            ProxyError::new(ResponseFlag::UpstreamOverflow, what)
        };
        let pending = cluster
            .try_take(|g: &Gauges| &g.pending, cluster.limits.max_pending_requests)
            .ok_or_else(|| overflow("max_pending_requests"))?;
        let slot = cluster
            .try_take(|g: &Gauges| &g.connections, cluster.limits.max_connections)
            .ok_or_else(|| overflow("max_connections"))?;
        let r = open(cluster, host).await;
        drop(pending);
        match r {
            Ok(io) => {
                self.stats.both(ci, hi, |s| {
                    s.connection_total.inc();
                    s.connection_active.inc();
                });
                Ok(UpstreamConn {
                    local: io.local_addr(),
                    io,
                    buf: BytesMut::with_capacity(READ_BUFFER),
                    wbuf: BytesMut::with_capacity(READ_BUFFER),
                    requests: 0,
                    host: hi,
                    cluster: ci,
                    idle_since: Instant::now(),
                    stats: self.stats.clone(),
                    _slot: slot,
                })
            }
            Err(e) => {
                self.stats.both(ci, hi, |s| s.connection_con_fail.inc());
                Err(e)
            }
        }
    }
}

/// Opens a connection to `host` of `cluster`: TCP (with TLS when the cluster has it and the host
/// does not disable it, the SNI being `server_name` or the host's IP) or a unix socket.
///
/// Errors: the connect or the handshake failed or took longer than `connect_timeout` (flag `UF`).
pub async fn open(cluster: &Cluster, host: &Host) -> Result<Stream, ProxyError> {
    let addr = &host.address;
    let failed = |what: String| ProxyError::new(ResponseFlag::UpstreamConnectionFailure, what);
    let timeout = cluster.connect_timeout;
    match addr {
        mosn_config::HostAddr::Tcp(a) => {
            let stream = tokio::time::timeout(timeout, TcpStream::connect(a))
                .await
                .map_err(|_| failed(format!("connect to {a} timed out")))?
                .map_err(|e| failed(format!("connect to {a}: {e}")))?;
            let _ = stream.set_nodelay(true);
            match cluster.tls.as_ref().filter(|_| !host.tls_disable) {
                Some((cfg, sni)) => {
                    let name = match sni {
                        Some(n) => rustls_pki_types::ServerName::try_from(n.clone())
                            .map_err(|e| failed(format!("server_name {n:?}: {e}")))?,
                        None => rustls_pki_types::ServerName::IpAddress(a.ip().into()),
                    };
                    let tls = tokio::time::timeout(
                        timeout,
                        tokio_rustls::TlsConnector::from(cfg.clone()).connect(name, stream),
                    )
                    .await
                    .map_err(|_| failed(format!("TLS handshake with {a} timed out")))?
                    .map_err(|e| failed(format!("TLS handshake with {a}: {e}")))?;
                    Ok(Stream::TlsClient(Box::new(tls)))
                }
                None => Ok(Stream::Tcp(stream)),
            }
        }
        mosn_config::HostAddr::Unix(p) => {
            let stream = tokio::time::timeout(timeout, tokio::net::UnixStream::connect(p))
                .await
                .map_err(|_| failed(format!("connect to {addr} timed out")))?
                .map_err(|e| failed(format!("connect to {addr}: {e}")))?;
            Ok(Stream::Unix(stream))
        }
    }
}

/// An HTTP/2 client connection reads and writes through its pooled connection, so bytes are
/// counted in the cluster's and host's stats like HTTP/1's.
impl tokio::io::AsyncRead for UpstreamConn {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.io).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.count_read(n);
        }
        r
    }
}

impl tokio::io::AsyncWrite for UpstreamConn {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.io).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = r {
            self.count_written(n);
        }
        r
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
