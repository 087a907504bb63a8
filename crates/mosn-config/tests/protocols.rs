//! The `proxy` filter's protocols as MOSN writes them: `bolt`, `boltv2`, MOSN's legacy `X` with
//! `extend_config.sub_protocol`, the RPC upstream defaulting to the downstream's, and the
//! HTTP↔RPC pairs that need a transcoder refused with the JSON path.

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
fn unusable_protocol_pairs_name_their_path() {
    let e = |v: Value| protocols(v).unwrap_err();
    let x = e(json!({"downstream_protocol": "X", "router_config_name": "r"}));
    assert!(
        x.contains("downstream_protocol") && x.contains("sub_protocol"),
        "{x}"
    );
    let x = e(
        json!({"downstream_protocol": "X", "router_config_name": "r",
        "extend_config": {"sub_protocol": "dubbo"}}),
    );
    assert!(
        x.contains("extend_config.sub_protocol") && x.contains("not supported"),
        "{x}"
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
