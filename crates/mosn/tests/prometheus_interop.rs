//! Interop: a real Prometheus server (Debian's `prometheus`, installed by
//! scripts/install-test-deps.sh) scrapes mosn-rs on loopback, and PromQL returns exactly the
//! number of requests this test sent, per listener and per cluster.

mod common;

use common::*;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The single value of an instant PromQL query, if Prometheus has one.
fn query(prom: SocketAddr, q: &str) -> Option<f64> {
    let enc: String = q
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let r = try_http(prom, "GET", &format!("/api/v1/query?query={enc}"), &[], "")?;
    let v: Value = serde_json::from_str(&r.body).ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

#[test]
fn prometheus_scrapes_exact_request_counts() {
    assert!(
        Command::new("prometheus").arg("--version").output().is_ok(),
        "the prometheus binary is missing: run scripts/install-test-deps.sh"
    );
    let dir = temp_dir("prom-interop");
    let up = std_upstream();
    let cfg = json!({
        "servers": [{
            "default_log_path": "stderr",
            "routers": [{"router_config_name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"], "routers": [
                {"match": {"prefix": "/"}, "route": {"cluster_name": "up"}}]}]}],
            "listeners": [{"name": "edge", "address": "127.0.0.1:0", "bind_port": true,
                "filter_chains": [{"filters": [{"type": "proxy", "config": {"downstream_protocol": "Http1", "router_config_name": "r"}}]}]}]
        }],
        "cluster_manager": {"clusters": [{"name": "up", "type": "SIMPLE", "hosts": [{"address": up.to_string()}]}]},
        "metrics": {"sinks": [{"type": "prometheus", "config": {"port": 0}}]}
    });
    let p = dir.join("mosn.json");
    std::fs::write(&p, cfg.to_string()).unwrap();
    let m = spawn(&p);
    let edge = m.listener("edge");
    let sink = m.log_addr(&["prometheus listening"]).port();

    let prom_port = free_port();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\n\
             scrape_configs:\n  - job_name: mosn\n    static_configs: [ {{ targets: ['127.0.0.1:{sink}'] }} ]\n"
        ),
    )
    .unwrap();
    let prom = Killed(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );
    let prom_addr: SocketAddr = format!("127.0.0.1:{prom_port}").parse().unwrap();

    const N: usize = 37;
    for _ in 0..N {
        assert_eq!(http(edge, "GET", "/x", &[], "").status, 200);
    }
    let want = N as f64;
    let ok = eventually(Duration::from_secs(60), || {
        query(prom_addr, "downstream_request_total{listener=\"edge\"}") == Some(want)
            // host="" selects the cluster-level series (the one without a host label).
            && query(prom_addr, "upstream_request_total{cluster=\"up\",host=\"\"}") == Some(want)
            && query(prom_addr, "downstream_request_time_count{proxy=\"global\"}") == Some(want)
    });
    assert!(
        ok,
        "prometheus saw listener={:?} cluster={:?} (wanted {N})",
        query(prom_addr, "downstream_request_total{listener=\"edge\"}"),
        query(
            prom_addr,
            "upstream_request_total{cluster=\"up\",host=\"\"}"
        )
    );
    let up_host = format!("upstream_request_total{{cluster=\"up\",host=\"{up}\"}}");
    assert_eq!(query(prom_addr, &up_host), Some(want));
    drop(prom);
    drop(m);
}
