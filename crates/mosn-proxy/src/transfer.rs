//! Moving live connections to a new process on a hot upgrade, MOSN's `conn.sock` "transfer read"
//! message (MOSN `pkg/network/transfer.go`): the old process sends the byte `0x00` with the
//! connection's socket (`SCM_RIGHTS`), then `u32 BE data_len`, `u32 BE tls_len` (0: plaintext)
//! and the bytes it read but did not use; the new process serves the connection from those bytes
//! on and answers a `u32 BE` connection id (0: refused).
//!
//! mosn-rs moves HTTP/1 keep-alive connections between requests (MOSN closes them) and Bolt and
//! Dubbo connections between frames once every call is answered, so a client keeps its
//! connection, and its client-side port, across an upgrade. TLS connections are not moved (their
//! session state stays in the old process); they drain.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

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

/// Old process: sends one connection (its socket and its unread bytes) to `conn` and returns the
/// id the new process gave it. Blocking; run it off the worker's event loop.
///
/// Errors: [`TransferError`]; the connection is then still this process's to close.
pub fn send(conn: &Path, socket: &OwnedFd, unread: &[u8]) -> Result<u32, TransferError> {
    let mut tries = 0;
    let mut s = loop {
        match UnixStream::connect(conn) {
            Ok(s) => break s,
            // The new process binds conn.sock right after it got the sockets.
            Err(_) if tries < 20 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(e.into()),
        }
    };
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

/// Old process: moves a plaintext connection with its unread bytes to the new process's
/// `conn.sock` at `path` (off the event loop); the stream back when the new process did not take
/// it (it then stays, to drain here).
pub async fn move_tcp(
    s: tokio::net::TcpStream,
    unread: Vec<u8>,
    path: PathBuf,
) -> Result<u32, Option<tokio::net::TcpStream>> {
    let peer = s.peer_addr().ok();
    let fd: OwnedFd = s.into_std().map_err(|_| None)?.into();
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
            Err(tokio::net::TcpStream::from_std(std::net::TcpStream::from(fd)).ok())
        }
        Err(_) => Err(None),
    }
}

/// Most unread bytes a moved connection may carry (a request head and a little more).
pub const MAX_UNREAD: usize = 1 << 20;

/// New process: takes moved connections and gives each to a worker.
#[derive(Clone)]
pub struct Adopter {
    pub(crate) config: Arc<ArcSwap<Snapshot>>,
    pub(crate) workers: Vec<tokio::sync::mpsc::UnboundedSender<WorkerCmd>>,
    pub(crate) next: Arc<AtomicUsize>,
    pub(crate) ids: Arc<AtomicU32>,
}

impl Adopter {
    /// Serves one `conn.sock` message: reads the socket and its unread bytes, hands them to a
    /// worker (on the listener of the socket's local address), answers the id. Blocking.
    ///
    /// Errors: a malformed message, or no listener for the socket (answered with id 0).
    pub fn serve(&self, mut s: UnixStream) -> Result<u32, TransferError> {
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        let (data, mut fds) = mosn_net::fdpass::recv_fds(&s, 1)?;
        let mut head = [0u8; 8];
        s.read_exact(&mut head)?;
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
        let tcp = std::net::TcpStream::from(fd);
        let slot = tcp
            .local_addr()
            .ok()
            .and_then(|local| self.config.load().listener_for(local));
        let (Some(slot), false) = (slot, self.workers.is_empty()) else {
            let _ = s.write_all(&0u32.to_be_bytes());
            return Err(TransferError::Refused);
        };
        tcp.set_nonblocking(true)?;
        let w = self.next.fetch_add(1, Ordering::Relaxed) % self.workers.len();
        let id = self.ids.fetch_add(1, Ordering::Relaxed).max(1);
        if self.workers[w]
            .send(WorkerCmd::Adopt(
                slot,
                tcp,
                bytes::BytesMut::from(&unread[..]),
            ))
            .is_err()
        {
            let _ = s.write_all(&0u32.to_be_bytes());
            return Err(TransferError::Refused);
        }
        s.write_all(&id.to_be_bytes())?;
        Ok(id)
    }
}
