//! The original destination of a connection that iptables sent to a proxy port.
//!
//! - `redirect` (iptables `REDIRECT`/DNAT): the kernel's conntrack entry holds the address the
//!   client dialled; `getsockopt(SOL_IP, SO_ORIGINAL_DST)` (IPv6: `IP6T_SO_ORIGINAL_DST`) reads it.
//! - `tproxy` (iptables `TPROXY`): the listening socket has `IP_TRANSPARENT`, the connection keeps
//!   its original destination as its local address.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsFd;

use nix::sys::socket::{getsockopt, setsockopt, sockopt};

/// How the original destination is recovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// iptables `REDIRECT`: `SO_ORIGINAL_DST`.
    Redirect,
    /// iptables `TPROXY`: the local address.
    Tproxy,
}

/// The destination the client dialled, for a connection accepted on a listener with `mode`.
/// `local` is the connection's local address.
///
/// Errors: `SO_ORIGINAL_DST` failed (no conntrack entry: the connection was not redirected).
pub fn original_dst(s: &impl AsFd, local: SocketAddr, mode: Mode) -> io::Result<SocketAddr> {
    match mode {
        Mode::Tproxy => Ok(local),
        Mode::Redirect => match local {
            SocketAddr::V4(_) => {
                let a = getsockopt(s, sockopt::OriginalDst)?;
                let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                Ok(SocketAddr::V4(SocketAddrV4::new(
                    ip,
                    u16::from_be(a.sin_port),
                )))
            }
            SocketAddr::V6(_) => {
                let a = getsockopt(s, sockopt::Ip6tOriginalDst)?;
                let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
                Ok(SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    u16::from_be(a.sin6_port),
                    0,
                    0,
                )))
            }
        },
    }
}

/// Sets `IP_TRANSPARENT` on a listening socket (needs CAP_NET_ADMIN), so that it accepts
/// connections TPROXY sends to it for any destination address.
///
/// Errors: the OS error of `setsockopt(2)` (EPERM without CAP_NET_ADMIN).
pub fn set_transparent(s: &impl AsFd) -> io::Result<()> {
    setsockopt(s, sockopt::IpTransparent, &true).map_err(io::Error::from)
}
