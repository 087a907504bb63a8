//! Cross-reference checks over a parsed [`Config`]: every error names the JSON path at fault.

use std::collections::{HashMap, HashSet};

use crate::error::{ConfigError, Result};
use crate::model::{Config, RouteAction};

pub(crate) fn validate(c: &Config) -> Result<()> {
    if c.server.listeners.is_empty() && c.xds.is_none() {
        return Err(ConfigError::new(
            "servers[0].listeners",
            "no listener: this config would serve nothing",
        ));
    }
    let mut clusters = HashSet::new();
    for (i, cl) in c.clusters.iter().enumerate() {
        if !clusters.insert(cl.name.as_str()) {
            return Err(ConfigError::new(
                format!("cluster_manager.clusters[{i}].name"),
                format!("{:?} is a duplicate cluster name", cl.name),
            ));
        }
    }
    let mut routers = HashSet::new();
    for (ri, r) in c.server.routers.iter().enumerate() {
        let rp = format!("servers[0].routers[{ri}]");
        if !routers.insert(r.name.as_str()) {
            return Err(ConfigError::new(
                format!("{rp}.router_config_name"),
                format!("{:?} is a duplicate route table name", r.name),
            ));
        }
        for (vi, vh) in r.virtual_hosts.iter().enumerate() {
            let vp = format!("{rp}.virtual_hosts[{vi}]");
            for (ui, route) in vh.routes.iter().enumerate() {
                let up = format!("{vp}.routers[{ui}].route");
                if let RouteAction::Forward(f) = &route.action {
                    for (ci, (name, _)) in f.clusters.iter().enumerate() {
                        let p = if f.clusters.len() == 1 && ci == 0 {
                            format!("{up}.cluster_name")
                        } else {
                            format!("{up}.weighted_clusters[{ci}].cluster.name")
                        };
                        if !clusters.contains(name.as_str()) {
                            return Err(ConfigError::new(
                                p,
                                format!("{name:?} is not a cluster in cluster_manager.clusters"),
                            ));
                        }
                    }
                }
            }
        }
    }
    let mut addrs: HashMap<&crate::ListenAddr, usize> = HashMap::new();
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (li, l) in c.server.listeners.iter().enumerate() {
        let Some(parent) = &l.parent else { continue };
        let p = c.server.listeners.iter().find(|x| &x.name == parent);
        match p {
            None => {
                return Err(ConfigError::new(
                    format!("servers[0].listeners[{li}].parent_listener"),
                    format!("{parent:?} is not a listener"),
                ))
            }
            Some(x) if x.parent.is_some() => {
                return Err(ConfigError::new(
                    format!("servers[0].listeners[{li}].parent_listener"),
                    format!("{parent:?} is itself a child listener; chains nest one level only"),
                ))
            }
            Some(_) => {}
        }
    }
    for (li, l) in c.server.listeners.iter().enumerate() {
        let lp = format!("servers[0].listeners[{li}]");
        // Port 0 asks for any free port: two such listeners never collide.
        let any_port = matches!(l.address, crate::ListenAddr::Tcp(a) | crate::ListenAddr::Udp(a) if a.port() == 0);
        // A child listener (one filter chain of its parent) shares its parent's address.
        let child = l.parent.is_some();
        if let Some(prev) = (!child)
            .then(|| addrs.insert(&l.address, li))
            .flatten()
            .filter(|_| !any_port)
        {
            return Err(ConfigError::new(
                format!("{lp}.address"),
                format!(
                    "\"{}\" is already the address of servers[0].listeners[{prev}]",
                    l.address
                ),
            ));
        }
        if let Some(prev) = names.insert(l.name.as_str(), li) {
            return Err(ConfigError::new(
                format!("{lp}.name"),
                format!(
                    "{:?} is already the name of servers[0].listeners[{prev}]",
                    l.name
                ),
            ));
        }
        match &l.filter {
            crate::NetworkFilter::Proxy(p) => {
                if !routers.contains(p.router_config_name.as_str()) {
                    return Err(ConfigError::new(
                        format!("{lp}.filter_chains[0].filters[0].config.router_config_name"),
                        format!(
                            "{:?} is not a route table in servers[0].routers",
                            p.router_config_name
                        ),
                    ));
                }
            }
            crate::NetworkFilter::TcpProxy(t) | crate::NetworkFilter::UdpProxy(t) => {
                let fp = format!("{lp}.filter_chains[0].filters[0].config");
                if let Some(c) = &t.cluster {
                    if !clusters.contains(c.as_str()) {
                        return Err(ConfigError::new(
                            format!("{fp}.cluster"),
                            format!("{c:?} is not a cluster in cluster_manager.clusters"),
                        ));
                    }
                }
                for (i, r) in t.routes.iter().enumerate() {
                    if !clusters.contains(r.cluster.as_str()) {
                        return Err(ConfigError::new(
                            format!("{fp}.routes[{i}].cluster"),
                            format!(
                                "{:?} is not a cluster in cluster_manager.clusters",
                                r.cluster
                            ),
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}
