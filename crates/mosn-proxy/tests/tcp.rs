//! `tcp_proxy` over real sockets: integrity of 1 GiB each way, half-close, idle timeout, connect
//! failover, routes by source and destination, and unix domain sockets.

mod common;
use common::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

fn tcp_config(filter: Value, clusters: Value) -> Value {
    json!({
        "servers": [{"default_log_path": "stderr", "listeners": [{
            "name": "l", "address": "127.0.0.1:0", "bind_port": true,
            "filter_chains": [{"filters": [{"type": "tcp_proxy", "config": filter}]}]}]}],
        "cluster_manager": {"clusters": clusters}
    })
}

fn cl(name: &str, hosts: &[SocketAddr]) -> Value {
    cluster(name, hosts)
}

/// An upstream that writes `name` and closes every connection.
async fn says(name: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let _ = s.write_all(name.as_bytes()).await;
            });
        }
    });
    a
}

async fn read_all(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A 1 MiB pseudo-random block; block `i` of a stream is this block with `i` in its first bytes.
fn block() -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes `mib` MiB then shuts down the write side; returns the sha256 of what was written.
async fn send(w: &mut (impl AsyncWriteExt + Unpin), mib: u64) -> Vec<u8> {
    let mut b = block();
    let mut h = Sha256::new();
    for i in 0..mib {
        b[..8].copy_from_slice(&i.to_le_bytes());
        h.update(&b);
        w.write_all(&b).await.unwrap();
    }
    w.shutdown().await.unwrap();
    h.finalize().to_vec()
}

/// Reads to the end; returns (bytes, sha256).
async fn receive(r: &mut (impl AsyncReadExt + Unpin)) -> (u64, Vec<u8>) {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let k = r.read(&mut buf).await.unwrap();
        if k == 0 {
            return (n, h.finalize().to_vec());
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_each_way_arrives_intact() {
    const MIB: u64 = 1024;
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = l.local_addr().unwrap();
    let upstream = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let (mut r, mut w) = s.into_split();
        let (got, sent) = tokio::join!(receive(&mut r), send(&mut w, MIB));
        (got, sent)
    });
    let p = proxy(tcp_config(json!({"cluster": "c"}), json!([cl("c", &[up])])));
    let s = TcpStream::connect(p.addr).await.unwrap();
    let (mut r, mut w) = s.into_split();
    let (got, sent) = tokio::join!(receive(&mut r), send(&mut w, MIB));
    let (up_got, up_sent) = upstream.await.unwrap();
    assert_eq!(up_got.0, MIB << 20, "bytes the upstream received");
    assert_eq!(up_got.1, sent, "sha256 client -> upstream");
    assert_eq!(got.0, MIB << 20, "bytes the client received");
    assert_eq!(got.1, up_sent, "sha256 upstream -> client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_reaches_the_upstream_and_the_reply_still_arrives() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap(); // ends only when the client's FIN arrives
        s.write_all(
            format!("got {} bytes: {}", got.len(), String::from_utf8_lossy(&got)).as_bytes(),
        )
        .await
        .unwrap();
    });
    let p = proxy(tcp_config(json!({"cluster": "c"}), json!([cl("c", &[up])])));
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"hello").await.unwrap();
    s.shutdown().await.unwrap();
    assert_eq!(read_all(&mut s).await, "got 5 bytes: hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_after_idle_timeout() {
    // An upstream that accepts and stays silent.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = l.local_addr().unwrap();
    tokio::spawn(async move {
        let mut keep = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            keep.push(s);
        }
    });
    // MOSN writes idle_timeout in nanoseconds; a duration string works too.
    for idle in [json!("300ms"), json!(300_000_000u64)] {
        let p = proxy(tcp_config(
            json!({"cluster": "c", "idle_timeout": idle}),
            json!([cl("c", &[up])]),
        ));
        let mut s = TcpStream::connect(p.addr).await.unwrap();
        let t0 = Instant::now();
        let mut b = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b))
            .await
            .expect("not closed")
            .unwrap_or(0);
        assert_eq!(n, 0);
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(280) && took < Duration::from_secs(2),
            "{idle}: closed after {took:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failure_moves_to_another_host_up_to_max_connect_attempts() {
    let live = says("live").await;
    let dead = closed_port();
    let c = json!([{"name": "c", "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN",
        "hosts": [{"address": dead.to_string()}, {"address": live.to_string()}]}]);
    let p = proxy(tcp_config(
        json!({"cluster": "c", "max_connect_attempts": 2}),
        c.clone(),
    ));
    for _ in 0..10 {
        let mut s = TcpStream::connect(p.addr).await.unwrap();
        assert_eq!(read_all(&mut s).await, "live");
    }
    // One attempt: the connections that land on the dead host are closed with nothing.
    let p = proxy(tcp_config(
        json!({"cluster": "c", "max_connect_attempts": 1}),
        c,
    ));
    let mut empty = 0;
    for _ in 0..10 {
        let mut s = TcpStream::connect(p.addr).await.unwrap();
        if read_all(&mut s).await.is_empty() {
            empty += 1;
        }
    }
    assert_eq!(empty, 5, "round robin over one dead and one live host");
    assert_eq!(
        p.flag_count(mosn_api::ResponseFlag::UpstreamConnectionFailure),
        5
    );
}

async fn connect_from(src: &str, to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(format!("{src}:0").parse().unwrap()).unwrap();
    s.connect(to).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_pick_clusters_by_source_and_destination() {
    let (a, b, c, d) = (
        says("a").await,
        says("b").await,
        says("c").await,
        says("d").await,
    );
    let filter = json!({"routes": [
        {"cluster": "a", "source_addrs": [{"address": "127.0.0.2", "length": 32}]},
        {"cluster": "b", "destination_addrs": [{"address": "127.0.0.1", "length": 32}], "destination_port": "1-1023"},
        {"cluster": "d", "SourceAddrs": [{"address": "127.0.0.3", "length": 32}], "DestinationPort": "1024-65535"},
        {"cluster": "c", "source_addrs": [{"address": "127.0.0.0", "length": 8}]}
    ]});
    let p = proxy(tcp_config(
        filter,
        json!([cl("a", &[a]), cl("b", &[b]), cl("c", &[c]), cl("d", &[d])]),
    ));
    assert_eq!(
        read_all(&mut connect_from("127.0.0.2", p.addr).await).await,
        "a"
    );
    assert_eq!(
        read_all(&mut connect_from("127.0.0.3", p.addr).await).await,
        "d",
        "port range and MOSN's SourceAddrs spelling"
    );
    assert_eq!(
        read_all(&mut connect_from("127.0.0.1", p.addr).await).await,
        "c",
        "port 1-1023 never matches an ephemeral listener port"
    );
    let q = proxy(tcp_config(
        json!({"routes": [{"cluster": "a", "source_addrs": [{"address": "10.0.0.0", "length": 8}]}]}),
        json!([cl("a", &[a])]),
    ));
    assert_eq!(
        read_all(&mut TcpStream::connect(q.addr).await.unwrap()).await,
        "",
        "no route: closed"
    );
    assert_eq!(q.flag_count(mosn_api::ResponseFlag::NoRoute), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_listeners_and_hosts() {
    // Removed with its sockets when the test ends.
    let tmp = tempfile::Builder::new()
        .prefix("mosn-unix-")
        .tempdir()
        .unwrap();
    let dir = tmp.path();
    let app = dir.join("app.sock");
    let edge = dir.join("edge.sock");
    // An HTTP listener on a unix socket answering directly, reached through a unix host from a TCP
    // listener; and a tcp_proxy listener on a unix socket in front of the TCP listener.
    let first = json!({
        "servers": [{"default_log_path": "stderr",
            "routers": [
                {"router_config_name": "app", "virtual_hosts": [{"name": "v", "domains": ["*"], "routers": [
                    {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": "via unix"}}]}]},
                {"router_config_name": "front", "virtual_hosts": [{"name": "v", "domains": ["*"], "routers": [
                    {"match": {"prefix": "/"}, "route": {"cluster_name": "app"}}]}]}],
            "listeners": [
                {"name": "front", "address": "127.0.0.1:0", "bind_port": true, "filter_chains": [{"filters": [
                    {"type": "proxy", "config": {"downstream_protocol": "Http1", "router_config_name": "front"}}]}]},
                {"name": "app", "address": app.to_str().unwrap(), "network": "unix", "bind_port": true, "filter_chains": [{"filters": [
                    {"type": "proxy", "config": {"downstream_protocol": "Http1", "router_config_name": "app"}}]}]}]}],
        "cluster_manager": {"clusters": [{"name": "app", "type": "SIMPLE",
            "hosts": [{"address": format!("unix:{}", app.display())}]}]}
    });
    let p1 = proxy(first);
    assert_eq!(get(p1.addr, "/", &[]).await.text(), "via unix");
    let second = json!({
        "servers": [{"default_log_path": "stderr", "listeners": [{"name": "edge", "address": edge.to_str().unwrap(), "network": "unix",
            "bind_port": true, "filter_chains": [{"filters": [{"type": "tcp_proxy", "config": {"cluster": "front"}}]}]}]}],
        "cluster_manager": {"clusters": [{"name": "front", "type": "SIMPLE", "hosts": [{"address": p1.addr.to_string()}]}]}
    });
    let loaded = mosn_config::from_value(&second).unwrap();
    let _p2 = mosn_proxy::Server::start(&loaded.config, Some(1)).unwrap();
    let mut s = tokio::net::UnixStream::connect(&edge).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.starts_with("HTTP/1.1 200") && out.ends_with("via unix"),
        "{out}"
    );
}
