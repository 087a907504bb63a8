//! Per-worker HTTP/1 connection pools, one per upstream host: idle connections are reused LIFO, so
//! a keep-alive load opens about one upstream connection per concurrent request, not one per
//! request. A connection goes back to the pool when its response body has been read to the end.

use std::cell::RefCell;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use mosn_api::{ProxyError, ResponseFlag};
use tokio::net::TcpStream;

use mosn_net::counting::{ByteSink, CountingIo};

use crate::body::RequestBody;
use crate::cluster::{Cluster, Gauges, Host};
use crate::stats::UpstreamStatsSet;

/// Counts an upstream connection's bytes into its cluster's and host's stats.
struct UpstreamBytes {
    stats: Arc<UpstreamStatsSet>,
    cluster: usize,
    host: usize,
}

impl ByteSink for UpstreamBytes {
    fn read(&self, n: usize) {
        self.stats.both(self.cluster, self.host, |s| {
            s.connection_bytes_read_total.add(n as u64)
        });
    }
    fn written(&self, n: usize) {
        self.stats.both(self.cluster, self.host, |s| {
            s.connection_bytes_write.add(n as u64)
        });
    }
}

/// An idle or checked-out upstream connection.
pub struct Conn {
    sender: SendRequest<RequestBody>,
    host_id: usize,
    requests: u32,
    max_requests: Option<u32>,
    /// Whether the cluster has an `idle_timeout` (only then is `last_used` kept).
    idle_timeout: bool,
    last_used: Instant,
    local_addr: Option<std::net::SocketAddr>,
}

impl Conn {
    /// The local address of the upstream connection (for `upstream_local_address`).
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.local_addr
    }

    /// The sender, to issue one request.
    pub fn sender(&mut self) -> &mut SendRequest<RequestBody> {
        &mut self.sender
    }
}

#[derive(Default)]
struct HostPool {
    idle: Vec<Conn>,
}

/// The pools of one worker, indexed by host id. Not `Send`: each worker owns its own.
#[derive(Clone)]
pub struct Pools {
    inner: Rc<RefCell<Vec<HostPool>>>,
    stats: Arc<UpstreamStatsSet>,
}

impl Pools {
    /// Pools for the hosts counted in `stats` (ids `0..stats.hosts.len()`).
    pub fn new(stats: Arc<UpstreamStatsSet>) -> Self {
        let v = (0..stats.hosts.len())
            .map(|_| HostPool::default())
            .collect();
        Pools {
            inner: Rc::new(RefCell::new(v)),
            stats,
        }
    }

    /// This worker's upstream stats.
    pub fn stats(&self) -> &Arc<UpstreamStatsSet> {
        &self.stats
    }

    /// Idle connections held for a host.
    pub fn idle_count(&self, host_id: usize) -> usize {
        self.inner.borrow().get(host_id).map_or(0, |p| p.idle.len())
    }

    /// A ready connection to `host`: a pooled idle one if any is alive and not idle past the
    /// cluster's `idle_timeout`, else a new one.
    ///
    /// Errors: `UO` when `max_connections` or `max_pending_requests` is reached; `UF` when the
    /// connection is refused, fails, or does not complete within `connect_timeout`.
    pub async fn acquire(&self, cluster: &Arc<Cluster>, host: &Host) -> Result<Conn, ProxyError> {
        loop {
            let c = {
                let mut pools = self.inner.borrow_mut();
                match pools.get_mut(host.id).and_then(|p| p.idle.pop()) {
                    Some(c) => c,
                    None => break,
                }
            };
            let expired = cluster
                .idle_timeout
                .is_some_and(|t| c.last_used.elapsed() >= t);
            if expired || c.sender.is_closed() {
                continue;
            }
            let mut c = c;
            if c.sender.is_ready() || c.sender.ready().await.is_ok() {
                return Ok(c);
            }
        }
        self.connect(cluster, host).await
    }

    /// Opens a new connection to `host` (see [`Pools::acquire`] for the errors). Counts
    /// `request_pending_overflow` and `connection_con_fail` for the cluster and the host.
    pub async fn connect(&self, cluster: &Arc<Cluster>, host: &Host) -> Result<Conn, ProxyError> {
        let (ci, hi) = (cluster.index, host.id);
        let overflow = |what: &str| {
            self.stats
                .both(ci, hi, |s| s.request_pending_overflow.inc());
            ProxyError::new(ResponseFlag::UpstreamOverflow, what)
        };
        let pending = cluster
            .try_take(|g: &Gauges| &g.pending, cluster.limits.max_pending_requests)
            .ok_or_else(|| overflow("max_pending_requests"))?;
        let conn_slot = cluster
            .try_take(|g: &Gauges| &g.connections, cluster.limits.max_connections)
            .ok_or_else(|| overflow("max_connections"))?;
        let r = self.open(cluster, host, pending, conn_slot).await;
        if r.is_err() {
            self.stats.both(ci, hi, |s| s.connection_con_fail.inc());
        }
        r
    }

    async fn open(
        &self,
        cluster: &Arc<Cluster>,
        host: &Host,
        pending: crate::cluster::Slot,
        conn_slot: crate::cluster::Slot,
    ) -> Result<Conn, ProxyError> {
        let addr = &host.address;
        let failed = |what: String| ProxyError::new(ResponseFlag::UpstreamConnectionFailure, what);
        let timeout = cluster.connect_timeout;
        let (ci, hi) = (cluster.index, host.id);
        let bytes = UpstreamBytes {
            stats: self.stats.clone(),
            cluster: ci,
            host: hi,
        };
        let (sender, local_addr) = match addr {
            mosn_config::HostAddr::Tcp(a) => {
                let stream = tokio::time::timeout(timeout, TcpStream::connect(a))
                    .await
                    .map_err(|_| failed(format!("connect to {a} timed out")))?
                    .map_err(|e| failed(format!("connect to {a}: {e}")))?;
                let _ = stream.set_nodelay(true);
                let local = stream.local_addr().ok();
                let io = CountingIo::new(stream, bytes);
                let s = match cluster.tls.as_ref().filter(|_| !host.tls_disable) {
                    Some((cfg, sni)) => {
                        let name = match sni {
                            Some(n) => rustls_pki_types::ServerName::try_from(n.clone())
                                .map_err(|e| failed(format!("server_name {n:?}: {e}")))?,
                            None => rustls_pki_types::ServerName::IpAddress(a.ip().into()),
                        };
                        let tls = tokio::time::timeout(
                            timeout,
                            tokio_rustls::TlsConnector::from(cfg.clone()).connect(name, io),
                        )
                        .await
                        .map_err(|_| failed(format!("TLS handshake with {a} timed out")))?
                        .map_err(|e| failed(format!("TLS handshake with {a}: {e}")))?;
                        self.handshake(tls, cluster, host, conn_slot).await?
                    }
                    None => self.handshake(io, cluster, host, conn_slot).await?,
                };
                (s, local)
            }
            mosn_config::HostAddr::Unix(p) => {
                let stream = tokio::time::timeout(timeout, tokio::net::UnixStream::connect(p))
                    .await
                    .map_err(|_| failed(format!("connect to {addr} timed out")))?
                    .map_err(|e| failed(format!("connect to {addr}: {e}")))?;
                let s = self
                    .handshake(CountingIo::new(stream, bytes), cluster, host, conn_slot)
                    .await?;
                (s, None)
            }
        };
        drop(pending);
        Ok(Conn {
            sender,
            host_id: host.id,
            requests: 0,
            max_requests: cluster.max_request_per_conn,
            idle_timeout: cluster.idle_timeout.is_some(),
            last_used: Instant::now(),
            local_addr,
        })
    }

    /// HTTP/1 handshake on a connected stream; the connection task runs on this worker until the
    /// connection closes, keeping the cluster's and host's connection gauges.
    async fn handshake<T>(
        &self,
        io: T,
        cluster: &Arc<Cluster>,
        host: &Host,
        conn_slot: crate::cluster::Slot,
    ) -> Result<SendRequest<RequestBody>, ProxyError>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
    {
        let addr = host.address.clone();
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| {
                ProxyError::new(
                    ResponseFlag::UpstreamConnectionFailure,
                    format!("handshake with {addr}: {e}"),
                )
            })?;
        let (ci, hi) = (cluster.index, host.id);
        self.stats.both(ci, hi, |s| {
            s.connection_total.inc();
            s.connection_active.inc();
        });
        let stats = self.stats.clone();
        tokio::task::spawn_local(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%addr, error = %e, "upstream connection ended");
            }
            stats.both(ci, hi, |s| {
                s.connection_active.dec();
                s.connection_close.inc();
            });
            drop(conn_slot);
        });
        Ok(sender)
    }

    /// Wraps an upstream response body so that the connection returns to this pool once the body
    /// has been read to its end (or was empty). A body dropped early closes the connection.
    pub fn pooled_body(&self, body: Incoming, conn: Conn) -> PooledBody {
        PooledBody {
            inner: body,
            conn: Some(conn),
            pools: Rc::downgrade(&self.inner),
        }
    }
}

/// Puts a connection whose response is complete back into its host's idle list, unless it reached
/// `max_request_per_conn` or closed.
fn release(pools: &RefCell<Vec<HostPool>>, mut c: Conn) {
    c.requests += 1;
    if c.max_requests.is_some_and(|m| c.requests >= m) || c.sender.is_closed() {
        return;
    }
    if c.idle_timeout {
        c.last_used = Instant::now();
    }
    if let Some(p) = pools.borrow_mut().get_mut(c.host_id) {
        p.idle.push(c);
    }
}

/// An upstream response body that hands its connection back to the pool at its end.
pub struct PooledBody {
    inner: Incoming,
    conn: Option<Conn>,
    pools: Weak<RefCell<Vec<HostPool>>>,
}

impl PooledBody {
    fn give_back(&mut self) {
        if let (Some(c), Some(p)) = (self.conn.take(), self.pools.upgrade()) {
            release(&p, c);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        match &r {
            Poll::Ready(None) => self.give_back(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.give_back(),
            Poll::Ready(Some(Err(_))) => self.conn = None,
            _ => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        if self.inner.is_end_stream() {
            self.give_back();
        }
    }
}
