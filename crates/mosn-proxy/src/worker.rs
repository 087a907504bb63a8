//! A worker: one thread with a single-threaded tokio runtime, its own listener sockets
//! (SO_REUSEPORT), its own upstream pools and load-balancer state. Nothing on the data path is
//! shared with other workers but the read-only config snapshot and the circuit-breaker gauges.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use std::net::SocketAddr;

use arc_swap::ArcSwap;
use mosn_upstream::{ClusterManager, LbState, Pools};
use tokio::sync::watch;

use crate::access_log::{AccessLogs, LocalLogs};
use crate::snapshot::{ListenerKind, Snapshot};
use crate::stats::WorkerStats;

/// Load-balancer state and per-host active request counts, for one cluster manager.
struct LbCache {
    clusters: Arc<ClusterManager>,
    states: Vec<LbState>,
    active: Vec<Cell<u32>>,
}

impl LbCache {
    fn new(clusters: &Arc<ClusterManager>) -> Self {
        LbCache {
            clusters: clusters.clone(),
            states: clusters.targets.iter().map(LbState::new).collect(),
            active: (0..clusters.host_count).map(|_| Cell::new(0)).collect(),
        }
    }
}

/// One worker's state.
pub struct Worker {
    /// Worker number, from 0.
    pub id: usize,
    /// This worker's counters.
    pub stats: Arc<WorkerStats>,
    /// Upstream connection pools.
    pub pools: Pools,
    /// Access logs by listener.
    pub logs: Arc<AccessLogs>,
    /// This worker's batches of access-log lines.
    pub local_logs: LocalLogs,
    lb: RefCell<LbCache>,
    connections: Cell<u64>,
}

/// Counts a request in flight to a host for least-request balancing; released on drop.
pub struct Busy<'a>(&'a Worker, usize);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.0.lb.borrow().active.get(self.1) {
            c.set(c.get().saturating_sub(1));
        }
    }
}

impl Worker {
    /// A worker for the clusters of `snapshot`; `stats` must be sized for it.
    pub fn new(
        id: usize,
        snapshot: &Snapshot,
        stats: Arc<WorkerStats>,
        logs: Arc<AccessLogs>,
    ) -> Self {
        Worker {
            id,
            pools: Pools::new(stats.upstream.clone()),
            stats,
            local_logs: LocalLogs::new(&logs),
            logs,
            lb: RefCell::new(LbCache::new(&snapshot.clusters)),
            connections: Cell::new(0),
        }
    }

    /// A connection id unique within the process: the worker number in the top 16 bits, this
    /// worker's count below.
    pub fn next_connection_id(&self) -> u64 {
        let n = self.connections.get() + 1;
        self.connections.set(n);
        ((self.id as u64) << 48) | n
    }

    /// Picks a host of a target with this worker's load balancer: an index into the target
    /// cluster's `hosts`, or `None` when the target has no host.
    pub fn pick_host(&self, snapshot: &Snapshot, target: usize) -> Option<usize> {
        {
            let cache = self.lb.borrow();
            if !Arc::ptr_eq(&cache.clusters, &snapshot.clusters) {
                drop(cache);
                *self.lb.borrow_mut() = LbCache::new(&snapshot.clusters);
            }
        }
        let cache = self.lb.borrow();
        let t = snapshot.clusters.targets.get(target)?;
        let active = |id: usize| cache.active.get(id).map_or(0, Cell::get);
        cache.states.get(target)?.pick(t, &active)
    }

    /// Marks one request in flight to host `host_id` until the guard drops.
    pub fn busy(&self, host_id: usize) -> Busy<'_> {
        if let Some(c) = self.lb.borrow().active.get(host_id) {
            c.set(c.get() + 1);
        }
        Busy(self, host_id)
    }
}

/// A listening socket of a worker.
pub enum Accepting {
    /// TCP.
    Tcp(tokio::net::TcpListener),
    /// A unix socket.
    Unix(tokio::net::UnixListener),
}

/// A unix connection has no IP address; `0.0.0.0:0` stands for its addresses in logs and routes.
pub const UNIX_PEER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

/// Accepts connections on one listener socket until `shutdown` turns true.
pub async fn accept_loop(
    worker: Rc<Worker>,
    listener: Accepting,
    index: usize,
    config: Arc<ArcSwap<Snapshot>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            r = accept(&listener) => r,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let conn = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let snapshot = config.load_full();
        let w = worker.clone();
        tokio::task::spawn_local(async move {
            let (index, conn) = hand_off(&snapshot, index, conn);
            dispatch(w, snapshot, index, conn).await
        });
    }
}

/// Longest time a client may take to complete its TLS handshake (or, on an `inspector` listener,
/// to send its first byte).
pub const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A transparent-proxy listener hands a TCP connection to the listener of its original
/// destination (or keeps it); the original destination stands as the connection's local address.
fn hand_off(snapshot: &Snapshot, index: usize, conn: Accepted) -> (usize, Accepted) {
    match (snapshot.listeners[index].original_dst, conn) {
        (Some(mode), Accepted::Tcp(s, peer, local)) => {
            match mosn_net::original_dst::original_dst(&s, local, mode) {
                Ok(dst) => {
                    let to = snapshot.listener_for(dst).unwrap_or(index);
                    (to, Accepted::Tcp(s, peer, dst))
                }
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "no original destination; served here");
                    (index, Accepted::Tcp(s, peer, local))
                }
            }
        }
        (_, c) => (index, c),
    }
}

/// Terminates TLS where the listener has it (after sniffing the first byte on an `inspector`
/// listener), then serves the connection.
async fn dispatch(w: Rc<Worker>, snapshot: Arc<Snapshot>, index: usize, conn: Accepted) {
    let info = &snapshot.listeners[index];
    let (s, peer, local) = match conn {
        Accepted::Unix(s) => {
            return serve_stream(w, &snapshot, index, s, UNIX_PEER, UNIX_PEER).await
        }
        Accepted::Tcp(s, peer, local) => (s, peer, local),
    };
    let Some(cfg) = &info.tls else {
        return serve_stream(w, &snapshot, index, s, peer, local).await;
    };
    if info.inspector {
        let mut first = [0u8; 1];
        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, s.peek(&mut first)).await {
            // 0x16: a TLS handshake record. Anything else is plaintext.
            Ok(Ok(1)) if first[0] != 0x16 => {
                return serve_stream(w, &snapshot, index, s, peer, local).await
            }
            Ok(Ok(1)) => {}
            _ => return,
        }
    }
    let accept = tokio_rustls::TlsAcceptor::from(cfg.clone()).accept(s);
    let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, accept).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            if let Some(l) = w.stats.listeners.get(index) {
                l.tls_handshake_failed.inc();
            }
            return;
        }
        Err(_) => {
            if let Some(l) = w.stats.listeners.get(index) {
                l.tls_handshake_failed.inc();
            }
            return;
        }
    };
    // mosn-config allows TLS on `proxy` listeners only.
    if let ListenerKind::Http { .. } = info.kind {
        crate::http::serve_connection(w, snapshot.clone(), index, tls, peer, local).await
    }
}

/// Serves a plaintext stream by the listener's network filter.
async fn serve_stream<S>(
    w: Rc<Worker>,
    snapshot: &Arc<Snapshot>,
    index: usize,
    s: S,
    peer: SocketAddr,
    local: SocketAddr,
) where
    S: mosn_net::splice::SpliceIo + tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
{
    match &snapshot.listeners[index].kind {
        ListenerKind::Http { .. } => {
            crate::http::serve_connection(w, snapshot.clone(), index, s, peer, local).await
        }
        ListenerKind::Tcp(tp) => crate::tcp::serve(w, snapshot, index, tp, s, peer, local).await,
        // A stream never arrives on a UDP listener (it has no accept loop).
        ListenerKind::Udp(_) => {}
    }
}

/// An accepted connection: TCP with (peer, local) addresses, or a unix stream.
enum Accepted {
    Tcp(tokio::net::TcpStream, SocketAddr, SocketAddr),
    Unix(tokio::net::UnixStream),
}

async fn accept(l: &Accepting) -> std::io::Result<Accepted> {
    match l {
        Accepting::Tcp(l) => {
            let (s, peer) = l.accept().await?;
            let _ = s.set_nodelay(true);
            let local = s.local_addr().unwrap_or(peer);
            Ok(Accepted::Tcp(s, peer, local))
        }
        Accepting::Unix(l) => Ok(Accepted::Unix(l.accept().await?.0)),
    }
}
