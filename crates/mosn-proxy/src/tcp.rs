//! The `tcp_proxy` network filter: a client connection is matched to a cluster by its addresses
//! and ports (MOSN `pkg/filter/network/streamproxy`), connected to a host (moving to another host
//! on failure, up to `max_connect_attempts`), then bytes flow both ways with `splice(2)`.
//!
//! Half-close travels in both directions: when one side ends its stream, the other side's write
//! half is shut down and the reverse direction goes on. A reset on either side, or
//! `idle_timeout` without bytes, closes both.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use mosn_api::ResponseFlag;
use mosn_config::HostAddr;
use mosn_net::splice::{self, Pipe, SpliceIo};
use mosn_upstream::cluster::Gauges;
use tokio::net::{TcpStream, UnixStream};
use tokio::time::Instant;

use crate::snapshot::{Snapshot, TcpProxy};
use crate::worker::state::Worker;

/// Serves one client connection of a `tcp_proxy` listener until both directions end. `peer` and
/// `local` are the TCP addresses ([`crate::worker::UNIX_PEER`] for a unix socket).
pub async fn serve<D: SpliceIo>(
    worker: Rc<Worker>,
    snapshot: &Snapshot,
    listener: usize,
    tp: &TcpProxy,
    down: D,
    (peer, local): (SocketAddr, SocketAddr),
    prefix: &[u8],
) {
    let stats = worker.stats.clone();
    let ls = stats.listeners.get(listener);
    if let Some(l) = ls {
        l.connection_total.inc();
        l.connection_active.inc();
    }
    proxy(&worker, snapshot, listener, tp, down, (peer, local), prefix).await;
    if let Some(l) = ls {
        l.connection_active.dec();
        l.connection_destroy.inc();
    }
}

/// An upstream stream of either kind.
enum Upstream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

async fn connect(addr: &HostAddr, timeout: Duration) -> std::io::Result<Upstream> {
    let t = |e| std::io::Error::new(std::io::ErrorKind::TimedOut, e);
    Ok(match addr {
        HostAddr::Tcp(a) => {
            let s = tokio::time::timeout(timeout, TcpStream::connect(a))
                .await
                .map_err(t)??;
            let _ = s.set_nodelay(true);
            Upstream::Tcp(s)
        }
        HostAddr::Unix(p) => Upstream::Unix(
            tokio::time::timeout(timeout, UnixStream::connect(p))
                .await
                .map_err(t)??,
        ),
    })
}

async fn proxy<D: SpliceIo>(
    worker: &Worker,
    snapshot: &Snapshot,
    listener: usize,
    tp: &TcpProxy,
    down: D,
    (peer, local): (SocketAddr, SocketAddr),
    prefix: &[u8],
) {
    let stats = &worker.stats;
    let Some(target_id) = tp.target(peer, local) else {
        tracing::debug!(%peer, %local, "tcp_proxy: no route");
        stats.flag(ResponseFlag::NoRoute);
        return;
    };
    let target = &snapshot.clusters.targets[target_id];
    let cluster = &target.cluster;
    let up_stats = &*stats.upstream;

    // ORIGINAL_DST: the one host is where the client meant to go; otherwise the load balancer
    // picks, moving to another host after a failed connect.
    let original = HostAddr::Tcp(local);
    let ci = cluster.index;
    let mut connected = None;
    for _ in 0..tp.max_connect_attempts {
        let (addr, hi) = if cluster.original_dst {
            (&original, usize::MAX)
        } else {
            let Some(h) = worker.pick_host(snapshot, target_id, &[]) else {
                stats.flag(ResponseFlag::NoHealthyUpstream);
                return;
            };
            let host = &cluster.hosts[h];
            (&host.address, host.id)
        };
        let Some(slot) =
            cluster.try_take(|g: &Gauges| &g.connections, cluster.limits.max_connections)
        else {
            up_stats.both(ci, hi, |s| s.request_pending_overflow.inc());
            stats.flag(ResponseFlag::UpstreamOverflow);
            return;
        };
        match connect(addr, cluster.connect_timeout).await {
            Ok(s) => {
                connected = Some((s, hi, slot));
                break;
            }
            Err(e) => tracing::debug!(host = %addr, error = %e, "tcp_proxy: connect failed"),
        }
        up_stats.both(ci, hi, |s| s.connection_con_fail.inc());
    }
    let Some((mut up, hi, _slot)) = connected else {
        stats.flag(ResponseFlag::UpstreamConnectionFailure);
        return;
    };
    up_stats.both(ci, hi, |s| {
        s.connection_total.inc();
        s.connection_active.inc();
    });
    // Bytes protocol detection already read from the client go first.
    if !prefix.is_empty() {
        use tokio::io::AsyncWriteExt;
        let sent = match &mut up {
            Upstream::Tcp(u) => u.write_all(prefix).await,
            Upstream::Unix(u) => u.write_all(prefix).await,
        };
        if let Some(l) = stats.listeners.get(listener) {
            l.bytes_read_total.add(prefix.len() as u64);
        }
        if sent.is_err() {
            up_stats.both(ci, hi, |s| {
                s.connection_active.dec();
                s.connection_close.inc();
            });
            return;
        }
        up_stats.both(ci, hi, |s| {
            s.connection_bytes_write.add(prefix.len() as u64)
        });
    }
    match &up {
        Upstream::Tcp(u) => pump(worker, listener, tp, &down, u, peer, ci, hi).await,
        Upstream::Unix(u) => pump(worker, listener, tp, &down, u, peer, ci, hi).await,
    }
    up_stats.both(ci, hi, |s| {
        s.connection_active.dec();
        s.connection_close.inc();
    });
}

/// Moves bytes both ways until both directions end, one side resets, or the idle timeout passes.
#[allow(clippy::too_many_arguments)]
async fn pump<D: SpliceIo, U: SpliceIo>(
    worker: &Worker,
    listener: usize,
    tp: &TcpProxy,
    down: &D,
    up: &U,
    peer: SocketAddr,
    ci: usize,
    hi: usize,
) {
    let stats = &worker.stats;
    let up_stats = &*stats.upstream;
    let (Ok(to_up), Ok(to_down)) = (Pipe::new(), Pipe::new()) else {
        tracing::warn!("tcp_proxy: no pipe for splice (file descriptors exhausted?)");
        return;
    };
    let last = Cell::new(Instant::now());
    let ds = stats.listeners.get(listener);
    let client_to_up = |n: usize| {
        last.set(Instant::now());
        if let Some(l) = ds {
            l.bytes_read_total.add(n as u64);
        }
        up_stats.both(ci, hi, |s| s.connection_bytes_write.add(n as u64));
    };
    let up_to_client = |n: usize| {
        last.set(Instant::now());
        if let Some(l) = ds {
            l.bytes_write_total.add(n as u64);
        }
        up_stats.both(ci, hi, |s| s.connection_bytes_read_total.add(n as u64));
    };
    let a = splice::copy(down, up, &to_up, &client_to_up);
    let b = splice::copy(up, down, &to_down, &up_to_client);
    let idle = idle_watch(&last, tp.idle_timeout);
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
