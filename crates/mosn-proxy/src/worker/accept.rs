//! Accepting connections: the accept loop of each listener socket, the hand-off of transparently
//! proxied connections to the listener of their original destination, TLS termination, protocol
//! detection on `Auto` listeners, and the dispatch to the listener's network filter (`proxy`,
//! `tcp_proxy`).

use std::rc::Rc;
use std::sync::Arc;

use std::net::SocketAddr;

use arc_swap::ArcSwap;
use bytes::BytesMut;
use mosn_api::Protocol;
use mosn_net::Stream;
use mosn_protocol::detect::{detect, Detected, AUTO};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;

use super::state::{Worker, UNIX_PEER};
use crate::snapshot::{ListenerKind, Snapshot};

/// A listening socket of a worker.
pub enum Accepting {
    /// TCP.
    Tcp(tokio::net::TcpListener),
    /// A unix socket.
    Unix(tokio::net::UnixListener),
}

/// Accepts connections on one listener socket until `shutdown` turns true.
pub async fn accept_loop(
    worker: Rc<Worker>,
    listener: Accepting,
    index: usize,
    config: Arc<ArcSwap<Snapshot>>,
    mut shutdown: watch::Receiver<bool>,
) {
    // The last snapshot in which this listener was live: a connection accepted after a config
    // removed it (before this loop saw its stop) is served by it, then closes.
    let mut live = config.load_full();
    loop {
        let accepted = tokio::select! {
            r = accept(&listener) => r,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let conn = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let current = config.load_full();
        let snapshot = if current
            .listeners
            .get(index)
            .is_some_and(|l| l.removed_at.is_none())
        {
            live = current.clone();
            current
        } else {
            live.clone()
        };
        let w = worker.clone();
        tokio::task::spawn_local(async move {
            let (index, conn) = hand_off(&snapshot, index, conn);
            let index = choose_chain(&snapshot, index, &conn).await;
            dispatch(w, snapshot, index, conn).await
        });
    }
}

/// Serves a connection a previous process moved here on a hot upgrade (an HTTP/1 keep-alive
/// connection between requests, a Bolt or Dubbo one between frames), from the bytes it had read
/// and not used.
pub(crate) async fn adopt(
    w: Rc<Worker>,
    snapshot: Arc<Snapshot>,
    index: usize,
    s: crate::transfer::Moved,
    unread: BytesMut,
    late: Option<crate::transfer::LateAnswers>,
) {
    let (s, peer, local) = match s {
        crate::transfer::Moved::Tcp(s) => {
            let Ok(s) = tokio::net::TcpStream::from_std(s) else {
                return;
            };
            let (Ok(peer), Ok(local)) = (s.peer_addr(), s.local_addr()) else {
                return;
            };
            let _ = s.set_nodelay(true);
            (Stream::Tcp(s), peer, local)
        }
        crate::transfer::Moved::Unix(s) => {
            let Ok(s) = tokio::net::UnixStream::from_std(s) else {
                return;
            };
            (Stream::Unix(s), UNIX_PEER, UNIX_PEER)
        }
    };
    tracing::debug!(%peer, "hot upgrade: serving a moved connection");
    let downstream = match snapshot.listeners.get(index).map(|l| &l.kind) {
        Some(ListenerKind::Proxy { downstream, .. }) => *downstream,
        // A listener of another kind now (a config changed meanwhile): closed.
        _ => return,
    };
    let protocol = match downstream {
        mosn_config::Protocol::Http1 => Protocol::Http1,
        mosn_config::Protocol::Http2 => Protocol::Http2,
        mosn_config::Protocol::Bolt => Protocol::Bolt,
        mosn_config::Protocol::BoltV2 => Protocol::BoltV2,
        mosn_config::Protocol::Dubbo => Protocol::Dubbo,
        // Auto: the bytes the old process had not used tell, or the next ones do.
        mosn_config::Protocol::Auto => match detect(&unread, AUTO) {
            Detected::Protocol(p) => p,
            _ if unread.is_empty() => {
                return serve_proxy(w, &snapshot, index, s, (peer, local), downstream, false).await;
            }
            _ => return,
        },
    };
    let a = crate::conn::Accepted {
        worker: w,
        snapshot,
        listener: index,
        io: s,
        addrs: (peer, local),
        initial: unread,
        late,
    };
    serve_protocol(a, protocol).await
}

/// Longest time a client may take to complete its TLS handshake (or, on an `inspector` listener,
/// to send its first byte).
pub const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A transparent-proxy listener hands a TCP connection to the listener of its original
/// destination (or keeps it); the original destination stands as the connection's local address.
fn hand_off(snapshot: &Snapshot, index: usize, conn: Accepted) -> (usize, Accepted) {
    match (snapshot.listeners[index].original_dst, conn) {
        (Some(mode), Accepted::Tcp(s, peer, local)) => {
            match mosn_net::original_dst::original_dst(&s, local, mode) {
                Ok(dst) if !snapshot.listeners[index].original_dst_hand_off => {
                    (index, Accepted::Tcp(s, peer, dst))
                }
                Ok(dst) => {
                    let to = snapshot.listener_for(dst).unwrap_or(index);
                    (to, Accepted::Tcp(s, peer, dst))
                }
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "no original destination; served here");
                    (index, Accepted::Tcp(s, peer, local))
                }
            }
        }
        (_, c) => (index, c),
    }
}

/// The filter chain (child listener) that takes a connection of a listener that has them, else
/// the listener itself.
async fn choose_chain(snapshot: &Snapshot, index: usize, conn: &Accepted) -> usize {
    let children = &snapshot.listeners[index].children;
    if children.is_empty() {
        return index;
    }
    let (seen, dst, src) = match conn {
        Accepted::Tcp(s, peer, local) => {
            let seen = if super::chain::needs_first_bytes(snapshot, children) {
                let deadline = tokio::time::Instant::now() + TLS_HANDSHAKE_TIMEOUT;
                super::chain::first_bytes(s, deadline).await
            } else {
                super::chain::Seen::default()
            };
            (seen, *local, *peer)
        }
        Accepted::Unix(_) => (super::chain::Seen::default(), UNIX_PEER, UNIX_PEER),
    };
    super::chain::select(snapshot, children, dst, src, &seen).unwrap_or(index)
}

/// Terminates TLS where the listener has it (after sniffing the first byte on an `inspector`
/// listener), then serves the connection.
async fn dispatch(w: Rc<Worker>, snapshot: Arc<Snapshot>, index: usize, conn: Accepted) {
    let info = &snapshot.listeners[index];
    let (s, peer, local) = match conn {
        Accepted::Unix(s) => {
            return serve_stream(w, &snapshot, index, s, UNIX_PEER, UNIX_PEER).await
        }
        Accepted::Tcp(s, peer, local) => (s, peer, local),
    };
    let Some(cfg) = &info.tls else {
        return serve_stream(w, &snapshot, index, s, peer, local).await;
    };
    if info.inspector {
        let mut first = [0u8; 1];
        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, s.peek(&mut first)).await {
            // 0x16: a TLS handshake record. Anything else is plaintext.
            Ok(Ok(1)) if first[0] != 0x16 => {
                return serve_stream(w, &snapshot, index, s, peer, local).await
            }
            Ok(Ok(1)) => {}
            _ => return,
        }
    }
    let accept = async {
        let start =
            tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), s).await?;
        // ALPN offered that shares nothing with ours: select none rather than fail (Envoy's way).
        let offered: Option<Vec<&[u8]>> = start.client_hello().alpn().map(|a| a.collect());
        let cfg = match (&info.tls_no_alpn, offered) {
            (Some(no_alpn), Some(offered))
                if !cfg
                    .alpn_protocols
                    .iter()
                    .any(|ours| offered.contains(&ours.as_slice())) =>
            {
                no_alpn.clone()
            }
            _ => cfg.clone(),
        };
        start.into_stream(cfg).await
    };
    let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, accept).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            if let Some(l) = w.stats.listeners.get(index) {
                l.tls_handshake_failed.inc();
            }
            return;
        }
        Err(_) => {
            if let Some(l) = w.stats.listeners.get(index) {
                l.tls_handshake_failed.inc();
            }
            return;
        }
    };
    // mosn-config allows TLS on `proxy` (without fallback) and `tcp_proxy` listeners.
    match &info.kind {
        ListenerKind::Proxy { downstream, .. } => {
            let h2_alpn = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            let io = Stream::TlsServer(Box::new(tls));
            serve_proxy(w, &snapshot, index, io, (peer, local), *downstream, h2_alpn).await
        }
        ListenerKind::Tcp(tp) => {
            let io = Stream::TlsServer(Box::new(tls));
            crate::tcp::serve_tls(w, &snapshot, index, tp, io, (peer, local)).await
        }
        ListenerKind::Udp(_) => {}
    }
}

/// Serves a `proxy` connection by its protocol: the configured one, ALPN's `h2` on TLS, or, for
/// `Auto`, the one its first bytes show.
async fn serve_proxy(
    w: Rc<Worker>,
    snapshot: &Arc<Snapshot>,
    index: usize,
    mut io: Stream,
    addrs: (SocketAddr, SocketAddr),
    downstream: mosn_config::Protocol,
    h2_alpn: bool,
) {
    let info = &snapshot.listeners[index];
    let (protocol, initial) = match downstream {
        _ if h2_alpn => (Protocol::Http2, BytesMut::new()),
        mosn_config::Protocol::Http1 => (Protocol::Http1, BytesMut::new()),
        mosn_config::Protocol::Http2 => (Protocol::Http2, BytesMut::new()),
        mosn_config::Protocol::Bolt => (Protocol::Bolt, BytesMut::new()),
        mosn_config::Protocol::BoltV2 => (Protocol::BoltV2, BytesMut::new()),
        mosn_config::Protocol::Dubbo => (Protocol::Dubbo, BytesMut::new()),
        mosn_config::Protocol::Auto => {
            let (seen, verdict) = sniff(&mut io, info.header_timeout).await;
            match verdict {
                Some(p) => (p, seen),
                None => return refuse_detected(None, addrs.0),
            }
        }
    };
    let a = crate::conn::Accepted {
        worker: w,
        snapshot: snapshot.clone(),
        listener: index,
        io,
        addrs,
        initial,
        late: None,
    };
    serve_protocol(a, protocol).await
}

/// Serves a connection by its protocol's driver.
async fn serve_protocol(a: crate::conn::Accepted, protocol: Protocol) {
    use mosn_protocol::bolt::Bolt;
    let index = a.listener;
    match protocol {
        Protocol::Http1 => crate::http1::serve(a).await,
        Protocol::Http2 => crate::http2::serve(a).await,
        Protocol::Bolt | Protocol::BoltV2 => {
            let goaway = matches!(
                a.snapshot.listeners.get(index).map(|l| &l.kind),
                Some(ListenerKind::Proxy {
                    bolt_goaway: true,
                    ..
                })
            );
            let bolt = Bolt {
                v2: protocol == Protocol::BoltV2,
                goaway,
            };
            crate::xprotocol::serve(a, bolt).await
        }
        Protocol::Dubbo => {
            let dubbo = mosn_protocol::dubbo::Dubbo { goaway: false };
            crate::xprotocol::serve(a, dubbo).await
        }
    }
}

/// Reads a connection's first bytes until their protocol is known (`Auto`), for at most
/// `deadline`. Returns the bytes read and the protocol; `None` for bytes of no known protocol
/// (also when the deadline passes with a partial match, as MOSN falls back then), or when the client
/// closed or sent nothing.
async fn sniff<S: AsyncRead + Unpin>(
    s: &mut S,
    deadline: std::time::Duration,
) -> (BytesMut, Option<Protocol>) {
    let mut buf = BytesMut::with_capacity(crate::http1::pump::READ_CHUNK);
    let until = tokio::time::Instant::now() + deadline;
    loop {
        match tokio::time::timeout_at(until, s.read_buf(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (buf, None),
            Ok(Ok(_)) => match detect(&buf, AUTO) {
                Detected::Protocol(p) => return (buf, Some(p)),
                Detected::Unknown => return (buf, None),
                Detected::NeedMore => {}
            },
            Err(_) => return (buf, None),
        }
    }
}

/// Closes a connection `Auto` detection did not hand to a codec.
fn refuse_detected(verdict: Option<Protocol>, peer: SocketAddr) {
    match verdict {
        Some(p) => {
            tracing::debug!(%peer, protocol = p.mosn_name(), "Auto: protocol not served yet, closing")
        }
        None => tracing::debug!(%peer, "Auto: unknown protocol, closing"),
    }
}

/// Serves a plaintext stream by the listener's network filter.
async fn serve_stream<S>(
    w: Rc<Worker>,
    snapshot: &Arc<Snapshot>,
    index: usize,
    s: S,
    peer: SocketAddr,
    local: SocketAddr,
) where
    S: mosn_net::splice::SpliceIo
        + tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + Unpin
        + Into<Stream>
        + 'static,
{
    let info = &snapshot.listeners[index];
    match &info.kind {
        ListenerKind::Proxy {
            downstream: mosn_config::Protocol::Auto,
            fallback: Some(tp),
            ..
        } => {
            let mut s = s;
            let (seen, verdict) = sniff(&mut s, info.header_timeout).await;
            match verdict {
                Some(p) => {
                    let a = crate::conn::Accepted {
                        worker: w,
                        snapshot: snapshot.clone(),
                        listener: index,
                        io: s.into(),
                        addrs: (peer, local),
                        initial: seen,
                        late: None,
                    };
                    serve_protocol(a, p).await
                }
                // MOSN's fallback_for_unknown_protocol: the bytes go to the tcp_proxy that
                // follows `proxy`, those already read first.
                None if !seen.is_empty() => {
                    tracing::debug!(%peer, "Auto: unknown protocol, falling back to tcp_proxy");
                    crate::tcp::serve(w, snapshot, index, tp, s, (peer, local), &seen).await
                }
                v => refuse_detected(v, peer),
            }
        }
        ListenerKind::Proxy { downstream, .. } => {
            serve_proxy(
                w,
                snapshot,
                index,
                s.into(),
                (peer, local),
                *downstream,
                false,
            )
            .await
        }
        ListenerKind::Tcp(tp) => {
            crate::tcp::serve(w, snapshot, index, tp, s, (peer, local), &[]).await
        }
        // A stream never arrives on a UDP listener (it has no accept loop).
        ListenerKind::Udp(_) => {}
    }
}

/// An accepted connection: TCP with (peer, local) addresses, or a unix stream.
enum Accepted {
    Tcp(tokio::net::TcpStream, SocketAddr, SocketAddr),
    Unix(tokio::net::UnixStream),
}

async fn accept(l: &Accepting) -> std::io::Result<Accepted> {
    match l {
        Accepting::Tcp(l) => {
            let (s, peer) = l.accept().await?;
            let _ = s.set_nodelay(true);
            let local = s.local_addr().unwrap_or(peer);
            Ok(Accepted::Tcp(s, peer, local))
        }
        Accepting::Unix(l) => Ok(Accepted::Unix(l.accept().await?.0)),
    }
}
