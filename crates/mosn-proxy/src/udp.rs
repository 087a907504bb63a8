//! The `udp_proxy` network filter: datagrams from each client address form a session with one
//! upstream host (chosen by the cluster's load balancer when the session starts), through a
//! connected UDP socket of its own; replies go back to the client from the listener's socket. A
//! session ends after `idle_timeout` without datagrams either way (MOSN's default: 5 s).
//!
//! Sessions live in the worker that received the client's first datagram; SO_REUSEPORT keeps a
//! client's datagrams on that worker. At most `max_sessions` are open per listener over all
//! workers; a datagram that would open one more is dropped and counted in the listener's
//! `udp_session_overflow`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use mosn_api::ResponseFlag;
use mosn_config::HostAddr;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::snapshot::{ListenerKind, Snapshot};
use crate::worker::state::Worker;

/// Largest datagram relayed, in bytes (the UDP maximum).
pub const MAX_DATAGRAM: usize = 65_535;

struct Session {
    up: Rc<UdpSocket>,
    last: Rc<Cell<Instant>>,
    /// Cluster index and host id, for the upstream gauges.
    ids: (usize, usize),
}

/// Receives datagrams on one worker's UDP socket until `shutdown` turns true.
pub async fn serve(
    worker: Rc<Worker>,
    socket: Rc<UdpSocket>,
    index: usize,
    open: Arc<AtomicUsize>,
    config: Arc<ArcSwap<Snapshot>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let sessions: Rc<RefCell<HashMap<SocketAddr, Session>>> = Rc::default();
    let local = socket.local_addr().ok();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, peer) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "udp_proxy: recv failed");
                    continue;
                }
            },
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let stats = &worker.stats;
        if let Some(l) = stats.listeners.get(index) {
            l.bytes_read_total.add(n as u64);
        }
        let existing = sessions
            .borrow()
            .get(&peer)
            .map(|s| (s.up.clone(), s.last.clone()));
        let (up, last) = match existing {
            Some(x) => x,
            None => {
                let snapshot = config.load_full();
                let max = match &snapshot.listeners[index].kind {
                    ListenerKind::Udp(tp) => tp.max_sessions,
                    _ => continue,
                };
                // Reserve a place first, so workers racing for the last one cannot both win.
                if open.fetch_add(1, Ordering::AcqRel) >= max {
                    open.fetch_sub(1, Ordering::AcqRel);
                    if let Some(l) = stats.listeners.get(index) {
                        l.udp_session_overflow.inc();
                    }
                    tracing::debug!(%peer, max, "udp_proxy: session limit reached, datagram dropped");
                    continue;
                }
                let Some(s) = open_session(&worker, &snapshot, index, peer, local).await else {
                    open.fetch_sub(1, Ordering::AcqRel);
                    continue;
                };
                let up = s.up.clone();
                let last = s.last.clone();
                let ids = s.ids;
                sessions.borrow_mut().insert(peer, s);
                tokio::task::spawn_local(relay_back(
                    worker.clone(),
                    index,
                    socket.clone(),
                    up.clone(),
                    last.clone(),
                    peer,
                    (sessions.clone(), open.clone()),
                    snapshot,
                    ids,
                ));
                (up, last)
            }
        };
        last.set(Instant::now());
        if let Err(e) = up.send(&buf[..n]).await {
            tracing::debug!(%peer, error = %e, "udp_proxy: send upstream failed");
        }
    }
}

async fn open_session(
    worker: &Worker,
    snapshot: &Snapshot,
    index: usize,
    peer: SocketAddr,
    local: Option<SocketAddr>,
) -> Option<Session> {
    let ListenerKind::Udp(tp) = &snapshot.listeners[index].kind else {
        return None;
    };
    let stats = &worker.stats;
    let Some(target_id) = tp.target(peer, local.unwrap_or(peer)) else {
        stats.flag(ResponseFlag::NoRoute);
        return None;
    };
    let cluster = &snapshot.clusters.targets[target_id].cluster;
    let Some(h) = worker.pick_host(snapshot, target_id, &[]) else {
        stats.flag(ResponseFlag::NoHealthyUpstream);
        return None;
    };
    let host = &cluster.hosts[h];
    let HostAddr::Tcp(addr) = &host.address else {
        tracing::warn!(host = %host.address, "udp_proxy: a unix host cannot take datagrams");
        stats.flag(ResponseFlag::UpstreamConnectionFailure);
        return None;
    };
    let bind: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse().ok()?
    } else {
        "[::]:0".parse().ok()?
    };
    let up = match UdpSocket::bind(bind).await {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(error = %e, "udp_proxy: cannot bind an upstream socket");
            return None;
        }
    };
    if let Err(e) = up.connect(addr).await {
        tracing::debug!(%addr, error = %e, "udp_proxy: connect failed");
        stats
            .upstream
            .both(cluster.index, host.id, |s| s.connection_con_fail.inc());
        stats.flag(ResponseFlag::UpstreamConnectionFailure);
        return None;
    }
    stats.upstream.both(cluster.index, host.id, |s| {
        s.connection_total.inc();
        s.connection_active.inc();
    });
    if let Some(l) = stats.listeners.get(index) {
        l.connection_total.inc();
        l.connection_active.inc();
    }
    Some(Session {
        up: Rc::new(up),
        last: Rc::new(Cell::new(Instant::now())),
        ids: (cluster.index, host.id),
    })
}

/// Sends the upstream's replies back to the client until the session is idle for
/// `idle_timeout`, then removes it.
#[allow(clippy::too_many_arguments)]
async fn relay_back(
    worker: Rc<Worker>,
    index: usize,
    socket: Rc<UdpSocket>,
    up: Rc<UdpSocket>,
    last: Rc<Cell<Instant>>,
    peer: SocketAddr,
    (sessions, open): (Rc<RefCell<HashMap<SocketAddr, Session>>>, Arc<AtomicUsize>),
    snapshot: Arc<Snapshot>,
    (ci, hi): (usize, usize),
) {
    let idle = match &snapshot.listeners[index].kind {
        ListenerKind::Udp(tp) => tp.idle_timeout,
        _ => return,
    };
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        tokio::select! {
            r = up.recv(&mut buf) => match r {
                Ok(n) => {
                    last.set(Instant::now());
                    if let Some(l) = worker.stats.listeners.get(index) {
                        l.bytes_write_total.add(n as u64);
                    }
                    if let Err(e) = socket.send_to(&buf[..n], peer).await {
                        tracing::debug!(%peer, error = %e, "udp_proxy: reply failed");
                    }
                }
                // ICMP port unreachable and the like: the session waits for its idle end.
                Err(e) => tracing::debug!(%peer, error = %e, "udp_proxy: upstream recv failed"),
            },
            _ = crate::tcp::idle_watch(&last, idle) => break,
        }
    }
    sessions.borrow_mut().remove(&peer);
    open.fetch_sub(1, Ordering::AcqRel);
    worker.stats.upstream.both(ci, hi, |s| {
        s.connection_active.dec();
        s.connection_close.inc();
    });
    if let Some(l) = worker.stats.listeners.get(index) {
        l.connection_active.dec();
        l.connection_destroy.inc();
    }
}
