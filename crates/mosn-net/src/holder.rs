//! Who holds an address: a listener mosn-rs is about to open must not already be served by another
//! process. `SO_REUSEPORT` would let a second mosn-rs bind beside the first and split its
//! connections, so the first bind of each listener is preceded by a probe without it.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Errors with `AddrInUse` when another socket (of this or any process) already listens on the TCP
/// `addr`, or is bound to the UDP `addr`, naming the holder's pid and command when `/proc` tells.
/// Port 0 is always free.
///
/// Errors: `AddrInUse` as above, or the OS error of `socket(2)`.
pub fn ensure_free(addr: SocketAddr, udp: bool) -> io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    let (ty, proto) = if udp {
        (Type::DGRAM, Protocol::UDP)
    } else {
        (Type::STREAM, Protocol::TCP)
    };
    let probe = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
    if !udp {
        // Sockets in TIME_WAIT do not count; a listening one does, with or without SO_REUSEPORT.
        probe.set_reuse_address(true)?;
    }
    match probe.bind(&addr.into()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            let who = holder(addr.port(), udp)
                .map(|(pid, cmd)| format!(" (pid {pid}: {cmd})"))
                .unwrap_or_default();
            Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{addr} is already served by another process{who}"),
            ))
        }
        Err(e) => Err(e),
    }
}

/// The pid and command line of a process with a listening TCP socket (or a bound UDP socket) on
/// `port`, from `/proc/net/{tcp,tcp6,udp,udp6}` and `/proc/<pid>/fd`. `None` when not found (or
/// not visible to this user).
pub fn holder(port: u16, udp: bool) -> Option<(u32, String)> {
    let tables: &[&str] = if udp {
        &["/proc/net/udp", "/proc/net/udp6"]
    } else {
        &["/proc/net/tcp", "/proc/net/tcp6"]
    };
    let mut inodes = Vec::new();
    for t in tables {
        let Ok(text) = std::fs::read_to_string(t) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st ... inode (field 9)
            let (Some(local), Some(state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
                continue;
            };
            let p = local
                .rsplit(':')
                .next()
                .and_then(|h| u16::from_str_radix(h, 16).ok());
            // 0A is LISTEN for TCP; 07 is an unconnected UDP socket.
            let wanted = if udp { "07" } else { "0A" };
            if p == Some(port) && *state == wanted && *inode != "0" {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    let me = std::process::id();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            if inodes.iter().any(|i| target.as_os_str() == i.as_str()) {
                let cmd = std::fs::read(entry.path().join("cmdline"))
                    .map(|b| {
                        b.split(|c| *c == 0)
                            .filter(|s| !s.is_empty())
                            .map(|s| String::from_utf8_lossy(s).into_owned())
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_default();
                return Some((pid, cmd));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listening_address_is_refused_and_a_free_one_accepted() {
        let l = crate::bind_reuseport_with("127.0.0.1:0".parse().unwrap(), false).unwrap();
        let addr = l.local_addr().unwrap();
        // Our own listener: in use (the pid lookup skips this process).
        let e = ensure_free(addr, false).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert!(e.to_string().contains("already served"), "{e}");
        drop(l);
        ensure_free(addr, false).unwrap();
        ensure_free("127.0.0.1:0".parse().unwrap(), false).unwrap();
    }
}
