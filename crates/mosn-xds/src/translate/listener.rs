//! `Listener` → a MOSN `listeners[]` entry (and the routers of inline route configs).
//!
//! mosn-rs runs one network filter per listener, a `proxy` with an optional `tcp_proxy` fallback
//! for connections that are not HTTP, or a `tcp_proxy` whose routes match addresses and ports.
//! Envoy's filter chains map onto that when they are:
//! - one chain (plus, possibly, a `default_filter_chain`);
//! - an HTTP chain matched on `raw_buffer` and HTTP ALPNs, beside a `tcp_proxy` chain or default
//!   chain that takes the rest (Istio's outbound `0.0.0.0_<port>`): `Auto` with the fallback;
//! - only `tcp_proxy` chains that differ by destination port, destination or source prefix
//!   ranges (Istio's `virtualOutbound`): `tcp_proxy` routes, in chain order.
//!
//! Anything else (chains told apart by TLS, ALPN or SNI that run different filters, as Istio's
//! `virtualInbound`) is refused with the field named, so the listener is NACKed rather than
//! served wrongly.

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::config::listener::v3::{
    filter, FilterChain, FilterChainMatch, Listener,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::RouteSpecifier, HttpConnectionManager,
};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{
    tcp_proxy::ClusterSpecifier, TcpProxy,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::DownstreamTlsContext;
use serde_json::{json, Map, Value};

use super::tls::{self, TlsError};
use super::{address, decode, duration, filters, route};
use crate::store::Store;

const HCM: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const TCP_PROXY: &str =
    "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy";
const DOWNSTREAM_TLS: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";

/// What one filter chain does.
enum Chain {
    Http {
        router: String,
        inline: Option<Value>,
        codec: &'static str,
        stream_filters: Vec<Value>,
    },
    Tcp(Map<String, Value>),
}

fn any_of(
    f: &envoy_types::pb::envoy::config::listener::v3::Filter,
) -> Option<&envoy_types::pb::google::protobuf::Any> {
    match &f.config_type {
        Some(filter::ConfigType::TypedConfig(a)) => Some(a),
        _ => None,
    }
}

/// The RDS names a listener's HCMs use.
pub(crate) fn rds_names(l: &Listener, out: &mut BTreeSet<String>) {
    for c in l.filter_chains.iter().chain(l.default_filter_chain.iter()) {
        for f in &c.filters {
            if let Some(a) = any_of(f).filter(|a| a.type_url == HCM) {
                if let Ok(h) = decode::<HttpConnectionManager>(a, HCM) {
                    if let Some(RouteSpecifier::Rds(r)) = &h.route_specifier {
                        out.insert(r.route_config_name.clone());
                    }
                }
            }
        }
    }
}

/// The SDS secrets a listener's TLS contexts name.
pub(crate) fn secret_names(l: &Listener, out: &mut BTreeSet<String>) {
    use envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType;
    for c in l.filter_chains.iter().chain(l.default_filter_chain.iter()) {
        if let Some(ConfigType::TypedConfig(any)) = c
            .transport_socket
            .as_ref()
            .and_then(|t| t.config_type.as_ref())
        {
            if let Ok(d) = decode::<DownstreamTlsContext>(any, DOWNSTREAM_TLS) {
                if let Some(common) = &d.common_tls_context {
                    tls::secret_names(common, out);
                }
            }
        }
    }
}

/// The routers and clusters a translated listener refers to.
pub(crate) fn references(
    l: &Value,
    routers: &mut BTreeSet<String>,
    clusters: &mut BTreeSet<String>,
) {
    for c in l["filter_chains"].as_array().into_iter().flatten() {
        for f in c["filters"].as_array().into_iter().flatten() {
            let cfg = &f["config"];
            if let Some(r) = cfg["router_config_name"].as_str() {
                routers.insert(r.to_string());
            }
            if let Some(c) = cfg["cluster"].as_str() {
                clusters.insert(c.to_string());
            }
            for r in cfg["routes"].as_array().into_iter().flatten() {
                if let Some(c) = r["cluster"].as_str() {
                    clusters.insert(c.to_string());
                }
            }
        }
    }
}

fn chain(
    listener: &str,
    c: &FilterChain,
    ignored: &mut BTreeMap<String, u64>,
) -> Result<Chain, String> {
    let mut terminal = None;
    for (i, f) in c.filters.iter().enumerate() {
        let any = any_of(f);
        if filters::network_no_op(&f.name, any) {
            *ignored.entry(f.name.clone()).or_default() += 1;
            continue;
        }
        if terminal.is_some() {
            return Err(format!("filters[{i}]: a filter after the terminal one"));
        }
        let any = any.ok_or_else(|| format!("filters[{i}]: typed_config is required"))?;
        terminal = Some(match any.type_url.as_str() {
            HCM => {
                let h: HttpConnectionManager =
                    decode(any, HCM).map_err(|e| format!("filters[{i}]: {e}"))?;
                let (router, inline) = match &h.route_specifier {
                    Some(RouteSpecifier::Rds(r)) => (r.route_config_name.clone(), None),
                    Some(RouteSpecifier::RouteConfig(rc)) => {
                        let mut v = route::translate(rc)
                            .map_err(|e| format!("filters[{i}].route_config.{e}"))?;
                        // An inline table is the listener's own.
                        let name = format!("{listener}/{}", rc.name);
                        v["router_config_name"] = json!(name);
                        (name, Some(v))
                    }
                    _ => {
                        return Err(format!(
                            "filters[{i}]: scoped routes are not supported by mosn-rs"
                        ))
                    }
                };
                let stream_filters = filters::http_filters(&h.http_filters, ignored)
                    .map_err(|e| format!("filters[{i}].{e}"))?;
                // CodecType: 0 AUTO, 1 HTTP1, 2 HTTP2, 3 HTTP3.
                let codec = match h.codec_type {
                    1 => "Http1",
                    2 => "Http2",
                    3 => return Err(format!("filters[{i}].codec_type: HTTP3 is not supported")),
                    _ => "Auto",
                };
                Chain::Http {
                    router,
                    inline,
                    codec,
                    stream_filters,
                }
            }
            TCP_PROXY => {
                let t: TcpProxy =
                    decode(any, TCP_PROXY).map_err(|e| format!("filters[{i}]: {e}"))?;
                let mut o = Map::new();
                match &t.cluster_specifier {
                    Some(ClusterSpecifier::Cluster(c)) => {
                        o.insert("cluster".into(), json!(c));
                    }
                    Some(ClusterSpecifier::WeightedClusters(_)) => {
                        return Err(format!(
                            "filters[{i}]: tcp_proxy weighted_clusters are not supported by mosn-rs yet"
                        ))
                    }
                    None => return Err(format!("filters[{i}]: tcp_proxy needs a cluster")),
                }
                if !t.stat_prefix.is_empty() {
                    o.insert("stat_prefix".into(), json!(t.stat_prefix));
                }
                if let Some(d) = duration(&t.idle_timeout) {
                    o.insert("idle_timeout".into(), json!(d));
                }
                if let Some(n) = &t.max_connect_attempts {
                    o.insert("max_connect_attempts".into(), json!(n.value.min(100)));
                }
                Chain::Tcp(o)
            }
            _ => {
                return Err(format!(
                    "filters[{i}]: network filter {:?} ({}) is not supported by mosn-rs",
                    f.name, any.type_url
                ))
            }
        });
    }
    terminal
        .ok_or_else(|| "filters: no terminal filter (http_connection_manager or tcp_proxy)".into())
}

/// True when a chain match only asks for plaintext HTTP (what Istio's HTTP chains say), which
/// `Auto` detection does itself.
fn plain_http_match(m: &Option<FilterChainMatch>) -> bool {
    let Some(m) = m else { return true };
    let http_alpn = |a: &String| matches!(a.as_str(), "http/1.0" | "http/1.1" | "h2c" | "h2");
    (m.transport_protocol.is_empty() || m.transport_protocol == "raw_buffer")
        && m.application_protocols.iter().all(http_alpn)
        && m.server_names.is_empty()
        && m.destination_port.is_none()
        && m.prefix_ranges.is_empty()
        && m.source_prefix_ranges.is_empty()
        && m.source_ports.is_empty()
}

fn cidrs(r: &[envoy_types::pb::envoy::config::core::v3::CidrRange]) -> Value {
    r.iter()
        .map(|c| json!({"address": c.address_prefix, "length": c.prefix_len.as_ref().map_or(32, |p| p.value)}))
        .collect()
}

/// A `tcp_proxy` route from a chain match; `Err` when the match needs more than addresses and
/// ports.
fn tcp_route(m: &Option<FilterChainMatch>, cluster: &str) -> Result<Value, String> {
    let mut r = Map::new();
    r.insert("cluster".into(), json!(cluster));
    if let Some(m) = m {
        if !m.server_names.is_empty() || !m.application_protocols.is_empty() {
            return Err("server_names and application_protocols".into());
        }
        if let Some(p) = &m.destination_port {
            r.insert("destination_port".into(), json!(p.value.to_string()));
        }
        if !m.prefix_ranges.is_empty() {
            r.insert("destination_addrs".into(), cidrs(&m.prefix_ranges));
        }
        if !m.source_prefix_ranges.is_empty() {
            r.insert("source_addrs".into(), cidrs(&m.source_prefix_ranges));
        }
        if !m.source_ports.is_empty() {
            let ports: Vec<String> = m.source_ports.iter().map(u32::to_string).collect();
            r.insert("source_port".into(), json!(ports.join(",")));
        }
    }
    Ok(Value::Object(r))
}

fn downstream_tls(c: &FilterChain, store: &Store) -> Result<Option<Value>, String> {
    use envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType;
    let Some(ts) = &c.transport_socket else {
        return Ok(None);
    };
    let Some(ConfigType::TypedConfig(any)) = &ts.config_type else {
        return Ok(None);
    };
    if any.type_url != DOWNSTREAM_TLS {
        return Ok(None);
    }
    let d: DownstreamTlsContext = decode(any, DOWNSTREAM_TLS)?;
    let common = d.common_tls_context.unwrap_or_default();
    let require = d
        .require_client_certificate
        .as_ref()
        .is_some_and(|b| b.value);
    match tls::context(store, &common, "", Some(require)) {
        Ok(v) => Ok(Some(v)),
        Err(TlsError::Waiting(s)) => Err(format!("{}{s:?}", super::WAITING)),
        Err(TlsError::Bad(m)) => Err(format!("transport_socket: {m}")),
    }
}

/// Translates a listener: its MOSN JSON and the routers of its inline route configs.
///
/// Errors: the first part mosn-rs cannot serve, named by its field.
pub(crate) fn translate(
    l: &Listener,
    store: &Store,
    ignored: &mut BTreeMap<String, u64>,
) -> Result<(Value, Vec<Value>), String> {
    use envoy_types::pb::envoy::config::listener::v3::listener_filter::ConfigType as Lf;
    let mut o = Map::new();
    o.insert("name".into(), json!(l.name));
    let addr = address(&l.address).map_err(|e| format!("address: {e}"))?;
    match addr.strip_prefix("unix:") {
        Some(p) => {
            o.insert("network".into(), json!("unix"));
            o.insert("address".into(), json!(p));
        }
        None => {
            o.insert("address".into(), json!(addr));
        }
    }
    if l.bind_to_port.as_ref().is_some_and(|b| !b.value) {
        o.insert("bind_port".into(), json!(false));
    }
    let mut original_dst = l.use_original_dst.as_ref().is_some_and(|b| b.value);
    for (i, f) in l.listener_filters.iter().enumerate() {
        let ty = match &f.config_type {
            Some(Lf::TypedConfig(a)) => a.type_url.as_str(),
            _ => "",
        };
        match f.name.as_str() {
            "envoy.filters.listener.original_dst" => original_dst = true,
            // TLS and HTTP detection: mosn-rs's `inspector` and `Auto` do these.
            "envoy.filters.listener.tls_inspector" | "envoy.filters.listener.http_inspector" => {}
            _ if ty.ends_with("original_dst.v3.OriginalDst") => original_dst = true,
            _ if ty.ends_with("tls_inspector.v3.TlsInspector")
                || ty.ends_with("http_inspector.v3.HttpInspector") => {}
            name => {
                return Err(format!(
                    "listener_filters[{i}]: listener filter {name:?} is not supported by mosn-rs"
                ))
            }
        }
    }
    if original_dst {
        let mode = if l.transparent.as_ref().is_some_and(|b| b.value) {
            "tproxy"
        } else {
            "redirect"
        };
        o.insert("use_original_dst".into(), json!(mode));
    }
    let mut chains = Vec::new();
    for (i, c) in l.filter_chains.iter().enumerate() {
        chains.push((
            format!("filter_chains[{i}]"),
            c,
            chain(&l.name, c, ignored).map_err(|e| format!("filter_chains[{i}].{e}"))?,
        ));
    }
    if let Some(c) = &l.default_filter_chain {
        chains.push((
            "default_filter_chain".into(),
            c,
            chain(&l.name, c, ignored).map_err(|e| format!("default_filter_chain.{e}"))?,
        ));
    }
    let mut inline = Vec::new();
    let mut network = Vec::new();
    let http: Vec<_> = chains
        .iter()
        .filter(|(_, _, k)| matches!(k, Chain::Http { .. }))
        .collect();
    let tcp: Vec<_> = chains
        .iter()
        .filter(|(_, _, k)| matches!(k, Chain::Tcp(_)))
        .collect();
    let mut stream_filters = Vec::new();
    let mut tls_ctx = None;
    match (http.as_slice(), tcp.as_slice()) {
        ([], []) => return Err("filter_chains: none".into()),
        ([(path, c, Chain::Http { router, inline: il, codec, stream_filters: sf })], rest)
            if rest.len() <= 1 && (rest.is_empty() || plain_http_match(&c.filter_chain_match)) =>
        {
            tls_ctx = downstream_tls(c, store).map_err(|e| format!("{path}.{e}"))?;
            inline.extend(il.clone());
            stream_filters = sf.clone();
            let mut p = Map::new();
            p.insert("downstream_protocol".into(), json!(codec));
            p.insert("upstream_protocol".into(), json!("Auto"));
            p.insert("router_config_name".into(), json!(router));
            if let [(tp, tc, Chain::Tcp(t))] = rest {
                if tls_ctx.is_some() {
                    return Err(format!("{path}: TLS beside a plaintext fallback chain is not supported by mosn-rs yet"));
                }
                if tc.filter_chain_match.as_ref().is_some_and(|m| *m != FilterChainMatch::default())
                    && !tp.starts_with("default")
                {
                    return Err(format!("{tp}.filter_chain_match: a fallback chain must match everything"));
                }
                p.insert("fallback_for_unknown_protocol".into(), json!(true));
                network.push(json!({"type": "proxy", "config": p}));
                network.push(json!({"type": "tcp_proxy", "config": t}));
            } else {
                network.push(json!({"type": "proxy", "config": p}));
            }
        }
        ([], [(path, c, Chain::Tcp(t))]) => {
            tls_ctx = downstream_tls(c, store).map_err(|e| format!("{path}.{e}"))?;
            network.push(json!({"type": "tcp_proxy", "config": t}));
        }
        ([], many) => {
            let mut routes = Vec::new();
            let mut base = None;
            for (path, c, k) in many {
                let Chain::Tcp(t) = k else { continue };
                if c.transport_socket.is_some() {
                    return Err(format!("{path}.transport_socket: TLS on one of several chains is not supported by mosn-rs yet"));
                }
                let cluster = t.get("cluster").and_then(Value::as_str).unwrap_or_default();
                routes.push(tcp_route(&c.filter_chain_match, cluster).map_err(|what| {
                    format!("{path}.filter_chain_match: matching tcp_proxy chains by {what} is not supported by mosn-rs yet")
                })?);
                base.get_or_insert_with(|| t.clone());
            }
            let mut t = base.unwrap_or_default();
            t.remove("cluster");
            t.insert("routes".into(), Value::Array(routes));
            network.push(json!({"type": "tcp_proxy", "config": t}));
        }
        _ => {
            return Err(
                "filter_chains: chains told apart by TLS, ALPN or SNI that run different filters are not supported by mosn-rs yet"
                    .into(),
            )
        }
    }
    let mut chain = Map::new();
    chain.insert("filters".into(), Value::Array(network));
    if let Some(t) = tls_ctx {
        chain.insert("tls_context".into(), t);
    }
    o.insert("filter_chains".into(), json!([chain]));
    if !stream_filters.is_empty() {
        o.insert("stream_filters".into(), Value::Array(stream_filters));
    }
    Ok((Value::Object(o), inline))
}
