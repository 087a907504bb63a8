//! Envoy v3 resources → MOSN's JSON config model (the `servers[0].listeners`, `servers[0].routers`
//! and `cluster_manager.clusters` entries a config file would hold), one resource at a time.
//!
//! The JSON is then parsed and validated by `mosn-config` exactly like a file, so xDS and files
//! share one model, one set of checks, and one config dump. What MOSN's own converter keeps and
//! drops (`istio/istio1106/xds/conv`) is the baseline; the differences a current Istio needs are
//! the must-fix list of the team's xDS notes (§3.6): `bind_to_port`, deletions, `string_match`,
//! `present_match`, `invert_match`, `path_separated_prefix`, every EDS locality, per-endpoint
//! transport sockets, and Istio's own filters known as no-ops.
//!
//! A resource that cannot be translated is a [`Rejection`] naming it and the field; the others
//! still translate. A listener whose route configs (RDS) or secrets (SDS) have not arrived warms:
//! it is left out until they do, as in Envoy. A cluster a route names that CDS has not sent is an
//! empty placeholder, as Envoy answers 503 for a missing cluster rather than refusing the route.

mod cluster;
mod filters;
mod listener;
mod route;
mod tls;

use std::collections::{BTreeMap, BTreeSet};

use prost::Message;
use serde_json::{json, Value};

use crate::store::Store;
use crate::types;

/// A resource that was not accepted: what to say in the NACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Its type URL.
    pub type_url: &'static str,
    /// Its name.
    pub name: String,
    /// What is wrong, starting with the field (`filter_chains[0].filters[1]: ...`).
    pub message: String,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {:?}: {}",
            types::short(self.type_url),
            self.name,
            self.message
        )
    }
}

/// The MOSN JSON entries made from a store, each tagged with the resource it came from.
#[derive(Debug, Clone, Default)]
pub struct Translated {
    /// `servers[0].listeners[]` entries, with the LDS resource name.
    pub listeners: Vec<(String, Value)>,
    /// `servers[0].routers[]` entries, with the RDS resource name (or the listener's, for an
    /// inline route config).
    pub routers: Vec<(String, Value)>,
    /// `cluster_manager.clusters[]` entries, with the CDS resource name.
    pub clusters: Vec<(String, Value)>,
    /// Resources that could not be translated.
    pub rejected: Vec<Rejection>,
    /// Listeners left out until the route configs and SDS secrets they name arrive.
    pub warming: Vec<String>,
    /// Filters accepted without effect (Istio's telemetry and peer-metadata filters, ...), by
    /// name, counted over every listener.
    pub ignored_filters: BTreeMap<String, u64>,
}

/// Names of the resources the translated ones refer to, which the client then subscribes to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wanted {
    /// RDS names the listeners use.
    pub routes: BTreeSet<String>,
    /// EDS service names the clusters use.
    pub endpoints: BTreeSet<String>,
    /// SDS secrets the listeners and clusters use.
    pub secrets: BTreeSet<String>,
}

/// How a listener error says it waits for an SDS secret rather than being wrong: it is then
/// left out until the secret arrives (Envoy's warming), not rejected.
pub(crate) const WAITING: &str = "waiting for SDS secret ";

/// Decodes an `Any` whose type URL must be `want`.
pub(crate) fn decode<M: Message + Default>(
    any: &envoy_types::pb::google::protobuf::Any,
    want: &str,
) -> Result<M, String> {
    if any.type_url != want {
        return Err(format!("has type {:?}, expected {want:?}", any.type_url));
    }
    M::decode(any.value.as_slice()).map_err(|e| format!("does not decode: {e}"))
}

/// The RDS and EDS names the LDS and CDS resources of `store` refer to.
pub fn wanted(store: &Store) -> Wanted {
    let mut w = Wanted::default();
    for (_, e) in store.of(types::LISTENER) {
        if let Ok(l) = decode(&e.body, types::LISTENER) {
            listener::rds_names(&l, &mut w.routes);
            listener::secret_names(&l, &mut w.secrets);
        }
    }
    for (name, e) in store.of(types::CLUSTER) {
        if let Ok(c) = decode(&e.body, types::CLUSTER) {
            if let Some(s) = cluster::eds_name(name, &c) {
                w.endpoints.insert(s);
            }
            cluster::secret_names(&c, &mut w.secrets);
        }
    }
    w
}

/// Translates every resource of `store`.
pub fn translate(store: &Store) -> Translated {
    let mut out = Translated::default();
    let mut rejected = Vec::new();
    let mut warming = Vec::new();
    let mut reject = |type_url, name: &str, message: String| {
        rejected.push(Rejection {
            type_url,
            name: name.to_string(),
            message,
        })
    };
    let mut listeners = Vec::new();
    let mut routers = Vec::new();
    let mut clusters = Vec::new();
    let mut ignored = BTreeMap::new();
    for (name, e) in store.of(types::LISTENER) {
        match decode(&e.body, types::LISTENER)
            .and_then(|l| listener::translate(&l, store, &mut ignored))
        {
            Ok((ls, inline)) => {
                listeners.extend(ls.into_iter().map(|l| (name.to_string(), l)));
                routers.extend(inline.into_iter().map(|r| (name.to_string(), r)));
            }
            Err(m) if m.contains(WAITING) => {
                tracing::debug!(listener = name, why = m, "listener waits for a secret");
                warming.push(name.to_string());
            }
            Err(m) => reject(types::LISTENER, name, m),
        }
    }
    for (name, e) in store.of(types::ROUTE) {
        match decode(&e.body, types::ROUTE).and_then(|r| route::translate(&r)) {
            Ok(r) => routers.push((name.to_string(), r)),
            Err(m) => reject(types::ROUTE, name, m),
        }
    }
    let endpoints: BTreeMap<&str, _> = store
        .of(types::ENDPOINT)
        .filter_map(|(n, e)| {
            decode::<cluster::Assignment>(&e.body, types::ENDPOINT)
                .ok()
                .map(|a| (n, a))
        })
        .collect();
    for (name, e) in store.of(types::ENDPOINT) {
        if let Err(m) = decode::<cluster::Assignment>(&e.body, types::ENDPOINT) {
            reject(types::ENDPOINT, name, m);
        }
    }
    for (name, e) in store.of(types::CLUSTER) {
        match decode(&e.body, types::CLUSTER)
            .and_then(|c| cluster::translate(name, &c, &endpoints, store))
        {
            Ok(c) => clusters.push((name.to_string(), c)),
            Err(m) => reject(types::CLUSTER, name, m),
        }
    }
    // A listener whose route configs have not all arrived warms (is left out until they do),
    // as in Envoy: served early, it would answer 404 for routes on their way.
    let have_routers: BTreeSet<String> = routers
        .iter()
        .filter_map(|(_, r)| r["router_config_name"].as_str().map(str::to_string))
        .collect();
    let mut waiting_for_routes = BTreeSet::new();
    for (name, l) in &listeners {
        let mut wanted = BTreeSet::new();
        listener::references(l, &mut wanted, &mut BTreeSet::new());
        if !wanted.is_subset(&have_routers) {
            waiting_for_routes.insert(name.clone());
        }
    }
    if !waiting_for_routes.is_empty() {
        listeners.retain(|(name, _)| !waiting_for_routes.contains(name));
        warming.extend(waiting_for_routes);
    }
    // Clusters referred to but not (yet) here: empty ones (no host: 503), as Envoy answers for a
    // missing cluster rather than refusing the route.
    let mut wanted_clusters = BTreeSet::new();
    for (_, l) in &listeners {
        listener::references(l, &mut BTreeSet::new(), &mut wanted_clusters);
    }
    for (_, r) in &routers {
        route::references(r, &mut wanted_clusters);
    }
    let have_clusters: BTreeSet<&str> = clusters.iter().map(|(n, _)| n.as_str()).collect();
    let missing: Vec<String> = wanted_clusters
        .iter()
        .filter(|c| !have_clusters.contains(c.as_str()))
        .cloned()
        .collect();
    for name in missing {
        clusters.push((name.clone(), json!({"name": name, "hosts": []})));
    }
    out.rejected = rejected;
    out.warming = warming;
    out.listeners = listeners;
    out.routers = routers;
    out.clusters = clusters;
    out.ignored_filters = ignored;
    out
}

/// A protobuf duration as a Go duration string (`"1500ms"`, `"250ns"`); `None` when absent.
pub(crate) fn duration(d: &Option<envoy_types::pb::google::protobuf::Duration>) -> Option<String> {
    let d = d.as_ref()?;
    let nanos = i128::from(d.seconds) * 1_000_000_000 + i128::from(d.nanos);
    let nanos = nanos.max(0);
    Some(if nanos % 1_000_000 == 0 {
        format!("{}ms", nanos / 1_000_000)
    } else {
        format!("{nanos}ns")
    })
}

/// An Envoy address as MOSN writes it: `ip:port`, or `unix:/path` for a pipe.
pub(crate) fn address(
    a: &Option<envoy_types::pb::envoy::config::core::v3::Address>,
) -> Result<String, String> {
    use envoy_types::pb::envoy::config::core::v3::{
        address::Address as A, socket_address::PortSpecifier,
    };
    match a.as_ref().and_then(|a| a.address.as_ref()) {
        Some(A::SocketAddress(s)) => {
            let ip: std::net::IpAddr = s
                .address
                .parse()
                .map_err(|_| format!("{:?} is not an IP address", s.address))?;
            match s.port_specifier {
                Some(PortSpecifier::PortValue(p)) if p <= 65535 => {
                    Ok(std::net::SocketAddr::new(ip, p as u16).to_string())
                }
                Some(PortSpecifier::PortValue(p)) => Err(format!("port {p} is out of range")),
                _ => Err("a named port is not supported".into()),
            }
        }
        Some(A::Pipe(p)) => Ok(format!("unix:{}", p.path)),
        Some(_) => Err("only socket_address and pipe addresses are supported".into()),
        None => Err("is required".into()),
    }
}

/// Envoy header mutations (`request_headers_to_add`, ...) as MOSN's keys, into `out`. The
/// deprecated `append` is read where sent, else `append_action`.
#[allow(deprecated)]
pub(crate) fn header_mutation(
    out: &mut serde_json::Map<String, Value>,
    req_add: &[envoy_types::pb::envoy::config::core::v3::HeaderValueOption],
    req_remove: &[String],
    resp_add: &[envoy_types::pb::envoy::config::core::v3::HeaderValueOption],
    resp_remove: &[String],
) {
    let adds = |v: &[envoy_types::pb::envoy::config::core::v3::HeaderValueOption]| -> Value {
        v.iter()
            .filter_map(|h| {
                let hv = h.header.as_ref()?;
                let value = if hv.value.is_empty() {
                    String::from_utf8_lossy(&hv.raw_value).into_owned()
                } else {
                    hv.value.clone()
                };
                // APPEND_IF_EXISTS_OR_ADD (0) appends unless `append` says false.
                let append = match &h.append {
                    Some(b) => b.value,
                    None => h.append_action == 0,
                };
                Some(json!({"header": {"key": hv.key, "value": value}, "append": append}))
            })
            .collect()
    };
    if !req_add.is_empty() {
        out.insert("request_headers_to_add".into(), adds(req_add));
    }
    if !req_remove.is_empty() {
        out.insert("request_headers_to_remove".into(), json!(req_remove));
    }
    if !resp_add.is_empty() {
        out.insert("response_headers_to_add".into(), adds(resp_add));
    }
    if !resp_remove.is_empty() {
        out.insert("response_headers_to_remove".into(), json!(resp_remove));
    }
}

#[cfg(test)]
mod tests;
