//! The multiplexed HTTP/2 pool of one worker: per host, a few client connections each carrying
//! many streams. A stream goes to the first open connection below the peer's
//! `SETTINGS_MAX_CONCURRENT_STREAMS` (RFC 9113 §6.5.2); when every connection is full, another is
//! opened (within the cluster's `max_connections`). Each connection is driven by its own task on
//! the worker, which also sends keepalive PINGs when the cluster asks for them and closes the
//! connection when a PING goes unanswered.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use h2::client::SendRequest;
use mosn_api::{ProxyError, ResponseFlag};

use crate::cluster::{Cluster, Host};
use crate::pool::Pools;

/// Initial stream window advertised to HTTP/2 upstreams, in bytes.
pub const STREAM_WINDOW: u32 = 1024 * 1024;
/// Initial connection window advertised to HTTP/2 upstreams, in bytes.
pub const CONNECTION_WINDOW: u32 = 4 * 1024 * 1024;
/// Largest header list accepted from an HTTP/2 upstream, in bytes.
pub const MAX_HEADER_LIST: u32 = 64 * 1024;

/// PING keepalive of HTTP/2 upstream connections: the cluster's `keepalive`, a PING every
/// `interval` on an idle or busy connection, closed when one goes unanswered for `timeout`.
pub use mosn_config::Keepalive;

struct ConnState {
    closed: Cell<bool>,
    active: Cell<usize>,
    local: Option<std::net::SocketAddr>,
}

struct H2Conn {
    send: SendRequest<Bytes>,
    state: Rc<ConnState>,
}

/// HTTP/2 connections per host id.
#[derive(Default)]
pub struct MultiplexPool {
    conns: RefCell<Vec<Vec<H2Conn>>>,
}

/// A stream slot on a pooled HTTP/2 connection: send one request with [`H2Stream::send`]. The
/// slot is given back when this value is dropped.
pub struct H2Stream {
    /// The connection's request handle.
    pub send: SendRequest<Bytes>,
    /// The connection's local address.
    pub local: Option<std::net::SocketAddr>,
    /// True on a connection opened for this stream (a failure on it is not a stale connection).
    pub fresh: bool,
    state: Rc<ConnState>,
}

impl H2Stream {
    /// Marks the connection unusable for new streams (after a GOAWAY or an error on it).
    pub fn retire(&self) {
        self.state.closed.set(true);
    }
}

impl Drop for H2Stream {
    fn drop(&mut self) {
        self.state
            .active
            .set(self.state.active.get().saturating_sub(1));
    }
}

impl MultiplexPool {
    /// Open HTTP/2 connections held for a host.
    pub fn count(&self, host: usize) -> usize {
        self.conns
            .borrow()
            .get(host)
            .map_or(0, |v| v.iter().filter(|c| !c.state.closed.get()).count())
    }

    fn take(&self, host: usize) -> Option<H2Stream> {
        let mut conns = self.conns.borrow_mut();
        let list = conns.get_mut(host)?;
        list.retain(|c| !c.state.closed.get());
        let c = list
            .iter()
            .find(|c| c.state.active.get() < c.send.current_max_send_streams().max(1))?;
        c.state.active.set(c.state.active.get() + 1);
        Some(H2Stream {
            send: c.send.clone(),
            local: c.state.local,
            fresh: false,
            state: c.state.clone(),
        })
    }

    fn put(&self, host: usize, c: H2Conn) {
        let mut conns = self.conns.borrow_mut();
        if conns.len() <= host {
            conns.resize_with(host + 1, Vec::new);
        }
        conns[host].push(c);
    }
}

impl Pools {
    /// A stream slot to `host` on an HTTP/2 connection with room, opening one when none has
    /// (with PINGs when the cluster has a `keepalive`).
    ///
    /// Errors: as [`Pools::connect`], and `UF` when the HTTP/2 handshake fails.
    pub async fn h2_stream(
        &self,
        cluster: &Arc<Cluster>,
        host: &Host,
    ) -> Result<H2Stream, ProxyError> {
        if let Some(s) = self.h2.take(host.id) {
            return Ok(s);
        }
        let conn = self.connect(cluster, host).await?;
        let local = conn.local;
        let (send, connection) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_header_list_size(MAX_HEADER_LIST)
            .enable_push(false)
            .handshake::<_, Bytes>(conn)
            .await
            .map_err(|e| {
                ProxyError::new(
                    ResponseFlag::UpstreamConnectionFailure,
                    format!("HTTP/2 handshake with {}: {e}", host.address),
                )
            })?;
        let state = Rc::new(ConnState {
            closed: Cell::new(false),
            active: Cell::new(1),
            local,
        });
        tokio::task::spawn_local(drive(connection, state.clone(), cluster.keepalive));
        self.h2.put(
            host.id,
            H2Conn {
                send: send.clone(),
                state: state.clone(),
            },
        );
        Ok(H2Stream {
            send,
            local,
            fresh: true,
            state,
        })
    }
}

/// Drives one client connection until it ends, with PINGs when `keepalive` is set.
async fn drive(
    mut connection: h2::client::Connection<crate::UpstreamConn, Bytes>,
    state: Rc<ConnState>,
    keepalive: Option<Keepalive>,
) {
    let pinger = keepalive.and_then(|k| connection.ping_pong().map(|p| (p, k)));
    match pinger {
        None => {
            let _ = connection.await;
        }
        Some((mut ping_pong, k)) => {
            let mut connection = std::pin::pin!(connection);
            loop {
                tokio::select! {
                    _ = &mut connection => break,
                    _ = tokio::time::sleep(k.interval) => {
                        if ping_pong.send_ping(h2::Ping::opaque()).is_err() {
                            break;
                        }
                        let answered = tokio::select! {
                            r = std::future::poll_fn(|cx| ping_pong.poll_pong(cx)) => r.is_ok(),
                            _ = &mut connection => break,
                            _ = tokio::time::sleep(k.timeout) => false,
                        };
                        if !answered {
                            tracing::debug!("HTTP/2 upstream PING unanswered; closing");
                            break;
                        }
                    }
                }
            }
        }
    }
    state.closed.set(true);
}
