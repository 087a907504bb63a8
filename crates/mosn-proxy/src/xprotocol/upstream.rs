//! Multiplexed upstream connections for an XProtocol (MOSN's `connpool_multiplex`): per worker
//! and host, up to [`conns_per_host`] connections, each carrying any number of requests at once.
//! Requests get a fresh id on the connection (the client's id is restored on the response), so
//! many clients share one connection without clashing.
//!
//! Each connection is driven by its own task, which writes queued requests, reads responses and
//! hands each to the stream waiting for its id, answers the upstream's heartbeats, and sends
//! heartbeats of its own when the cluster has a `keepalive`: every `interval`, closing the
//! connection after [`HEARTBEAT_FAILURES`] in a row go unanswered for `timeout`. When the
//! connection ends, every stream still waiting on it is told so at once (`UC`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;

use bytes::BytesMut;
use mosn_api::{ProxyError, ResponseFlag};
use mosn_protocol::xprotocol::{FrameKind, XProtocol};
use mosn_upstream::{Cluster, Host, Pools, UpstreamConn};
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

use super::io::{poll_drain, poll_fill};

/// Heartbeats in a row that may go unanswered before the connection is closed.
pub const HEARTBEAT_FAILURES: u32 = 3;

/// MOSN's rule for the connections per host of a multiplexed pool: the cluster's
/// `max_connections` when it is set below 65 535, else 1.
pub fn conns_per_host(cluster: &Cluster) -> usize {
    match cluster.limits.max_connections {
        Some(n) if n > 0 && n < 65_535 => n as usize,
        _ => 1,
    }
}

struct Shared<P: XProtocol> {
    wbuf: BytesMut,
    pending: HashMap<u64, oneshot::Sender<P::Frame>>,
    next_id: u64,
}

/// One multiplexed upstream connection.
pub struct XConn<P: XProtocol> {
    proto: Rc<P>,
    shared: RefCell<Shared<P>>,
    wake: Notify,
    closed: Cell<bool>,
    /// The connection's local address.
    pub local: Option<std::net::SocketAddr>,
}

impl<P: XProtocol> XConn<P> {
    /// True once the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// Queues `frame` with a fresh id on this connection. For a request, returns where its
    /// response arrives (an error there means the connection ended first); for a oneway, `None`.
    pub fn send(&self, frame: &mut P::Frame, expect_response: bool) -> Option<Pending<P>> {
        let mut s = self.shared.borrow_mut();
        let id = loop {
            s.next_id = s.next_id.wrapping_add(1).max(1);
            self.proto.set_request_id(frame, s.next_id);
            // The protocol may narrow ids (Bolt's are 32 bits): key on what the frame carries.
            let id = self.proto.request_id(frame);
            if !s.pending.contains_key(&id) {
                break id;
            }
        };
        let rx = if expect_response {
            let (tx, rx) = oneshot::channel();
            s.pending.insert(id, tx);
            Some(Pending { id, rx })
        } else {
            None
        };
        self.proto.encode(frame, &mut s.wbuf);
        drop(s);
        self.wake.notify_one();
        rx
    }

    /// Stops waiting for the response to `id` (the stream timed out or went away).
    pub fn forget(&self, id: u64) {
        self.shared.borrow_mut().pending.remove(&id);
    }
}

/// A response to wait for.
pub struct Pending<P: XProtocol> {
    /// The id the request carries on the upstream connection.
    pub id: u64,
    /// Resolves with the response; an error when the connection ended first.
    pub rx: oneshot::Receiver<P::Frame>,
}

/// The multiplexed connections of one worker, by host id.
pub struct XPool<P: XProtocol> {
    conns: RefCell<HashMap<usize, Vec<Rc<XConn<P>>>>>,
    connecting: RefCell<HashMap<usize, Rc<Notify>>>,
    turn: Cell<usize>,
}

impl<P: XProtocol> Default for XPool<P> {
    fn default() -> Self {
        XPool {
            conns: RefCell::default(),
            connecting: RefCell::default(),
            turn: Cell::new(0),
        }
    }
}

impl<P: XProtocol> XPool<P> {
    /// A live connection to `host`, opening one while the host has fewer than
    /// [`conns_per_host`]; streams that ask while one is being opened wait for it rather than
    /// open their own.
    ///
    /// Errors: the pool's connect errors (`UF`, `UO`).
    pub async fn conn(
        &self,
        pools: &Pools,
        cluster: &Arc<Cluster>,
        host: &Host,
        proto: &Rc<P>,
    ) -> Result<Rc<XConn<P>>, ProxyError> {
        let want = conns_per_host(cluster);
        loop {
            let live: Vec<Rc<XConn<P>>> = {
                let mut map = self.conns.borrow_mut();
                let v = map.entry(host.id).or_default();
                v.retain(|c| !c.is_closed());
                v.clone()
            };
            let connecting = self.connecting.borrow().get(&host.id).cloned();
            if live.len() >= want || (!live.is_empty() && connecting.is_some()) {
                let i = self.turn.get().wrapping_add(1);
                self.turn.set(i);
                return Ok(live[i % live.len()].clone());
            }
            if let Some(n) = connecting {
                n.notified().await;
                continue;
            }
            let done = Rc::new(Notify::new());
            self.connecting.borrow_mut().insert(host.id, done.clone());
            let r = pools.connect(cluster, host).await;
            self.connecting.borrow_mut().remove(&host.id);
            done.notify_waiters();
            let up = r?;
            let c = Rc::new(XConn {
                proto: proto.clone(),
                shared: RefCell::new(Shared {
                    wbuf: BytesMut::new(),
                    pending: HashMap::new(),
                    next_id: 0,
                }),
                wake: Notify::new(),
                closed: Cell::new(false),
                local: up.local,
            });
            tokio::task::spawn_local(drive(c.clone(), up, cluster.keepalive));
            self.conns
                .borrow_mut()
                .entry(host.id)
                .or_default()
                .push(c.clone());
            return Ok(c);
        }
    }
}

/// What woke the connection's task.
enum Event {
    Read,
    Gone,
    Written,
    Tick,
}

/// Drives one upstream connection until it ends, then fails the streams still waiting on it.
async fn drive<P: XProtocol>(
    c: Rc<XConn<P>>,
    mut up: UpstreamConn,
    keepalive: Option<mosn_config::Keepalive>,
) {
    let proto = c.proto.clone();
    let mut rbuf = std::mem::take(&mut up.buf);
    let mut out = BytesMut::new();
    // Keepalive: the id of the heartbeat in flight and when it was sent.
    let mut beat: Option<(u64, Instant)> = None;
    let mut failures = 0u32;
    let mut next_beat = keepalive.map(|k| Instant::now() + k.interval);
    loop {
        let beat_at = next_beat;
        let tick = async move {
            match beat_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let mut tick = std::pin::pin!(tick);
        let mut woken = std::pin::pin!(c.wake.notified());
        let ev = poll_fn(|cx| {
            if out.is_empty() {
                let mut s = c.shared.borrow_mut();
                if !s.wbuf.is_empty() {
                    std::mem::swap(&mut out, &mut s.wbuf);
                }
            }
            if !out.is_empty() {
                let before = out.len();
                match poll_drain(cx, &mut up, &mut out) {
                    Poll::Ready(Err(_)) => return Poll::Ready(Event::Gone),
                    Poll::Ready(Ok(())) => return Poll::Ready(Event::Written),
                    Poll::Pending if out.len() < before => return Poll::Ready(Event::Written),
                    Poll::Pending => {}
                }
            }
            match poll_fill(cx, &mut up, &mut rbuf) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Event::Gone),
                Poll::Ready(Ok(_)) => return Poll::Ready(Event::Read),
                Poll::Pending => {}
            }
            if tick.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Event::Tick);
            }
            if woken.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Event::Written);
            }
            Poll::Pending
        })
        .await;
        match ev {
            Event::Gone => break,
            Event::Written => {}
            Event::Tick => {
                let Some(k) = keepalive else { continue };
                let now = Instant::now();
                if let Some((id, sent)) = beat {
                    if now >= sent + k.timeout {
                        c.forget(id);
                        beat = None;
                        failures += 1;
                        if failures >= HEARTBEAT_FAILURES {
                            tracing::debug!("upstream heartbeats unanswered; closing");
                            break;
                        }
                    }
                }
                if beat.is_none() {
                    let mut hb = proto.heartbeat(0);
                    if let Some(p) = c.send(&mut hb, true) {
                        beat = Some((p.id, now));
                        // The reply is matched by id in the read path below.
                        drop(p.rx);
                    }
                    next_beat = Some(now + k.timeout.min(k.interval));
                } else {
                    next_beat = beat.map(|(_, s)| s + k.timeout);
                }
            }
            Event::Read => loop {
                match proto.decode(&mut rbuf) {
                    Ok(Some(frame)) => match proto.kind(&frame) {
                        FrameKind::Response | FrameKind::HeartbeatReply => {
                            let id = proto.request_id(&frame);
                            if beat.is_some_and(|(b, _)| b == id) {
                                beat = None;
                                failures = 0;
                                next_beat = keepalive.map(|k| Instant::now() + k.interval);
                                c.forget(id);
                                continue;
                            }
                            let tx = c.shared.borrow_mut().pending.remove(&id);
                            if let Some(tx) = tx {
                                let _ = tx.send(frame);
                            }
                        }
                        FrameKind::Heartbeat => {
                            let reply = proto.heartbeat_reply(&frame);
                            proto.encode(&reply, &mut c.shared.borrow_mut().wbuf);
                        }
                        FrameKind::GoAway => {
                            // No new requests here; those in flight still get their answers.
                            c.closed.set(true);
                        }
                        FrameKind::Request | FrameKind::Oneway => {}
                    },
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(error = %e, "upstream sent bytes that are not its protocol; closing");
                        c.closed.set(true);
                        c.shared.borrow_mut().pending.clear();
                        return;
                    }
                }
            },
        }
        if c.closed.get() && c.shared.borrow().pending.is_empty() {
            break;
        }
    }
    c.closed.set(true);
    // Dropping the senders tells every waiting stream the connection ended.
    c.shared.borrow_mut().pending.clear();
}

/// The response of a request sent on `conn`, or why there is none.
pub enum Outcome<F> {
    /// The response.
    Response(F),
    /// The connection ended before it.
    Closed,
    /// `until` passed first.
    TimedOut,
}

/// Waits for `pending` until `until`.
pub async fn wait<P: XProtocol>(
    conn: &XConn<P>,
    pending: Pending<P>,
    until: Instant,
) -> Outcome<P::Frame> {
    match tokio::time::timeout_at(until, pending.rx).await {
        Ok(Ok(f)) => Outcome::Response(f),
        Ok(Err(_)) => Outcome::Closed,
        Err(_) => {
            conn.forget(pending.id);
            Outcome::TimedOut
        }
    }
}

/// The `UF` error of a connection that could not be used.
pub fn closed_error(host: &Host) -> ProxyError {
    ProxyError::new(
        ResponseFlag::UpstreamConnectionFailure,
        format!("upstream {} closed", host.address),
    )
}
