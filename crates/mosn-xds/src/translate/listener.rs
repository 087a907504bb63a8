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
//! `virtualInbound`) becomes a parent listener with one child listener per chain
//! (`parent_listener` + `filter_chain_match`), which the proxy chooses among per connection as
//! Envoy does; the parent's own filter is the default chain, or `BlackHoleCluster`.

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

/// Translates one filter chain; `owner` names its inline route table (`<listener>/<chain>`).
fn chain(
    owner: &str,
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
                        let name = format!("{owner}/{}", rc.name);
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

/// `FilterChainMatch` as mosn-rs's `filter_chain_match`.
///
/// Errors: criteria mosn-rs does not match on (`address_suffix`, direct source ranges, a source
/// type other than any).
fn chain_match_json(m: &Option<FilterChainMatch>) -> Result<Value, String> {
    let Some(m) = m else { return Ok(json!({})) };
    if !m.address_suffix.is_empty()
        || m.suffix_len.is_some()
        || !m.direct_source_prefix_ranges.is_empty()
        || m.source_type != 0
    {
        return Err("filter_chain_match: address_suffix, direct_source_prefix_ranges and source_type are not supported by mosn-rs".into());
    }
    let mut o = Map::new();
    if let Some(p) = &m.destination_port {
        o.insert("destination_port".into(), json!(p.value));
    }
    if !m.prefix_ranges.is_empty() {
        o.insert("prefix_ranges".into(), cidrs(&m.prefix_ranges));
    }
    if !m.server_names.is_empty() {
        o.insert("server_names".into(), json!(m.server_names));
    }
    if !m.transport_protocol.is_empty() {
        o.insert("transport_protocol".into(), json!(m.transport_protocol));
    }
    if !m.application_protocols.is_empty() {
        o.insert(
            "application_protocols".into(),
            json!(m.application_protocols),
        );
    }
    if !m.source_prefix_ranges.is_empty() {
        o.insert(
            "source_prefix_ranges".into(),
            cidrs(&m.source_prefix_ranges),
        );
    }
    if !m.source_ports.is_empty() {
        o.insert("source_ports".into(), json!(m.source_ports));
    }
    Ok(Value::Object(o))
}

/// One chain as a MOSN filter chain: its network filters, TLS and stream filters.
fn chain_json(
    chain: &Chain,
    c: &FilterChain,
    store: &Store,
    path: &str,
) -> Result<(Value, Vec<Value>, Option<Value>), String> {
    let tls = downstream_tls(c, store).map_err(|e| format!("{path}.{e}"))?;
    let (network, stream_filters, inline) = match chain {
        Chain::Http {
            router,
            inline,
            codec,
            stream_filters,
        } => (
            json!([{"type": "proxy", "config": {"downstream_protocol": codec,
                "upstream_protocol": "Auto", "router_config_name": router}}]),
            stream_filters.clone(),
            inline.clone(),
        ),
        Chain::Tcp(t) => (
            json!([{"type": "tcp_proxy", "config": t}]),
            Vec::new(),
            None,
        ),
    };
    let mut fc = Map::new();
    fc.insert("filters".into(), network);
    if let Some(t) = tls {
        fc.insert("tls_context".into(), t);
    }
    Ok((Value::Object(fc), stream_filters, inline))
}

/// Translates a listener: its MOSN listeners (one, or a parent and one child per filter chain
/// when the chains are told apart by what mosn-rs's single-chain listener cannot express) and
/// the routers of its inline route configs.
///
/// Errors: the first part mosn-rs cannot serve, named by its field.
pub(crate) fn translate(
    l: &Listener,
    store: &Store,
    ignored: &mut BTreeMap<String, u64>,
) -> Result<(Vec<Value>, Vec<Value>), String> {
    // The listener's own fields first, so their errors are the ones named.
    base(l)?;
    let chains = chains(l, ignored)?;
    match simple(l, &chains, store)? {
        Some((one, inline)) => Ok((vec![one], inline)),
        None => with_children(l, &chains, store),
    }
}

/// The listener's own keys (name, address, bind_port, original destination).
fn base(l: &Listener) -> Result<Map<String, Value>, String> {
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
    let hand_off = l.use_original_dst.as_ref().is_some_and(|b| b.value);
    let mut restore = false;
    for (i, f) in l.listener_filters.iter().enumerate() {
        let ty = match &f.config_type {
            Some(Lf::TypedConfig(a)) => a.type_url.as_str(),
            _ => "",
        };
        match f.name.as_str() {
            "envoy.filters.listener.original_dst" => restore = true,
            // TLS and HTTP detection: mosn-rs's filter-chain matching and `Auto` do these.
            "envoy.filters.listener.tls_inspector" | "envoy.filters.listener.http_inspector" => {}
            _ if ty.ends_with("original_dst.v3.OriginalDst") => restore = true,
            _ if ty.ends_with("tls_inspector.v3.TlsInspector")
                || ty.ends_with("http_inspector.v3.HttpInspector") => {}
            name => {
                return Err(format!(
                    "listener_filters[{i}]: listener filter {name:?} is not supported by mosn-rs"
                ))
            }
        }
    }
    let mode = if l.transparent.as_ref().is_some_and(|b| b.value) {
        "tproxy"
    } else {
        "redirect"
    };
    if hand_off {
        // `use_original_dst`: hand the connection to the listener of its original address.
        o.insert("use_original_dst".into(), json!(mode));
    } else if restore {
        // The `original_dst` listener filter alone: the address counts for chain matching only.
        o.insert(
            "listener_filters".into(),
            json!([{"type": "original_dst", "config": {"type": mode, "hand_off": false}}]),
        );
    }
    Ok(o)
}

type Chains<'a> = Vec<(String, &'a FilterChain, Chain)>;

fn chains<'a>(l: &'a Listener, ignored: &mut BTreeMap<String, u64>) -> Result<Chains<'a>, String> {
    let mut out = Vec::new();
    for (i, c) in l.filter_chains.iter().enumerate() {
        out.push((
            format!("filter_chains[{i}]"),
            c,
            chain(&format!("{}/{i}", l.name), c, ignored)
                .map_err(|e| format!("filter_chains[{i}].{e}"))?,
        ));
    }
    if let Some(c) = &l.default_filter_chain {
        out.push((
            "default_filter_chain".into(),
            c,
            chain(&format!("{}/default", l.name), c, ignored)
                .map_err(|e| format!("default_filter_chain.{e}"))?,
        ));
    }
    Ok(out)
}

/// A parent listener with one child listener per filter chain (mosn-rs's filter-chain matching);
/// the parent's own filter is the default chain, or a connection to `BlackHoleCluster` (no host:
/// closed), as Envoy closes a connection no chain takes.
fn with_children(
    l: &Listener,
    chains: &Chains<'_>,
    store: &Store,
) -> Result<(Vec<Value>, Vec<Value>), String> {
    let mut parent = base(l)?;
    let mut out = Vec::new();
    let mut inline = Vec::new();
    let mut own = None;
    for (i, (path, c, k)) in chains.iter().enumerate() {
        let (fc, sf, il) = chain_json(k, c, store, path)?;
        inline.extend(il);
        if path == "default_filter_chain" {
            own = Some((fc, sf));
            continue;
        }
        let mut child = Map::new();
        let label = if c.name.is_empty() {
            i.to_string()
        } else {
            format!("{}#{i}", c.name)
        };
        child.insert("name".into(), json!(format!("{}/{label}", l.name)));
        child.insert("address".into(), parent["address"].clone());
        if let Some(n) = parent.get("network") {
            child.insert("network".into(), n.clone());
        }
        child.insert("bind_port".into(), json!(false));
        child.insert("parent_listener".into(), json!(l.name));
        child.insert(
            "filter_chain_match".into(),
            chain_match_json(&c.filter_chain_match).map_err(|e| format!("{path}.{e}"))?,
        );
        child.insert("filter_chains".into(), json!([fc]));
        if !sf.is_empty() {
            child.insert("stream_filters".into(), Value::Array(sf));
        }
        out.push(Value::Object(child));
    }
    let (fc, sf) = own.unwrap_or_else(|| {
        (
            json!({"filters": [{"type": "tcp_proxy", "config": {"cluster": "BlackHoleCluster"}}]}),
            Vec::new(),
        )
    });
    parent.insert("filter_chains".into(), json!([fc]));
    if !sf.is_empty() {
        parent.insert("stream_filters".into(), Value::Array(sf));
    }
    out.insert(0, Value::Object(parent));
    Ok((out, inline))
}

/// The listener as one MOSN listener, when its chains fit one (see the module doc); `None` when
/// they need filter-chain matching.
fn simple(
    l: &Listener,
    chains: &Chains<'_>,
    store: &Store,
) -> Result<Option<(Value, Vec<Value>)>, String> {
    let mut o = base(l)?;
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
    let tls_ctx;
    match (http.as_slice(), tcp.as_slice()) {
        ([], []) => return Err("filter_chains: none".into()),
        (
            [(
                path,
                c,
                Chain::Http {
                    router,
                    inline: il,
                    codec,
                    stream_filters: sf,
                },
            )],
            rest,
        ) if rest.len() <= 1 && (rest.is_empty() || plain_http_match(&c.filter_chain_match)) => {
            tls_ctx = downstream_tls(c, store).map_err(|e| format!("{path}.{e}"))?;
            let mut p = Map::new();
            p.insert("downstream_protocol".into(), json!(codec));
            p.insert("upstream_protocol".into(), json!("Auto"));
            p.insert("router_config_name".into(), json!(router));
            if let [(tp, tc, Chain::Tcp(t))] = rest {
                let everything = tp.starts_with("default")
                    || tc
                        .filter_chain_match
                        .as_ref()
                        .is_none_or(|m| *m == FilterChainMatch::default());
                // TLS beside the fallback, or a fallback that does not take the rest: chains.
                if tls_ctx.is_some() || tc.transport_socket.is_some() || !everything {
                    return Ok(None);
                }
                p.insert("fallback_for_unknown_protocol".into(), json!(true));
                network.push(json!({"type": "proxy", "config": p}));
                network.push(json!({"type": "tcp_proxy", "config": t}));
            } else {
                network.push(json!({"type": "proxy", "config": p}));
            }
            inline.extend(il.clone());
            stream_filters = sf.clone();
        }
        ([], [(path, c, Chain::Tcp(t))]) => {
            tls_ctx = downstream_tls(c, store).map_err(|e| format!("{path}.{e}"))?;
            network.push(json!({"type": "tcp_proxy", "config": t}));
        }
        ([], many) => {
            let mut routes = Vec::new();
            let mut first = None;
            for (_, c, k) in many {
                let Chain::Tcp(t) = k else { continue };
                let cluster = t.get("cluster").and_then(Value::as_str).unwrap_or_default();
                // TLS, or matching by SNI or ALPN: chains.
                let Ok(route) = tcp_route(&c.filter_chain_match, cluster) else {
                    return Ok(None);
                };
                if c.transport_socket.is_some()
                    || c.filter_chain_match.as_ref().is_some_and(|m| {
                        !m.transport_protocol.is_empty()
                            || !m.address_suffix.is_empty()
                            || !m.direct_source_prefix_ranges.is_empty()
                    })
                {
                    return Ok(None);
                }
                routes.push(route);
                first.get_or_insert_with(|| t.clone());
            }
            tls_ctx = None;
            let mut t = first.unwrap_or_default();
            t.remove("cluster");
            t.insert("routes".into(), Value::Array(routes));
            network.push(json!({"type": "tcp_proxy", "config": t}));
        }
        _ => return Ok(None),
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
    Ok(Some((Value::Object(o), inline)))
}
