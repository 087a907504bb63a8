//! Stream filters on the real binary, driven with curl: `ip_access` by CIDR and by header,
//! `fault` abort and delay, `payload_limit`, and `header_to_metadata` picking a host subset.

mod common;

use common::*;
use serde_json::json;

fn listener(name: &str, filters: serde_json::Value) -> serde_json::Value {
    json!({"name": name, "address": "127.0.0.1:0", "bind_port": true,
        "filter_chains": [{"filters": [{"type": "proxy", "config": {
            "downstream_protocol": "Http1", "upstream_protocol": "Http1", "router_config_name": "r"}}]}],
        "stream_filters": filters})
}

fn status_and_time(args: &[&str]) -> (u16, f64) {
    let out = curl(
        &[
            &["-o", "/dev/null", "-w", "%{http_code} %{time_total}"],
            args,
        ]
        .concat(),
    );
    let mut it = out.split_whitespace();
    (
        it.next().unwrap().parse().unwrap(),
        it.next().unwrap().parse().unwrap(),
    )
}

#[test]
fn stream_filters_shown_with_curl() {
    let v1 = text_upstream("v1");
    let v2 = text_upstream("v2");
    let cfg = json!({
        "servers": [{"default_log_path": "stderr", "routers": [{"router_config_name": "r",
            "virtual_hosts": [{"name": "all", "domains": ["*"], "routers": [
                // per_filter_config: on these routes the listener's filter of that type runs with
                // the route's config instead.
                {"match": {"prefix": "/calm"}, "route": {"cluster_name": "svc"},
                 "per_filter_config": {"fault": {"abort": {"status": 418, "percentage": 0}}}},
                {"match": {"prefix": "/big"}, "route": {"cluster_name": "svc"},
                 "per_filter_config": {"payload_limit": {"max_entity_size": 100}}},
                {"match": {"prefix": "/"}, "route": {"cluster_name": "svc"}}]}]}],
          "listeners": [
            listener("plain", json!([])),
            listener("deny_cidr", json!([{"type": "ip_access", "config": {"default_action": "allow",
                "ips": [{"action": "deny", "addrs": ["127.0.0.0/8"]}]}}])),
            listener("deny_header", json!([{"type": "ip_access", "config": {"header": "x-real-ip",
                "ips": [{"action": "deny", "addrs": ["10.0.0.0/8"]}]}}])),
            listener("abort", json!([{"type": "fault", "config": {"abort": {"status": 418, "percentage": 100}}}])),
            listener("delay", json!([{"type": "fault", "config": {"delay": {"fixed_delay": "300ms", "percentage": 100}}}])),
            listener("limit", json!([{"type": "payload_limit", "config": {"max_entity_size ": 10}}])),
            listener("meta", json!([{"type": "header_to_metadata", "config": {"request_rules": [
                {"header": "x-version", "on_header_present": {"metadata_namespace": "mosn.lb", "key": "version"}}]}}])),
          ]}],
        "cluster_manager": {"clusters": [{"name": "svc", "lb_type": "LB_ROUNDROBIN",
            "lb_subset_config": {"fall_back_policy": 1},
            "hosts": [
                {"address": v1.to_string(), "metadata": {"filter_metadata": {"mosn.lb": {"version": "1.0"}}}},
                {"address": v2.to_string(), "metadata": {"filter_metadata": {"mosn.lb": {"version": "2.0"}}}}]}]}
    });
    let path = write_temp("stream_filters.json", &cfg.to_string());
    let p = spawn(&path);
    let url = |name: &str| format!("http://{}/", p.listener(name));

    assert_eq!(status_and_time(&[&url("plain")]).0, 200);
    // ip_access: the client (127.0.0.1) is in a denied CIDR.
    assert_eq!(status_and_time(&[&url("deny_cidr")]).0, 403);
    // ip_access by header: only the header's address decides.
    assert_eq!(
        status_and_time(&["-H", "x-real-ip: 10.1.2.3", &url("deny_header")]).0,
        403
    );
    assert_eq!(
        status_and_time(&["-H", "x-real-ip: 192.0.2.1", &url("deny_header")]).0,
        200
    );
    // fault abort at 100 %.
    assert_eq!(status_and_time(&[&url("abort")]).0, 418);
    // fault delay: 300 ms more than the same request without the filter, within ±50 ms.
    let (_, plain) = status_and_time(&[&url("plain")]);
    let (s, delayed) = status_and_time(&[&url("delay")]);
    assert_eq!(s, 200);
    let extra = delayed - plain;
    assert!((0.25..=0.35).contains(&extra), "delay added {extra:.3} s");
    // payload_limit: Content-Length over the limit, a chunked body over it, and one under it.
    assert_eq!(
        status_and_time(&["-d", "01234567890123456789", &url("limit")]).0,
        413
    );
    assert_eq!(
        status_and_time(&[
            "-H",
            "transfer-encoding: chunked",
            "-d",
            "01234567890123456789",
            &url("limit")
        ])
        .0,
        413
    );
    assert_eq!(status_and_time(&["-d", "12345", &url("limit")]).0, 200);
    // A route's per_filter_config replaces the listener's config for that route only.
    assert_eq!(status_and_time(&[&format!("{}calm", url("abort"))]).0, 200);
    let big = format!("{}big", url("limit"));
    assert_eq!(
        status_and_time(&["-d", "01234567890123456789", &big]).0,
        200
    );
    assert_eq!(status_and_time(&["-d", &"x".repeat(101), &big]).0, 413);
    // header_to_metadata: the header picks the subset; without it both hosts serve.
    for _ in 0..4 {
        assert_eq!(curl(&["-H", "x-version: 2.0", &url("meta")]), "v2");
        assert_eq!(curl(&["-H", "x-version: 1.0", &url("meta")]), "v1");
    }
    let mut seen: Vec<String> = (0..4).map(|_| curl(&[&url("meta")])).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen, vec!["v1", "v2"]);
}

#[test]
fn unknown_filter_types_and_bad_filter_configs_are_config_errors() {
    for (filters, path) in [
        (
            json!([{"type": "nope", "config": {}}]),
            "servers[0].listeners[0].stream_filters[0].type",
        ),
        (
            json!([{"type": "ip_access", "config": {"ips": [{"action": "deny", "addrs": ["x"]}]}}]),
            "servers[0].listeners[0].stream_filters[0].config.ips[0].addrs[0]",
        ),
        (
            json!([{"type": "payload_limit", "config": {}}]),
            "servers[0].listeners[0].stream_filters[0].config.max_entity_size",
        ),
    ] {
        let cfg = json!({"servers": [{"routers": [{"router_config_name": "r", "virtual_hosts": []}],
            "listeners": [listener("l", filters)]}], "cluster_manager": {"clusters": []}});
        check_fails_at(&cfg, path);
    }
    // per_filter_config on a route: a bad config, and a filter that runs before routing.
    for (per_filter, path) in [
        (
            json!({"fault": {"abort": {"status": 42, "percentage": 100}}}),
            "virtual_hosts[0].routers[0].per_filter_config.fault.abort.status",
        ),
        (
            json!({"ip_access": {"ips": []}}),
            "virtual_hosts[0].routers[0].per_filter_config.ip_access: ip_access runs before the route is chosen",
        ),
    ] {
        let cfg = json!({"servers": [{"routers": [{"router_config_name": "r", "virtual_hosts": [
                {"name": "v", "domains": ["*"], "routers": [{"match": {"prefix": "/"},
                    "route": {"cluster_name": "c"}, "per_filter_config": per_filter}]}]}],
            "listeners": [listener("l", json!([]))]}],
            "cluster_manager": {"clusters": [{"name": "c", "hosts": []}]}});
        check_fails_at(&cfg, path);
    }
}

/// `mosn check` exits 1 and its error contains `path`.
fn check_fails_at(cfg: &serde_json::Value, path: &str) {
    {
        let path_file = write_temp("bad_filter.json", &cfg.to_string());
        let out = mosn()
            .args(["check", "-c"])
            .arg(&path_file)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(path), "expected {path} in: {err}");
    }
}
