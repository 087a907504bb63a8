//! Filter-chain matching: a listener whose filter chains are child listeners (`parent_listener`
//! with `filter_chain_match`) hands each connection to the child whose match is the most specific,
//! as Envoy does (`FilterChainMatch`; Istio's `virtualInbound` and per-port listeners rely on it).
//!
//! The criteria are taken in Envoy's order, destination port, destination address, server name,
//! transport protocol, application protocols, source address, source port; at each one only the
//! children with the most specific match go on (an empty criterion matches anything, as the least
//! specific match), and there is no going back to a less specific group. No child left: the
//! parent's own network filter takes the connection.
//!
//! The TLS criteria come from the ClientHello, read with `MSG_PEEK` (nothing is consumed) and
//! parsed by rustls: `tls` with its SNI and ALPN offer; otherwise `raw_buffer`, with `http/1.1` or
//! `h2c` when the first bytes are HTTP (Envoy's `http_inspector`).

use std::net::SocketAddr;

use mosn_config::{ChainMatch, Cidr};
use mosn_protocol::detect::{detect, Detected, AUTO};

use crate::snapshot::Snapshot;

/// What the first bytes of a connection showed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Seen {
    /// A TLS ClientHello arrived.
    pub tls: bool,
    /// Its SNI.
    pub sni: Option<String>,
    /// Its ALPN offer, or for plaintext the HTTP version the bytes show (`http/1.1`, `h2c`).
    pub alpn: Vec<String>,
}

/// True when choosing among these children needs the connection's first bytes.
pub fn needs_first_bytes(snapshot: &Snapshot, children: &[usize]) -> bool {
    children.iter().any(|c| {
        snapshot.listeners[*c]
            .chain_match
            .as_ref()
            .is_some_and(|m| {
                m.transport_protocol.is_some()
                    || !m.server_names.is_empty()
                    || !m.application_protocols.is_empty()
            })
    })
}

/// Peeks at the first bytes until they show TLS (with a whole ClientHello) or plaintext, or
/// `deadline` passes (then what is known so far: plaintext, as Envoy's
/// `continue_on_listener_filters_timeout`).
pub async fn first_bytes(s: &tokio::net::TcpStream, deadline: tokio::time::Instant) -> Seen {
    // A ClientHello fits in a few records; 16 KiB + a header holds one full record.
    let mut buf = vec![0u8; 16 * 1024 + 5];
    let mut last = 0;
    let mut pause = std::time::Duration::from_millis(1);
    loop {
        let n = match tokio::time::timeout_at(deadline, s.peek(&mut buf)).await {
            Ok(Ok(n)) => n,
            _ => return Seen::default(),
        };
        if n == 0 {
            return Seen::default();
        }
        if buf[0] == 0x16 {
            let mut acceptor = rustls::server::Acceptor::default();
            let mut rd = &buf[..n];
            while !rd.is_empty() {
                if acceptor.read_tls(&mut rd).is_err() {
                    break;
                }
            }
            match acceptor.accept() {
                Ok(Some(accepted)) => {
                    let hello = accepted.client_hello();
                    return Seen {
                        tls: true,
                        sni: hello.server_name().map(str::to_string),
                        alpn: hello
                            .alpn()
                            .map(|a| a.map(|p| String::from_utf8_lossy(p).into_owned()).collect())
                            .unwrap_or_default(),
                    };
                }
                Ok(None) if n < buf.len() => {}
                _ => {
                    return Seen {
                        tls: true,
                        ..Seen::default()
                    }
                }
            }
        } else {
            match detect(&buf[..n], AUTO) {
                Detected::Protocol(mosn_api::Protocol::Http1) => {
                    return Seen {
                        alpn: vec!["http/1.1".into()],
                        ..Seen::default()
                    }
                }
                Detected::Protocol(mosn_api::Protocol::Http2) => {
                    return Seen {
                        alpn: vec!["h2c".into()],
                        ..Seen::default()
                    }
                }
                Detected::NeedMore if n < buf.len() => {}
                _ => return Seen::default(),
            }
        }
        // More bytes are needed: peek returns at once while some are unread, so wait a little.
        if n == last {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_millis(50));
        }
        last = n;
    }
}

fn cidr_match(ranges: &[Cidr], ip: std::net::IpAddr) -> Option<u32> {
    if ranges.is_empty() {
        return Some(0);
    }
    ranges
        .iter()
        .filter(|c| c.contains(ip))
        .map(|c| u32::from(c.length) + 1)
        .max()
}

fn server_name_match(names: &[String], sni: Option<&str>) -> Option<u32> {
    if names.is_empty() {
        return Some(0);
    }
    let sni = sni?;
    names
        .iter()
        .filter_map(|n| {
            if n.eq_ignore_ascii_case(sni) {
                Some(10_000)
            } else {
                let suffix = n.strip_prefix('*')?;
                (sni.len() > suffix.len()
                    && sni
                        .to_ascii_lowercase()
                        .ends_with(&suffix.to_ascii_lowercase()))
                .then_some(suffix.len() as u32)
            }
        })
        .max()
}

/// The child listener for a connection from `src` to `dst` (its original destination), or
/// `None` when no child matches.
pub fn select(
    snapshot: &Snapshot,
    children: &[usize],
    dst: SocketAddr,
    src: SocketAddr,
    seen: &Seen,
) -> Option<usize> {
    let none = ChainMatch::default();
    let mut cands: Vec<(usize, &ChainMatch)> = children
        .iter()
        .map(|c| {
            (
                *c,
                snapshot.listeners[*c].chain_match.as_ref().unwrap_or(&none),
            )
        })
        .collect();
    let transport = if seen.tls { "tls" } else { "raw_buffer" };
    type Level<'a> = Box<dyn Fn(&ChainMatch) -> Option<u32> + 'a>;
    let levels: [Level<'_>; 7] = [
        Box::new(|m| match m.destination_port {
            None => Some(0),
            Some(p) => (p == dst.port()).then_some(1),
        }),
        Box::new(|m| cidr_match(&m.prefix_ranges, dst.ip())),
        Box::new(|m| server_name_match(&m.server_names, seen.sni.as_deref())),
        Box::new(|m| match &m.transport_protocol {
            None => Some(0),
            Some(t) => (t == transport).then_some(1),
        }),
        Box::new(|m| {
            if m.application_protocols.is_empty() {
                Some(0)
            } else {
                m.application_protocols
                    .iter()
                    .any(|a| seen.alpn.contains(a))
                    .then_some(1)
            }
        }),
        Box::new(|m| cidr_match(&m.source_prefix_ranges, src.ip())),
        Box::new(|m| {
            if m.source_ports.is_empty() {
                Some(0)
            } else {
                m.source_ports.contains(&src.port()).then_some(1)
            }
        }),
    ];
    for level in &levels {
        let scored: Vec<(usize, &ChainMatch, u32)> = cands
            .iter()
            .filter_map(|(i, m)| level(m).map(|s| (*i, *m, s)))
            .collect();
        let best = scored.iter().map(|(_, _, s)| *s).max()?;
        cands = scored
            .into_iter()
            .filter(|(_, _, s)| *s == best)
            .map(|(i, m, _)| (i, m))
            .collect();
    }
    cands.first().map(|(i, _)| *i)
}
