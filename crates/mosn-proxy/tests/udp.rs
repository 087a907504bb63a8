//! `udp_proxy` over real sockets: a DNS-style request/response, sessions keyed by the client's
//! address, and the session idle timeout.

mod common;
use common::*;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UdpSocket;

/// A DNS-like upstream: answers `Q <name>` with `A <name> via <its port>` and records the source
/// address of every query.
async fn resolver() -> (SocketAddr, Arc<Mutex<Vec<SocketAddr>>>) {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = s.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        loop {
            let Ok((n, from)) = s.recv_from(&mut buf).await else {
                return;
            };
            seen2.lock().unwrap().push(from);
            let q = String::from_utf8_lossy(&buf[..n]).to_string();
            let name = q.strip_prefix("Q ").unwrap_or("?");
            let _ = s
                .send_to(format!("A {name} via {}", addr.port()).as_bytes(), from)
                .await;
        }
    });
    (addr, seen)
}

async fn ask(c: &UdpSocket, proxy: SocketAddr, name: &str) -> (String, SocketAddr) {
    c.send_to(format!("Q {name}").as_bytes(), proxy)
        .await
        .unwrap();
    let mut buf = [0u8; 2048];
    let (n, from) = tokio::time::timeout(Duration::from_secs(5), c.recv_from(&mut buf))
        .await
        .expect("no answer")
        .unwrap();
    (String::from_utf8_lossy(&buf[..n]).to_string(), from)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_style_queries_sessions_and_idle_timeout() {
    let (up, seen) = resolver().await;
    let cfg = json!({
        "servers": [{"default_log_path": "stderr", "listeners": [{
            "name": "dns", "address": "127.0.0.1:0", "bind_port": true, "network": "udp",
            "filter_chains": [{"filters": [{"type": "udp_proxy", "config": {"cluster": "resolvers", "idle_timeout": "300ms"}}]}]}]}],
        "cluster_manager": {"clusters": [cluster("resolvers", &[up])]}
    });
    let p = proxy(cfg);
    let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (r, from) = ask(&a, p.addr, "example.com").await;
    assert_eq!(r, format!("A example.com via {}", up.port()));
    assert_eq!(from, p.addr, "the answer comes from the proxy's address");
    assert_eq!(
        ask(&a, p.addr, "mosn.io").await.0,
        format!("A mosn.io via {}", up.port())
    );
    assert_eq!(
        ask(&b, p.addr, "b.example").await.0,
        format!("A b.example via {}", up.port())
    );
    {
        let s = seen.lock().unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0], s[1], "one session per client address");
        assert_ne!(s[0], s[2], "another client, another session");
    }
    // After idle_timeout without datagrams, both sessions end; a new query opens a new one.
    let active = || {
        mosn_proxy::stats::sum(p.server.stats(), |w| {
            w.listeners
                .get(0)
                .map_or(0, |l| l.connection_active.get())
                .max(0) as u64
        })
    };
    assert!(
        eventually(Duration::from_secs(5), || active() == 0).await,
        "sessions never ended"
    );
    assert_eq!(
        ask(&a, p.addr, "again").await.0,
        format!("A again via {}", up.port())
    );
    let s = seen.lock().unwrap();
    assert_ne!(s[3], s[0], "a fresh session after the idle timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_capped_per_listener_and_refusals_counted() {
    let (up, seen) = resolver().await;
    let cfg = json!({
        "servers": [{"default_log_path": "stderr", "listeners": [{
            "name": "dns", "address": "127.0.0.1:0", "bind_port": true, "network": "udp",
            "filter_chains": [{"filters": [{"type": "udp_proxy", "config": {
                "cluster": "resolvers", "idle_timeout": "500ms", "max_sessions": 2}}]}]}]}],
        "cluster_manager": {"clusters": [cluster("resolvers", &[up])]}
    });
    // Two workers: the cap holds over both.
    let p = proxy_workers(cfg, 2);
    let overflow = || {
        mosn_proxy::stats::sum(p.server.stats(), |w| {
            w.listeners
                .get(0)
                .map_or(0, |l| l.udp_session_overflow.get())
        })
    };
    let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    ask(&a, p.addr, "a").await;
    ask(&b, p.addr, "b").await;
    // A third client's datagram is dropped (no answer) and counted.
    c.send_to(b"Q c", p.addr).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || overflow() == 1).await,
        "refusal not counted"
    );
    let mut buf = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_millis(200), c.recv_from(&mut buf))
            .await
            .is_err(),
        "the third client was answered"
    );
    assert_eq!(
        seen.lock().unwrap().len(),
        2,
        "the third datagram reached the upstream"
    );
    // Open sessions keep working; once they idle out, the third client gets a session.
    ask(&a, p.addr, "a2").await;
    let active = || {
        mosn_proxy::stats::sum(p.server.stats(), |w| {
            w.listeners
                .get(0)
                .map_or(0, |l| l.connection_active.get())
                .max(0) as u64
        })
    };
    assert!(eventually(Duration::from_secs(5), || active() == 0).await);
    assert_eq!(
        ask(&c, p.addr, "c").await.0,
        format!("A c via {}", up.port())
    );
    assert_eq!(overflow(), 1);
}
