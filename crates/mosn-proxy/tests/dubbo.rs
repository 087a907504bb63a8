//! Dubbo through the XProtocol driver, with a Dubbo provider and consumer written in the test on
//! the project's own codec (real Dubbo peers, dubbo-remoting and dubbo-ssl-python, are in the
//! interop suite): routing by service, version, method and group; 300 calls at once on one
//! connection; heartbeats answered by the proxy; one-way calls; each failure answered with the
//! Dubbo status a consumer expects; an unreadable call refused without closing the connection;
//! Dubbo beside HTTP/1 on an `Auto` port; the `dubbo_stream` filter's virtual hosts and counters.

mod common;
use bytes::{Bytes, BytesMut};
use common::*;
use mosn_api::Headers;
use mosn_protocol::dubbo::hessian::{write_string, Reader};
use mosn_protocol::dubbo::{status, Dubbo, Frame};
use mosn_protocol::xprotocol::XProtocol;
use serde_json::{json, Value};
use std::collections::HashMap;

use std::sync::atomic::Ordering;

use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// A Dubbo provider: answers each two-way call with the string
/// `<name>:<service>:<method>:<version>:<group>:<arg>` after the call's `x-delay-ms` attachment,
/// answers heartbeats, counts one-way calls, and never answers the method `silence`.
async fn provider(name: &'static str) -> RpcServer {
    rpc_server::<Dubbo, _>(move |f: &Frame| {
        if f.get_str("method") == Some("silence") {
            return None;
        }
        let g = |k| f.get_str(k).unwrap_or("").to_string();
        let text = format!(
            "{name}:{}:{}:{}:{}:{}",
            g("service"),
            g("method"),
            g("version"),
            g("group"),
            g("x-arg")
        );
        let mut body = BytesMut::from(&b"\x91"[..]); // RESPONSE_VALUE
        write_string(&mut body, &text);
        Some(Frame::new(0x02, status::OK, f.request_id, body.freeze()))
    })
    .await
}

/// A call: `service`, `version`, `method`, one String argument, attachments.
fn call(id: u64, service: &str, version: &str, method: &str, attach: &[(&str, &str)]) -> Frame {
    let mut body = BytesMut::new();
    for s in [
        "2.0.2",
        service,
        version,
        method,
        "Ljava/lang/String;",
        "arg",
    ] {
        write_string(&mut body, s);
    }
    body.extend_from_slice(b"H");
    let mut all = vec![("path", service), ("interface", service)];
    if !version.is_empty() {
        all.push(("version", version));
    }
    all.extend_from_slice(attach);
    for (k, v) in all {
        write_string(&mut body, k);
        write_string(&mut body, v);
    }
    body.extend_from_slice(b"Z");
    Frame::new(0xc2, 0, id, body.freeze())
}

/// The text of a response: the value of an OK answer, the error message otherwise.
fn text(f: &Frame) -> String {
    let mut r = Reader::new(&f.body);
    if f.status == status::OK {
        r.skip().expect("a response flag");
    }
    r.string().ok().flatten().unwrap_or_default()
}

/// A Dubbo consumer connection.
type Consumer = RpcClient<Dubbo>;

fn route(headers: &[(&str, &str)], cluster: &str) -> Value {
    let h: Vec<Value> = headers
        .iter()
        .map(|(n, v)| json!({"name": n, "value": v}))
        .collect();
    json!({"match": {"headers": h}, "route": {"cluster_name": cluster}})
}

/// A Dubbo proxy sending every call to `a`.
fn all_to(a: &RpcServer) -> Proxy {
    proxy(rpc_config(
        "dubbo",
        json!([route(&[], "a")]),
        json!([cluster("a", &[a.addr])]),
    ))
}

const SVC: &str = "org.apache.dubbo.demo.GreetingService";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_routed_by_service_version_method_and_group() {
    let v1 = provider("v1").await;
    let v2 = provider("v2").await;
    let slow = provider("m").await;
    let blue = provider("blue").await;
    let other = provider("other").await;
    let p = proxy(rpc_config(
        "dubbo",
        json!([
            route(&[("service", SVC), ("version", "2.0.0")], "v2"),
            route(&[("service", SVC), ("method", "greetSlowly")], "m"),
            route(&[("service", SVC), ("group", "blue")], "blue"),
            route(&[("service", SVC)], "v1"),
            route(&[("service", "org.demo.Other")], "other"),
        ]),
        json!([
            cluster("v1", &[v1.addr]),
            cluster("v2", &[v2.addr]),
            cluster("m", &[slow.addr]),
            cluster("blue", &[blue.addr]),
            cluster("other", &[other.addr]),
        ]),
    ));
    let mut c = Consumer::connect(p.addr).await;
    for (i, (version, method, group, want)) in [
        ("1.0.0", "greet", "", "v1"),
        ("2.0.0", "greet", "", "v2"),
        ("1.0.0", "greetSlowly", "", "m"),
        ("1.0.0", "greet", "blue", "blue"),
        ("", "greet", "green", "v1"),
    ]
    .into_iter()
    .enumerate()
    {
        let id = 1000 + i as u64;
        let mut attach = vec![("x-arg", "hi")];
        if !group.is_empty() {
            attach.push(("group", group));
        }
        let r = c.call(&call(id, SVC, version, method, &attach)).await;
        assert_eq!((r.request_id, r.status), (id, status::OK), "{want}");
        assert!(!r.is_request());
        assert_eq!(
            text(&r),
            format!("{want}:{SVC}:{method}:{version}:{group}:hi"),
            "version {version:?} method {method} group {group:?}"
        );
    }
    let r = c.call(&call(7, "org.demo.Other", "", "x", &[])).await;
    assert!(text(&r).starts_with("other:org.demo.Other:x"));
    // A service no route knows: SERVICE_NOT_FOUND with MOSN's text, and the connection goes on.
    let r = c.call(&call(8, "org.demo.Unknown", "", "x", &[])).await;
    assert_eq!((r.request_id, r.status), (8, status::SERVICE_NOT_FOUND));
    assert_eq!(text(&r), "404|router unavailable");
    let r = c.call(&call(9, SVC, "", "greet", &[])).await;
    assert_eq!(r.status, status::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_calls_at_once_on_one_connection_are_each_answered() {
    let a = provider("a").await;
    let p = all_to(&a);
    let mut c = Consumer::connect(p.addr).await;
    let mut want = HashMap::new();
    for i in 0..300u64 {
        let id = (1 << 40) + i * 3;
        let delay = format!("{}", (300 - i) / 20);
        let arg = format!("m{i}");
        let f = call(
            id,
            SVC,
            "",
            "greet",
            &[("x-delay-ms", &delay), ("x-arg", &arg)],
        );
        c.send(&f).await;
        want.insert(id, format!("a:{SVC}:greet:::m{i}"));
    }
    let mut order = Vec::new();
    for _ in 0..300 {
        let r = c.recv().await.expect("answer");
        assert_eq!(r.status, status::OK);
        let expect = want
            .remove(&r.request_id)
            .expect("an answer to a call made, once");
        assert_eq!(text(&r), expect);
        order.push(r.request_id);
    }
    assert!(want.is_empty());
    let mut sorted = order.clone();
    sorted.sort();
    assert_ne!(order, sorted, "answers went out as they completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_are_answered_by_the_proxy_and_one_way_calls_go_through() {
    let a = provider("a").await;
    let p = all_to(&a);
    let mut c = Consumer::connect(p.addr).await;
    let hb = Dubbo::default().heartbeat(99);
    let r = c.call(&hb).await;
    assert!(r.is_event() && !r.is_request());
    assert_eq!((r.request_id, r.status), (99, status::OK));
    assert_eq!(
        a.heartbeats.load(Ordering::SeqCst),
        0,
        "never sent upstream"
    );
    // One-way: the two-way bit clear. MOSN waits for an answer that never comes; mosn-rs sends
    // it and is done.
    let mut ow = call(5, SVC, "", "fire", &[]);
    ow.flags = 0x82;
    c.send(&ow).await;
    assert!(
        eventually(Duration::from_secs(5), || a.oneways.load(Ordering::SeqCst)
            == 1)
        .await,
        "the one-way call reached the provider"
    );
    let r = c.call(&call(6, SVC, "", "after", &[])).await;
    assert_eq!(r.request_id, 6, "no answer to the one-way call came first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_get_dubbo_statuses_and_the_connection_stays() {
    let a = provider("a").await;
    let p = proxy(rpc_config(
        "dubbo",
        json!([
            route(&[("service", "org.demo.Dead")], "dead"),
            {"match": {"headers": []}, "route": {"cluster_name": "a", "timeout": "300ms"}}
        ]),
        json!([cluster("a", &[a.addr]), cluster("dead", &[closed_port()])]),
    ));
    let mut c = Consumer::connect(p.addr).await;
    let r = c.call(&call(1, "org.demo.Dead", "", "x", &[])).await;
    assert_eq!((r.request_id, r.status), (1, status::SERVICE_NOT_FOUND));
    assert_eq!(text(&r), "502|no health upstream");
    let t0 = std::time::Instant::now();
    let r = c.call(&call(2, SVC, "", "silence", &[])).await;
    assert_eq!((r.request_id, r.status), (2, status::CLIENT_TIMEOUT));
    assert_eq!(text(&r), "504|timeout");
    assert!(t0.elapsed() < Duration::from_secs(3));
    // A Kryo call (serialization 8): framed, not readable; refused, the connection stays.
    let kryo = Frame::new(0xc8, 0, 3, Bytes::from_static(b"\x01\x02\x03"));
    let r = c.call(&kryo).await;
    assert_eq!((r.request_id, r.status), (3, status::SERVICE_ERROR));
    assert_eq!(text(&r), "3|deserial exception");
    // Hessian2 that is not a call.
    let r = c
        .call(&Frame::new(0xc2, 0, 4, Bytes::from_static(b"\xff\xff")))
        .await;
    assert_eq!((r.request_id, r.status), (4, status::SERVICE_ERROR));
    let r = c.call(&call(5, SVC, "", "ok", &[])).await;
    assert_eq!((r.request_id, r.status), (5, status::OK));
    // Bytes that are not Dubbo at all: the connection closes, nothing is answered.
    c.s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    assert!(c.recv().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_serves_dubbo_beside_http() {
    let a = provider("a").await;
    let h = upstream(|_| async { common::text(200, "http ok") }).await;
    let p = proxy(json!({
        "servers": [{"default_log_path": "stderr",
            "routers": [{"router_config_name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"], "routers": [
                route(&[("service", SVC)], "dubbo"),
                {"match": {"prefix": "/"}, "route": {"cluster_name": "http"}}]}]}],
            "listeners": [{"name": "l", "address": "127.0.0.1:0", "bind_port": true,
                "filter_chains": [{"filters": [{"type": "proxy", "config": {
                    "downstream_protocol": "Auto", "upstream_protocol": "Auto", "router_config_name": "r"}}]}]}]}],
        "cluster_manager": {"clusters": [cluster("dubbo", &[a.addr]), cluster("http", &[h.addr])]}
    }));
    let mut c = Consumer::connect(p.addr).await;
    let r = c.call(&call(31, SVC, "", "auto", &[])).await;
    assert_eq!((r.request_id, r.status), (31, status::OK));
    assert!(text(&r).starts_with("a:"));
    let r = get(p.addr, "/x", &[]).await;
    assert_eq!((r.status, r.text()), (200, "http ok".to_string()));
}

/// `dubbo_stream`: the service is the host, so virtual hosts named after Dubbo services select
/// the route (as Istio's RDS for Dubbo has it); calls are counted per service and method.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dubbo_stream_routes_by_virtual_host_and_counts_calls() {
    let a = provider("a").await;
    let b = provider("b").await;
    let mut cfg = rpc_config(
        "dubbo",
        json!([]),
        json!([cluster("a", &[a.addr]), cluster("b", &[b.addr])]),
    );
    cfg["servers"][0]["routers"][0]["virtual_hosts"] = json!([
        {"name": "greet", "domains": [SVC], "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "a"}}]},
        {"name": "other", "domains": ["org.demo.Other"], "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "b"}}]}
    ]);
    cfg["servers"][0]["listeners"][0]["stream_filters"] =
        json!([{"type": "dubbo_stream", "config": {}}]);
    let p = proxy(cfg);
    let mut c = Consumer::connect(p.addr).await;
    for i in 0..3 {
        let r = c.call(&call(i, SVC, "", "greet", &[])).await;
        assert!(text(&r).starts_with("a:"), "{}", text(&r));
    }
    let r = c.call(&call(10, "org.demo.Other", "", "m", &[])).await;
    assert!(text(&r).starts_with("b:"), "{}", text(&r));
    let r = c.call(&call(11, "org.demo.Nobody", "", "m", &[])).await;
    assert_eq!(r.status, status::SERVICE_NOT_FOUND);
    let metrics_now = || -> Vec<mosn_api::FilterMetrics> {
        let snap = p.server.snapshot();
        snap.listeners[0]
            .filters
            .iter()
            .flat_map(|f| f.metrics())
            .collect()
    };
    // The last stream's end is counted just after its answer is written.
    assert!(
        eventually(Duration::from_secs(5), || {
            metrics_now().iter().map(|m| m.counters[0].1).sum::<u64>() == 5
        })
        .await
    );
    let metrics = metrics_now();
    let find = |service: &str, method: &str| {
        metrics
            .iter()
            .find(|m| {
                m.labels
                    == vec![
                        ("method", method.to_string()),
                        ("service", service.to_string()),
                    ]
            })
            .map(|m| m.counters.clone())
            .unwrap_or_default()
    };
    assert_eq!(
        find(SVC, "greet"),
        vec![
            ("request_total", 3),
            ("response_succ_total", 3),
            ("response_fail_total", 0)
        ]
    );
    assert_eq!(find("org.demo.Nobody", "m")[2], ("response_fail_total", 1));
}

/// New clusters and routes applied to a running server (what the `dubbo_registry` extension
/// does): an open Dubbo connection routes its next call by them, and the new cluster has its
/// own upstream counters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_clusters_and_routes_apply_to_open_connections() {
    let a = provider("a").await;
    let b = provider("b").await;
    let p = all_to(&a);
    let mut c = Consumer::connect(p.addr).await;
    let r = c.call(&call(1, SVC, "", "greet", &[])).await;
    assert!(text(&r).starts_with("a:"), "{}", text(&r));
    let cfg = rpc_config(
        "dubbo",
        json!([route(&[("service", SVC)], "b"), route(&[], "a")]),
        json!([cluster("a", &[a.addr]), cluster("b", &[b.addr])]),
    );
    let loaded = mosn_config::from_value(&cfg).unwrap();
    p.server.rerouter().apply(&loaded.config).unwrap();
    let r = c.call(&call(2, SVC, "", "greet", &[])).await;
    assert!(
        text(&r).starts_with("b:"),
        "the open connection took the new route: {}",
        text(&r)
    );
    let r = c.call(&call(3, "org.demo.Other", "", "m", &[])).await;
    assert!(text(&r).starts_with("a:"));
    let snap = p.server.snapshot();
    let bi = snap
        .clusters
        .clusters
        .iter()
        .position(|c| c.name == "b")
        .unwrap();
    let sent_to_b: u64 = p
        .server
        .stats()
        .iter()
        .filter_map(|w| w.upstream.clusters.get(bi))
        .map(|s| s.request_total.get())
        .sum();
    assert_eq!(sent_to_b, 1, "the new cluster counts its requests");
    // A config that renames the listener: the new one is bound and routes as before (the open
    // connection, on the removed one, drains: it takes no new call).
    let mut other = cfg.clone();
    other["servers"][0]["listeners"][0]["name"] = json!("renamed");
    let loaded = mosn_config::from_value(&other).unwrap();
    p.server.rerouter().apply(&loaded.config).unwrap();
    let renamed = p.server.listener_addr("renamed").expect("bound");
    let mut c2 = Consumer::connect(renamed).await;
    let r = c2.call(&call(4, SVC, "", "greet", &[])).await;
    assert!(text(&r).starts_with("b:"));
}
