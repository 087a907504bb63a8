//! MOSN's `grpc_metric` stream filter on the real binary: a grpcio client makes calls through
//! mosn-rs to a grpcio server (both from the venv that scripts/install-test-deps.sh makes), and
//! the Prometheus sink shows per-service `grpc_request_total`, `grpc_response_succ_total` and
//! `grpc_response_fail_total` with exactly those counts. Plain HTTP through the same listener is
//! not counted.

mod common;

use common::*;
use serde_json::json;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn grpc_peer() -> PathBuf {
    repo().join("crates/mosn-proxy/tests/peers/grpc_peer.py")
}

/// A grpcio server on a free port.
fn grpc_server() -> (Killed, SocketAddr) {
    let mut cmd = Command::new(venv_python());
    cmd.arg(grpc_peer()).arg("server");
    peer_on_port(cmd)
}

#[test]
fn grpc_metric_counts_calls_per_service_and_result() {
    let (_server, up) = grpc_server();
    let plain = std_upstream();
    let dir = temp_dir("grpc-metric");
    let cfg = json!({
        "servers": [{"default_log_path": "stderr", "processor": 2,
            "routers": [{"router_config_name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"], "routers": [
                {"match": {"prefix": "/plain"}, "route": {"cluster_name": "plain"}},
                {"match": {"prefix": "/"}, "route": {"cluster_name": "grpc"}}]}]}],
            "listeners": [{"name": "l", "address": "127.0.0.1:0", "bind_port": true,
                "filter_chains": [{"filters": [{"type": "proxy", "config": {
                    "downstream_protocol": "Auto", "upstream_protocol": "Auto", "router_config_name": "r"}}]}],
                "stream_filters": [{"type": "grpc_metric", "config": {}}]}]}],
        "cluster_manager": {"clusters": [
            {"name": "grpc", "type": "SIMPLE", "hosts": [{"address": up.to_string()}]},
            {"name": "plain", "type": "SIMPLE", "hosts": [{"address": plain.to_string()}]}]},
        "metrics": {"sinks": [{"type": "prometheus", "config": {"port": 0}}]}
    });
    let p = dir.join("mosn.json");
    std::fs::write(&p, cfg.to_string()).unwrap();
    let m = spawn(&p);
    let l = m.listener("l");
    let sink = m.log_addr(&["prometheus listening"]);
    let sink = SocketAddr::from(([127, 0, 0, 1], sink.port()));

    let out = Command::new(venv_python())
        .arg(grpc_peer())
        .args(["calls", &l.to_string(), "5", "3"])
        .output()
        .expect("grpc client");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("DONE"),
        "grpc client failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(http(l, "GET", "/plain", &[], "").status, 200);

    let want = [
        "grpc_request_total{service=\"test.Svc\"} 8",
        "grpc_response_succ_total{service=\"test.Svc\"} 5",
        "grpc_response_fail_total{service=\"test.Svc\"} 3",
    ];
    let mut text = String::new();
    // The counters are written when each stream ends, which may trail the client's last answer.
    let seen = eventually(Duration::from_secs(10), || {
        text = http(sink, "GET", "/metrics", &[], "").body;
        want.iter().all(|w| text.lines().any(|l| l == *w))
    });
    assert!(seen, "missing {want:?} in\n{text}");
    assert!(
        text.lines()
            .filter(|l| l.starts_with("grpc_request_total"))
            .count()
            == 1,
        "only the gRPC service is counted:\n{text}"
    );
    assert!(text.contains("# TYPE grpc_request_total counter"), "{text}");
}
