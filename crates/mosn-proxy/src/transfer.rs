//! Moving live connections to a new process on a hot upgrade, MOSN's `conn.sock` "transfer read"
//! message (MOSN `pkg/network/transfer.go`): the old process sends the byte `0x00` with the
//! connection's socket (`SCM_RIGHTS`), then `u32 BE data_len`, `u32 BE tls_len` (0: plaintext)
//! and the bytes it read but did not use; the new process serves the connection from those bytes
//! on and answers a `u32 BE` connection id (0: refused).
//!
//! mosn-rs moves HTTP/1 keep-alive connections between requests (MOSN closes them) and Bolt and
//! Dubbo connections between frames, so a client keeps its connection, and its client-side port,
//! across an upgrade. The answers a moved RPC connection is still owed by the old process follow
//! it with MOSN's "transfer write" message: the byte `0x01` (no descriptor), `u32 BE data_len`,
//! `u32 BE connection_id` (the id the new process gave), then the bytes, which the new process
//! writes to that connection between its own frames. mosn-rs ends the answers owed to a
//! connection with an empty message (MOSN writes those 0 bytes and goes on), so the new process
//! knows when the old one owes that connection nothing more. TLS connections are not moved
//! (their session state stays in the old process); they drain.
//!
//! A plaintext `tcp_proxy` connection moves with its upstream connection (mosn-rs's own message;
//! MOSN lets these die with the old process): the byte `0x02` with both sockets (`SCM_RIGHTS`,
//! client first), then `u32 BE to_upstream_len`, `u32 BE to_client_len` and those bytes: what
//! the old process had read from one side and not yet written to the other. The new process
//! writes them first and relays on; the answer is the same `u32 BE` id. The bytes keep flowing,
//! through the new process, and none is lost or repeated.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

/// New process: the answers the old process still owes one moved connection, whole frames per
/// item, in order; the channel ends when nothing more is owed.
pub type LateAnswers = UnboundedReceiver<Bytes>;

use crate::server::WorkerCmd;
use crate::snapshot::Snapshot;

/// Where the old process sends its connections: the new process's `conn.sock`, once an upgrade
/// handed the listening sockets over. Shared by the workers.
#[derive(Debug, Default)]
pub struct Target(std::sync::Mutex<Option<PathBuf>>);

impl Target {
    /// Starts moving connections to `path`.
    pub fn set(&self, path: PathBuf) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(path);
    }

    /// The path connections go to, once set.
    pub fn get(&self) -> Option<PathBuf> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Why a connection could not be moved.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The socket calls failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Passing the descriptor failed.
    #[error("{0}")]
    Fd(#[from] mosn_net::fdpass::FdPassError),
    /// The new process refused the connection (id 0).
    #[error("the new process refused the connection")]
    Refused,
}

/// Dials the new process's `conn.sock` (one unix connection per message, as MOSN does).
fn dial(conn: &Path) -> Result<UnixStream, TransferError> {
    let mut tries = 0;
    loop {
        match UnixStream::connect(conn) {
            Ok(s) => return Ok(s),
            // The new process binds conn.sock right after it got the sockets.
            Err(_) if tries < 20 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Old process: sends one connection (its socket and its unread bytes) to `conn` and returns the
/// id the new process gave it. Blocking; run it off the worker's event loop.
///
/// Errors: [`TransferError`]; the connection is then still this process's to close.
pub fn send(conn: &Path, socket: &OwnedFd, unread: &[u8]) -> Result<u32, TransferError> {
    let mut s = dial(conn)?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    mosn_net::fdpass::send_fds(&s, &[0], &[socket.as_raw_fd()])?;
    let mut head = [0u8; 8];
    head[..4].copy_from_slice(&(unread.len() as u32).to_be_bytes());
    s.write_all(&head)?;
    s.write_all(unread)?;
    let mut id = [0u8; 4];
    s.read_exact(&mut id)?;
    match u32::from_be_bytes(id) {
        0 => Err(TransferError::Refused),
        id => Ok(id),
    }
}

/// A `tcp_proxy` connection on its way to a new process: both sockets, and the bytes read from
/// one side and not yet written to the other.
#[derive(Debug)]
pub struct MovedPair<S> {
    /// The client's socket.
    pub client: S,
    /// The upstream socket.
    pub upstream: S,
    /// Read from the client, owed to the upstream.
    pub to_upstream: Vec<u8>,
    /// Read from the upstream, owed to the client.
    pub to_client: Vec<u8>,
}

/// Old process: sends a `tcp_proxy` connection (message `0x02`) to `conn`; returns the id the
/// new process gave it. Blocking.
///
/// Errors: [`TransferError`]; both sockets are then still this process's.
pub fn send_pair(conn: &Path, pair: &MovedPair<OwnedFd>) -> Result<u32, TransferError> {
    let mut s = dial(conn)?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    let fds = [pair.client.as_raw_fd(), pair.upstream.as_raw_fd()];
    mosn_net::fdpass::send_fds(&s, &[2], &fds)?;
    let mut head = [0u8; 8];
    head[..4].copy_from_slice(&(pair.to_upstream.len() as u32).to_be_bytes());
    head[4..].copy_from_slice(&(pair.to_client.len() as u32).to_be_bytes());
    s.write_all(&head)?;
    s.write_all(&pair.to_upstream)?;
    s.write_all(&pair.to_client)?;
    let mut id = [0u8; 4];
    s.read_exact(&mut id)?;
    match u32::from_be_bytes(id) {
        0 => Err(TransferError::Refused),
        id => Ok(id),
    }
}

/// Old process: moves a `tcp_proxy` connection (off the event loop); the pair back when the new
/// process did not take it.
pub async fn move_pair(
    pair: MovedPair<OwnedFd>,
    path: PathBuf,
) -> Result<u32, Option<MovedPair<OwnedFd>>> {
    let sent = tokio::task::spawn_blocking(move || {
        let r = send_pair(&path, &pair);
        (r, pair)
    })
    .await;
    match sent {
        Ok((Ok(id), _)) => Ok(id),
        Ok((Err(e), pair)) => {
            tracing::info!(error = %e, "hot upgrade: tcp_proxy connection not moved; it drains here");
            Err(Some(pair))
        }
        Err(_) => Err(None),
    }
}

/// Old process: sends answers owed to the moved connection `id` (MOSN's "transfer write"; empty
/// `data`: nothing more is owed). Blocking; run it off the worker's event loop.
///
/// Errors: [`TransferError::Io`] when `conn.sock` cannot be reached; the answers are then lost.
pub fn send_write(conn: &Path, id: u32, data: &[u8]) -> Result<(), TransferError> {
    let mut s = dial(conn)?;
    let mut head = [0u8; 9];
    head[0] = 1;
    head[1..5].copy_from_slice(&(data.len() as u32).to_be_bytes());
    head[5..].copy_from_slice(&id.to_be_bytes());
    s.write_all(&head)?;
    s.write_all(data)?;
    Ok(())
}

/// Old process: forwards answers owed to the moved connection `id` (off the event loop); see
/// [`send_write`]. A failure is logged: those answers are lost with it.
pub async fn forward(path: PathBuf, id: u32, data: Bytes) {
    let len = data.len();
    let sent = tokio::task::spawn_blocking(move || send_write(&path, id, &data)).await;
    if let Ok(Err(e)) = sent {
        tracing::warn!(id, bytes = len, error = %e, "hot upgrade: answers owed to a moved connection were lost");
    }
}

/// Old process: moves a plaintext connection (TCP, or unix as MOSN's `TestTransfer` client
/// mesh has) with its unread bytes to the new process's `conn.sock` at `path` (off the event
/// loop); the stream back when the new process did not take it, or cannot (TLS; it then stays,
/// to drain here).
pub async fn move_stream(
    s: mosn_net::Stream,
    unread: Vec<u8>,
    path: PathBuf,
) -> Result<u32, Option<mosn_net::Stream>> {
    let peer = match &s {
        mosn_net::Stream::Tcp(t) => t.peer_addr().ok(),
        _ => None,
    };
    let (fd, unix): (OwnedFd, bool) = match s {
        mosn_net::Stream::Tcp(t) => (t.into_std().map_err(|_| None)?.into(), false),
        mosn_net::Stream::Unix(u) => (u.into_std().map_err(|_| None)?.into(), true),
        other => return Err(Some(other)),
    };
    let sent = tokio::task::spawn_blocking(move || {
        let r = send(&path, &fd, &unread);
        (r, fd)
    })
    .await;
    match sent {
        // Our descriptor closes here; the socket lives on in the new process.
        Ok((Ok(id), _fd)) => {
            tracing::debug!(?peer, id, "hot upgrade: connection moved");
            Ok(id)
        }
        Ok((Err(e), fd)) => {
            tracing::info!(?peer, error = %e, "hot upgrade: connection not moved; it drains here");
            let back = if unix {
                tokio::net::UnixStream::from_std(std::os::unix::net::UnixStream::from(fd))
                    .ok()
                    .map(mosn_net::Stream::Unix)
            } else {
                tokio::net::TcpStream::from_std(std::net::TcpStream::from(fd))
                    .ok()
                    .map(mosn_net::Stream::Tcp)
            };
            Err(back)
        }
        Err(_) => Err(None),
    }
}

/// A moved connection's socket, as the new process gets it.
#[derive(Debug)]
pub enum Moved {
    /// A TCP connection.
    Tcp(std::net::TcpStream),
    /// A unix stream connection (on a unix listener of the same path).
    Unix(std::os::unix::net::UnixStream),
}

impl Moved {
    fn set_nonblocking(&self) -> std::io::Result<()> {
        match self {
            Moved::Tcp(s) => s.set_nonblocking(true),
            Moved::Unix(s) => s.set_nonblocking(true),
        }
    }
}

/// Most unread bytes a moved connection may carry (a request head and a little more).
pub const MAX_UNREAD: usize = 1 << 20;
/// Most bytes of one "transfer write" message (answers owed to a moved connection).
pub const MAX_LATE: usize = 64 << 20;

/// New process: where the answers the old process still owes a moved connection go, by the id
/// given it. An entry goes when its connection ends, or when the old process says it owes
/// nothing more (an empty message); all go when `conn.sock` closes.
pub type Late = Arc<std::sync::Mutex<std::collections::HashMap<u32, UnboundedSender<Bytes>>>>;

/// What one `conn.sock` message was.
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    /// A connection moved here, with the id given it ("transfer read").
    Moved(u32),
    /// Answers owed to a moved connection, `bytes` long (0: no more), passed on or dropped when
    /// that connection is gone ("transfer write").
    Late {
        /// The moved connection's id.
        id: u32,
        /// How many bytes.
        bytes: usize,
    },
}

/// New process: takes moved connections and gives each to a worker.
#[derive(Clone)]
pub struct Adopter {
    pub(crate) config: Arc<ArcSwap<Snapshot>>,
    pub(crate) workers: Vec<tokio::sync::mpsc::UnboundedSender<WorkerCmd>>,
    pub(crate) next: Arc<AtomicUsize>,
    pub(crate) ids: Arc<AtomicU32>,
    pub(crate) late: Late,
}

impl Adopter {
    /// Serves one `conn.sock` message. "Transfer read": reads the socket and its unread bytes,
    /// hands them to a worker (on the listener of the socket's local address), answers the id.
    /// "Transfer write": passes the bytes to the moved connection of that id. Blocking.
    ///
    /// Errors: a malformed message, or no listener for the socket (answered with id 0).
    pub fn serve(&self, mut s: UnixStream) -> Result<Message, TransferError> {
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        let (data, mut fds) = mosn_net::fdpass::recv_fds(&s, 1)?;
        let mut head = [0u8; 8];
        s.read_exact(&mut head)?;
        if data == [1] && fds.is_empty() {
            return self.late(s, head);
        }
        if data == [2] && fds.len() == 2 {
            return self.pair(s, fds, head);
        }
        let data_len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let tls_len = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
        let ok_shape = data == [0] && fds.len() == 1 && data_len <= MAX_UNREAD && tls_len == 0;
        if !ok_shape {
            let _ = s.write_all(&0u32.to_be_bytes());
            return Err(TransferError::Refused);
        }
        let mut unread = vec![0u8; data_len];
        s.read_exact(&mut unread)?;
        let Some(fd) = fds.pop() else {
            return Err(TransferError::Refused);
        };
        use mosn_net::fdpass::{socket_kind, SocketKind};
        let (slot, socket) = match socket_kind(&fd) {
            Some(SocketKind::Tcp(local)) => (
                self.config.load().listener_for(local),
                Moved::Tcp(std::net::TcpStream::from(fd)),
            ),
            Some(SocketKind::Unix(path)) => (
                self.config.load().listener_for_path(&path),
                Moved::Unix(std::os::unix::net::UnixStream::from(fd)),
            ),
            _ => (None, Moved::Tcp(std::net::TcpStream::from(fd))),
        };
        let (Some(slot), false) = (slot, self.workers.is_empty()) else {
            let _ = s.write_all(&0u32.to_be_bytes());
            return Err(TransferError::Refused);
        };
        socket.set_nonblocking()?;
        let w = self.next.fetch_add(1, Ordering::Relaxed) % self.workers.len();
        let id = self.ids.fetch_add(1, Ordering::Relaxed).max(1);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        {
            let mut late = self.late.lock().unwrap_or_else(|e| e.into_inner());
            late.retain(|_, tx| !tx.is_closed());
            late.insert(id, tx);
        }
        if self.workers[w]
            .send(WorkerCmd::Adopt(
                slot,
                socket,
                bytes::BytesMut::from(&unread[..]),
                Some(rx),
            ))
            .is_err()
        {
            let _ = s.write_all(&0u32.to_be_bytes());
            return Err(TransferError::Refused);
        }
        s.write_all(&id.to_be_bytes())?;
        Ok(Message::Moved(id))
    }

    /// A `tcp_proxy` connection pair (message `0x02`): served on the listener of the client
    /// socket's local address.
    fn pair(
        &self,
        mut s: UnixStream,
        mut fds: Vec<OwnedFd>,
        head: [u8; 8],
    ) -> Result<Message, TransferError> {
        let (Some(up), Some(client)) = (fds.pop(), fds.pop()) else {
            return Err(TransferError::Refused);
        };
        let to_up = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let to_client = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
        if to_up > MAX_UNREAD || to_client > MAX_UNREAD {
            let _ = s.write_all(&0u32.to_be_bytes());
            return Err(TransferError::Refused);
        }
        let (mut to_upstream, mut to_client) = (vec![0u8; to_up], vec![0u8; to_client]);
        s.read_exact(&mut to_upstream)?;
        s.read_exact(&mut to_client)?;
        let (client, up) = (
            std::net::TcpStream::from(client),
            std::net::TcpStream::from(up),
        );
        let slot = client
            .local_addr()
            .ok()
            .and_then(|local| self.config.load().listener_for(local));
        let refuse = |s: &mut UnixStream| {
            let _ = s.write_all(&0u32.to_be_bytes());
            Err(TransferError::Refused)
        };
        let (Some(slot), false) = (slot, self.workers.is_empty()) else {
            return refuse(&mut s);
        };
        client.set_nonblocking(true)?;
        up.set_nonblocking(true)?;
        let w = self.next.fetch_add(1, Ordering::Relaxed) % self.workers.len();
        let id = self.ids.fetch_add(1, Ordering::Relaxed).max(1);
        let pair = MovedPair {
            client,
            upstream: up,
            to_upstream,
            to_client,
        };
        if self.workers[w]
            .send(WorkerCmd::AdoptPair(slot, Box::new(pair)))
            .is_err()
        {
            return refuse(&mut s);
        }
        s.write_all(&id.to_be_bytes())?;
        Ok(Message::Moved(id))
    }

    /// The rest of a "transfer write" message after its header (`data_len`, `connection_id`).
    fn late(&self, mut s: UnixStream, head: [u8; 8]) -> Result<Message, TransferError> {
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let id = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        if len > MAX_LATE {
            return Err(TransferError::Refused);
        }
        let mut data = vec![0u8; len];
        s.read_exact(&mut data)?;
        let mut late = self.late.lock().unwrap_or_else(|e| e.into_inner());
        if len == 0 {
            // Nothing more is owed: the connection's receiver sees its end.
            late.remove(&id);
        } else if let Some(tx) = late.get(&id) {
            if tx.send(Bytes::from(data)).is_err() {
                late.remove(&id);
                tracing::info!(
                    id,
                    bytes = len,
                    "hot upgrade: answers for a connection already gone were dropped"
                );
            }
        } else {
            tracing::info!(
                id,
                bytes = len,
                "hot upgrade: answers for an unknown connection were dropped"
            );
        }
        Ok(Message::Late { id, bytes: len })
    }
}
