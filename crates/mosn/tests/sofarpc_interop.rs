//! SOFARPC interop: real SOFARPC clients and servers (npm `sofa-rpc-node` 2.10.0 and
//! `sofa-bolt-node` 2.0.1, direct mode without a registry, installed by
//! scripts/install-test-deps.sh into target/peers/sofa) through the mosn-rs binary:
//! - sequential calls, and 500 calls at once multiplexed on one client connection, each answer
//!   matched to its call;
//! - two services routed to two clusters by the Bolt `service` header;
//! - a Bolt v2 frame with CRC32, answered in v2 with a valid CRC;
//! - a business exception and an unknown service, which the client sees exactly as it does
//!   direct;
//! - a server killed under load: the client gets errors within its timeout (no hang), and calls
//!   succeed again once the server is back on its port;
//! - `Auto`: curl over HTTP/1, curl over h2c and the SOFARPC client on one port;
//! - the `http2bolt_simple` transcoder: curl posts a SOFARPC call over HTTP and reads the Node
//!   server's answer as an HTTP response.
//!
//! The peer script is crates/mosn/tests/peers/sofa_peer.js (its modes are described there).

mod common;

use common::*;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

const TEST: &str = "com.nodejs.test.TestService:1.0";
const OTHER: &str = "com.nodejs.test.OtherService:1.0";

/// Runs a client mode of the peer script (60 s at most); its stdout.
fn client(args: &[&str]) -> String {
    let mut child = sofa_node()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node");
    let code = wait_timeout(&mut child, Duration::from_secs(60));
    let mut out = String::new();
    let mut err = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(code, Some(0), "sofa client {args:?} failed: {out}{err}");
    out
}

fn route(service: &str, cluster: &str) -> Value {
    json!({"match": {"headers": [{"name": "service", "value": service}]}, "route": {"cluster_name": cluster}})
}

fn listener(name: &str, down: &str, up: &str, table: &str, filters: Value) -> Value {
    json!({"name": name, "address": "127.0.0.1:0", "bind_port": true,
        "filter_chains": [{"filters": [{"type": "proxy", "config": {
            "downstream_protocol": down, "upstream_protocol": up, "router_config_name": table}}]}],
        "stream_filters": filters})
}

/// mosn-rs with a `bolt` listener, an `Auto` listener (Bolt as Bolt; HTTP/1 and h2c to the HTTP/1
/// upstream `http_up`) and an `Http1`
/// listener with the `http2bolt_simple` transcoder; TestService goes to `a`, OtherService to `b`.
fn start_mosn(a: SocketAddr, b: SocketAddr, http_up: SocketAddr) -> (Proc, TestDir) {
    // One worker: the figures and the one-connection check are per worker.
    let dir = temp_dir("sofarpc");
    // Any other service goes to `a` too, so an unknown one is answered by a server, as direct.
    let rpc = json!([route(TEST, "a"), route(OTHER, "b"),
        {"match": {"headers": [{"name": "service", "value": ".*", "regex": true}]},
         "route": {"cluster_name": "a"}}]);
    let mut mixed = rpc.clone();
    mixed
        .as_array_mut()
        .unwrap()
        .push(json!({"match": {"prefix": "/"}, "route": {"cluster_name": "http"}}));
    let cfg = json!({
        "servers": [{"default_log_path": "stderr", "processor": 1,
            "routers": [
                {"router_config_name": "rpc", "virtual_hosts": [{"name": "v", "domains": ["*"], "routers": rpc}]},
                {"router_config_name": "mixed", "virtual_hosts": [{"name": "v", "domains": ["*"], "routers": mixed}]}],
            "listeners": [
                listener("bolt", "bolt", "bolt", "rpc", json!([])),
                listener("auto", "Auto", "Http1", "mixed", json!([])),
                listener("transcoded", "Http1", "bolt", "rpc",
                    json!([{"type": "transcoder", "config": {"type": "http2bolt_simple"}}]))]}],
        "cluster_manager": {"clusters": [
            {"name": "a", "type": "SIMPLE", "hosts": [{"address": a.to_string()}]},
            {"name": "b", "type": "SIMPLE", "hosts": [{"address": b.to_string()}]},
            {"name": "http", "type": "SIMPLE", "hosts": [{"address": http_up.to_string()}]}]},
        "metrics": {"sinks": [{"type": "prometheus", "config": {"port": 0}}]}
    });
    let p = dir.join("mosn.json");
    std::fs::write(&p, cfg.to_string()).unwrap();
    (spawn(&p), dir)
}

fn metric(sink: SocketAddr, line_start: &str) -> u64 {
    let text = curl(&[&format!("http://{sink}/metrics")]);
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line_start} in\n{text}"))
}

#[test]
fn sofarpc_clients_and_servers_through_mosn_rs() {
    let (_a, a) = sofa_server("A", 0);
    let (_b, b) = sofa_server("B", 0);
    let http_up = text_upstream("plain http");
    let (m, dir) = start_mosn(a, b, http_up);
    let bolt = m.listener("bolt").to_string();
    let sink = m.log_addr(&["prometheus listening"]);
    let sink = SocketAddr::from(([127, 0, 0, 1], sink.port()));

    // Sequential calls, each result checked by the client; the two services reach two servers.
    assert_eq!(
        client(&["seq", &bolt, "TestService", "200"]).trim(),
        "OK 200 A:last"
    );
    assert_eq!(
        client(&["seq", &bolt, "OtherService", "20"]).trim(),
        "OK 20 B:last"
    );

    // 500 calls at once on one connection, every answer matched to its call by the client.
    let before = metric(sink, "downstream_connection_total{listener=\"bolt\"} ");
    assert_eq!(
        client(&["many", &bolt, "OtherService", "500"]).trim(),
        "OK 500"
    );
    let after = metric(sink, "downstream_connection_total{listener=\"bolt\"} ");
    assert_eq!(
        after - before,
        1,
        "the 500 calls shared one client connection"
    );

    // Bolt v2 with CRC32: answered in v2 with a CRC the Node decoder accepted.
    let v2: Value = serde_json::from_str(client(&["v2", &bolt, "OtherService"]).trim()).unwrap();
    assert_eq!(
        v2,
        json!({"proto": 2, "ver1": 2, "crc": true, "id": 9, "result": "B:over-v2"})
    );

    // A business exception and an unknown service: the same error as a direct call.
    let direct = client(&["errors", &a.to_string()]);
    assert!(
        direct.contains("business exception") && direct.contains("not found service"),
        "{direct}"
    );
    assert_eq!(client(&["errors", &bolt]), direct);

    // Auto: HTTP/1, h2c and SOFARPC on one port.
    let auto = m.listener("auto");
    assert_eq!(curl(&[&format!("http://{auto}/x")]), "plain http");
    assert_eq!(
        curl(&["--http2-prior-knowledge", &format!("http://{auto}/x")]),
        "plain http"
    );
    assert_eq!(
        client(&["seq", &auto.to_string(), "TestService", "20"]).trim(),
        "OK 20 A:last"
    );

    // The transcoder: curl posts the call's hessian2 content with a `service` header and reads
    // the Node server's SofaResponse as the body of an HTTP 200.
    let body = dir.join("call.bin");
    client(&[
        "content",
        "TestService",
        "from-curl",
        body.to_str().unwrap(),
    ]);
    let t = m.listener("transcoded");
    let out = curl(&[
        "-w",
        "\nstatus=%{http_code}",
        "-H",
        &format!("service: {TEST}"),
        "--data-binary",
        &format!("@{}", body.display()),
        &format!("http://{t}/"),
    ]);
    assert!(
        out.ends_with("status=200") && out.contains("A:from-curl"),
        "{out:?}"
    );
    assert!(out.contains("com.alipay.sofa.rpc.core.response.SofaResponse"));
}

/// A server killed under load: calls through mosn-rs fail with errors within the client's
/// timeout (never a hang), and succeed again once the server is back on its port.
#[test]
fn a_sofarpc_server_killed_under_load_gives_errors_then_recovers() {
    let (a_proc, a) = sofa_server("A", 0);
    let (_b, b) = sofa_server("B", 0);
    let (m, _dir) = start_mosn(a, b, closed_port());
    let bolt = m.listener("bolt").to_string();
    let load = std::thread::spawn(move || client(&["load", &bolt, "TestService", "6000"]));
    std::thread::sleep(Duration::from_millis(1500));
    drop(a_proc);
    std::thread::sleep(Duration::from_millis(1500));
    let (_a2, a2) = sofa_server("A", a.port());
    assert_eq!(a2, a);
    let r: Value = serde_json::from_str(load.join().unwrap().trim()).unwrap();
    eprintln!("load through a server kill: {r}");
    let n = |k: &str| r[k].as_u64().unwrap();
    assert!(n("ok") > 100, "{r}");
    assert!(n("failed") > 0, "the kill was seen: {r}");
    assert_eq!(
        n("timeouts"),
        0,
        "every failed call got an error answer, none waited for the client's timeout: {r}"
    );
    assert!(n("maxMs") < 1000, "{r}");
    assert!(n("okAfterFirstFailure") > 100, "traffic recovered: {r}");
}
