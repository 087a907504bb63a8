//! The `proxy` filter's protocols as MOSN writes them: `bolt`, `boltv2`, MOSN's legacy `X` with
//! `extend_config.sub_protocol`, the RPC upstream defaulting to the downstream's, and the
//! HTTP→RPC pairs accepted only with a `transcoder` stream filter (RPC→HTTP refused), with the
//! JSON path; MOSN's `enable_bolt_goaway` in both spellings.

use mosn_config::{NetworkFilter, Protocol};
use serde_json::{json, Value};

fn config(proxy: Value) -> Value {
    json!({"servers": [{"routers": [{"router_config_name": "r", "virtual_hosts": [
            {"name": "v", "domains": ["*"], "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "c"}}]}]}],
        "listeners": [{"name": "l", "address": "127.0.0.1:0", "bind_port": true,
            "filter_chains": [{"filters": [{"type": "proxy", "config": proxy}]}]}]}],
        "cluster_manager": {"clusters": [{"name": "c", "type": "SIMPLE", "hosts": [{"address": "127.0.0.1:1"}]}]}})
}

fn protocols(proxy: Value) -> Result<(Protocol, Protocol), String> {
    let loaded = mosn_config::from_value(&config(proxy)).map_err(|e| e.to_string())?;
    match &loaded.config.server.listeners[0].filter {
        NetworkFilter::Proxy(p) => Ok((p.downstream_protocol, p.upstream_protocol)),
        _ => panic!("not a proxy filter"),
    }
}

#[test]
fn bolt_spellings_and_defaults() {
    let r = |v: Value| protocols(v).unwrap();
    assert_eq!(
        r(json!({"downstream_protocol": "bolt", "router_config_name": "r"})),
        (Protocol::Bolt, Protocol::Bolt),
        "an RPC upstream defaults to the downstream's protocol"
    );
    assert_eq!(
        r(
            json!({"downstream_protocol": "boltv2", "upstream_protocol": "boltv2", "router_config_name": "r"})
        ),
        (Protocol::BoltV2, Protocol::BoltV2)
    );
    assert_eq!(
        r(
            json!({"downstream_protocol": "X", "upstream_protocol": "X", "router_config_name": "r",
            "extend_config": {"sub_protocol": "bolt"}})
        ),
        (Protocol::Bolt, Protocol::Bolt)
    );
    assert_eq!(
        r(
            json!({"downstream_protocol": "Auto", "upstream_protocol": "Auto", "router_config_name": "r"})
        ),
        (Protocol::Auto, Protocol::Auto)
    );
}

#[test]
fn dubbo_spellings() {
    let r = |v: Value| protocols(v).unwrap();
    assert_eq!(
        r(json!({"downstream_protocol": "dubbo", "router_config_name": "r"})),
        (Protocol::Dubbo, Protocol::Dubbo)
    );
    // MOSN's legacy form, as in its Dubbo examples.
    assert_eq!(
        r(
            json!({"downstream_protocol": "X", "upstream_protocol": "X", "router_config_name": "r",
            "extend_config": {"sub_protocol": "dubbo"}})
        ),
        (Protocol::Dubbo, Protocol::Dubbo)
    );
}

#[test]
fn unusable_protocol_pairs_name_their_path() {
    let e = |v: Value| protocols(v).unwrap_err();
    let x = e(json!({"downstream_protocol": "X", "router_config_name": "r"}));
    assert!(
        x.contains("downstream_protocol") && x.contains("sub_protocol"),
        "{x}"
    );
    let x = e(
        json!({"downstream_protocol": "X", "router_config_name": "r",
        "extend_config": {"sub_protocol": "thrift"}}),
    );
    assert!(
        x.contains("extend_config.sub_protocol") && x.contains("not supported"),
        "{x}"
    );
    let x = e(
        json!({"downstream_protocol": "bolt", "upstream_protocol": "dubbo", "router_config_name": "r"}),
    );
    assert!(
        x.contains("upstream_protocol") && x.contains("transcoder"),
        "a Bolt call cannot go to a Dubbo upstream: {x}"
    );
    let x = e(
        json!({"downstream_protocol": "Http1", "upstream_protocol": "bolt", "router_config_name": "r"}),
    );
    assert!(
        x.contains("upstream_protocol") && x.contains("transcoder"),
        "{x}"
    );
    let x = e(
        json!({"downstream_protocol": "bolt", "upstream_protocol": "Http1", "router_config_name": "r"}),
    );
    assert!(
        x.contains("upstream_protocol") && x.contains("transcoder"),
        "{x}"
    );
}

#[test]
fn http_to_bolt_is_accepted_with_a_transcoder_filter_and_bolt_goaway_parses() {
    let mut cfg = config(
        json!({"downstream_protocol": "Http1", "upstream_protocol": "X",
        "extend_config": {"sub_protocol": "bolt"}, "router_config_name": "r"}),
    );
    let e = mosn_config::from_value(&cfg).unwrap_err().to_string();
    assert!(
        e.contains("filter_chains[0].filters[0].config.upstream_protocol")
            && e.contains("\"transcoder\" stream filter"),
        "{e}"
    );
    cfg["servers"][0]["listeners"][0]["stream_filters"] =
        json!([{"type": "transcoder", "config": {"type": "http2bolt_simple"}}]);
    let loaded = mosn_config::from_value(&cfg).unwrap();
    let NetworkFilter::Proxy(p) = &loaded.config.server.listeners[0].filter else {
        panic!("not a proxy filter")
    };
    assert_eq!(
        (p.downstream_protocol, p.upstream_protocol),
        (Protocol::Http1, Protocol::Bolt)
    );
    assert!(p.transcoded.is_some() && !p.bolt_goaway);
    for ext in [
        json!({"enable_bolt_goaway": true}),
        json!({"bolt": {"enable_bolt_goaway": true}}),
    ] {
        let loaded = mosn_config::from_value(&config(
            json!({"downstream_protocol": "bolt", "router_config_name": "r", "extend_config": ext}),
        ))
        .unwrap();
        let NetworkFilter::Proxy(p) = &loaded.config.server.listeners[0].filter else {
            panic!("not a proxy filter")
        };
        assert!(p.bolt_goaway);
    }
}
