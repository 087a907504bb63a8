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
use std::sync::Arc;
use std::time::Duration;

use mosn_api::ResponseFlag;
use mosn_net::splice::{self, Pipe};
use mosn_upstream::cluster::Gauges;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::snapshot::{Snapshot, TcpProxy};
use crate::worker::Worker;

/// Serves one client connection of a `tcp_proxy` listener until both directions end.
pub async fn serve(
    worker: Rc<Worker>,
    snapshot: Arc<Snapshot>,
    listener: usize,
    tp: &TcpProxy,
    down: TcpStream,
    peer: SocketAddr,
) {
    let stats = worker.stats.clone();
    let ls = stats.listeners.get(listener);
    if let Some(l) = ls {
        l.connection_total.inc();
        l.connection_active.inc();
    }
    proxy(&worker, &snapshot, listener, tp, down, peer).await;
    if let Some(l) = ls {
        l.connection_active.dec();
        l.connection_destroy.inc();
    }
}

async fn proxy(
    worker: &Worker,
    snapshot: &Snapshot,
    listener: usize,
    tp: &TcpProxy,
    down: TcpStream,
    peer: SocketAddr,
) {
    let stats = &worker.stats;
    let local = down.local_addr().unwrap_or(peer);
    let Some(target_id) = tp.target(peer, local) else {
        tracing::debug!(%peer, %local, "tcp_proxy: no route");
        stats.flag(ResponseFlag::NoRoute);
        return;
    };
    let target = &snapshot.clusters.targets[target_id];
    let cluster = &target.cluster;
    let up_stats = &*stats.upstream;

    let mut connected = None;
    for _ in 0..tp.max_connect_attempts {
        let Some(h) = worker.pick_host(snapshot, target_id) else {
            stats.flag(ResponseFlag::NoHealthyUpstream);
            return;
        };
        let host = &cluster.hosts[h];
        let Some(slot) =
            cluster.try_take(|g: &Gauges| &g.connections, cluster.limits.max_connections)
        else {
            up_stats.both(cluster.index, host.id, |s| s.request_pending_overflow.inc());
            stats.flag(ResponseFlag::UpstreamOverflow);
            return;
        };
        match tokio::time::timeout(cluster.connect_timeout, TcpStream::connect(host.address)).await
        {
            Ok(Ok(s)) => {
                connected = Some((s, host, slot));
                break;
            }
            Ok(Err(e)) => {
                tracing::debug!(host = %host.address, error = %e, "tcp_proxy: connect failed")
            }
            Err(_) => tracing::debug!(host = %host.address, "tcp_proxy: connect timed out"),
        }
        up_stats.both(cluster.index, host.id, |s| s.connection_con_fail.inc());
    }
    let Some((up, host, _slot)) = connected else {
        stats.flag(ResponseFlag::UpstreamConnectionFailure);
        return;
    };
    let _ = up.set_nodelay(true);
    let (ci, hi) = (cluster.index, host.id);
    up_stats.both(ci, hi, |s| {
        s.connection_total.inc();
        s.connection_active.inc();
    });

    let (Ok(to_up), Ok(to_down)) = (Pipe::new(), Pipe::new()) else {
        tracing::warn!("tcp_proxy: no pipe for splice (file descriptors exhausted?)");
        up_stats.both(ci, hi, |s| s.connection_active.dec());
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
    let a = splice::copy(&down, &up, &to_up, &client_to_up);
    let b = splice::copy(&up, &down, &to_down, &up_to_client);
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
    up_stats.both(ci, hi, |s| {
        s.connection_active.dec();
        s.connection_close.inc();
    });
}

/// Resolves once `timeout` passes without activity (never when `timeout` is `None`).
async fn idle_watch(last: &Cell<Instant>, timeout: Option<Duration>) {
    let Some(t) = timeout else {
        return std::future::pending().await;
    };
    loop {
        let deadline = last.get() + t;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline).await;
    }
}
