//! New clusters and routes applied to a running server (`Server::rerouter`, what a registry or a
//! config reload uses): connections already open route their next request by them, on HTTP/1
//! keep-alive and on HTTP/2; listeners added and removed at run time.

mod common;
use common::*;
use serde_json::{json, Value};

fn all_to(cluster: &str, protocol: &str) -> Value {
    let mut c = config(
        json!([{"name": "v", "domains": ["*"], "routers": [
            {"match": {"prefix": "/"}, "route": {"cluster_name": cluster}}]}]),
        json!([]),
    );
    c["servers"][0]["listeners"][0]["filter_chains"][0]["filters"][0]["config"]
        ["downstream_protocol"] = json!(protocol);
    c
}

fn with_clusters(mut c: Value, clusters: Value) -> Value {
    c["cluster_manager"]["clusters"] = clusters;
    c
}

async fn h2_text(
    send: &mut h2::client::SendRequest<bytes::Bytes>,
    addr: std::net::SocketAddr,
) -> String {
    let (resp, _) = send.send_request(h2_request(addr, "/"), true).unwrap();
    let mut body = resp.await.unwrap().into_body();
    let mut out = Vec::new();
    while let Some(d) = body.data().await {
        out.extend_from_slice(&d.unwrap());
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_http1_and_http2_connections_take_new_routes_from_their_next_request() {
    let a = named("a").await;
    let b = named("b").await;
    let clusters = json!([cluster("a", &[a.addr]), cluster("b", &[b.addr])]);
    for protocol in ["Http1", "Http2"] {
        let p = proxy(with_clusters(all_to("a", protocol), clusters.clone()));
        let next = with_clusters(all_to("b", protocol), clusters.clone());
        let next = mosn_config::from_value(&next).unwrap().config;
        if protocol == "Http1" {
            let mut c = Client::connect(p.addr).await;
            assert_eq!(c.get("/").await.text(), "a");
            p.server.rerouter().apply(&next).unwrap();
            assert_eq!(
                c.get("/").await.text(),
                "b",
                "the same keep-alive connection"
            );
            assert_eq!(a.connections() + b.connections(), 2);
        } else {
            let mut send = h2_client(p.addr).await;
            assert_eq!(h2_text(&mut send, p.addr).await, "a");
            p.server.rerouter().apply(&next).unwrap();
            assert_eq!(
                h2_text(&mut send, p.addr).await,
                "b",
                "the same HTTP/2 connection"
            );
        }
    }
}

/// A listener renamed by a new config is a new listener: it is bound and serves the new routes,
/// while the old one stops accepting and its open keep-alive connection gets its next response
/// (still routed as before) with `Connection: close`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_are_added_and_removed_at_run_time_and_the_removed_one_drains() {
    let a = named("a").await;
    let b = named("b").await;
    let clusters = json!([cluster("a", &[a.addr]), cluster("b", &[b.addr])]);
    let p = proxy(with_clusters(all_to("a", "Http1"), clusters.clone()));
    let mut c = Client::connect(p.addr).await;
    assert_eq!(c.get("/").await.text(), "a");
    let mut other = with_clusters(all_to("b", "Http1"), clusters.clone());
    other["servers"][0]["listeners"][0]["name"] = json!("other");
    let other = mosn_config::from_value(&other).unwrap().config;
    p.server.rerouter().apply(&other).unwrap();
    let added = p
        .server
        .listener_addr("other")
        .expect("the new listener is bound");
    assert_ne!(added, p.addr);
    assert_eq!(get(added, "/", &[]).await.text(), "b");
    assert!(
        p.server.listener_addr("l").is_none(),
        "the old one is gone from the list"
    );
    let last = c.get("/").await;
    assert_eq!(
        last.text(),
        "a",
        "a removed listener's connection keeps its routes"
    );
    assert_eq!(last.header("connection"), Some("close"));
    // The old address stops accepting (polled: each worker closes its socket on its own).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while tokio::net::TcpStream::connect(p.addr).await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the removed listener still accepts"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
