//! HTTP/1.1 behaviour through the proxy: pooled upstream connections, streaming both ways,
//! hop-by-hop headers, X-Forwarded-For, 100-continue, HEAD/204/304, pipelining, 431 and 400.

mod common;
use bytes::Bytes;
use common::*;
use http_body_util::BodyExt;
use serde_json::json;
use std::time::Duration;

fn all_to(addr: std::net::SocketAddr) -> serde_json::Value {
    config(
        json!([{"name": "v", "domains": ["*"], "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "a"}}]}]),
        json!([cluster("a", &[addr])]),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_load_reuses_upstream_connections() {
    let u = named("ok").await;
    let p = proxy(all_to(u.addr));
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(Client::connect(p.addr).await);
    }
    for _ in 0..100 {
        for c in clients.iter_mut() {
            assert_eq!(c.get("/").await.text(), "ok");
        }
    }
    assert_eq!(u.requests(), 400);
    assert!(
        u.connections() <= 4,
        "{} upstream connections for 400 requests",
        u.connections()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_chunk_of_a_slow_response_arrives_before_the_upstream_finishes() {
    let (go_tx, go_rx) = tokio::sync::watch::channel(false);
    let u = upstream(move |_| {
        let mut go = go_rx.clone();
        async move {
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            tokio::spawn(async move {
                tx.send(Bytes::from_static(b"first ")).await.ok();
                // The second chunk only leaves once the client has seen the first.
                let _ = go.wait_for(|v| *v).await;
                tx.send(Bytes::from_static(b"second")).await.ok();
            });
            http::Response::new(UBody::Chan(ChanBody(rx)))
        }
    })
    .await;
    let p = proxy(all_to(u.addr));
    let s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = sender
        .send_request(req("GET", "/", &[("host", "x")]))
        .await
        .unwrap();
    assert_eq!(
        resp.headers()
            .get("transfer-encoding")
            .map(|v| v.to_str().unwrap()),
        Some("chunked")
    );
    let mut body = resp.into_body();
    let first = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect(
            "first chunk did not arrive while the upstream was still sending: the proxy buffers",
        )
        .unwrap()
        .unwrap();
    assert_eq!(first.into_data().unwrap(), "first ");
    go_tx.send(true).unwrap();
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(rest, "second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_removed_and_xff_appended() {
    let u = upstream(|r| async move {
        let h = |n: &str| {
            r.headers()
                .get(n)
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default()
        };
        let mut resp = text(
            200,
            format!(
                "xff={} conn={} x-hop={} keep={}",
                h("x-forwarded-for"),
                h("connection"),
                h("x-hop"),
                h("x-keep")
            ),
        );
        resp.headers_mut().insert("x-up-hop", "1".parse().unwrap());
        resp.headers_mut()
            .insert("connection", "x-up-hop".parse().unwrap());
        resp
    })
    .await;
    let p = proxy(all_to(u.addr));
    let r = get(
        p.addr,
        "/",
        &[
            ("connection", "x-hop"),
            ("x-hop", "1"),
            ("x-keep", "1"),
            ("x-forwarded-for", "10.1.1.1"),
        ],
    )
    .await;
    assert_eq!(r.text(), "xff=10.1.1.1, 127.0.0.1 conn= x-hop= keep=1");
    assert_eq!(r.header("x-up-hop"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_204_304_have_no_body_and_keep_the_connection() {
    let u = upstream(|r| async move {
        match r.uri().path() {
            "/204" => text(204, ""),
            "/304" => text(304, ""),
            _ => text(200, "twelve bytes"),
        }
    })
    .await;
    let p = proxy(all_to(u.addr));
    // Raw bytes, so a stray body would show up in the stream.
    let (out, _) = raw(
        p.addr,
        b"HEAD / HTTP/1.1\r\nhost: x\r\n\r\nGET /204 HTTP/1.1\r\nhost: x\r\n\r\nGET /304 HTTP/1.1\r\nhost: x\r\n\r\nGET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    let statuses: Vec<&str> = out.lines().filter(|l| l.starts_with("HTTP/1.1")).collect();
    assert_eq!(
        statuses,
        [
            "HTTP/1.1 200 OK",
            "HTTP/1.1 204 No Content",
            "HTTP/1.1 304 Not Modified",
            "HTTP/1.1 200 OK"
        ],
        "{out}"
    );
    assert!(
        out.to_ascii_lowercase().contains("content-length: 12"),
        "HEAD keeps the length: {out}"
    );
    assert_eq!(
        out.matches("twelve bytes").count(),
        1,
        "only the GET has a body: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let u = upstream(|r| async move {
        // Later requests answer faster, so out-of-order handling would show.
        let n: u64 = r.uri().path().trim_start_matches('/').parse().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(50 - n * 10)).await;
        text(200, format!("r{n};"))
    })
    .await;
    let p = proxy(all_to(u.addr));
    let mut reqs = Vec::new();
    for i in 0..5 {
        reqs.extend_from_slice(format!("GET /{i} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes());
    }
    reqs.extend_from_slice(b"GET /0 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    let (out, closed) = raw(p.addr, &reqs, Duration::from_secs(5)).await;
    assert!(closed);
    let bodies: String = out
        .split("\r\n\r\n")
        .skip(1)
        .map(|s| s.split("HTTP/1.1").next().unwrap_or(""))
        .collect();
    assert_eq!(bodies, "r0;r1;r2;r3;r4;r0;");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_gets_continue_before_the_body() {
    let u = upstream(|r| async move {
        let b = r.into_body().collect().await.unwrap().to_bytes();
        text(200, format!("got {}", b.len()))
    })
    .await;
    let p = proxy(all_to(u.addr));
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100 Continue"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    s.write_all(b"hello").await.unwrap();
    let mut out = Vec::new();
    while !String::from_utf8_lossy(&out).contains("got 5") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&out));
        out.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_requests_are_rejected_while_others_are_served() {
    let u = named("ok").await;
    let p = proxy(all_to(u.addr));
    let mut good = Client::connect(p.addr).await;
    assert_eq!(good.get("/").await.text(), "ok");

    let (out, closed) = raw(
        p.addr,
        b"GARBAGE\x01\x02 / HTTP/1.1\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(closed, "a malformed request closes the connection");

    let big = format!(
        "GET / HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let (out, closed) = raw(p.addr, big.as_bytes(), Duration::from_secs(5)).await;
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");
    assert!(closed);

    // Content-Length and Transfer-Encoding together (RFC 9112 §6.1, §11.2): refused with 400 and
    // never forwarded, so neither reading of the body can smuggle a request.
    let (out, closed) = raw(
        p.addr,
        b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nhost: x\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 400"), "CL+TE: {out}");
    assert_eq!(
        out.matches("HTTP/1.1 ").count(),
        1,
        "CL+TE: one response only: {out}"
    );
    assert!(closed);

    assert_eq!(
        good.get("/").await.text(),
        "ok",
        "the well-behaved client is still served"
    );
    assert_eq!(
        u.requests(),
        2,
        "only the two well-formed requests reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_the_listener_port() {
    let u = named("ok").await;
    let p = proxy_workers(all_to(u.addr), 2);
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let addr = p.addr;
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(addr).await;
            for _ in 0..5 {
                assert_eq!(c.get("/").await.text(), "ok");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let per_worker: Vec<u64> = p
        .server
        .stats()
        .iter()
        .map(|s| s.requests_total())
        .collect();
    assert_eq!(per_worker.iter().sum::<u64>(), 160);
    // 32 connections spread by SO_REUSEPORT: all on one worker has probability 2^-31.
    assert!(per_worker.iter().all(|n| *n > 0), "{per_worker:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_closes_idle_connections_and_half_sent_heads_but_not_slow_upstreams() {
    let u = upstream(|_| async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        text(200, "slow but fine")
    })
    .await;
    let mut cfg = all_to(u.addr);
    cfg["servers"][0]["listeners"][0]["connection_idle_timeout"] = json!("200ms");
    let p = proxy(cfg);
    // Raw bytes on a new connection: (what came back, closed within 2 s).
    let closes = |bytes: &'static [u8]| async move {
        let t0 = std::time::Instant::now();
        let (out, closed) = raw(p.addr, bytes, Duration::from_secs(3)).await;
        (out, closed && t0.elapsed() < Duration::from_secs(2))
    };
    // A keep-alive connection is served (the 700 ms wait on the upstream is not idleness), then
    // closed once idle.
    let (out, closed) = closes(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert!(out.ends_with("slow but fine"), "{out}");
    assert!(closed, "idle keep-alive connection was not closed");
    // A client that sends half a request head and stalls is closed, not held forever.
    let (out, closed) = closes(b"GET / HTTP/1.1\r\nhost: x\r\nx-half").await;
    assert!(closed, "half-sent head kept open: {out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_follow_max_request_per_conn_and_idle_timeout() {
    let u = named("ok").await;
    let mut cfg = all_to(u.addr);
    cfg["cluster_manager"]["clusters"][0]["max_request_per_conn"] = json!(2);
    let p = proxy(cfg);
    let mut c = Client::connect(p.addr).await;
    for _ in 0..6 {
        assert_eq!(c.get("/").await.text(), "ok");
    }
    assert!(
        eventually(Duration::from_secs(5), || u.connections() == 3).await,
        "{} upstream connections for 6 requests at 2 per connection",
        u.connections()
    );

    let u = named("ok").await;
    let mut cfg = all_to(u.addr);
    cfg["cluster_manager"]["clusters"][0]["idle_timeout"] = json!("100ms");
    let p = proxy(cfg);
    let mut c = Client::connect(p.addr).await;
    c.get("/").await;
    c.get("/").await;
    assert_eq!(u.connections(), 1, "reused while fresh");
    // The feature is about time passing: wait past the idle timeout, then the pooled connection
    // must not be reused.
    tokio::time::sleep(Duration::from_millis(250)).await;
    c.get("/").await;
    assert_eq!(
        u.connections(),
        2,
        "an idle pooled connection is not reused after idle_timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_never_take_the_proxy_down() {
    let u = named("ok").await;
    let p = proxy(all_to(u.addr));
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let valid = b"GET /a?b=c HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc".to_vec();
    for i in 0..200 {
        let bytes: Vec<u8> = if i % 2 == 0 {
            (0..(next() % 600) as usize).map(|_| next() as u8).collect()
        } else {
            // A valid request with a few bytes corrupted.
            let mut v = valid.clone();
            for _ in 0..3 {
                let at = (next() as usize) % v.len();
                v[at] = next() as u8;
            }
            v
        };
        let (out, _) = raw(p.addr, &bytes, Duration::from_millis(300)).await;
        assert!(
            out.is_empty() || out.starts_with("HTTP/1.1 "),
            "not HTTP: {out:?}"
        );
    }
    let mut c = Client::connect(p.addr).await;
    assert_eq!(
        c.get("/").await.text(),
        "ok",
        "still serving after 200 garbage connections"
    );
}
