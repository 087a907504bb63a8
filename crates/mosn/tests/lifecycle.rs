//! Connection lifecycle on the real binary: SIGTERM under a keep-alive load loses no request, and a
//! client whose request head trickles in gets 408 while other clients are served normally.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

fn config(upstream: SocketAddr, listener_extra: serde_json::Value) -> serde_json::Value {
    let mut l = json!({"name": "l", "address": "127.0.0.1:0", "bind_port": true,
        "filter_chains": [{"filters": [{"type": "proxy", "config": {
            "downstream_protocol": "Http1", "upstream_protocol": "Http1", "router_config_name": "r"}}]}]});
    if let (Some(l), Some(extra)) = (l.as_object_mut(), listener_extra.as_object()) {
        l.extend(extra.clone());
    }
    json!({
        "servers": [{"default_log_path": "stderr", "graceful_timeout": "10s",
            "routers": [{"router_config_name": "r", "virtual_hosts": [{"name": "all", "domains": ["*"],
                "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "svc"}}]}]}],
            "listeners": [l]}],
        "cluster_manager": {"clusters": [{"name": "svc", "lb_type": "LB_ROUNDROBIN",
            "hosts": [{"address": upstream.to_string()}]}]}
    })
}

/// Starts the binary on a config with a text upstream and `listener_extra`; returns the config file
/// (kept until dropped), the process and listener `l`'s address.
fn start(name: &str, listener_extra: serde_json::Value) -> (TempFile, Proc, SocketAddr) {
    let cfg = config(text_upstream("hello"), listener_extra);
    let path = write_temp(name, &cfg.to_string());
    let p = spawn(&path);
    let addr = p.listener("l");
    (path, p, addr)
}

/// Reads one response (Content-Length framed) from `s`: `Some((status, connection: close))`, or
/// `None` when the connection ended before a whole response arrived.
fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(u16, bool)> {
    let mut tmp = [0u8; 4096];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            if buf.len() >= i + 4 + len {
                let status = head.split_whitespace().nth(1)?.parse().ok()?;
                let close = head
                    .lines()
                    .any(|l| l.starts_with("connection:") && l.contains("close"));
                buf.drain(..i + 4 + len);
                return Some((status, close));
            }
        }
        match s.read(&mut tmp) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
}

#[test]
fn sigterm_under_keep_alive_load_fails_no_request() {
    let (_cfg, mut p, addr) = start("drain_load.json", json!({}));
    let done = Arc::new(AtomicUsize::new(0));
    let after_term = Arc::new(AtomicUsize::new(0));
    let termed = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..8 {
        let (done, after_term, termed) = (done.clone(), after_term.clone(), termed.clone());
        clients.push(std::thread::spawn(move || -> Result<bool, String> {
            // One keep-alive connection per client for the whole test: the load never opens a
            // connection the draining proxy has not accepted yet.
            let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(Duration::from_secs(10))).ok();
            let mut buf = Vec::new();
            let until = Instant::now() + Duration::from_secs(20);
            let mut n = 0;
            while Instant::now() < until {
                let was_termed = termed.load(Ordering::SeqCst);
                let req = format!("GET /c{c}/{n} HTTP/1.1\r\nHost: x\r\n\r\n");
                if s.write_all(req.as_bytes()).is_err() {
                    return Err(format!("client {c}: request {n} could not be written"));
                }
                match read_response(&mut s, &mut buf) {
                    Some((200, close)) => {
                        done.fetch_add(1, Ordering::SeqCst);
                        if was_termed {
                            after_term.fetch_add(1, Ordering::SeqCst);
                        }
                        if close {
                            return Ok(true);
                        }
                    }
                    Some((status, _)) => return Err(format!("client {c}: status {status}")),
                    None => return Err(format!("client {c}: request {n} got no response")),
                }
                n += 1;
            }
            Ok(false)
        }));
    }
    assert!(
        eventually(Duration::from_secs(10), || done.load(Ordering::SeqCst)
            >= 2000),
        "the load did not start"
    );
    termed.store(true, Ordering::SeqCst);
    p.signal("-TERM");
    let results: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "failed requests during the drain: {failed:?}"
    );
    assert!(
        results.iter().all(|r| matches!(r, Ok(true))),
        "every connection ended with `Connection: close` on a response: {results:?}"
    );
    assert!(
        after_term.load(Ordering::SeqCst) >= 8,
        "requests sent after SIGTERM were served"
    );
    assert_eq!(wait_timeout(&mut p.child, Duration::from_secs(10)), Some(0));
}

#[test]
fn sigterm_keeps_an_idle_connection_open_for_a_request_on_its_way() {
    let (_cfg, mut p, addr) = start("drain_idle.json", json!({}));
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut buf = Vec::new();
    s.write_all(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s, &mut buf), Some((200, false)));
    // The connection is idle when the drain starts; a request sent right after is still served.
    let t = Instant::now();
    p.signal("-TERM");
    // The drain is in effect once the listener no longer accepts.
    assert!(eventually(Duration::from_secs(5), || TcpStream::connect(
        addr
    )
    .is_err()));
    s.write_all(b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(
        read_response(&mut s, &mut buf),
        Some((200, true)),
        "served, with Connection: close"
    );
    assert_eq!(wait_timeout(&mut p.child, Duration::from_secs(10)), Some(0));
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

#[test]
fn slow_request_head_gets_408_while_others_are_served() {
    let (_cfg, _p, addr) = start("slow_header.json", json!({"client_header_timeout": "1s"}));
    let slow = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        let t = Instant::now();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
        // One header byte every 100 ms: never idle, never complete.
        let mut i = 0;
        while s.write_all(b"x").is_ok() && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(100));
            i += 1;
            if i == 1 {
                s.set_read_timeout(Some(Duration::from_millis(1))).ok();
            }
            let mut b = [0u8; 256];
            if let Ok(n) = s.read(&mut b) {
                return (String::from_utf8_lossy(&b[..n]).into_owned(), t.elapsed());
            }
        }
        (String::new(), t.elapsed())
    });
    // Meanwhile another client is served normally, on one keep-alive connection.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut buf = Vec::new();
    let t = Instant::now();
    let mut served = 0;
    while t.elapsed() < Duration::from_millis(800) {
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(read_response(&mut s, &mut buf), Some((200, false)));
        served += 1;
    }
    assert!(served >= 10, "only {served} requests served");
    let (out, took) = slow.join().unwrap();
    assert!(out.starts_with("HTTP/1.1 408"), "{out:?} after {took:?}");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "408 after {took:?}, want about 1 s"
    );
}
