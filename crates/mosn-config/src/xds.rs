//! The Envoy/Istio bootstrap keys MOSN reads for xDS: `dynamic_resources`, `static_resources` and
//! `node` (MOSN `istio/istio1106/xds/parse_config.go`; Envoy `config.bootstrap.v3.Bootstrap`).
//!
//! `dynamic_resources.ads_config` names a gRPC cluster of `static_resources.clusters` (Istio's
//! `xds-grpc`, a unix `pipe` or a TCP address); its first endpoint is the ADS server. `api_type`
//! `GRPC` is state-of-the-world, `DELTA_GRPC` incremental (Istio's default since 1.22). `lds_config`
//! and `cds_config` must be `{"ads": {}}`. The other static clusters (`STATIC`, with addresses in
//! `load_assignment`) become ordinary clusters. An Envoy bootstrap's own keys that do not change
//! what mosn-rs forwards (`stats_config`, `layered_runtime`, ...) are read with a warning.

use serde_json::Value;

use crate::error::{ConfigError, Result};
use crate::model::{Cluster, HostAddr, LbType};
use crate::walk::{Ctx, Obj};

/// Which ADS variant to speak (`ads_config.api_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdsApi {
    /// `GRPC`: state of the world (`StreamAggregatedResources`).
    Sotw,
    /// `DELTA_GRPC`: incremental (`DeltaAggregatedResources`).
    Delta,
}

/// The xDS part of a bootstrap.
#[derive(Debug, Clone, PartialEq)]
pub struct Xds {
    /// `ads_config.api_type`.
    pub api: XdsApi,
    /// `ads_config.grpc_services[0].envoy_grpc.cluster_name` (Istio's `xds-grpc`).
    pub cluster: String,
    /// That cluster's first endpoint: the ADS server.
    pub server: HostAddr,
    /// The `sds-grpc` cluster's first endpoint, when the bootstrap has one: the SDS server
    /// (istio-agent's `./var/run/secrets/workload-spiffe-uds/socket`).
    pub sds: Option<HostAddr>,
    /// `node`.
    pub node: XdsNode,
    /// `ads_config.set_node_on_first_message_only` (Istio sets it; default false, as Envoy).
    pub node_on_first_message_only: bool,
}

/// `node`: who this proxy is, sent to the control plane.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct XdsNode {
    /// `id` (Istio: `sidecar~<ip>~<pod>.<ns>~<ns>.svc.cluster.local`).
    pub id: String,
    /// `cluster`.
    pub cluster: String,
    /// `metadata`, as JSON (an object, or null).
    pub metadata: Value,
}

/// Envoy bootstrap keys that mosn-rs reads without effect, with a warning.
const ENVOY_ONLY: &[&str] = &[
    "application_log_config",
    "layered_runtime",
    "bootstrap_extensions",
    "stats_config",
    "overload_manager",
    "deferred_stat_options",
    "stats_sinks",
    "tracing",
    "stats_flush_interval",
    "watchdogs",
    "default_regex_engine",
];

/// True when the document is (or holds) an Envoy bootstrap: it has `dynamic_resources` or
/// `static_resources`.
pub(crate) fn is_bootstrap(o: &Obj<'_>) -> bool {
    ["dynamic_resources", "static_resources"]
        .iter()
        .any(|k| o.get(k).is_some())
}

/// Reads the bootstrap keys of the top-level object `o`: the xDS settings and the static clusters
/// other than the ADS and SDS ones.
///
/// Errors: a missing or unsupported `ads_config`, a cluster it names that is not a static cluster
/// with an address, an `lds_config`/`cds_config` that is not `{"ads": {}}`.
pub(crate) fn bootstrap(o: &Obj<'_>, ctx: &Ctx) -> Result<(Option<Xds>, Vec<Cluster>)> {
    for k in ENVOY_ONLY {
        if o.get(k).is_some() {
            ctx.warn(
                &o.key_path(k),
                "an Envoy bootstrap key mosn-rs does not use; ignored",
            );
        }
    }
    let statics = match o.opt_obj("static_resources")? {
        None => Vec::new(),
        Some(s) => {
            for (p, _) in s.opt_array("listeners")? {
                ctx.warn(
                    &p,
                    "Envoy static listeners are not served by mosn-rs; give them in \"servers\"",
                );
            }
            s.ignored(&["secrets"]);
            let cs = s
                .opt_array("clusters")?
                .into_iter()
                .map(|(p, v)| static_cluster(v, &p, ctx))
                .collect::<Result<Vec<_>>>()?;
            s.finish(ctx);
            cs
        }
    };
    let node = match o.opt_obj("node")? {
        None => XdsNode::default(),
        Some(n) => {
            let node = XdsNode {
                id: n.opt_str("id")?.unwrap_or_default().to_string(),
                cluster: n.opt_str("cluster")?.unwrap_or_default().to_string(),
                metadata: n.get("metadata").cloned().unwrap_or(Value::Null),
            };
            n.ignored(&["locality", "user_agent_name", "extensions"]);
            n.finish(ctx);
            node
        }
    };
    let find = |name: &str| {
        statics
            .iter()
            .find(|(n, _, _)| n == name)
            .and_then(|(_, a, _)| a.clone())
    };
    let sds = find("sds-grpc");
    let xds = match o.opt_obj("dynamic_resources")? {
        None => None,
        Some(d) => {
            for key in ["lds_config", "cds_config"] {
                if let Some(c) = d.opt_obj(key)? {
                    if c.get("ads").is_none() {
                        return Err(ConfigError::new(
                            c.path(),
                            "a config source other than {\"ads\": {}} is not supported by mosn-rs yet (it takes listeners and clusters over ADS)",
                        ));
                    }
                    c.ignored(&["initial_fetch_timeout", "resource_api_version"]);
                    c.finish(ctx);
                }
            }
            let a = d.opt_obj("ads_config")?.ok_or_else(|| {
                ConfigError::new(d.key_path("ads_config"), "is required (mosn-rs speaks ADS)")
            })?;
            let api = match a.req_str("api_type")? {
                "GRPC" | "AGGREGATED_GRPC" => XdsApi::Sotw,
                "DELTA_GRPC" | "AGGREGATED_DELTA_GRPC" => XdsApi::Delta,
                t => {
                    return Err(ConfigError::new(
                        a.key_path("api_type"),
                        format!("{t:?} is not supported (supported: \"GRPC\", \"DELTA_GRPC\")"),
                    ))
                }
            };
            let services = a.opt_array("grpc_services")?;
            let Some((sp, sv)) = services.first() else {
                return Err(ConfigError::new(a.key_path("grpc_services"), "is required"));
            };
            let s = Obj::new(sv, sp)?;
            let cluster = match s.opt_obj("envoy_grpc")? {
                Some(e) => {
                    let c = e.req_str("cluster_name")?.to_string();
                    e.ignored(&["authority"]);
                    e.finish(ctx);
                    c
                }
                None => {
                    return Err(ConfigError::new(
                        s.key_path("envoy_grpc"),
                        "is required (google_grpc is not supported by mosn-rs)",
                    ))
                }
            };
            s.ignored(&["timeout", "initial_metadata"]);
            s.finish(ctx);
            let server = match find(&cluster) {
                Some(a) => a,
                None => {
                    // A DNS-named ADS server (STRICT_DNS, as older Istio bootstraps have it).
                    let typed = statics
                        .iter()
                        .position(|(n, a, _)| *n == cluster && a.is_none());
                    return Err(match typed {
                        Some(i) => ConfigError::new(
                            format!("static_resources.clusters[{i}].type"),
                            format!("the ADS cluster {cluster:?} is not STATIC: a DNS-named xDS server is not supported by mosn-rs yet (give an IP address or a pipe)"),
                        ),
                        None => ConfigError::new(
                            format!("{sp}.envoy_grpc.cluster_name"),
                            format!("{cluster:?} is not a cluster with an address in static_resources.clusters"),
                        ),
                    });
                }
            };
            let node_on_first_message_only = a
                .opt_bool("set_node_on_first_message_only")?
                .unwrap_or(false);
            a.ignored(&["transport_api_version", "rate_limit_settings"]);
            a.finish(ctx);
            d.finish(ctx);
            Some(Xds {
                api,
                cluster,
                server,
                sds: sds.clone(),
                node,
                node_on_first_message_only,
            })
        }
    };
    let xds_cluster = xds.as_ref().map(|x| x.cluster.as_str());
    let clusters = statics
        .into_iter()
        .filter(|(n, _, _)| Some(n.as_str()) != xds_cluster && n != "sds-grpc")
        .filter_map(|(_, _, c)| c)
        .collect();
    Ok((xds, clusters))
}

/// Reads an Envoy `core.v3.Address`: `socket_address {address, port_value}` or `pipe {path}`.
pub(crate) fn envoy_address(v: &Value, path: &str, ctx: &Ctx) -> Result<HostAddr> {
    let o = Obj::new(v, path)?;
    let out = if let Some(p) = o.opt_obj("pipe")? {
        let a = HostAddr::Unix(p.req_str("path")?.into());
        p.ignored(&["mode"]);
        p.finish(ctx);
        a
    } else if let Some(s) = o.opt_obj("socket_address")? {
        let host = s.req_str("address")?;
        let ip: std::net::IpAddr = host.parse().map_err(|_| {
            ConfigError::new(
                s.key_path("address"),
                format!("{host:?} is not an IP address (mosn-rs resolves no names here)"),
            )
        })?;
        let port = s
            .opt_u64("port_value", 65535)?
            .ok_or_else(|| ConfigError::new(s.key_path("port_value"), "is required"))?;
        s.ignored(&["protocol", "ipv4_compat", "resolver_name"]);
        s.finish(ctx);
        HostAddr::Tcp(std::net::SocketAddr::new(ip, port as u16))
    } else {
        return Err(ConfigError::new(
            path,
            "expected {\"socket_address\": ...} or {\"pipe\": ...}",
        ));
    };
    o.finish(ctx);
    Ok(out)
}

/// A bootstrap static cluster: its name, first address, and the cluster it makes (both `None` when
/// its type is not `STATIC`, with a warning).
type StaticCluster = (String, Option<HostAddr>, Option<Cluster>);

/// Reads one `static_resources.clusters[]` entry.
fn static_cluster(v: &Value, path: &str, ctx: &Ctx) -> Result<StaticCluster> {
    let o = Obj::new(v, path)?;
    let name = o.req_str("name")?.to_string();
    let ty = o.opt_str("type")?.unwrap_or("STATIC");
    if ty != "STATIC" {
        ctx.warn(
            &o.key_path("type"),
            format!("cluster type {ty:?} is not served by mosn-rs; this cluster is left out"),
        );
        o.finish_silently();
        return Ok((name, None, None));
    }
    let la = o
        .opt_obj("load_assignment")?
        .ok_or_else(|| ConfigError::new(o.key_path("load_assignment"), "is required"))?;
    la.ignored(&["cluster_name", "policy"]);
    let mut hosts = Vec::new();
    for (ep, e) in la.opt_array("endpoints")? {
        let eo = Obj::new(e, &ep)?;
        eo.ignored(&["locality", "load_balancing_weight", "priority"]);
        for (lp, l) in eo.opt_array("lb_endpoints")? {
            let lo = Obj::new(l, &lp)?;
            lo.ignored(&["metadata", "health_status", "load_balancing_weight"]);
            if let Some(endpoint) = lo.opt_obj("endpoint")? {
                let addr = endpoint.req("address")?;
                hosts.push(envoy_address(addr, &endpoint.key_path("address"), ctx)?);
                endpoint.ignored(&["hostname", "health_check_config"]);
                endpoint.finish(ctx);
            }
            lo.finish(ctx);
        }
        eo.finish(ctx);
    }
    la.finish(ctx);
    o.ignored(&[
        "alt_stat_name",
        "typed_extension_protocol_options",
        "circuit_breakers",
        "upstream_connection_options",
        "max_requests_per_connection",
        "respect_dns_ttl",
        "dns_lookup_family",
        "dns_refresh_rate",
        "http2_protocol_options",
        "transport_socket",
    ]);
    let connect_timeout = o.get("connect_timeout").and_then(|v| match v {
        Value::String(s) => crate::parse_go_duration(s).ok(),
        _ => None,
    });
    let lb = match o.opt_str("lb_policy")? {
        Some("RANDOM") => LbType::Random,
        Some("LEAST_REQUEST") => LbType::LeastRequest,
        _ => LbType::RoundRobin,
    };
    o.finish(ctx);
    let Some(first) = hosts.first().cloned() else {
        return Err(ConfigError::new(
            format!("{path}.load_assignment.endpoints"),
            "has no endpoint address",
        ));
    };
    let cluster = Cluster {
        name: name.clone(),
        lb,
        hosts: hosts
            .into_iter()
            .map(|address| crate::model::Host {
                address,
                weight: 1,
                metadata: Default::default(),
                tls_disable: false,
            })
            .collect(),
        connect_timeout: connect_timeout.unwrap_or(std::time::Duration::from_secs(3)),
        idle_timeout: None,
        circuit_breakers: Default::default(),
        max_request_per_conn: None,
        original_dst: false,
        tls: None,
        subset_fallback: Default::default(),
        keepalive: None,
    };
    Ok((name, Some(first), Some(cluster)))
}
