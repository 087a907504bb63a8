//! Passing sockets between processes over a unix stream socket (`SCM_RIGHTS`), as MOSN's hot
//! upgrade does on `listen.sock` and `conn.sock` (MOSN `pkg/server/handler.go`,
//! `pkg/network/transfer.go`): one `sendmsg` carries data bytes and one control message holding
//! every descriptor.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

/// Most descriptors one message carries (MOSN's limit; more aborts its upgrade).
pub const MAX_FDS: usize = 100;

/// Why descriptors could not be passed.
#[derive(Debug, thiserror::Error)]
pub enum FdPassError {
    /// The system call failed.
    #[error("{0}")]
    Sys(#[from] nix::Error),
    /// More than [`MAX_FDS`] descriptors.
    #[error("{0} descriptors is more than one message carries ({MAX_FDS})")]
    TooMany(usize),
    /// The peer closed before sending anything.
    #[error("the peer closed the socket")]
    Closed,
}

/// Sends `data` with `fds` attached (duplicated into the receiver; ours stay open).
///
/// Errors: [`FdPassError`].
pub fn send_fds(s: &UnixStream, data: &[u8], fds: &[RawFd]) -> Result<(), FdPassError> {
    if fds.len() > MAX_FDS {
        return Err(FdPassError::TooMany(fds.len()));
    }
    let iov = [IoSlice::new(data)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &cmsg };
    sendmsg::<()>(s.as_raw_fd(), &iov, cmsgs, MsgFlags::empty(), None)?;
    Ok(())
}

/// Receives one message: up to `data_len` data bytes and the descriptors attached to it (each
/// now owned by this process).
///
/// Errors: [`FdPassError`]; [`FdPassError::Closed`] when the peer closed first.
pub fn recv_fds(s: &UnixStream, data_len: usize) -> Result<(Vec<u8>, Vec<OwnedFd>), FdPassError> {
    let mut data = vec![0u8; data_len.max(1)];
    let mut cmsg = nix::cmsg_space!([RawFd; MAX_FDS]);
    let (n, raw) = {
        let mut iov = [IoSliceMut::new(&mut data)];
        let msg = recvmsg::<()>(
            s.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )?;
        let mut raw = Vec::new();
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                raw.extend(fds);
            }
        }
        (msg.bytes, raw)
    };
    // SAFETY: the kernel installed these descriptors in this process for this message
    // (SCM_RIGHTS); nothing else refers to them yet, so each is owned exactly once here.
    let fds: Vec<OwnedFd> = raw
        .into_iter()
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect();
    if n == 0 && fds.is_empty() {
        return Err(FdPassError::Closed);
    }
    data.truncate(n);
    Ok((data, fds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn a_listener_socket_crosses_and_still_accepts() {
        let (a, b) = UnixStream::pair().unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        send_fds(&a, &[0], &[l.as_raw_fd()]).unwrap();
        let (data, fds) = recv_fds(&b, 1).unwrap();
        assert_eq!(data, [0]);
        assert_eq!(fds.len(), 1);
        drop(l);
        // The received descriptor is the same listening socket.
        let got = std::net::TcpListener::from(fds.into_iter().next().unwrap());
        assert_eq!(got.local_addr().unwrap(), addr);
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        let (mut s, _) = got.accept().unwrap();
        c.write_all(b"hi").unwrap();
        let mut buf = [0u8; 2];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hi");
    }

    #[test]
    fn a_closed_peer_is_an_error() {
        let (a, b) = UnixStream::pair().unwrap();
        drop(a);
        assert!(matches!(recv_fds(&b, 1), Err(FdPassError::Closed)));
    }
}

/// What an inherited socket is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketKind {
    /// A TCP socket (listening, or a connection) on this local address.
    Tcp(std::net::SocketAddr),
    /// A UDP socket on this address.
    Udp(std::net::SocketAddr),
    /// A unix stream listener on this path.
    Unix(std::path::PathBuf),
}

/// What kind of socket `fd` is, by its type and local address (`None`: something else).
pub fn socket_kind(fd: &impl std::os::fd::AsFd) -> Option<SocketKind> {
    let s = socket2::SockRef::from(fd);
    let local = s.local_addr().ok()?;
    let ty = s.r#type().ok()?;
    if let Some(a) = local.as_socket() {
        return match ty {
            socket2::Type::STREAM => Some(SocketKind::Tcp(a)),
            socket2::Type::DGRAM => Some(SocketKind::Udp(a)),
            _ => None,
        };
    }
    local
        .as_pathname()
        .map(|p| SocketKind::Unix(p.to_path_buf()))
}

/// True when an inherited address stands for a configured one: the same port and the same IP,
/// or both unspecified, or both loopback (MOSN's `ParseListenerConfig` rule).
pub fn same_listen_addr(inherited: std::net::SocketAddr, wanted: std::net::SocketAddr) -> bool {
    if inherited.port() != wanted.port() {
        return false;
    }
    let (a, b) = (inherited.ip(), wanted.ip());
    a == b || (a.is_unspecified() && b.is_unspecified()) || (a.is_loopback() && b.is_loopback())
}
