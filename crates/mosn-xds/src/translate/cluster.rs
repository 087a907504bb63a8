//! `Cluster` (+ its `ClusterLoadAssignment`) → a MOSN `cluster_manager.clusters[]` entry.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::cluster::v3::{
    cluster::{ClusterDiscoveryType, DiscoveryType, LbPolicy, TransportSocketMatch},
    Cluster,
};
use envoy_types::pb::envoy::config::core::v3::{transport_socket, TransportSocket};
use envoy_types::pb::envoy::config::endpoint::v3::{lb_endpoint::HostIdentifier, LbEndpoint};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext;
use envoy_types::pb::google::protobuf::{value::Kind, Struct};
use serde_json::{json, Map, Value};

use super::tls::{self, TlsError};
use super::{address, decode, duration};
use crate::store::Store;

/// EDS's resource.
pub(crate) type Assignment = envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;

const UPSTREAM_TLS: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";

fn discovery_type(c: &Cluster) -> Result<DiscoveryType, String> {
    match &c.cluster_discovery_type {
        None => Ok(DiscoveryType::Static),
        Some(ClusterDiscoveryType::Type(t)) => {
            DiscoveryType::try_from(*t).map_err(|_| format!("type: unknown value {t}"))
        }
        Some(ClusterDiscoveryType::ClusterType(ct)) => Err(format!(
            "cluster_type: custom cluster type {:?} is not supported by mosn-rs",
            ct.name
        )),
    }
}

/// The EDS name of an EDS cluster (`eds_cluster_config.service_name`, else the cluster's name).
pub(crate) fn eds_name(name: &str, c: &Cluster) -> Option<String> {
    if discovery_type(c).ok()? != DiscoveryType::Eds {
        return None;
    }
    Some(
        c.eds_cluster_config
            .as_ref()
            .map(|e| e.service_name.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| name.to_string()),
    )
}

/// `max_requests_per_connection` is deprecated in favour of the HTTP protocol options, and still
/// sent by control planes, so it is read.
#[allow(deprecated)]
/// Translates a cluster; `endpoints` holds the EDS assignments by name.
///
/// Errors: an unknown discovery type, a custom cluster type, a TLS context that cannot be
/// expressed.
pub(crate) fn translate(
    name: &str,
    c: &Cluster,
    endpoints: &BTreeMap<&str, Assignment>,
    store: &Store,
) -> Result<Value, String> {
    let mut o = Map::new();
    o.insert("name".into(), json!(name));
    let ty = discovery_type(c)?;
    if ty == DiscoveryType::OriginalDst {
        o.insert("type".into(), json!("ORIGINAL_DST"));
        o.insert("lb_type".into(), json!("LB_ORIGINAL_DST"));
    } else {
        let lb = match LbPolicy::try_from(c.lb_policy) {
            Ok(LbPolicy::LeastRequest) => "LB_LEAST_REQUEST",
            Ok(LbPolicy::Random) => "LB_RANDOM",
            // Ring hash and Maglev need a hash policy mosn-rs does not have yet: round robin.
            _ => "LB_ROUNDROBIN",
        };
        o.insert("lb_type".into(), json!(lb));
    }
    if let Some(t) = duration(&c.connect_timeout).filter(|t| t != "0ms") {
        o.insert("connect_timeout".into(), json!(t));
    }
    if let Some(n) = c
        .max_requests_per_connection
        .as_ref()
        .filter(|n| n.value > 0)
    {
        o.insert("max_request_per_conn".into(), json!(n.value));
    }
    if let Some(t) = c
        .circuit_breakers
        .as_ref()
        .and_then(|cb| cb.thresholds.iter().find(|t| t.priority == 0))
    {
        let v = |x: &Option<envoy_types::pb::google::protobuf::UInt32Value>| {
            x.as_ref().map(|n| n.value)
        };
        let mut cb = Map::new();
        for (k, val) in [
            ("max_connections", v(&t.max_connections)),
            ("max_pending_requests", v(&t.max_pending_requests)),
            ("max_requests", v(&t.max_requests)),
            ("max_retries", v(&t.max_retries)),
        ] {
            if let Some(n) = val {
                cb.insert(k.into(), json!(n));
            }
        }
        o.insert("circuit_breakers".into(), json!([cb]));
    }
    let assignment = match ty {
        DiscoveryType::Eds => eds_name(name, c).and_then(|n| endpoints.get(n.as_str()).cloned()),
        DiscoveryType::OriginalDst => None,
        _ => c.load_assignment.clone(),
    };
    let mut hosts = Vec::new();
    let mut cluster_tls: Option<Value> = None;
    if let Some(a) = assignment {
        for (lb, tls_ctx) in pick_endpoints(&a) {
            let socket = transport_socket_for(c, &lb);
            let tls_value = match socket {
                None => None,
                Some(ts) => match upstream_tls(ts, store) {
                    Ok(v) => v,
                    Err(TlsError::Waiting(secret)) => {
                        tracing::debug!(
                            cluster = name,
                            secret,
                            "host waits for an SDS secret; left out"
                        );
                        continue;
                    }
                    Err(TlsError::Bad(m)) => return Err(format!("transport_socket: {m}")),
                },
            };
            let Some(HostIdentifier::Endpoint(ep)) = &lb.host_identifier else {
                continue;
            };
            let addr = match address(&ep.address) {
                Ok(a) => a,
                // DNS names (STRICT_DNS clusters) are not resolved by mosn-rs yet.
                Err(e) => {
                    tracing::debug!(cluster = name, error = %e, "endpoint left out");
                    continue;
                }
            };
            let mut h = Map::new();
            h.insert("address".into(), json!(addr));
            let w = lb.load_balancing_weight.as_ref().map_or(1, |w| w.value) * tls_ctx;
            h.insert("weight".into(), json!(w.clamp(1, 128)));
            let meta = flat_metadata(&lb);
            if !meta.is_empty() {
                h.insert(
                    "metadata".into(),
                    json!({"filter_metadata": {"mosn.lb": meta}}),
                );
            }
            match tls_value {
                Some(t) => {
                    cluster_tls.get_or_insert(t);
                }
                None => {
                    h.insert("tls_disable".into(), json!(true));
                }
            }
            hosts.push(Value::Object(h));
        }
    }
    // Hosts with TLS share the cluster's context; the plaintext ones say `tls_disable`.
    if let Some(t) = cluster_tls {
        o.insert("tls_context".into(), t);
    } else {
        for h in &mut hosts {
            if let Some(m) = h.as_object_mut() {
                m.remove("tls_disable");
            }
        }
    }
    o.insert("hosts".into(), Value::Array(hosts));
    Ok(Value::Object(o))
}

/// Every endpoint of the highest priority (lowest number) that has a healthy one, over all its
/// localities, with a weight factor of 1 (locality weights need locality-weighted balancing,
/// which mosn-rs does not have). Unhealthy, draining and timed-out endpoints are left out.
fn pick_endpoints(a: &Assignment) -> Vec<(LbEndpoint, u32)> {
    // HealthStatus: 0 UNKNOWN, 1 HEALTHY, 5 DEGRADED count as serving.
    let serving = |e: &LbEndpoint| matches!(e.health_status, 0 | 1 | 5);
    let mut priorities: Vec<u32> = a.endpoints.iter().map(|l| l.priority).collect();
    priorities.sort_unstable();
    priorities.dedup();
    for p in priorities {
        let picked: Vec<(LbEndpoint, u32)> = a
            .endpoints
            .iter()
            .filter(|l| l.priority == p)
            .flat_map(|l| l.lb_endpoints.iter())
            .filter(|e| serving(e))
            .map(|e| (e.clone(), 1))
            .collect();
        if !picked.is_empty() {
            return picked;
        }
    }
    Vec::new()
}

fn string_fields(s: &Struct) -> BTreeMap<String, String> {
    s.fields
        .iter()
        .filter_map(|(k, v)| match &v.kind {
            Some(Kind::StringValue(s)) => Some((k.clone(), s.clone())),
            Some(Kind::NumberValue(n)) => Some((k.clone(), n.to_string())),
            Some(Kind::BoolValue(b)) => Some((k.clone(), b.to_string())),
            _ => None,
        })
        .collect()
}

/// The string values of every `filter_metadata` namespace, flattened (as MOSN does).
fn flat_metadata(e: &LbEndpoint) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(m) = &e.metadata {
        let mut ns: Vec<_> = m.filter_metadata.iter().collect();
        ns.sort_by(|a, b| a.0.cmp(b.0));
        for (_, s) in ns {
            out.extend(string_fields(s));
        }
    }
    out
}

/// The transport socket for an endpoint: the first `transport_socket_matches` entry whose `match`
/// fields all equal the endpoint's `envoy.transport_socket_match` metadata, else the cluster's
/// `transport_socket` (Envoy's `TransportSocketMatch`).
fn transport_socket_for<'a>(c: &'a Cluster, e: &LbEndpoint) -> Option<&'a TransportSocket> {
    let meta = e
        .metadata
        .as_ref()
        .and_then(|m| m.filter_metadata.get("envoy.transport_socket_match"))
        .map(string_fields)
        .unwrap_or_default();
    let hit = |m: &TransportSocketMatch| {
        m.r#match
            .as_ref()
            .map(string_fields)
            .unwrap_or_default()
            .iter()
            .all(|(k, v)| meta.get(k) == Some(v))
    };
    match c.transport_socket_matches.iter().find(|m| hit(m)) {
        Some(m) => m.transport_socket.as_ref(),
        None => c.transport_socket.as_ref(),
    }
}

/// The SDS secrets a cluster's TLS transport sockets name.
pub(crate) fn secret_names(c: &Cluster, out: &mut std::collections::BTreeSet<String>) {
    let sockets = c.transport_socket.iter().chain(
        c.transport_socket_matches
            .iter()
            .filter_map(|m| m.transport_socket.as_ref()),
    );
    for ts in sockets {
        if let Some(transport_socket::ConfigType::TypedConfig(any)) = &ts.config_type {
            if let Ok(u) = decode::<UpstreamTlsContext>(any, UPSTREAM_TLS) {
                if let Some(common) = &u.common_tls_context {
                    tls::secret_names(common, out);
                }
            }
        }
    }
}

/// `None` for a plaintext socket (`raw_buffer`), the MOSN `tls_context` for TLS.
fn upstream_tls(ts: &TransportSocket, store: &Store) -> Result<Option<Value>, TlsError> {
    let Some(transport_socket::ConfigType::TypedConfig(any)) = &ts.config_type else {
        return Ok(None);
    };
    if any.type_url != UPSTREAM_TLS {
        return Ok(None);
    }
    let u: UpstreamTlsContext = decode(any, UPSTREAM_TLS).map_err(TlsError::Bad)?;
    let common = u.common_tls_context.unwrap_or_default();
    tls::context(store, &common, &u.sni, None).map(Some)
}
