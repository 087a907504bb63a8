//! Failure behaviour users rely on: retries exactly `num_retries` times, 504 at the route timeout,
//! 502 on refused connections, 503 with no host or a full circuit breaker, and an upstream dying
//! mid-response closing only its own downstream connection.

mod common;
use common::*;
use mosn_api::ResponseFlag;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An upstream that reads each request body (recorded in order), answers `status` to its first
/// `fail` requests, then 200 "ok".
async fn flaky_with(
    fail: usize,
    status: u16,
) -> (Upstream, Arc<std::sync::Mutex<Vec<bytes::Bytes>>>) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let n = Arc::new(AtomicUsize::new(0));
    let u = upstream(move |r| {
        let i = n.fetch_add(1, Ordering::SeqCst);
        let s2 = s2.clone();
        async move {
            use http_body_util::BodyExt;
            let b = r
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            s2.lock().unwrap().push(b);
            if i < fail {
                text(status, "down")
            } else {
                text(200, "ok")
            }
        }
    })
    .await;
    (u, seen)
}

/// [`flaky_with`] answering 503.
async fn flaky(fail: usize) -> Upstream {
    flaky_with(fail, 503).await.0
}

fn retry_route(num_retries: u32, extra: serde_json::Value) -> serde_json::Value {
    let mut route = json!({"cluster_name": "a", "retry_policy": {"retry_on": true, "num_retries": num_retries}});
    if let (Some(r), Some(e)) = (route.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            r.insert(k.clone(), v.clone());
        }
    }
    json!([{"name": "v", "domains": ["*"], "routers": [{"match": {"prefix": "/"}, "route": route}]}])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_exactly_num_retries_times_on_5xx() {
    let u = flaky(2).await;
    let p = proxy(config(
        retry_route(2, json!({})),
        json!([cluster("a", &[u.addr])]),
    ));
    let r = get(p.addr, "/", &[]).await;
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    assert_eq!(u.requests(), 3);

    let u = flaky(2).await;
    let p = proxy(config(
        retry_route(1, json!({})),
        json!([cluster("a", &[u.addr])]),
    ));
    let r = get(p.addr, "/", &[]).await;
    assert_eq!(r.status, 503, "one retry is not enough for two failures");
    assert_eq!(
        u.requests(),
        2,
        "exactly 1 + num_retries tries, no hidden minimum"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_only_listed_status_codes_and_replay_small_bodies() {
    let u = flaky(1).await;
    let route = retry_route(3, json!({}));
    let mut route = route;
    route[0]["routers"][0]["route"]["retry_policy"]["status_codes"] = json!([500]);
    let p = proxy(config(route, json!([cluster("a", &[u.addr])])));
    let r = get(p.addr, "/", &[]).await;
    assert_eq!(r.status, 503, "503 is not in status_codes");
    assert_eq!(u.requests(), 1);

    // A POST body under the replay limit is sent again on the retry.
    let (u, seen) = flaky_with(1, 502).await;
    let p = proxy(config(
        retry_route(1, json!({})),
        json!([cluster("a", &[u.addr])]),
    ));
    let mut c = Client::connect(p.addr).await;
    let body = http_body_util::Full::new(bytes::Bytes::from_static(b"payload-123"));
    let r = c.send(http::Request::post("/").body(body).unwrap()).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![bytes::Bytes::from_static(b"payload-123"); 2]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_refused_is_502_and_retried_on_another_host() {
    let dead = closed_port();
    let p = proxy(config(
        json!([{"name": "v", "domains": ["*"], "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "a"}}]}]),
        json!([cluster("a", &[dead])]),
    ));
    let r = get(p.addr, "/", &[]).await;
    assert_eq!(r.status, 502);
    assert_eq!(p.flag_count(ResponseFlag::UpstreamConnectionFailure), 1);

    // Round robin over a dead and a live host with one retry: every request succeeds.
    let live = named("live").await;
    let p = proxy(config(
        retry_route(1, json!({})),
        json!([cluster("a", &[dead, live.addr])]),
    ));
    let mut c = Client::connect(p.addr).await;
    for _ in 0..10 {
        assert_eq!(c.get("/").await.text(), "live");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_timeout_is_504_at_the_configured_time() {
    let u = upstream(|_| async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        text(200, "late")
    })
    .await;
    let vhosts = json!([{"name": "v", "domains": ["*"], "routers": [
        {"match": {"prefix": "/"}, "route": {"cluster_name": "a", "timeout": "300ms"}}]}]);
    let p = proxy(config(vhosts, json!([cluster("a", &[u.addr])])));
    let mut c = Client::connect(p.addr).await;
    c.get("/warm").await; // the first request may pay for the connect; time the second
    let t0 = Instant::now();
    let r = c.get("/").await;
    let took = t0.elapsed();
    assert_eq!(r.status, 504);
    assert!(
        took >= Duration::from_millis(300) && took <= Duration::from_millis(350),
        "504 after {took:?}"
    );
    assert!(p.flag_count(ResponseFlag::UpstreamRequestTimeout) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_host_and_circuit_breaker_overflow_are_503() {
    let vhosts = json!([{"name": "v", "domains": ["*"], "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "a"}}]}]);
    let p = proxy(config(vhosts.clone(), json!([cluster("a", &[])])));
    assert_eq!(get(p.addr, "/", &[]).await.status, 503);
    assert_eq!(p.flag_count(ResponseFlag::NoHealthyUpstream), 1);

    let (tx, rx) = tokio::sync::watch::channel(false);
    let u = upstream(move |_| {
        let mut rx = rx.clone();
        async move {
            let _ = rx.wait_for(|v| *v).await;
            text(200, "slow")
        }
    })
    .await;
    let mut cl = cluster("a", &[u.addr]);
    cl["circuit_breakers"] = json!([{"max_requests": 1}]);
    let p = proxy(config(vhosts, json!([cl])));
    let addr = p.addr;
    let first = tokio::spawn(async move { get(addr, "/", &[]).await });
    assert!(eventually(Duration::from_secs(5), || u.requests() == 1).await);
    let r = get(p.addr, "/", &[]).await;
    assert_eq!(r.status, 503, "second request overflows max_requests=1");
    assert_eq!(p.flag_count(ResponseFlag::UpstreamOverflow), 1);
    tx.send(true).unwrap();
    assert_eq!(first.await.unwrap().text(), "slow");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_dying_mid_response_closes_only_that_connection() {
    // A raw upstream: "/die" gets a head promising 1000 bytes, 10 of them, then a close.
    let addr = tcp_server(|mut s| async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let n = match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let head = String::from_utf8_lossy(&buf[..n]).to_string();
            if head.starts_with("GET /die") {
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n0123456789")
                    .await;
                return;
            }
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
        }
    })
    .await;
    let vhosts = json!([{"name": "v", "domains": ["*"], "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "a"}}]}]);
    let p = proxy(config(vhosts, json!([cluster("a", &[addr])])));
    let mut other = Client::connect(p.addr).await;
    assert_eq!(other.get("/a").await.text(), "ok");
    let mut victim = Client::connect(p.addr).await;
    let r = victim.try_send(req("GET", "/die", &[])).await;
    assert!(r.is_err(), "a truncated body must not look complete");
    for _ in 0..5 {
        assert_eq!(
            other.get("/b").await.text(),
            "ok",
            "other connections go on"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_body_past_the_replay_limit_is_not_retried() {
    // The upstream reads the whole body, then answers 503 once and 200 after.
    let u = flaky(1).await;
    let p = proxy(config(
        retry_route(3, json!({})),
        json!([cluster("a", &[u.addr])]),
    ));
    let mut c = Client::connect(p.addr).await;
    // 100 KiB is over the 64 KiB replay limit: the body streams upstream once and cannot be resent.
    let big = http_body_util::Full::new(bytes::Bytes::from(vec![b'x'; 100 * 1024]));
    let r = c.send(http::Request::post("/").body(big).unwrap()).await;
    assert_eq!(r.status, 503, "the upstream's answer, not retried");
    assert_eq!(u.requests(), 1);
    // The same route retries a small body.
    let small = http_body_util::Full::new(bytes::Bytes::from_static(b"tiny"));
    assert_eq!(
        c.send(http::Request::post("/").body(small).unwrap())
            .await
            .status,
        200
    );
    assert_eq!(
        u.requests(),
        2,
        "the flaky upstream now answers 200 at once"
    );
}
