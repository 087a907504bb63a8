//! Wires MOSN's `dubbo_registry` extension (`mosn_discovery::dubbo`) to the running server:
//! subscribed interfaces become clusters and routes on the `dubbo` router, applied without a
//! restart; the registry's state and metrics go to the admin API.
//!
//! What the extension adds to the config, as MOSN's `notify.go` and `common.go` do:
//! - per interface, a cluster named after it with its providers as hosts. When the config already
//!   has a cluster of that name, the providers are added to its hosts (MOSN's `TriggerHostAppend`);
//!   else the cluster is `{"type": "SIMPLE", "lb_type": "LB_RANDOM", "max_request_per_conn":
//!   1024, "conn_buffer_limit_bytes": 32768}`;
//! - per interface, the route `{"match": {"headers": [{"name": "service", "value": <interface>}]},
//!   "route": {"cluster_name": <interface>}}` appended to the first virtual host of the `dubbo`
//!   router, in subscription order.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use mosn_admin::metrics::{MetricSet, Value as MetricValue};
use mosn_discovery::dubbo::{Registry, Settings};
use serde_json::{json, Value};

/// `base` with the clusters and routes of `services` (see the module doc).
pub fn with_services(base: &Value, services: &BTreeMap<String, Vec<SocketAddr>>) -> Value {
    let mut v = base.clone();
    let hosts = |addrs: &[SocketAddr]| -> Vec<Value> {
        addrs
            .iter()
            .map(|a| json!({"address": a.to_string()}))
            .collect()
    };
    if v.pointer("/cluster_manager/clusters").is_none() {
        v["cluster_manager"] = json!({"clusters": []});
    }
    if let Some(clusters) = v
        .pointer_mut("/cluster_manager/clusters")
        .and_then(Value::as_array_mut)
    {
        for (name, addrs) in services {
            match clusters
                .iter_mut()
                .find(|c| c.get("name").and_then(Value::as_str) == Some(name))
            {
                Some(c) => {
                    if !c.get("hosts").is_some_and(Value::is_array) {
                        c["hosts"] = json!([]);
                    }
                    if let Some(h) = c["hosts"].as_array_mut() {
                        h.extend(hosts(addrs));
                    }
                }
                None => clusters.push(
                    json!({"name": name, "type": "SIMPLE", "lb_type": "LB_RANDOM",
                    "max_request_per_conn": 1024, "conn_buffer_limit_bytes": 32768,
                    "hosts": hosts(addrs)}),
                ),
            }
        }
    }
    let router = v
        .pointer_mut("/servers/0/routers")
        .and_then(Value::as_array_mut)
        .and_then(|rs| {
            rs.iter_mut().find(|r| {
                r.get("router_config_name").and_then(Value::as_str)
                    == Some(mosn_config::model::DUBBO_ROUTER)
            })
        });
    if let Some(routes) = router
        .and_then(|r| r.pointer_mut("/virtual_hosts/0"))
        .map(|vh| {
            if !vh.get("routers").is_some_and(Value::is_array) {
                vh["routers"] = json!([]);
            }
            &mut vh["routers"]
        })
        .and_then(Value::as_array_mut)
    {
        for name in services.keys() {
            routes.push(
                json!({"match": {"headers": [{"name": "service", "value": name}]},
                "route": {"cluster_name": name}}),
            );
        }
    }
    v
}

/// Starts the registry when the config enables it.
///
/// Errors: the API port cannot be bound, or `server_listener` names no TCP listener.
pub fn start(
    loaded: &mosn_config::Loaded,
    live: Arc<crate::live::Live>,
    server: &mosn_proxy::Server,
    inherited: &mut Vec<std::os::fd::OwnedFd>,
) -> anyhow::Result<Option<Arc<Registry>>> {
    let Some(d) = &loaded.config.dubbo_registry else {
        return Ok(None);
    };
    let server_port = match (&d.server_listener, d.server_port) {
        (Some(name), _) => server
            .listener_addr(name)
            .with_context(|| {
                format!("dubbo_registry: server_listener {name:?} is not a TCP listener")
            })?
            .port(),
        (None, Some(p)) => p,
        (None, None) => anyhow::bail!("dubbo_registry: no server_port"),
    };
    let publish_ip = match d.publish_ip {
        Some(ip) => ip.to_string(),
        None => match mosn_discovery::dubbo::first_non_loopback_ipv4() {
            Some(ip) => ip.to_string(),
            None => {
                tracing::warn!(
                    "dubbo_registry: no non-loopback IPv4 address; publishing 127.0.0.1"
                );
                "127.0.0.1".into()
            }
        },
    };
    let settings = Settings {
        api: SocketAddr::from(([0, 0, 0, 0], d.api_port)),
        publish_ip,
        server_port,
        any_version: d.sub_any_version,
    };
    // A hot upgrade hands the old process's API socket over (matched by port, as admin ones).
    let handed = inherited.iter().position(|fd| {
        d.api_port != 0
            && matches!(mosn_net::fdpass::socket_kind(fd),
                Some(mosn_net::fdpass::SocketKind::Tcp(a)) if a.port() == d.api_port)
    });
    let r = match handed {
        Some(i) => Registry::start_on(
            settings,
            std::net::TcpListener::from(inherited.swap_remove(i)),
            live,
        ),
        None => Registry::start(settings, live),
    }
    .with_context(|| format!("dubbo_registry: cannot listen on port {}", d.api_port))?;
    tracing::info!(address = %r.api_addr(), "dubbo_registry listening");
    Ok(Some(Arc::new(r)))
}

/// The registry as an admin extension: `/api/v1/extends` shows its state, and the metric set
/// `dubbo_registry{registry=<addr>}` has `zookeeper_connected` (0 or 1),
/// `zookeeper_disconnect_total` and `nodes` (ephemeral nodes kept).
pub fn extension(r: &Arc<Registry>) -> mosn_admin::Extension {
    let (r1, r2) = (r.clone(), r.clone());
    mosn_admin::Extension {
        name: "dubbo_registry",
        state: Box::new(move || r1.status()),
        metrics: Box::new(move || {
            r2.metrics()
                .into_iter()
                .map(|(addr, up, lost, nodes)| MetricSet {
                    typ: "dubbo_registry",
                    labels: vec![("registry", addr)],
                    values: vec![
                        ("zookeeper_connected", MetricValue::Gauge(i64::from(up))),
                        ("zookeeper_disconnect_total", MetricValue::Counter(lost)),
                        ("nodes", MetricValue::Gauge(nodes as i64)),
                    ],
                })
                .collect()
        }),
    }
}

/// Removes the registry's nodes before the drain (at most 3 s).
pub fn stop(r: &Registry) {
    r.shutdown(Duration::from_secs(3));
    tracing::info!("dubbo_registry: nodes removed");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_become_clusters_and_routes() {
        let base = json!({"servers": [{"routers": [{"router_config_name": "dubbo",
            "virtual_hosts": [{"name": "dubbo", "domains": ["*"], "routers": []}]}]}],
            "cluster_manager": {"clusters": [{"name": "a.B", "type": "SIMPLE", "hosts": [{"address": "10.0.0.1:1"}]}]}});
        let mut s = BTreeMap::new();
        s.insert("a.B".to_string(), vec!["10.0.0.2:2".parse().unwrap()]);
        s.insert("c.D".to_string(), vec![]);
        let v = with_services(&base, &s);
        let cs = v["cluster_manager"]["clusters"].as_array().unwrap();
        assert_eq!(cs.len(), 2);
        assert_eq!(
            cs[0]["hosts"].as_array().unwrap().len(),
            2,
            "appended to the existing cluster"
        );
        assert_eq!(cs[1]["name"], "c.D");
        assert_eq!(cs[1]["lb_type"], "LB_RANDOM");
        let routes = v["servers"][0]["routers"][0]["virtual_hosts"][0]["routers"]
            .as_array()
            .unwrap();
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[1]["match"]["headers"][0]["value"], "c.D");
    }
}
