//! Admin API, Prometheus sink, access logs and process control, on the real `mosn` binary.

mod common;

use common::*;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

const FORMAT: &str = "%start_time%|%request_received_duration%|%response_received_duration%|%duration%|\
%bytes_sent%|%bytes_received%|%protocol%|%response_code%|%response_flag%|%upstream_host%|%upstream_cluster%|\
%upstream_local_address%|%downstream_local_address%|%downstream_remote_address%|%request_header_x-id%|\
%response_header_x-up%|%connection_id%|%listener_name%|%no_such_var%";

/// A config: listener "l" (`/dead` to a refused port, `/direct` answered locally, the rest to
/// `up`), admin and a Prometheus sink on free ports, an access log in `dir`.
fn config(dir: &Path, up: SocketAddr, extra: impl FnOnce(&mut Value)) -> PathBuf {
    let mut c = json!({
        "pid": dir.join("mosn.pid").to_str().unwrap(),
        "servers": [{
            "default_log_path": "stderr",
            "graceful_timeout": "5s",
            "routers": [{"router_config_name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"], "routers": [
                {"match": {"prefix": "/dead"}, "route": {"cluster_name": "dead"}},
                {"match": {"prefix": "/direct"}, "direct_response": {"status": 200, "body": "direct"}},
                {"match": {"prefix": "/"}, "route": {"cluster_name": "up"}}]}]}],
            "listeners": [{
                "name": "l", "address": "127.0.0.1:0", "bind_port": true,
                "access_logs": [{"log_path": dir.join("access.log").to_str().unwrap(), "log_format": FORMAT}],
                "filter_chains": [{"filters": [{"type": "proxy", "config": {
                    "downstream_protocol": "Http1", "router_config_name": "r"}}],
                    "tls_context": {"status": false, "private_key": "SECRET-KEY"}}]
            }]
        }],
        "cluster_manager": {"clusters": [
            {"name": "up", "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN", "hosts": [{"address": up.to_string()}]},
            {"name": "dead", "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN", "hosts": [{"address": closed_port().to_string()}]}
        ]},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "metrics": {"sinks": [{"type": "prometheus", "config": {"port": 0, "endpoint": "/metrics"}}]}
    });
    extra(&mut c);
    let p = dir.join("mosn.json");
    std::fs::write(&p, c.to_string()).unwrap();
    p
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Rotated access-log files (`access.log.<stamp>`) in `dir`.
fn rotated(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("access.log."))
        .count()
}

fn admin_json(a: SocketAddr, path: &str) -> Value {
    let r = http(a, "GET", path, &[], "");
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{path}: {e}: {}", r.body))
}

#[test]
fn admin_api_answers_like_mosn() {
    let dir = temp_dir("admin");
    let m = spawn(&config(&dir, std_upstream(), |_| {}));
    let l = m.listener("l");
    let a = m.log_addr(&["admin listening"]);
    for _ in 0..3 {
        assert_eq!(http(l, "GET", "/x", &[], "").status, 200);
    }
    assert_eq!(http(l, "GET", "/dead", &[], "").status, 502);

    let r = http(a, "GET", "/", &[], "");
    assert_eq!(r.status, 200);
    assert!(r.body.contains("/api/v1/config_dump") && r.body.contains("/api/v1/stats"));
    assert_eq!(
        http(a, "GET", "/api/v1/version", &[], "").body,
        format!("mosn-rs {}", env!("CARGO_PKG_VERSION"))
    );

    // config_dump and its parameters; private keys never leave the process.
    let full = http(a, "GET", "/api/v1/config_dump", &[], "").body;
    assert!(
        !full.contains("SECRET-KEY") && full.contains("[redacted]"),
        "{full}"
    );
    assert_eq!(admin_json(a, "/api/v1/config_dump?listener=l")["name"], "l");
    assert_eq!(
        admin_json(a, "/api/v1/config_dump?cluster=dead")["name"],
        "dead"
    );
    assert_eq!(
        admin_json(a, "/api/v1/config_dump?router=r")["router_config_name"],
        "r"
    );
    assert_eq!(
        admin_json(a, "/api/v1/config_dump?allclusters")
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        admin_json(a, "/api/v1/config_dump?alllisteners")
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(admin_json(a, "/api/v1/config_dump?mosnconfig")["servers"].is_array());
    let both = admin_json(a, "/api/v1/config_dump?allrouters&cluster=up");
    assert!(both["routers"].is_array() && both["cluster"]["name"] == "up");
    assert_eq!(
        http(a, "GET", "/api/v1/config_dump?cluster=nope", &[], "").status,
        404
    );
    let bad = http(a, "GET", "/api/v1/config_dump?bogus=1", &[], "");
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("bogus"), "{}", bad.body);

    // stats, by MOSN's namespaces.
    let s = admin_json(a, "/api/v1/stats");
    assert_eq!(s["downstream"]["listener.l"]["request_total"], "4");
    assert_eq!(s["downstream"]["listener.l"]["request_200_total"], "3");
    assert_eq!(s["downstream"]["listener.l"]["request_502_total"], "1");
    assert_eq!(s["upstream"]["cluster.up"]["request_total"], "3");
    assert_eq!(s["upstream"]["cluster.dead"]["connection_con_fail"], "1");
    let one = admin_json(a, "/api/v1/stats?key=downstream.proxy.global");
    assert_eq!(one["downstream"]["proxy.global"]["request_total"], "4");
    assert_eq!(one.as_object().unwrap().len(), 1);
    assert_eq!(
        http(a, "GET", "/api/v1/stats?key=a&other=b", &[], "").status,
        400
    );
    assert!(http(a, "GET", "/api/v1/stats_glob", &[], "")
        .body
        .lines()
        .any(|l| l == "request_total:4"));

    assert_eq!(
        http(a, "GET", "/api/v1/states", &[], "").body,
        format!("pid={}&state=6\n", m.child.id())
    );

    // log level
    let lv = admin_json(a, "/api/v1/get_loglevel");
    assert_eq!(lv["stderr"], "INFO");
    let ok = http(
        a,
        "POST",
        "/api/v1/update_loglevel",
        &[],
        r#"{"log_path":"stderr","log_level":"DEBUG"}"#,
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(admin_json(a, "/api/v1/get_loglevel")["stderr"], "DEBUG");
    let r = http(a, "POST", "/api/v1/update_loglevel", &[], "{not json");
    assert_eq!(r.status, 400);
    assert!(r.body.contains("not JSON"), "{}", r.body);
    let r = http(
        a,
        "POST",
        "/api/v1/update_loglevel",
        &[],
        r#"{"log_path":"/var/log/x.log","log_level":"DEBUG"}"#,
    );
    assert_eq!(r.status, 400);
    assert!(r.body.contains("unknown log_path"), "{}", r.body);
    let r = http(
        a,
        "POST",
        "/api/v1/update_loglevel",
        &[],
        r#"{"log_path":"stderr","log_level":"LOUD"}"#,
    );
    assert_eq!(r.status, 400);
    assert_eq!(
        http(a, "GET", "/api/v1/update_loglevel", &[], "").status,
        405
    );

    // features agree with the build: each is what `mosn check` says of a config using it.
    let features = admin_json(a, "/api/v1/features");
    assert_eq!(features["http1"], true);
    assert_eq!(
        features["tls"], true,
        "TLS works (tls_interop.rs): {features}"
    );
    for (name, proto) in [("http1", "Http1"), ("http2", "Http2"), ("bolt", "bolt")] {
        let cfg = json!({"servers": [{"routers": [{"router_config_name": "r", "virtual_hosts": []}],
            "listeners": [{"name": "l", "address": "127.0.0.1:0",
            "filter_chains": [{"filters": [{"type": "proxy", "config": {"router_config_name": "r",
                "downstream_protocol": proto, "upstream_protocol": proto}}]}]}]}]});
        let f = write_temp("feature.json", &cfg.to_string());
        let ok = mosn()
            .args(["check", "-c"])
            .arg(&f)
            .output()
            .unwrap()
            .status
            .success();
        assert_eq!(features[name], ok, "features.{name} vs mosn check");
    }
    let env = admin_json(a, "/api/v1/env?key=PATH&key=MOSN_SURELY_UNSET_VAR");
    assert!(env["env"]["PATH"].as_str().is_some_and(|p| !p.is_empty()));
    assert_eq!(env["not_found"], json!(["MOSN_SURELY_UNSET_VAR"]));
    assert_eq!(http(a, "GET", "/api/v1/env", &[], "").status, 400);

    let r = http(a, "GET", "/api/v2/nothing", &[], "");
    assert_eq!(r.status, 404);
    assert!(
        r.body.contains("/api/v1/stats"),
        "404 lists the paths: {}",
        r.body
    );
    assert_eq!(http(a, "DELETE", "/api/v1/stats", &[], "").status, 405);
}

#[test]
fn prometheus_sink_counts_per_listener_cluster_and_host() {
    let dir = temp_dir("prom");
    let up = std_upstream();
    let m = spawn(&config(&dir, up, |c| {
        c["metrics"]["stats_matcher"] = json!({"exclusion_keys": ["request_206_total"]});
    }));
    let l = m.listener("l");
    let p = m.log_addr(&["prometheus listening"]);
    let p = SocketAddr::from(([127, 0, 0, 1], p.port()));
    for _ in 0..7 {
        http(l, "GET", "/x", &[], "");
    }
    http(l, "GET", "/direct", &[], "");
    http(l, "GET", "/dead", &[], "");
    let r = http(p, "GET", "/metrics", &[], "");
    assert_eq!(r.status, 200);
    assert!(r
        .head
        .to_ascii_lowercase()
        .contains("content-type: text/plain; version=0.0.4"));
    let t = r.body;
    let has = |line: &str| assert!(t.lines().any(|l| l == line), "missing {line:?} in\n{t}");
    has("# TYPE downstream_request_total counter");
    has("downstream_request_total{proxy=\"global\"} 9");
    has("downstream_request_total{listener=\"l\"} 9");
    has("downstream_request_200_total{listener=\"l\"} 8");
    has("downstream_request_502_total{listener=\"l\"} 1");
    has("downstream_request_failed{listener=\"l\"} 1");
    has("downstream_connection_total{listener=\"l\"} 9");
    has("upstream_request_total{cluster=\"up\"} 7");
    has(&format!(
        "upstream_request_total{{cluster=\"up\",host=\"{up}\"}} 7"
    ));
    has("upstream_connection_con_fail{cluster=\"dead\"} 1");
    has("downstream_request_time_count{listener=\"l\"} 9");
    has("downstream_request_time_bucket{listener=\"l\",le=\"+Inf\"} 9");
    has("# TYPE upstream_request_duration_time histogram");
    assert!(
        t.lines()
            .any(|l| l.starts_with("process_resident_memory_bytes ")),
        "{t}"
    );
    assert!(!t.contains("request_206_total"), "exclusion_keys applies");
    assert_eq!(http(p, "GET", "/other", &[], "").status, 404);
}

#[test]
fn access_log_variables_are_written_per_request() {
    let dir = temp_dir("access");
    let up = std_upstream();
    let m = spawn(&config(&dir, up, |_| {}));
    let l = m.listener("l");
    http(l, "POST", "/api/1", &[("x-id", "abc")], "12345678");
    http(l, "GET", "/dead", &[], "");
    let log = dir.join("access.log");
    assert!(
        eventually(Duration::from_secs(5), || lines(&log).len() == 2),
        "{:?}",
        lines(&log)
    );
    // Each worker batches its own lines, so lines of two connections may come in either order.
    let ls = lines(&log);
    let ok_line = ls
        .iter()
        .find(|l| l.contains("|200|"))
        .expect("the 200 line");
    let dead_line = ls
        .iter()
        .find(|l| l.contains("|502|"))
        .expect("the 502 line");
    let f: Vec<&str> = ok_line.split('|').collect();
    assert_eq!(f.len(), 19, "{ok_line}");
    let re_time = |s: &str| {
        s.len() == 23
            && s.as_bytes()[4] == b'/'
            && s.as_bytes()[10] == b' '
            && s.as_bytes()[19] == b'.'
    };
    assert!(re_time(f[0]), "start_time {:?}", f[0]);
    let is_go_duration = |s: &str| {
        ["ns", "µs", "ms", "s"].iter().any(|u| s.ends_with(u))
            && s.chars().next().is_some_and(|c| c.is_ascii_digit())
    };
    assert!(
        is_go_duration(f[1]) && is_go_duration(f[2]) && is_go_duration(f[3]),
        "{f:?}"
    );
    assert_eq!(
        &f[4..12],
        &[
            "5",
            "8",
            "HTTP/1.1",
            "200",
            "-",
            &up.to_string(),
            "up",
            f[11]
        ][..]
    );
    assert!(
        f[11].starts_with("127.0.0.1:"),
        "upstream_local_address {:?}",
        f[11]
    );
    assert_eq!(f[12], l.to_string(), "downstream_local_address");
    assert!(
        f[13].starts_with("127.0.0.1:") && f[13] != f[12],
        "downstream_remote_address {:?}",
        f[13]
    );
    assert_eq!(&f[14..], &["abc", "/api/1", f[16], "l", "-"]);
    assert!(f[16].parse::<u64>().is_ok());
    let g: Vec<&str> = dead_line.split('|').collect();
    assert_eq!((g[7], g[8], g[10]), ("502", "UF", "dead"));
    assert_ne!(f[16], g[16], "two connections, two connection ids");
}

#[test]
fn access_log_default_format_and_rotation_by_size() {
    let dir = temp_dir("rotate");
    let m = spawn(&config(&dir, std_upstream(), |c| {
        c["servers"][0]["global_log_roller"] = json!("size=0.002 keep=2");
        c["servers"][0]["listeners"][0]["access_logs"][0]["log_format"] = json!("");
    }));
    let l = m.listener("l");
    http(l, "GET", "/direct", &[], "");
    let log = dir.join("access.log");
    assert!(eventually(Duration::from_secs(5), || lines(&log).len() == 1));
    // MOSN's default format: start_time, trace_id (-), connection_id, ... upstream_host.
    let f: Vec<String> = lines(&log)[0]
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(f.len(), 18, "{f:?}");
    assert_eq!(
        (f[2].as_str(), f[9].as_str(), f[10].as_str()),
        ("-", "HTTP/1.1", "200")
    );
    for _ in 0..60 {
        http(l, "GET", "/direct", &[], "");
    }
    let backups = || rotated(&dir);
    assert!(
        eventually(Duration::from_secs(5), || backups() == 2),
        "backups: {}",
        backups()
    );
    let size = std::fs::metadata(&log).unwrap().len();
    assert!(size <= 2100, "current file {size} bytes");
}

#[test]
fn sigusr1_reopens_the_access_log() {
    let dir = temp_dir("usr1");
    let m = spawn(&config(&dir, std_upstream(), |_| {}));
    let l = m.listener("l");
    let log = dir.join("access.log");
    http(l, "GET", "/direct", &[], "");
    assert!(eventually(Duration::from_secs(5), || lines(&log).len() == 1));
    let moved = dir.join("access.log.moved");
    std::fs::rename(&log, &moved).unwrap();
    m.signal("-USR1");
    m.log_line(&["SIGUSR1"]);
    assert!(
        eventually(Duration::from_secs(5), || log.exists()),
        "file not reopened"
    );
    http(l, "GET", "/direct", &[], "");
    assert!(eventually(Duration::from_secs(5), || lines(&log).len() == 1));
    assert_eq!(lines(&moved).len(), 1, "the moved file got no new line");
}

#[test]
fn sigterm_drains_in_flight_requests_and_mosn_stop_stops() {
    let dir = temp_dir("drain");
    let cfg = config(&dir, std_upstream(), |_| {});
    let mut m = spawn(&cfg);
    let l = m.listener("l");
    let a = m.log_addr(&["admin listening"]);
    let slow = std::thread::spawn(move || http(l, "GET", "/slow", &[], ""));
    // Wait until the request is in flight upstream.
    assert!(eventually(Duration::from_secs(5), || {
        admin_json(a, "/api/v1/stats")["downstream"]["listener.l"]["request_active"] == "1"
    }));
    m.signal("-TERM");
    let r = slow.join().unwrap();
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "hello"),
        "the in-flight request finished"
    );
    assert_eq!(wait_timeout(&mut m.child, Duration::from_secs(10)), Some(0));
    assert!(!dir.join("mosn.pid").exists(), "pid file removed");

    // `mosn stop -c` finds the process by its pid file.
    let mut m = spawn(&cfg);
    m.listener("l");
    assert!(eventually(Duration::from_secs(5), || dir
        .join("mosn.pid")
        .exists()));
    let out = mosn().args(["stop", "-c"]).arg(&cfg).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(wait_timeout(&mut m.child, Duration::from_secs(10)), Some(0));
}

#[test]
fn access_log_rotation_by_time() {
    let dir = temp_dir("rotate-time");
    // time=0.0003 hours is about 1.1 s.
    let m = spawn(&config(&dir, std_upstream(), |c| {
        c["servers"][0]["global_log_roller"] = json!("time=0.0003");
    }));
    let l = m.listener("l");
    http(l, "GET", "/direct", &[], "");
    let backups = || rotated(&dir);
    assert!(
        eventually(Duration::from_secs(6), || backups() >= 1),
        "no time-based rotation"
    );
    let log = dir.join("access.log");
    assert!(log.exists(), "a fresh file after rotation");
}
