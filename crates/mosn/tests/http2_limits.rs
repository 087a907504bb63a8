//! HTTP/2 limits on the real binary, where the proxy's own memory can be read from /proc:
//! floods made of hand-built frames (Rapid Reset, CONTINUATION, SETTINGS and PING floods, by
//! `tests/peers/h2_flood.py` in the venv that scripts/install-test-deps.sh makes) while a normal
//! client keeps being served; 256 MiB bodies each way within a bounded resident size; GOAWAY on a
//! graceful stop with the stream in flight finished.

mod common;

use common::*;
use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn config(downstream: &str, up: SocketAddr) -> serde_json::Value {
    json!({
        "servers": [{"default_log_path": "stderr", "processor": 1,
            "routers": [{"router_config_name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"], "routers": [
                {"match": {"prefix": "/local"}, "direct_response": {"status": 201, "body": "ok"}},
                {"match": {"prefix": "/"}, "route": {"cluster_name": "up", "timeout": "120s"}}]}]}],
            "listeners": [{"name": "h2", "address": "127.0.0.1:0", "bind_port": true,
                "filter_chains": [{"filters": [{"type": "proxy", "config": {
                    "downstream_protocol": downstream, "upstream_protocol": "Http1", "router_config_name": "r"}}]}]}]}],
        "cluster_manager": {"clusters": [{"name": "up", "type": "SIMPLE", "hosts": [{"address": up.to_string()}]}]}
    })
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// An HTTP/2 connection with the `h2` crate: the request handle and the connection's task.
async fn h2_connect(
    addr: SocketAddr,
) -> Result<
    (
        h2::client::SendRequest<bytes::Bytes>,
        tokio::task::JoinHandle<Result<(), h2::Error>>,
    ),
    String,
> {
    let s = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let (send, conn) = h2::client::handshake(s).await.map_err(|e| e.to_string())?;
    Ok((send, tokio::spawn(conn)))
}

/// One HTTP/2 request with the `h2` crate on a new connection; the status, or an error.
async fn h2_status(addr: SocketAddr, path: &str) -> Result<u16, String> {
    let (mut send, _conn) = h2_connect(addr).await?;
    let req = http::Request::builder()
        .uri(format!("http://{addr}{path}"))
        .body(())
        .unwrap();
    let (resp, _) = send.send_request(req, true).map_err(|e| e.to_string())?;
    let resp = resp.await.map_err(|e| e.to_string())?;
    Ok(resp.status().as_u16())
}

#[test]
fn floods_cost_bounded_memory_and_other_clients_are_still_served() {
    let up = text_upstream("up");
    let p = write_temp("h2-floods.json", &config("Http2", up).to_string());
    let m = spawn(&p);
    let addr = m.listener("h2");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/h2_flood.py");
    for kind in ["rapid_reset", "continuation", "settings", "ping"] {
        let cpu0 = cpu_seconds(m.child.id());
        let flooders: Vec<_> = (0..2)
            .map(|_| {
                Command::new(venv_python())
                    .arg(&script)
                    .args([kind, "127.0.0.1", &addr.port().to_string(), "3"])
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        // A normal client, every 100 ms while the flood runs: each answer within 2 s.
        let start = Instant::now();
        let mut served = 0;
        while start.elapsed() < Duration::from_millis(2500) {
            let t = Instant::now();
            let r = rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(2), h2_status(addr, "/local")).await
            });
            assert_eq!(
                r,
                Ok(Ok(201)),
                "{kind}: a normal client was not served within 2 s"
            );
            served += 1;
            std::thread::sleep(Duration::from_millis(100).saturating_sub(t.elapsed()));
        }
        let mut report = Vec::new();
        for f in flooders {
            let out = f.wait_with_output().unwrap();
            report.push(String::from_utf8_lossy(&out.stdout).trim().to_string());
        }
        let cpu = cpu_seconds(m.child.id()) - cpu0;
        eprintln!(
            "{kind}: {report:?}; {served} normal requests served; proxy CPU {cpu:.2} s; peak RSS {} KiB",
            m.rss_peak_kib()
        );
        assert!(
            report.iter().all(|r| r.starts_with("frames=")),
            "{kind}: the flood did not run: {report:?}"
        );
    }
    let peak = m.rss_peak_kib();
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB under floods");
}

/// 256 MiB up (chunked to the HTTP/1 upstream, which counts it) and 256 MiB down (the upstream's
/// Content-Length body), through one HTTP/2 connection, with the proxy's peak RSS under 64 MiB.
#[test]
fn a_256_mib_body_each_way_keeps_the_proxy_small() {
    const TOTAL: u64 = 256 << 20;
    let up = TcpListener::bind("127.0.0.1:0").unwrap();
    let up_addr = up.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in up.incoming() {
            let Ok(s) = s else { return };
            std::thread::spawn(move || serve_bulk(s));
        }
    });
    let p = write_temp("h2-bulk.json", &config("Http2", up_addr).to_string());
    let m = spawn(&p);
    let addr = m.listener("h2");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (mut send, _conn) = h2_connect(addr).await.unwrap();
        // Up.
        let req = http::Request::post(format!("http://{addr}/upload"))
            .body(())
            .unwrap();
        let (resp, mut body) = send.send_request(req, false).unwrap();
        let chunk = bytes::Bytes::from(vec![5u8; 64 * 1024]);
        let mut sent = 0u64;
        while sent < TOTAL {
            body.reserve_capacity(chunk.len());
            let cap = std::future::poll_fn(|cx| body.poll_capacity(cx))
                .await
                .unwrap()
                .unwrap();
            let n = cap.min(chunk.len()).min((TOTAL - sent) as usize);
            body.send_data(chunk.slice(..n), false).unwrap();
            sent += n as u64;
        }
        body.send_data(bytes::Bytes::new(), true).unwrap();
        let resp = resp.await.unwrap();
        assert_eq!(resp.status(), 200);
        let mut b = resp.into_body();
        let mut text = Vec::new();
        while let Some(d) = b.data().await {
            text.extend_from_slice(&d.unwrap());
        }
        assert_eq!(String::from_utf8_lossy(&text), format!("got {TOTAL}"));
        // Down.
        let req = http::Request::get(format!("http://{addr}/download"))
            .body(())
            .unwrap();
        let (resp, _) = send.send_request(req, true).unwrap();
        let resp = resp.await.unwrap();
        assert_eq!(resp.status(), 200);
        let mut b = resp.into_body();
        let mut got = 0u64;
        while let Some(d) = b.data().await {
            let d = d.unwrap();
            got += d.len() as u64;
            let _ = b.flow_control().release_capacity(d.len());
        }
        assert_eq!(got, TOTAL);
    });
    let peak = m.rss_peak_kib();
    eprintln!("peak RSS after 256 MiB each way: {peak} KiB");
    assert!(peak < 64 * 1024, "peak RSS {peak} KiB");
}

/// An HTTP/1 upstream for the bulk test: `/upload` reads a chunked body and answers its size;
/// `/download` sends 256 MiB with a Content-Length.
fn serve_bulk(s: TcpStream) {
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut chunked = false;
        loop {
            let mut h = String::new();
            r.read_line(&mut h).unwrap();
            if h == "\r\n" {
                break;
            }
            if h.to_ascii_lowercase()
                .starts_with("transfer-encoding: chunked")
            {
                chunked = true;
            }
        }
        if path == "/upload" {
            assert!(chunked, "a body of unknown length goes up chunked");
            let mut total = 0u64;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let mut size = String::new();
                r.read_line(&mut size).unwrap();
                let n = u64::from_str_radix(size.trim(), 16).unwrap();
                if n == 0 {
                    let mut end = String::new();
                    r.read_line(&mut end).unwrap();
                    break;
                }
                let mut left = n;
                while left > 0 {
                    let k = left.min(buf.len() as u64) as usize;
                    r.read_exact(&mut buf[..k]).unwrap();
                    left -= k as u64;
                }
                total += n;
                let mut crlf = [0u8; 2];
                r.read_exact(&mut crlf).unwrap();
            }
            let body = format!("got {total}");
            write!(
                w,
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
        } else {
            let total: u64 = 256 << 20;
            write!(w, "HTTP/1.1 200 OK\r\ncontent-length: {total}\r\n\r\n").unwrap();
            let chunk = vec![9u8; 256 * 1024];
            let mut sent = 0;
            while sent < total {
                if w.write_all(&chunk).is_err() {
                    return;
                }
                sent += chunk.len() as u64;
            }
        }
    }
}

/// SIGTERM: the client gets GOAWAY, its stream in flight finishes with 200, and a new stream on
/// the same connection is refused.
#[test]
fn goaway_on_graceful_stop_lets_streams_in_flight_finish() {
    let up = TcpListener::bind("127.0.0.1:0").unwrap();
    let up_addr = up.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in up.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                // Slow: the stop arrives while this request is in flight.
                std::thread::sleep(Duration::from_millis(1500));
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nslow");
            });
        }
    });
    let p = write_temp("h2-goaway.json", &config("Http2", up_addr).to_string());
    let m = spawn(&p);
    let addr = m.listener("h2");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (mut send, conn) = h2_connect(addr).await.unwrap();
        let req = http::Request::get(format!("http://{addr}/slow"))
            .body(())
            .unwrap();
        let (slow, _) = send.send_request(req, true).unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        m.signal("-TERM");
        // The GOAWAY arrives: new streams are refused while the slow one goes on.
        let mut refused = false;
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let req = http::Request::get(format!("http://{addr}/local"))
                .body(())
                .unwrap();
            let r = match send.clone().ready().await {
                Ok(mut s) => match s.send_request(req, true) {
                    Ok((f, _)) => f.await.map(|r| r.status().as_u16()),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            if r.is_err() {
                refused = true;
                break;
            }
        }
        assert!(refused, "new streams were still accepted after SIGTERM");
        let slow = slow.await.expect("the stream in flight was cut");
        assert_eq!(slow.status(), 200);
        let mut b = slow.into_body();
        let d = b.data().await.unwrap().unwrap();
        assert_eq!(&d[..], b"slow");
        drop(send);
        let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
    });
}
