//! The `tcp_proxy` network filter: a client connection is matched to a cluster by its addresses
//! and ports (MOSN `pkg/filter/network/streamproxy`), connected to a host (moving to another host
//! on failure, up to `max_connect_attempts`), then bytes flow both ways with `splice(2)`, or are
//! copied when one side has TLS (terminated by the listener, or to a cluster with TLS).
//!
//! Half-close travels in both directions: when one side ends its stream, the other side's write
//! half is shut down and the reverse direction goes on. A reset on either side, or
//! `idle_timeout` without bytes, closes both.
//!
//! On a hot upgrade, a spliced (plaintext) connection moves to the new process with its upstream
//! connection and the bytes in flight inside the proxy (those in its pipes,
//! [`crate::transfer::MovedPair`]): the bytes keep flowing, through the new process.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use mosn_api::ResponseFlag;
use mosn_config::HostAddr;
use mosn_net::splice::{self, Pipe, SpliceIo};
use mosn_net::Stream;
use mosn_upstream::cluster::Gauges;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::Instant;

use crate::snapshot::{ListenerKind, Snapshot, TcpProxy};
use crate::worker::state::Worker;

/// Serves one client connection of a `tcp_proxy` listener until both directions end. `peer` and
/// `local` are the TCP addresses ([`crate::worker::UNIX_PEER`] for a unix socket).
pub async fn serve<D: SpliceIo + AsyncRead + AsyncWrite + Unpin>(
    worker: Rc<Worker>,
    snapshot: &Snapshot,
    listener: usize,
    tp: &TcpProxy,
    down: D,
    (peer, local): (SocketAddr, SocketAddr),
    prefix: &[u8],
) {
    let stats = worker.stats.clone();
    let relaying = Relaying::new(&stats, listener, true);
    let moved = proxy(&worker, snapshot, listener, tp, down, (peer, local), prefix).await;
    relaying.moved.set(moved);
}

/// Serves a `tcp_proxy` connection a previous process moved here with its upstream connection
/// (hot upgrade): the bytes go on flowing between the two. The upstream connection counts under
/// the route's cluster, and under its host when the cluster still has that address.
pub(crate) async fn adopt_pair(
    worker: Rc<Worker>,
    snapshot: Arc<Snapshot>,
    listener: usize,
    pair: crate::transfer::MovedPair<std::net::TcpStream>,
) {
    let crate::transfer::MovedPair {
        client,
        upstream,
        to_upstream,
        to_client,
    } = pair;
    let (Ok(down), Ok(up)) = (TcpStream::from_std(client), TcpStream::from_std(upstream)) else {
        return;
    };
    let (Ok(peer), Ok(local), Ok(up_addr)) = (down.peer_addr(), down.local_addr(), up.peer_addr())
    else {
        return;
    };
    // A listener of another kind now (a config changed meanwhile): both close.
    let Some(ListenerKind::Tcp(tp)) = snapshot.listeners.get(listener).map(|l| &l.kind) else {
        return;
    };
    let cluster = tp
        .target(peer, local)
        .map(|t| &snapshot.clusters.targets[t].cluster);
    let ci = cluster.map_or(usize::MAX, |c| c.index);
    let hi = cluster
        .and_then(|c| c.hosts.iter().find(|h| h.address == HostAddr::Tcp(up_addr)))
        .map_or(usize::MAX, |h| h.id);
    tracing::debug!(%peer, upstream = %up_addr, "hot upgrade: serving a moved tcp_proxy connection");
    let stats = worker.stats.clone();
    // Counted as accepted by the process it came from.
    let relaying = Relaying::new(&stats, listener, false);
    stats.upstream.both(ci, hi, |s| s.connection_active.inc());
    let counts = Counts {
        worker: &worker,
        listener,
        ci,
        hi,
    };
    let carried = Some((to_upstream, to_client));
    let moved = pump_or_move(&counts, tp, &down, &up, peer, true, carried).await;
    stats.upstream.both(ci, hi, |s| {
        s.connection_active.dec();
        if !moved {
            s.connection_close.inc();
        }
    });
    relaying.moved.set(moved);
}

async fn connect_plain(addr: &HostAddr, timeout: Duration) -> std::io::Result<Stream> {
    let t = |e| std::io::Error::new(std::io::ErrorKind::TimedOut, e);
    Ok(match addr {
        HostAddr::Tcp(a) => {
            let s = tokio::time::timeout(timeout, TcpStream::connect(a))
                .await
                .map_err(t)??;
            let _ = s.set_nodelay(true);
            Stream::Tcp(s)
        }
        HostAddr::Unix(p) => Stream::Unix(
            tokio::time::timeout(timeout, UnixStream::connect(p))
                .await
                .map_err(t)??,
        ),
    })
}

/// Connects to the route's cluster: its one host for ORIGINAL_DST (the original destination),
/// else the load balancer's pick, moving to another host after a failure, up to
/// `max_connect_attempts`; with TLS where the cluster has it. Counts and flags failures.
async fn connect_upstream(
    worker: &Worker,
    snapshot: &Snapshot,
    tp: &TcpProxy,
    (peer, local): (SocketAddr, SocketAddr),
) -> Option<(Stream, usize, usize, mosn_upstream::Slot)> {
    let stats = &worker.stats;
    let Some(target_id) = tp.target(peer, local) else {
        tracing::debug!(%peer, %local, "tcp_proxy: no route");
        stats.flag(ResponseFlag::NoRoute);
        return None;
    };
    let target = &snapshot.clusters.targets[target_id];
    let cluster = &target.cluster;
    let up_stats = &*stats.upstream;
    let original = HostAddr::Tcp(local);
    let ci = cluster.index;
    for _ in 0..tp.max_connect_attempts {
        let host = if cluster.original_dst {
            None
        } else {
            let Some(h) = worker.pick_host(snapshot, target_id, &[]) else {
                stats.flag(ResponseFlag::NoHealthyUpstream);
                return None;
            };
            Some(&cluster.hosts[h])
        };
        let hi = host.map_or(usize::MAX, |h| h.id);
        let Some(slot) =
            cluster.try_take(|g: &Gauges| &g.connections, cluster.limits.max_connections)
        else {
            up_stats.both(ci, hi, |s| s.request_pending_overflow.inc());
            stats.flag(ResponseFlag::UpstreamOverflow);
            return None;
        };
        let opened = match host {
            Some(h) => mosn_upstream::pool::open(cluster, h)
                .await
                .map_err(|e| e.detail.to_string()),
            None => connect_plain(&original, cluster.connect_timeout)
                .await
                .map_err(|e| e.to_string()),
        };
        match opened {
            Ok(s) => return Some((s, ci, hi, slot)),
            Err(e) => {
                tracing::debug!(cluster = %cluster.name, error = %e, "tcp_proxy: connect failed")
            }
        }
        up_stats.both(ci, hi, |s| s.connection_con_fail.inc());
    }
    stats.flag(ResponseFlag::UpstreamConnectionFailure);
    None
}

/// Connects the upstream and relays until the connection ends; true when it moved to a new
/// process instead (hot upgrade).
async fn proxy<D: SpliceIo + AsyncRead + AsyncWrite + Unpin>(
    worker: &Worker,
    snapshot: &Snapshot,
    listener: usize,
    tp: &TcpProxy,
    down: D,
    (peer, local): (SocketAddr, SocketAddr),
    prefix: &[u8],
) -> bool {
    let Some((mut up, ci, hi, _slot)) = connect_upstream(worker, snapshot, tp, (peer, local)).await
    else {
        return false;
    };
    let up_stats = &*worker.stats.upstream;
    up_stats.both(ci, hi, |s| {
        s.connection_total.inc();
        s.connection_active.inc();
    });
    // Bytes protocol detection already read from the client go first.
    if !prefix.is_empty() {
        use tokio::io::AsyncWriteExt;
        let sent = up.write_all(prefix).await;
        if let Some(l) = worker.stats.listeners.get(listener) {
            l.bytes_read_total.add(prefix.len() as u64);
        }
        if sent.is_err() {
            up_stats.both(ci, hi, |s| {
                s.connection_active.dec();
                s.connection_close.inc();
            });
            return false;
        }
        up_stats.both(ci, hi, |s| {
            s.connection_bytes_write.add(prefix.len() as u64)
        });
    }
    let counts = Counts {
        worker,
        listener,
        ci,
        hi,
    };
    // Only TCP on both sides moves on a hot upgrade (a unix client's socket path is this
    // process's listener's, which the new process has too, but nothing tells them apart there).
    let tcp_client = matches!(
        mosn_net::fdpass::socket_kind(&down),
        Some(mosn_net::fdpass::SocketKind::Tcp(_))
    );
    let moved = match up {
        Stream::Tcp(u) => pump_or_move(&counts, tp, &down, &u, peer, tcp_client, None).await,
        Stream::Unix(u) => pump_or_move(&counts, tp, &down, &u, peer, false, None).await,
        // TLS to the upstream: bytes are copied, not spliced.
        other => {
            copy_pump(&counts, tp, down, other, peer).await;
            false
        }
    };
    up_stats.both(ci, hi, |s| {
        s.connection_active.dec();
        if !moved {
            s.connection_close.inc();
        }
    });
    moved
}

/// Serves a client connection whose TLS the listener terminated (bytes are copied, not
/// spliced), as [`serve`] does a plain one.
pub async fn serve_tls(
    worker: Rc<Worker>,
    snapshot: &Snapshot,
    listener: usize,
    tp: &TcpProxy,
    down: Stream,
    (peer, local): (SocketAddr, SocketAddr),
) {
    let stats = worker.stats.clone();
    let _relaying = Relaying::new(&stats, listener, true);
    if let Some((up, ci, hi, _slot)) = connect_upstream(&worker, snapshot, tp, (peer, local)).await
    {
        let up_stats = &*stats.upstream;
        up_stats.both(ci, hi, |s| {
            s.connection_total.inc();
            s.connection_active.inc();
        });
        let counts = Counts {
            worker: &worker,
            listener,
            ci,
            hi,
        };
        copy_pump(&counts, tp, down, up, peer).await;
        up_stats.both(ci, hi, |s| {
            s.connection_active.dec();
            s.connection_close.inc();
        });
    }
}

/// Counts a relayed client connection while it lives: on its listener (`connection_total` when
/// `accepted` here, `connection_active`, then `connection_destroy` unless it [`moved`] to a new
/// process, where it closes), and among the worker's open connections, so a drain (SIGTERM, or a
/// hot upgrade until it moved) waits for it, up to `graceful_timeout`.
///
/// [`moved`]: Relaying::moved
struct Relaying<'a> {
    stats: &'a crate::stats::WorkerStats,
    listener: usize,
    /// Set when the connection moved to a new process.
    moved: Cell<bool>,
}

impl<'a> Relaying<'a> {
    fn new(stats: &'a crate::stats::WorkerStats, listener: usize, accepted: bool) -> Self {
        stats.active_connections.inc();
        if let Some(l) = stats.listeners.get(listener) {
            if accepted {
                l.connection_total.inc();
            }
            l.connection_active.inc();
        }
        Relaying {
            stats,
            listener,
            moved: Cell::new(false),
        }
    }
}

impl Drop for Relaying<'_> {
    fn drop(&mut self) {
        self.stats.active_connections.dec();
        if let Some(l) = self.stats.listeners.get(self.listener) {
            l.connection_active.dec();
            if !self.moved.get() {
                l.connection_destroy.inc();
            }
        }
    }
}

/// Where a proxied connection's bytes are counted.
struct Counts<'a> {
    worker: &'a Worker,
    listener: usize,
    ci: usize,
    hi: usize,
}

impl Counts<'_> {
    fn client_to_up(&self, n: usize) {
        let stats = &self.worker.stats;
        if let Some(l) = stats.listeners.get(self.listener) {
            l.bytes_read_total.add(n as u64);
        }
        stats
            .upstream
            .both(self.ci, self.hi, |s| s.connection_bytes_write.add(n as u64));
    }
    fn up_to_client(&self, n: usize) {
        let stats = &self.worker.stats;
        if let Some(l) = stats.listeners.get(self.listener) {
            l.bytes_write_total.add(n as u64);
        }
        stats.upstream.both(self.ci, self.hi, |s| {
            s.connection_bytes_read_total.add(n as u64)
        });
    }
}

/// Copies bytes both ways (a side with TLS cannot be spliced), with half-close, until both
/// directions end, one side fails, or the idle timeout passes.
async fn copy_pump<A, B>(counts: &Counts<'_>, tp: &TcpProxy, a: A, b: B, peer: SocketAddr)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    let last = Cell::new(Instant::now());
    let x = one_way(&mut ar, &mut bw, &last, |n| counts.client_to_up(n));
    let y = one_way(&mut br, &mut aw, &last, |n| counts.up_to_client(n));
    both_ways(x, y, &last, tp.idle_timeout, peer).await
}

/// Copies one direction until its end (then shuts the other side's write half) or an error.
async fn one_way<R, W>(
    r: &mut R,
    w: &mut W,
    last: &Cell<Instant>,
    count: impl Fn(usize),
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return w.shutdown().await;
        }
        w.write_all(&buf[..n]).await?;
        last.set(Instant::now());
        count(n);
    }
}

/// Splices bytes both ways until the connection ends; with `movable`, a hot upgrade moves it
/// (both sockets, and the bytes in the pipes) to the new process. `carried`: bytes a previous
/// process had in flight, (to the upstream, to the client), written first. True when it moved.
async fn pump_or_move<D: SpliceIo, U: SpliceIo>(
    counts: &Counts<'_>,
    tp: &TcpProxy,
    down: &D,
    up: &U,
    peer: SocketAddr,
    mut movable: bool,
    carried: Option<(Vec<u8>, Vec<u8>)>,
) -> bool {
    let (Ok(to_up), Ok(to_down)) = (Pipe::new(), Pipe::new()) else {
        tracing::warn!("tcp_proxy: no pipe for splice (file descriptors exhausted?)");
        return false;
    };
    if let Some((u, c)) = carried {
        if let Err(e) = to_up.put(&u).and_then(|()| to_down.put(&c)) {
            tracing::warn!(%peer, error = %e, "tcp_proxy: a moved connection's bytes in flight do not fit; closed");
            return false;
        }
    }
    loop {
        if !pump(counts, tp, down, up, peer, (&to_up, &to_down), movable).await {
            return false;
        }
        // A hot upgrade: the sockets go (duplicates: ours close after) with the pipes' bytes.
        movable = false;
        let (Ok(u), Ok(c)) = (to_up.take(), to_down.take()) else {
            return false;
        };
        let fds = (
            down.as_fd().try_clone_to_owned(),
            up.as_fd().try_clone_to_owned(),
        );
        if let (Some(path), (Ok(client), Ok(upstream))) = (counts.worker.transfer.get(), fds) {
            let pair = crate::transfer::MovedPair {
                client,
                upstream,
                to_upstream: u.clone(),
                to_client: c.clone(),
            };
            if crate::transfer::move_pair(pair, path).await.is_ok() {
                tracing::debug!(%peer, in_flight = u.len() + c.len(), "hot upgrade: tcp_proxy connection moved");
                return true;
            }
        }
        // Not taken: it goes on here, its bytes in flight first, until it ends or the process
        // exits.
        if to_up.put(&u).and_then(|()| to_down.put(&c)).is_err() {
            return false;
        }
    }
}

/// Resolves once a hot upgrade drains this process towards a new one that takes connections.
async fn upgrade_started(worker: &Worker) {
    loop {
        let notified = worker.drain.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if worker.draining.get() && worker.transfer.get().is_some() {
            return;
        }
        notified.await;
    }
}

/// Moves bytes both ways with `splice(2)` through `pipes` (to the upstream, to the client) until
/// both directions end, one side resets, or the idle timeout passes (false); with `movable`,
/// until a hot upgrade starts (true: the copies stop where they are, their bytes in flight left
/// in the pipes).
async fn pump<D: SpliceIo, U: SpliceIo>(
    counts: &Counts<'_>,
    tp: &TcpProxy,
    down: &D,
    up: &U,
    peer: SocketAddr,
    (to_up, to_down): (&Pipe, &Pipe),
    movable: bool,
) -> bool {
    let last = Cell::new(Instant::now());
    let client_to_up = |n: usize| {
        last.set(Instant::now());
        counts.client_to_up(n);
    };
    let up_to_client = |n: usize| {
        last.set(Instant::now());
        counts.up_to_client(n);
    };
    let a = splice::copy(down, up, to_up, &client_to_up);
    let b = splice::copy(up, down, to_down, &up_to_client);
    let upgrade = async {
        if movable {
            upgrade_started(counts.worker).await
        } else {
            std::future::pending().await
        }
    };
    let idle = idle_watch(&last, tp.idle_timeout);
    tokio::pin!(a, b, upgrade, idle);
    let (mut a_done, mut b_done) = (false, false);
    while !(a_done && b_done) {
        tokio::select! {
            r = &mut a, if !a_done => {
                a_done = true;
                if r.is_err() { return false; }
            }
            r = &mut b, if !b_done => {
                b_done = true;
                if r.is_err() { return false; }
            }
            () = &mut upgrade => return true,
            _ = &mut idle => {
                tracing::debug!(%peer, "tcp_proxy: idle timeout");
                return false;
            }
        }
    }
    false
}

/// Runs the two directions of a connection until both end, one fails, or `idle` passes without
/// a byte (`last` is when one last moved).
async fn both_ways<A, B, T, U, E, F>(
    a: A,
    b: B,
    last: &Cell<Instant>,
    idle: Duration,
    peer: SocketAddr,
) where
    A: std::future::Future<Output = Result<T, E>>,
    B: std::future::Future<Output = Result<U, F>>,
{
    let idle = idle_watch(last, idle);
    tokio::pin!(a, b, idle);
    let (mut a_done, mut b_done) = (false, false);
    while !(a_done && b_done) {
        tokio::select! {
            r = &mut a, if !a_done => {
                a_done = true;
                if r.is_err() { break; }
            }
            r = &mut b, if !b_done => {
                b_done = true;
                if r.is_err() { break; }
            }
            _ = &mut idle => {
                tracing::debug!(%peer, "tcp_proxy: idle timeout");
                break;
            }
        }
    }
}

/// Resolves once `t` passes without activity.
pub(crate) async fn idle_watch(last: &Cell<Instant>, t: Duration) {
    loop {
        let deadline = last.get() + t;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline).await;
    }
}
