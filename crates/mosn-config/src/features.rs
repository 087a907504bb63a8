//! What this build's config parser accepts, for the admin API's `/api/v1/features`: each feature
//! is probed by parsing a minimal config that uses it, so the answer follows the code and is never
//! a hand-kept list.

use serde_json::{json, Value};

/// A config with one listener whose `proxy` filter and listener fields are `proxy` and `extra`
/// merged in, and one cluster `c`.
fn with_listener(filter: Value, extra: Value) -> Value {
    let mut l = json!({"name": "l", "address": "127.0.0.1:0",
        "filter_chains": [{"filters": [filter]}]});
    if let (Some(l), Some(e)) = (l.as_object_mut(), extra.as_object()) {
        l.extend(e.clone());
    }
    json!({"servers": [{"routers": [{"router_config_name": "r", "virtual_hosts": []}],
        "listeners": [l]}],
        "cluster_manager": {"clusters": [{"name": "c", "hosts": []}]}})
}

fn proxy(downstream: &str, upstream: &str) -> Value {
    json!({"type": "proxy", "config": {"downstream_protocol": downstream,
        "upstream_protocol": upstream, "router_config_name": "r"}})
}

fn accepts(v: &Value) -> bool {
    crate::from_value(v).is_ok()
}

/// `(feature, supported)` pairs, in a fixed order: protocols (`http1`, `http2`, `auto`, `bolt`,
/// `dubbo`), `tls`, `tcp_proxy`, `udp_proxy`, `stream_filters`, `xds`, `prometheus`,
/// `access_log`.
pub fn features() -> Vec<(&'static str, bool)> {
    let mut out = Vec::new();
    for (name, p) in [
        ("http1", "Http1"),
        ("http2", "Http2"),
        ("auto", "Auto"),
        ("bolt", "bolt"),
        ("dubbo", "dubbo"),
    ] {
        out.push((name, accepts(&with_listener(proxy(p, p), json!({})))));
    }
    let tls =
        json!({"tls_context": {"status": true, "cert_chain": "c.pem", "private_key": "k.pem"}});
    out.push(("tls", accepts(&with_listener(proxy("Http1", "Http1"), tls))));
    out.push((
        "tcp_proxy",
        accepts(&with_listener(
            json!({"type": "tcp_proxy", "config": {"cluster": "c"}}),
            json!({}),
        )),
    ));
    out.push((
        "udp_proxy",
        accepts(&with_listener(
            json!({"type": "udp_proxy", "config": {"cluster": "c"}}),
            json!({"network": "udp"}),
        )),
    ));
    out.push((
        "stream_filters",
        accepts(&with_listener(
            proxy("Http1", "Http1"),
            json!({"stream_filters": [{"type": "fault", "config": {}}]}),
        )),
    ));
    let mut xds = with_listener(proxy("Http1", "Http1"), json!({}));
    xds["dynamic_resources"] = json!({"ads_config": {"api_type": "DELTA_GRPC",
        "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}]}});
    xds["static_resources"] = json!({"clusters": [{"name": "xds-grpc", "type": "STATIC",
        "load_assignment": {"endpoints": [{"lb_endpoints": [{"endpoint": {"address":
            {"pipe": {"path": "/tmp/XDS"}}}}]}]}}]});
    out.push(("xds", accepts(&xds)));
    let mut prom = with_listener(proxy("Http1", "Http1"), json!({}));
    prom["metrics"] = json!({"sinks": [{"type": "prometheus", "config": {"port": 0}}]});
    out.push(("prometheus", accepts(&prom)));
    out.push((
        "access_log",
        accepts(&with_listener(
            proxy("Http1", "Http1"),
            json!({"access_logs": [{"log_path": "stdout"}]}),
        )),
    ));
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn features_follow_the_parser() {
        let f: std::collections::HashMap<_, _> = super::features().into_iter().collect();
        assert!(f["http1"] && f["tls"] && f["tcp_proxy"] && f["udp_proxy"]);
        assert!(f["stream_filters"] && f["prometheus"] && f["access_log"]);
        assert!(f["http2"] && f["auto"] && f["bolt"] && f["dubbo"]);
        assert!(f["xds"]);
    }
}
