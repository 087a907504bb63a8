//! SOFA Bolt through the XProtocol driver, with a Bolt server and client written in the test on
//! the project's own codec (real SOFARPC peers are in the interop suite): calls in sequence and
//! 500 at once on one connection answered out of order, routing by `service`, heartbeats
//! answered by the proxy, each failure answered with the Bolt status a SOFARPC client expects
//! (no route, connect failure, timeout, upstream gone mid-call), oneways, Bolt v2 with CRC, and
//! Bolt beside HTTP/1 on an `Auto` port, Bolt GoAway on graceful shutdown, and the `transcoder`
//! filter (HTTP/1 and HTTP/2 requests as Bolt calls, HTTP/1 ↔ HTTP/2 per request).

mod common;
use common::*;
use mosn_api::Headers;
use mosn_protocol::bolt::{status, Frame, Kind, Version};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use std::time::Duration;
use tokio::io::AsyncReadExt;

/// A Bolt server: answers each request with content `<name>:<content>` after the request's
/// `x-delay-ms` header (so answers come out of order), echoes `service`, answers heartbeats,
/// counts oneways, and never answers requests whose content is `silence`.
async fn bolt_server(name: &'static str) -> RpcServer {
    rpc_server::<mosn_protocol::bolt::Bolt, _>(move |f: &Frame| {
        if &f.content[..] == b"silence" {
            return None;
        }
        let mut resp = f.hijack(status::SUCCESS);
        resp.class = bytes::Bytes::from_static(b"com.alipay.sofa.rpc.core.response.SofaResponse");
        if let Some(s) = f.get("service") {
            resp.set("service", s);
        }
        let mut content = format!("{name}:").into_bytes();
        content.extend_from_slice(&f.content);
        resp.content = content.into();
        Some(resp)
    })
    .await
}

/// A Bolt client connection.
type BoltClient = RpcClient<mosn_protocol::bolt::Bolt>;

fn request(id: u32, service: &str, content: &str) -> Frame {
    let mut f = Frame::request(Version::V1, id);
    f.class = bytes::Bytes::from_static(b"com.alipay.sofa.rpc.core.request.SofaRequest");
    f.set("service", service.as_bytes());
    f.content = bytes::Bytes::copy_from_slice(content.as_bytes());
    f.timeout_ms = 3000;
    f
}

/// A proxy of `protocol` sending every call to the server at `up` (cluster `ca`).
fn one_cluster_proxy(protocol: &str, up: SocketAddr) -> Proxy {
    proxy(rpc_config(
        protocol,
        all_to("ca"),
        json!([cluster("ca", &[up])]),
    ))
}

/// One route sending every call to `cluster`.
fn all_to(cluster: &str) -> Value {
    json!([{"match": {"prefix": "/"}, "route": {"cluster_name": cluster}}])
}

fn by_service(service: &str, cluster: &str) -> Value {
    json!({"match": {"headers": [{"name": "service", "value": service}]}, "route": {"cluster_name": cluster}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_in_sequence_and_routed_by_service() {
    let a = bolt_server("a").await;
    let b = bolt_server("b").await;
    let p = proxy(rpc_config(
        "bolt",
        json!([
            by_service("com.example.A:1.0", "ca"),
            by_service("com.example.B:1.0", "cb")
        ]),
        json!([cluster("ca", &[a.addr]), cluster("cb", &[b.addr])]),
    ));
    let mut c = BoltClient::connect(p.addr).await;
    for i in 0..20u32 {
        let (svc, who) = if i % 2 == 0 {
            ("com.example.A:1.0", "a")
        } else {
            ("com.example.B:1.0", "b")
        };
        let r = c.call(&request(1000 + i, svc, &format!("hello{i}"))).await;
        assert_eq!(r.kind, Kind::Response);
        assert_eq!(r.request_id, 1000 + i, "the client's id comes back");
        assert_eq!(r.status, status::SUCCESS);
        assert_eq!(
            String::from_utf8_lossy(&r.content),
            format!("{who}:hello{i}")
        );
        assert_eq!(r.get_str("service"), Some(svc));
    }
    // A service no route knows: NO_PROCESSOR, and the connection goes on.
    let r = c.call(&request(7, "com.example.Unknown:1.0", "x")).await;
    assert_eq!((r.request_id, r.status), (7, status::NO_PROCESSOR));
    let r = c.call(&request(8, "com.example.A:1.0", "again")).await;
    assert_eq!(String::from_utf8_lossy(&r.content), "a:again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_calls_at_once_on_one_connection_are_each_answered() {
    let a = bolt_server("a").await;
    let p = one_cluster_proxy("bolt", a.addr);
    let mut c = BoltClient::connect(p.addr).await;
    let mut want = HashMap::new();
    for i in 0..500u32 {
        let mut f = request(i * 7 + 1, "com.example.A:1.0", &format!("m{i}"));
        // Later calls answer sooner: the answers come back out of order.
        f.set("x-delay-ms", format!("{}", (500 - i) / 25).as_bytes());
        c.send(&f).await;
        want.insert(i * 7 + 1, format!("a:m{i}"));
    }
    let mut order = Vec::new();
    for _ in 0..500 {
        let r = c.recv().await.expect("answer");
        assert_eq!(r.status, status::SUCCESS);
        let expect = want
            .remove(&r.request_id)
            .expect("an answer to a call made, once");
        assert_eq!(String::from_utf8_lossy(&r.content), expect);
        order.push(r.request_id);
    }
    assert!(want.is_empty());
    let mut sorted = order.clone();
    sorted.sort();
    assert_ne!(
        order, sorted,
        "answers went out as they completed, not in call order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_are_answered_by_the_proxy_and_oneways_go_through() {
    let a = bolt_server("a").await;
    let p = one_cluster_proxy("bolt", a.addr);
    let mut c = BoltClient::connect(p.addr).await;
    let mut hb = Frame::request(Version::V1, 99);
    hb.cmd_code = mosn_protocol::bolt::CMD_HEARTBEAT;
    let r = c.call(&hb).await;
    assert!(r.is_heartbeat() && r.kind == Kind::Response && r.request_id == 99);
    assert_eq!(
        a.heartbeats.load(Ordering::SeqCst),
        0,
        "never sent upstream"
    );

    let mut ow = request(5, "com.example.A:1.0", "fire");
    ow.kind = Kind::Oneway;
    c.send(&ow).await;
    assert!(
        eventually(Duration::from_secs(5), || a.oneways.load(Ordering::SeqCst)
            == 1)
        .await,
        "the oneway reached the server"
    );
    // No answer to the oneway: the next frame the client reads answers the next call.
    let r = c.call(&request(6, "com.example.A:1.0", "after")).await;
    assert_eq!((r.request_id, &r.content[..]), (6, &b"a:after"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_get_bolt_statuses_not_dropped_connections() {
    let a = bolt_server("a").await;
    let p = proxy(rpc_config(
        "bolt",
        json!([
            by_service("com.example.Dead:1.0", "dead"),
            {"match": {"prefix": "/"}, "route": {"cluster_name": "ca", "timeout": "300ms"}}
        ]),
        json!([cluster("ca", &[a.addr]), cluster("dead", &[closed_port()])]),
    ));
    let mut c = BoltClient::connect(p.addr).await;
    // Connect failure.
    let r = c.call(&request(1, "com.example.Dead:1.0", "x")).await;
    assert_eq!((r.request_id, r.status), (1, status::NO_PROCESSOR));
    // The route's timeout.
    let t0 = std::time::Instant::now();
    let r = c.call(&request(2, "com.example.A:1.0", "silence")).await;
    assert_eq!((r.request_id, r.status), (2, status::TIMEOUT));
    assert!(t0.elapsed() < Duration::from_secs(3));
    // The frame's own timeout, shorter than the route's.
    let mut f = request(3, "com.example.A:1.0", "silence");
    f.timeout_ms = 100;
    let t0 = std::time::Instant::now();
    let r = c.call(&f).await;
    assert_eq!((r.request_id, r.status), (3, status::TIMEOUT));
    assert!(
        t0.elapsed() < Duration::from_millis(290),
        "{:?}",
        t0.elapsed()
    );
    // The connection still serves.
    let r = c.call(&request(4, "com.example.A:1.0", "ok")).await;
    assert_eq!((r.status, &r.content[..]), (status::SUCCESS, &b"a:ok"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_dies_mid_call_gets_an_error_answer_at_once() {
    // An upstream that reads one request and closes.
    let up = tcp_server(|mut s| async move {
        let mut b = [0u8; 64];
        let _ = s.read(&mut b).await;
    })
    .await;
    let p = proxy(rpc_config(
        "bolt",
        json!([{"match": {"prefix": "/"}, "route": {"cluster_name": "c", "timeout": "30s"}}]),
        json!([cluster("c", &[up])]),
    ));
    let mut c = BoltClient::connect(p.addr).await;
    let t0 = std::time::Instant::now();
    let r = c.call(&request(11, "com.example.A:1.0", "x")).await;
    assert_eq!((r.request_id, r.status), (11, status::NO_PROCESSOR));
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "answered when the upstream closed, not at the timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bolt_v2_with_crc_passes_and_keeps_its_version() {
    let a = bolt_server("a").await;
    let p = one_cluster_proxy("boltv2", a.addr);
    let mut c = BoltClient::connect(p.addr).await;
    let mut f = request(21, "com.example.A:1.0", "v2");
    f.version = Version::V2 { ver1: 1, switch: 1 };
    let r = c.call(&f).await;
    assert_eq!(r.version, Version::V2 { ver1: 1, switch: 1 });
    assert_eq!((r.request_id, &r.content[..]), (21, &b"a:v2"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_serves_bolt_and_http_on_one_port() {
    let a = bolt_server("a").await;
    let h = upstream(|_| async { text(200, "http ok") }).await;
    let p = proxy(json!({
        "servers": [{"default_log_path": "stderr",
            "routers": [{"router_config_name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"], "routers": [
                by_service("com.example.A:1.0", "bolt"),
                {"match": {"prefix": "/"}, "route": {"cluster_name": "http"}}]}]}],
            "listeners": [{"name": "l", "address": "127.0.0.1:0", "bind_port": true,
                "filter_chains": [{"filters": [{"type": "proxy", "config": {
                    "downstream_protocol": "Auto", "upstream_protocol": "Auto", "router_config_name": "r"}}]}]}]}],
        "cluster_manager": {"clusters": [cluster("bolt", &[a.addr]), cluster("http", &[h.addr])]}
    }));
    let mut c = BoltClient::connect(p.addr).await;
    let r = c.call(&request(31, "com.example.A:1.0", "auto")).await;
    assert_eq!((r.request_id, &r.content[..]), (31, &b"a:auto"[..]));
    let r = get(p.addr, "/x", &[]).await;
    assert_eq!((r.status, r.text()), (200, "http ok".to_string()));
    // HTTP/2 on the same port is detected too; with `Auto` upstream it goes to its cluster as
    // HTTP/2, which this HTTP/1-only upstream refuses: the 502 shows the stream was served.
    assert_eq!(h2_get(p.addr, "/y").await.0, 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_keepalive_sends_heartbeats_on_upstream_connections() {
    let a = bolt_server("a").await;
    let mut c = cluster("ca", &[a.addr]);
    c["keepalive"] = json!({"interval": "100ms", "timeout": "1s"});
    let p = proxy(rpc_config(
        "bolt",
        json!([{"match": {"prefix": "/"}, "route": {"cluster_name": "ca"}}]),
        json!([c]),
    ));
    let mut client = BoltClient::connect(p.addr).await;
    let r = client.call(&request(1, "com.example.A:1.0", "x")).await;
    assert_eq!(r.status, status::SUCCESS);
    assert!(
        eventually(Duration::from_secs(10), || a
            .heartbeats
            .load(Ordering::SeqCst)
            >= 3)
        .await,
        "heartbeats seen upstream: {}",
        a.heartbeats.load(Ordering::SeqCst)
    );
    // The connection is still good for calls.
    let r = client.call(&request(2, "com.example.A:1.0", "y")).await;
    assert_eq!(&r.content[..], b"a:y");
}

/// Graceful shutdown with MOSN's `enable_bolt_goaway`: the client gets a GoAway (command 100),
/// then the answer to its call in flight, then the close. Without the option (MOSN's default) it
/// gets the answer and the close only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_sends_bolt_goaway_when_enabled_and_answers_calls_in_flight() {
    let up = bolt_server("a").await;
    for enabled in [true, false] {
        let mut cfg = rpc_config("bolt", all_to("ca"), json!([cluster("ca", &[up.addr])]));
        cfg["servers"][0]["listeners"][0]["filter_chains"][0]["filters"][0]["config"]
            ["extend_config"] = json!({"bolt": {"enable_bolt_goaway": enabled}});
        let p = proxy(cfg);
        let mut c = BoltClient::connect(p.addr).await;
        assert_eq!(
            &c.call(&request(1, "s", "warm")).await.content[..],
            b"a:warm"
        );
        let mut slow = request(2, "s", "slow");
        slow.set("x-delay-ms", b"400");
        c.send(&slow).await;
        let server = p.server;
        let left = tokio::task::spawn_blocking(move || server.shutdown(Duration::from_secs(5)));
        let mut frames = Vec::new();
        while let Some(f) = c.recv().await {
            frames.push(f);
        }
        assert_eq!(left.await.unwrap(), 0, "drained in time");
        let got: Vec<(u16, u32)> = frames.iter().map(|f| (f.cmd_code, f.request_id)).collect();
        if enabled {
            assert_eq!(got, [(100, 0), (2, 2)], "GoAway first, then the answer");
            assert_eq!(frames[0].kind, Kind::Request);
        } else {
            assert_eq!(got, [(2, 2)]);
        }
        assert_eq!(&frames.last().unwrap().content[..], b"a:slow");
    }
}

/// A POST with `body` and headers as HTTP/1, and over HTTP/2 on a new connection.
fn post(service: &str, body: &'static str) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    http::Request::builder()
        .method("POST")
        .uri("/call")
        .header("service", service)
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            body.as_bytes(),
        )))
        .unwrap()
}

async fn h2_post(addr: SocketAddr, service: &str, body: &'static str) -> (u16, String, String) {
    let mut send = h2_client(addr).await;
    let req = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}/call"))
        .header("service", service)
        .body(())
        .unwrap();
    let (resp, mut s) = send.send_request(req, false).unwrap();
    s.send_data(bytes::Bytes::from_static(body.as_bytes()), true)
        .unwrap();
    let resp = resp.await.unwrap();
    let status = resp.status().as_u16();
    let svc = resp.headers()["service"].to_str().unwrap().to_string();
    let mut b = resp.into_body();
    let mut out = Vec::new();
    while let Some(d) = b.data().await {
        out.extend_from_slice(&d.unwrap());
    }
    (status, svc, String::from_utf8(out).unwrap())
}

/// MOSN's `http2bolt_simple` transcoder on an `Auto` listener whose upstream is Bolt: HTTP/1 and
/// HTTP/2 requests become Bolt calls routed by their `service` header, and the Bolt answers come
/// back as HTTP (status, the header map as fields, the content as body); Bolt clients on the same
/// port are proxied as Bolt. A silent upstream is a 504, as for HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_requests_are_transcoded_to_bolt_and_answered_as_http() {
    let (a, b) = (bolt_server("a").await, bolt_server("b").await);
    let mut routes = json!([by_service("svc.A", "ca"), by_service("svc.B", "cb")]);
    routes[0]["route"]["timeout"] = json!("1s");
    let mut cfg = rpc_config(
        "Auto",
        routes,
        json!([cluster("ca", &[a.addr]), cluster("cb", &[b.addr])]),
    );
    let l = &mut cfg["servers"][0]["listeners"][0];
    l["filter_chains"][0]["filters"][0]["config"]["upstream_protocol"] = json!("bolt");
    l["stream_filters"] = json!([{"type": "transcoder", "config": {"type": "http2bolt_simple"}}]);
    let p = proxy(cfg);

    let mut c = Client::connect(p.addr).await;
    for (svc, want) in [
        ("svc.A", "a:hello"),
        ("svc.B", "b:hello"),
        ("svc.A", "a:hello"),
    ] {
        let r = c.send(post(svc, "hello")).await;
        assert_eq!((r.status, r.text().as_str()), (200, want));
        assert_eq!(
            r.header("service"),
            Some(svc),
            "the Bolt header map comes back"
        );
    }
    let r = c.send(post("svc.A", "")).await;
    assert_eq!((r.status, r.text().as_str()), (200, "a:"), "an empty body");
    assert_eq!(
        h2_post(p.addr, "svc.B", "over h2").await,
        (200, "svc.B".into(), "b:over h2".into())
    );
    // A Bolt client on the same port is proxied as Bolt, untouched by the transcoder.
    let mut bc = BoltClient::connect(p.addr).await;
    assert_eq!(
        &bc.call(&request(5, "svc.B", "rpc")).await.content[..],
        b"b:rpc"
    );
    // A call the upstream never answers: 504 at the route's timeout, and the connection goes on.
    let r = c.send(post("svc.A", "silence")).await;
    assert_eq!(r.status, 504);
    assert_eq!(c.send(post("svc.A", "again")).await.text(), "a:again");
    // No route: 404, as for any HTTP request.
    assert_eq!(c.send(post("svc.C", "x")).await.status, 404);
}

/// An HTTP request on a listener whose upstream is Bolt, when the transcoder does not take it
/// (here: `http2Tohttp` takes only HTTP/2 requests), gets 502 with flag `TF`, never a Bolt frame.
/// Transcoder rules name their transcoder `<downstream>_<upstream>`, checked at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_requests_no_transcoder_takes_get_502_on_a_bolt_upstream() {
    let a = bolt_server("a").await;
    let mut cfg = rpc_config("Http1", all_to("ca"), json!([cluster("ca", &[a.addr])]));
    let l = &mut cfg["servers"][0]["listeners"][0];
    l["filter_chains"][0]["filters"][0]["config"]["upstream_protocol"] = json!("bolt");
    l["stream_filters"] = json!([{"type": "transcoder", "config": {"rules": [{
        "matcher_config": {"matcher_type": "simpleMatcher", "config": {"name": "x-rpc", "value": "1"}},
        "rule_info": {"upstream_protocol": "bolt"}}]}}]);
    // Rules name transcoders `<downstream>_<upstream>`; none is registered under `Http1_bolt`.
    let e = mosn_config::from_value(&cfg)
        .map_err(|e| e.to_string())
        .and_then(|l| {
            mosn_proxy::Server::start(&l.config, Some(1))
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .unwrap_err();
    assert!(
        e.contains("rules[0].rule_info.upstream_protocol") && e.contains("<downstream>_bolt"),
        "{e}"
    );
    cfg["servers"][0]["listeners"][0]["stream_filters"] = json!([{"type": "transcoder",
        "config": {"type": "http2Tohttp"}}]);
    let p = proxy(cfg);
    let r = get(p.addr, "/", &[]).await;
    assert_eq!(r.status, 502);
    assert_eq!(p.flag_count(mosn_api::ResponseFlag::TranscodeFailed), 1);
}

/// `httpTohttp2` and `http2Tohttp` switch the upstream protocol per request: an HTTP/1 client
/// reaches an HTTP/2-only upstream through an `Http1`/`Http1` listener, and an HTTP/2 client an
/// HTTP/1 upstream through an `Http2`/`Http2` listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_transcoders_switch_the_upstream_http_version_per_request() {
    let h2_up = h2_upstream(|req, mut respond| async move {
        let v = format!("{:?} {}", req.version(), req.uri().path());
        let mut s = respond
            .send_response(http::Response::new(()), false)
            .unwrap();
        let _ = s.send_data(bytes::Bytes::from(v), true);
    })
    .await;
    let h1_up =
        upstream(
            |req| async move { text(200, format!("{:?} {}", req.version(), req.uri().path())) },
        )
        .await;
    let listener = |down: &str, up: SocketAddr, t: &str| {
        let mut cfg = config(
            json!([{"name": "v", "domains": ["*"], "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "c"}}]}]),
            json!([cluster("c", &[up])]),
        );
        let l = &mut cfg["servers"][0]["listeners"][0];
        l["filter_chains"][0]["filters"][0]["config"]["downstream_protocol"] = json!(down);
        l["filter_chains"][0]["filters"][0]["config"]["upstream_protocol"] = json!(down);
        l["stream_filters"] = json!([{"type": "transcoder", "config": {"type": t}}]);
        proxy(cfg)
    };
    let p1 = listener("Http1", h2_up, "httpTohttp2");
    let r = get(p1.addr, "/one", &[]).await;
    assert_eq!((r.status, r.text().as_str()), (200, "HTTP/2.0 /one"));
    let p2 = listener("Http2", h1_up.addr, "http2Tohttp");
    let (status, body) = h2_get(p2.addr, "/two").await;
    assert_eq!(
        (status, String::from_utf8(body).unwrap().as_str()),
        (200, "HTTP/1.1 /two")
    );
}
