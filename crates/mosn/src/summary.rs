//! The short summary `mosn check` prints: listeners, route tables and clusters.

use std::fmt::Write;

use mosn_config::{Config, LbType, NetworkFilter, PathMatch, RouteAction};

/// Renders the summary as text, one item a line.
pub fn summary(c: &Config) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "config ok");
    let _ = writeln!(s, "listeners: {}", c.server.listeners.len());
    for l in &c.server.listeners {
        let _ = match &l.filter {
            NetworkFilter::Proxy(p) => {
                // `Auto` with fallback_for_unknown_protocol: where unknown traffic goes.
                let fallback = match &p.fallback {
                    Some(t) => format!(
                        " fallback=tcp_proxy(cluster={})",
                        t.cluster.as_deref().unwrap_or("by route")
                    ),
                    None => String::new(),
                };
                writeln!(
                    s,
                    "  {} {} {:?}->{:?} router={}{fallback}",
                    l.name,
                    l.address,
                    p.downstream_protocol,
                    p.upstream_protocol,
                    p.router_config_name
                )
            }
            NetworkFilter::TcpProxy(t) | NetworkFilter::UdpProxy(t) => {
                let routes: Vec<&str> = t.routes.iter().map(|r| r.cluster.as_str()).collect();
                let kind = match &l.filter {
                    NetworkFilter::UdpProxy(_) => "udp_proxy",
                    _ => "tcp_proxy",
                };
                writeln!(
                    s,
                    "  {} {} {kind} cluster={} routes=[{}]",
                    l.name,
                    l.address,
                    t.cluster.as_deref().unwrap_or("-"),
                    routes.join(",")
                )
            }
        };
    }
    let _ = writeln!(s, "routers: {}", c.server.routers.len());
    for r in &c.server.routers {
        let _ = writeln!(s, "  {}", r.name);
        for vh in &r.virtual_hosts {
            let _ = writeln!(s, "    virtual_host {} domains={:?}", vh.name, vh.domains);
            for rt in &vh.routes {
                let m = match &rt.path {
                    None => "any".to_string(),
                    Some(PathMatch::Prefix(p)) => format!("prefix {p}"),
                    Some(PathMatch::Exact(p)) => format!("path {p}"),
                    Some(PathMatch::Regex(p)) => format!("regex {p}"),
                    Some(PathMatch::SeparatedPrefix(p)) => format!("path_separated_prefix {p}"),
                };
                let hs: Vec<String> = rt
                    .headers
                    .iter()
                    .map(|h| format!("{}={}", h.name, h.value))
                    .collect();
                let a = match &rt.action {
                    RouteAction::Forward(f) => {
                        let cs: Vec<String> =
                            f.clusters.iter().map(|(n, w)| format!("{n}:{w}")).collect();
                        // The host subset of a grey-release route: `subset{version=v2}`.
                        let subset = if f.metadata_match.is_empty() {
                            String::new()
                        } else {
                            let kv: Vec<String> = f
                                .metadata_match
                                .iter()
                                .map(|(k, v)| format!("{k}={v}"))
                                .collect();
                            format!(" subset{{{}}}", kv.join(","))
                        };
                        format!("-> {}{subset}", cs.join(","))
                    }
                    RouteAction::DirectResponse { status, .. } => {
                        format!("direct_response {status}")
                    }
                    RouteAction::Redirect { response_code, .. } => {
                        format!("redirect {response_code}")
                    }
                };
                let hs = if hs.is_empty() {
                    String::new()
                } else {
                    format!(" headers[{}]", hs.join(","))
                };
                let _ = writeln!(s, "      {m}{hs} {a}");
            }
        }
    }
    let _ = writeln!(s, "clusters: {}", c.clusters.len());
    for cl in &c.clusters {
        let lb = match cl.lb {
            LbType::RoundRobin => "LB_ROUNDROBIN",
            LbType::Random => "LB_RANDOM",
            LbType::WeightedRoundRobin => "LB_WEIGHTED_ROUNDROBIN",
            LbType::LeastRequest => "LB_LEAST_REQUEST",
        };
        let hosts: Vec<String> = cl.hosts.iter().map(|h| h.address.to_string()).collect();
        let _ = writeln!(s, "  {} {lb} hosts={}", cl.name, hosts.join(","));
    }
    s
}
