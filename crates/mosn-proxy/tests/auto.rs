//! `downstream_protocol: "Auto"`: the protocol is detected from each connection's first bytes, with
//! no fixed wait. HTTP/1 clients are served; with `fallback_for_unknown_protocol`, anything else
//! goes to the `tcp_proxy` that follows `proxy` (its first bytes included); without it, such a
//! connection is closed. HTTP/1 and HTTP/2 clients are served side by side on one port.

mod common;
use common::*;
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A TCP server that echoes every byte back.
async fn echo() -> SocketAddr {
    tcp_server(|mut s| async move {
        let (mut r, mut w) = s.split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
    })
    .await
}

fn auto_config(http: SocketAddr, tcp: SocketAddr, fallback: bool) -> serde_json::Value {
    let mut filters = vec![json!({"type": "proxy", "config": {
        "downstream_protocol": "Auto", "upstream_protocol": "Http1", "router_config_name": "r",
        "fallback_for_unknown_protocol": fallback}})];
    if fallback {
        filters.push(json!({"type": "tcp_proxy", "config": {"cluster": "tcp"}}));
    }
    json!({
        "servers": [{"default_log_path": "stderr",
            "routers": [{"router_config_name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"],
                "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "http"}}]}]}],
            "listeners": [{"name": "l", "address": "127.0.0.1:0", "bind_port": true,
                "filter_chains": [{"filters": filters}]}]}],
        "cluster_manager": {"clusters": [cluster("http", &[http]), cluster("tcp", &[tcp])]}
    })
}

/// Reads until the peer closes or 5 s pass; returns what came and whether it closed.
async fn read_all(s: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (out, false),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_is_served_and_unknown_traffic_falls_back_to_tcp_proxy() {
    let up = named("http upstream").await;
    let p = proxy(auto_config(up.addr, echo().await, true));
    // HTTP/1.1 with keep-alive, through the route.
    let mut c = Client::connect(p.addr).await;
    assert_eq!(c.get("/").await.text(), "http upstream");
    assert_eq!(c.get("/again").await.text(), "http upstream");
    // A method split across two writes: detected when the space arrives, nothing lost.
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GE").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.write_all(b"T / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (out, closed) = read_all(&mut s).await;
    let out = String::from_utf8_lossy(&out);
    assert!(
        out.starts_with("HTTP/1.1 200") && out.ends_with("http upstream"),
        "{out}"
    );
    assert!(closed);
    // Not HTTP: the tcp_proxy echo server gets every byte, the first ones included.
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"\x00\x07binary rpc frame").await.unwrap();
    let mut got = vec![0u8; 18];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut got))
        .await
        .expect("no echo through the fallback")
        .unwrap();
    assert_eq!(got, b"\x00\x07binary rpc frame");
    s.write_all(b" more").await.unwrap();
    let mut more = vec![0u8; 5];
    s.read_exact(&mut more).await.unwrap();
    assert_eq!(more, b" more");
    assert_eq!(
        up.requests(),
        3,
        "only the HTTP requests reached the HTTP upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_fallback_unknown_connections_are_closed() {
    let up = named("http upstream").await;
    let p = proxy(auto_config(up.addr, echo().await, false));
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"\x00\x07binary rpc frame").await.unwrap();
    let (out, closed) = read_all(&mut s).await;
    assert!(closed, "the connection stayed open");
    assert!(out.is_empty(), "got {out:?}");
    assert_eq!(up.requests(), 0);
    // HTTP/1 still works on the same listener.
    assert_eq!(get(p.addr, "/", &[]).await.text(), "http upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_and_http2_clients_mixed_on_one_port_with_fallback() {
    let up = named("http upstream").await;
    let p = proxy(auto_config(up.addr, echo().await, true));
    let mut tasks = Vec::new();
    for i in 0..20 {
        let addr = p.addr;
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                let (status, body) = h2_get(addr, "/h2").await;
                assert_eq!((status, body.as_slice()), (200, &b"http upstream"[..]));
            } else {
                assert_eq!(get(addr, "/h1", &[]).await.text(), "http upstream");
            }
        }));
    }
    // Meanwhile, unknown bytes still fall back to tcp_proxy.
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"\x00\x07rpc").await.unwrap();
    let mut got = vec![0u8; 5];
    s.read_exact(&mut got).await.unwrap();
    assert_eq!(got, b"\x00\x07rpc");
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(up.requests(), 20);
}
