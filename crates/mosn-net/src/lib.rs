//! Listener sockets and socket options.
//!
//! Each worker binds its own listening socket on the same address with `SO_REUSEPORT`, so the
//! kernel spreads new connections across workers with no shared accept queue or lock.

pub mod counting;
pub mod fdpass;
pub mod holder;
pub mod original_dst;
pub mod splice;
pub mod stream;
pub mod tls;

pub use stream::Stream;

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// Listen backlog passed to `listen(2)`.
pub const BACKLOG: i32 = 4096;

/// Binds a non-blocking TCP listener on `addr` with `SO_REUSEADDR` and `SO_REUSEPORT`, so that
/// several workers may bind the same address. Port 0 picks a free port; read it back with
/// `local_addr()` and bind the other workers to that.
///
/// Errors: the OS error of `socket(2)`, `setsockopt(2)`, `bind(2)` or `listen(2)`.
pub fn bind_reuseport(addr: SocketAddr) -> io::Result<TcpListener> {
    bind_reuseport_with(addr, false)
}

/// [`bind_reuseport`], with `IP_TRANSPARENT` set first when `transparent` (a TPROXY listener;
/// needs CAP_NET_ADMIN).
///
/// Errors: as [`bind_reuseport`], and EPERM for `transparent` without CAP_NET_ADMIN.
pub fn bind_reuseport_with(addr: SocketAddr, transparent: bool) -> io::Result<TcpListener> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    if transparent {
        original_dst::set_transparent(&sock)?;
    }
    sock.set_nonblocking(true)?;
    sock.set_tcp_nodelay(true)?;
    sock.bind(&addr.into())?;
    sock.listen(BACKLOG)?;
    Ok(sock.into())
}

/// Binds a non-blocking UDP socket on `addr` with `SO_REUSEADDR` and `SO_REUSEPORT`: each worker
/// binds its own, and the kernel keeps a client's datagrams on one of them (hash of the 4-tuple).
///
/// Errors: the OS error of `socket(2)`, `setsockopt(2)` or `bind(2)`.
pub fn bind_udp_reuseport(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    Ok(sock.into())
}

/// Binds a non-blocking unix stream listener at `path`. A socket file left by a process that is
/// gone (nothing accepts on it) is removed first; a live one is an `AddrInUse` error.
///
/// Errors: the path is in use, or the OS error of `bind(2)`/`listen(2)`.
pub fn bind_unix(path: &std::path::Path) -> io::Result<std::os::unix::net::UnixListener> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{} is in use by another process", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let l = std::os::unix::net::UnixListener::bind(path)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_sockets_share_one_port() {
        let a = bind_reuseport("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = a.local_addr().unwrap();
        let b = bind_reuseport(addr).unwrap();
        assert_eq!(b.local_addr().unwrap(), addr);
    }
}
