//! What a downstream connection knows while it serves streams, whatever its protocol.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;

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

    /// The listener's compiled config.
    pub fn listener(&self) -> &ListenerInfo {
        &self.snapshot.listeners[self.listener]
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
