//! Envoy HTTP and network filters: the ones mosn-rs maps (router, fault), the ones it knows and
//! accepts without effect (Istio's telemetry and peer-metadata filters, gRPC stats, an empty
//! CORS), and the rest, which are refused unless marked optional.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::extensions::filters::common::fault::v3::fault_delay::FaultDelaySecifier;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::{
    fault_abort::ErrorType, HttpFault,
};
use envoy_types::pb::envoy::r#type::v3::FractionalPercent;
use envoy_types::pb::google::protobuf::Any;
use serde_json::{json, Map, Value};

use super::{decode, duration};

/// The HTTP router: implicit in MOSN's `proxy`.
const ROUTER: &[&str] = &["envoy.filters.http.router", "envoy.router"];

/// HTTP filters accepted without effect for now (issue: "known and accepted without effect, and
/// counted"): by filter name, or by the type URL of their config.
const NO_OP_HTTP: &[&str] = &[
    "istio.metadata_exchange",
    "istio.stats",
    "istio.alpn",
    "envoy.filters.http.grpc_stats",
    "envoy.filters.http.cors",
    "type.googleapis.com/io.istio.http.peer_metadata.Config",
    "type.googleapis.com/stats.PluginConfig",
    "type.googleapis.com/istio.envoy.config.filter.http.alpn.v2alpha1.FilterConfig",
    "type.googleapis.com/envoy.extensions.filters.http.grpc_stats.v3.FilterConfig",
    "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors",
];

/// Network filters accepted without effect: Istio's peer metadata exchange and stats, and the
/// pre-1.24 `istio_authn` (its state feeds RBAC, which is refused on its own).
const NO_OP_NETWORK: &[&str] = &[
    "istio.metadata_exchange",
    "istio.stats",
    "istio_authn",
    "envoy.filters.network.metadata_exchange",
    "type.googleapis.com/envoy.tcp.metadataexchange.config.MetadataExchange",
    "type.googleapis.com/stats.PluginConfig",
];

const FAULT: &str = "envoy.filters.http.fault";
const FAULT_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault";

fn known(list: &[&str], name: &str, any: Option<&Any>) -> bool {
    list.contains(&name) || any.is_some_and(|a| list.contains(&a.type_url.as_str()))
}

/// True for a network filter accepted without effect.
pub(crate) fn network_no_op(name: &str, any: Option<&Any>) -> bool {
    known(NO_OP_NETWORK, name, any)
}

/// Translates an HCM's `http_filters` into MOSN `stream_filters`.
///
/// Errors: a filter mosn-rs does not know and that is not `is_optional`, named by its index.
pub(crate) fn http_filters(
    filters: &[envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter],
    ignored: &mut BTreeMap<String, u64>,
) -> Result<Vec<Value>, String> {
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_filter::ConfigType;
    let mut out = Vec::new();
    for (i, f) in filters.iter().enumerate() {
        let any = match &f.config_type {
            Some(ConfigType::TypedConfig(a)) => Some(a),
            _ => None,
        };
        if f.disabled || ROUTER.contains(&f.name.as_str()) {
            continue;
        }
        if f.name == FAULT || any.is_some_and(|a| a.type_url == FAULT_TYPE) {
            let cfg = match any {
                Some(a) => fault(a).map_err(|e| format!("http_filters[{i}] ({}): {e}", f.name))?,
                None => None,
            };
            // An empty fault filter (Istio puts one in every HCM) only serves per-route configs.
            out.push(json!({"type": "fault", "config": cfg.unwrap_or_else(|| json!({}))}));
            continue;
        }
        if known(NO_OP_HTTP, &f.name, any) || f.is_optional {
            *ignored.entry(f.name.clone()).or_default() += 1;
            continue;
        }
        return Err(format!(
            "http_filters[{i}]: filter {:?} ({}) is not supported by mosn-rs and is not optional",
            f.name,
            any.map_or("no typed_config", |a| a.type_url.as_str())
        ));
    }
    Ok(out)
}

/// A fraction as a whole percentage (MOSN's `percentage`), rounded.
fn percent(p: &Option<FractionalPercent>) -> u64 {
    match p {
        None => 100,
        Some(f) => {
            let per = match f.denominator {
                1 => 10_000.0,
                2 => 1_000_000.0,
                _ => 100.0,
            };
            ((f64::from(f.numerator) / per) * 100.0).round().min(100.0) as u64
        }
    }
}

/// Envoy's `HTTPFault` as MOSN's `fault` config; `None` when it injects nothing.
///
/// Errors: header-controlled delays and aborts, gRPC aborts (not in MOSN's filter).
pub(crate) fn fault(any: &Any) -> Result<Option<Value>, String> {
    let f: HttpFault = decode(any, FAULT_TYPE)?;
    let mut o = Map::new();
    if let Some(d) = &f.delay {
        match &d.fault_delay_secifier {
            Some(FaultDelaySecifier::FixedDelay(t)) => {
                o.insert(
                    "delay".into(),
                    json!({"fixed_delay": duration(&Some(*t)), "percentage": percent(&d.percentage)}),
                );
            }
            Some(_) => return Err("delay: only fixed_delay is supported by mosn-rs".into()),
            None => {}
        }
    }
    if let Some(a) = &f.abort {
        match &a.error_type {
            Some(ErrorType::HttpStatus(s)) => {
                o.insert(
                    "abort".into(),
                    json!({"status": s, "percentage": percent(&a.percentage)}),
                );
            }
            Some(_) => return Err("abort: only http_status is supported by mosn-rs".into()),
            None => {}
        }
    }
    if o.is_empty() {
        return Ok(None);
    }
    if !f.upstream_cluster.is_empty() {
        o.insert("upstream_cluster".into(), json!(f.upstream_cluster));
    }
    if !f.headers.is_empty() {
        return Err("headers: header-conditioned faults are not supported by mosn-rs yet".into());
    }
    Ok(Some(Value::Object(o)))
}
