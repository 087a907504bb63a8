//! Translation of the shapes a current Istio sends, checked on the MOSN JSON produced and by
//! parsing that JSON with `mosn-config` as a running server would.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::cluster::v3::{cluster, Cluster};
use envoy_types::pb::envoy::config::core::v3::{
    address, socket_address, transport_socket, Address, Metadata, SocketAddress, TransportSocket,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    lb_endpoint, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::envoy::config::listener::v3::{
    filter, Filter, FilterChain, FilterChainMatch, Listener,
};
use envoy_types::pb::envoy::config::route::v3::{
    header_matcher::HeaderMatchSpecifier, route, route_action, route_match, weighted_cluster,
    HeaderMatcher, RetryPolicy, Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost,
    WeightedCluster,
};
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::HttpFault;
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::RouteSpecifier, http_filter, HttpConnectionManager, HttpFilter, Rds,
};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{tcp_proxy, TcpProxy};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext;
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher, RegexMatcher, StringMatcher};
use envoy_types::pb::google::protobuf::{
    value, Any, BoolValue, Struct, UInt32Value, Value as PbValue,
};
use prost::{Message, Name};
use serde_json::json;

use super::*;
use crate::store::{Entry, Store};

fn any<M: Message + Name>(m: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: m.encode_to_vec(),
    }
}

fn put<M: Message + Name>(s: &mut Store, name: &str, m: &M) {
    s.update(
        &M::type_url(),
        vec![(
            name.into(),
            Entry {
                version: "1".into(),
                body: any(m),
            },
        )],
        &[],
    );
}

fn sock(ip: &str, port: u32) -> Option<Address> {
    Some(Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: ip.into(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(port)),
            ..Default::default()
        })),
    })
}

fn net_filter<M: Message + Name>(name: &str, m: &M) -> Filter {
    Filter {
        name: name.into(),
        config_type: Some(filter::ConfigType::TypedConfig(any(m))),
    }
}

/// An opaque Istio filter config (its type is not in Envoy's API).
fn istio_filter(name: &str, type_url: &str) -> Filter {
    Filter {
        name: name.into(),
        config_type: Some(filter::ConfigType::TypedConfig(Any {
            type_url: type_url.into(),
            value: Vec::new(),
        })),
    }
}

fn http_filter<M: Message + Name>(name: &str, m: &M, optional: bool) -> HttpFilter {
    HttpFilter {
        name: name.into(),
        is_optional: optional,
        config_type: Some(http_filter::ConfigType::TypedConfig(any(m))),
        ..Default::default()
    }
}

fn tcp(cluster: &str) -> Filter {
    net_filter(
        "envoy.filters.network.tcp_proxy",
        &TcpProxy {
            stat_prefix: cluster.into(),
            cluster_specifier: Some(tcp_proxy::ClusterSpecifier::Cluster(cluster.into())),
            ..Default::default()
        },
    )
}

fn hcm(rds: &str, extra: Vec<HttpFilter>) -> Filter {
    let mut filters = extra;
    filters.push(http_filter(
        "envoy.filters.http.fault",
        &HttpFault::default(),
        false,
    ));
    filters.push(http_filter(
        "envoy.filters.http.router",
        &Router::default(),
        false,
    ));
    net_filter(
        "envoy.filters.network.http_connection_manager",
        &HttpConnectionManager {
            stat_prefix: "outbound_0.0.0.0_9080".into(),
            route_specifier: Some(RouteSpecifier::Rds(Rds {
                route_config_name: rds.into(),
                ..Default::default()
            })),
            http_filters: filters,
            ..Default::default()
        },
    )
}

/// Istio's outbound HTTP listener `0.0.0.0_<port>`: an HCM chain on raw_buffer + HTTP ALPNs and
/// the `PassthroughFilterChain` default chain.
fn outbound_http(extra: Vec<HttpFilter>) -> Listener {
    Listener {
        name: "0.0.0.0_9080".into(),
        address: sock("127.0.0.1", 0),
        bind_to_port: Some(BoolValue { value: true }),
        filter_chains: vec![FilterChain {
            filter_chain_match: Some(FilterChainMatch {
                transport_protocol: "raw_buffer".into(),
                application_protocols: vec!["http/1.1".into(), "h2c".into()],
                ..Default::default()
            }),
            filters: vec![hcm("9080", extra)],
            ..Default::default()
        }],
        default_filter_chain: Some(FilterChain {
            filters: vec![
                istio_filter("istio.stats", "type.googleapis.com/stats.PluginConfig"),
                tcp("PassthroughCluster"),
            ],
            name: "PassthroughFilterChain".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A route configuration with no virtual host.
fn empty_routes(name: &str) -> RouteConfiguration {
    RouteConfiguration {
        name: name.into(),
        ..Default::default()
    }
}

/// The translated entries as a MOSN config, parsed as a running server would (with a listener
/// of the test's when the translation has none: a config must serve something).
fn parse(t: &Translated) -> Result<mosn_config::Loaded, mosn_config::ConfigError> {
    let mut listeners: Vec<_> = t.listeners.iter().map(|(_, v)| v.clone()).collect();
    let mut routers: Vec<_> = t.routers.iter().map(|(_, v)| v.clone()).collect();
    if listeners.is_empty() {
        listeners.push(json!({"name": "test", "address": "127.0.0.1:0", "filter_chains": [{"filters": [
            {"type": "proxy", "config": {"downstream_protocol": "Http1", "router_config_name": "test"}}]}]}));
        routers.push(json!({"router_config_name": "test", "virtual_hosts": []}));
    }
    let doc = json!({
        "servers": [{"listeners": listeners, "routers": routers}],
        "cluster_manager": {"clusters": t.clusters.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>()},
    });
    mosn_config::from_value(&doc)
}

#[test]
fn istio_outbound_http_listener_is_auto_with_a_passthrough_fallback() {
    let mut s = Store::default();
    let alpn = Any {
        type_url: "type.googleapis.com/istio.envoy.config.filter.http.alpn.v2alpha1.FilterConfig"
            .into(),
        value: Vec::new(),
    };
    let extra = vec![HttpFilter {
        name: "istio.alpn".into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(alpn)),
        ..Default::default()
    }];
    put(&mut s, "0.0.0.0_9080", &outbound_http(extra));
    // Until its RDS arrives, the listener warms.
    let t = translate(&s);
    assert!(t.listeners.is_empty());
    assert_eq!(t.warming, ["0.0.0.0_9080"]);
    put(&mut s, "9080", &empty_routes("9080"));
    let t = translate(&s);
    assert!(t.rejected.is_empty(), "{:?}", t.rejected);
    let (_, l) = &t.listeners[0];
    assert_eq!(l["address"], "127.0.0.1:0");
    let filters = &l["filter_chains"][0]["filters"];
    assert_eq!(filters[0]["type"], "proxy");
    assert_eq!(filters[0]["config"]["downstream_protocol"], "Auto");
    assert_eq!(filters[0]["config"]["router_config_name"], "9080");
    assert_eq!(filters[0]["config"]["fallback_for_unknown_protocol"], true);
    assert_eq!(filters[1]["config"]["cluster"], "PassthroughCluster");
    assert_eq!(l["stream_filters"][0]["type"], "fault");
    assert_eq!(t.ignored_filters.get("istio.alpn"), Some(&1));
    assert_eq!(t.ignored_filters.get("istio.stats"), Some(&1));
    // The passthrough cluster CDS has not sent is a placeholder.
    assert!(t.clusters.iter().any(|(n, _)| n == "PassthroughCluster"));
    let loaded = parse(&t).unwrap();
    assert!(loaded.config.server.listeners[0]
        .filter
        .proxy()
        .unwrap()
        .fallback
        .is_some());
}

#[test]
fn unknown_http_filters_are_refused_unless_optional() {
    let mut s = Store::default();
    let unknown = http_filter("acme.waf", &Router::default(), false);
    put(&mut s, "l", &outbound_http(vec![unknown]));
    let t = translate(&s);
    assert_eq!(t.rejected.len(), 1);
    let r = &t.rejected[0];
    assert_eq!(r.name, "l");
    assert!(
        r.message.contains("http_filters[0]") && r.message.contains("acme.waf"),
        "{r}"
    );
    let mut s = Store::default();
    let optional = http_filter("acme.waf", &Router::default(), true);
    put(&mut s, "l", &outbound_http(vec![optional]));
    let t = translate(&s);
    assert!(t.rejected.is_empty());
    assert_eq!(t.ignored_filters.get("acme.waf"), Some(&1));
}

#[test]
fn virtual_outbound_becomes_tcp_proxy_routes_by_destination_port() {
    let mut s = Store::default();
    let l = Listener {
        name: "virtualOutbound".into(),
        address: sock("0.0.0.0", 15001),
        use_original_dst: Some(BoolValue { value: true }),
        filter_chains: vec![
            FilterChain {
                filter_chain_match: Some(FilterChainMatch {
                    destination_port: Some(UInt32Value { value: 15001 }),
                    ..Default::default()
                }),
                filters: vec![tcp("BlackHoleCluster")],
                ..Default::default()
            },
            FilterChain {
                filters: vec![tcp("PassthroughCluster")],
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    put(&mut s, "virtualOutbound", &l);
    let t = translate(&s);
    assert!(t.rejected.is_empty(), "{:?}", t.rejected);
    let l = &t.listeners[0].1;
    assert_eq!(l["use_original_dst"], "redirect");
    let routes = &l["filter_chains"][0]["filters"][0]["config"]["routes"];
    assert_eq!(
        routes[0],
        json!({"cluster": "BlackHoleCluster", "destination_port": "15001"})
    );
    assert_eq!(routes[1], json!({"cluster": "PassthroughCluster"}));
    parse(&t).unwrap();
}

#[test]
fn chains_told_apart_by_transport_running_different_filters_become_child_listeners() {
    // virtualInbound's shape: per port, a TLS chain and a plaintext chain with different filters.
    let mut s = Store::default();
    let l = Listener {
        name: "virtualInbound".into(),
        address: sock("0.0.0.0", 15006),
        listener_filters: vec![
            envoy_types::pb::envoy::config::listener::v3::ListenerFilter {
                name: "envoy.filters.listener.original_dst".into(),
                ..Default::default()
            },
        ],
        filter_chains: vec![
            FilterChain {
                filter_chain_match: Some(FilterChainMatch {
                    destination_port: Some(UInt32Value { value: 9080 }),
                    transport_protocol: "raw_buffer".into(),
                    application_protocols: vec!["http/1.1".into(), "h2c".into()],
                    ..Default::default()
                }),
                filters: vec![hcm("inbound|9080||", vec![])],
                ..Default::default()
            },
            FilterChain {
                filter_chain_match: Some(FilterChainMatch {
                    destination_port: Some(UInt32Value { value: 9080 }),
                    transport_protocol: "raw_buffer".into(),
                    ..Default::default()
                }),
                filters: vec![tcp("inbound|9080||")],
                name: "tcp".into(),
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    put(&mut s, "virtualInbound", &l);
    put(&mut s, "inbound|9080||", &empty_routes("inbound|9080||"));
    let t = translate(&s);
    assert!(t.rejected.is_empty(), "{:?}", t.rejected);
    let names: Vec<&str> = t
        .listeners
        .iter()
        .map(|(_, l)| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["virtualInbound", "virtualInbound/0", "virtualInbound/tcp#1"]
    );
    let parent = &t.listeners[0].1;
    // The listener filter restores the address for matching; it does not hand connections off.
    assert_eq!(parent["listener_filters"][0]["config"]["hand_off"], false);
    assert_eq!(
        parent["filter_chains"][0]["filters"][0]["config"]["cluster"],
        "BlackHoleCluster"
    );
    let http = &t.listeners[1].1;
    assert_eq!(http["parent_listener"], "virtualInbound");
    assert_eq!(http["bind_port"], false);
    assert_eq!(
        http["filter_chain_match"],
        json!({"destination_port": 9080, "transport_protocol": "raw_buffer", "application_protocols": ["http/1.1", "h2c"]})
    );
    assert_eq!(
        t.listeners[2].1["filter_chains"][0]["filters"][0]["type"],
        "tcp_proxy"
    );
    // Every entry names the LDS resource it came from.
    assert!(t.listeners.iter().all(|(n, _)| n == "virtualInbound"));
    let loaded = parse(&t).unwrap();
    assert_eq!(loaded.config.server.listeners.len(), 3);
    assert!(!loaded.config.server.listeners[0].original_dst_hand_off);
}

fn header(name: &str, spec: HeaderMatchSpecifier, invert: bool) -> HeaderMatcher {
    HeaderMatcher {
        name: name.into(),
        header_match_specifier: Some(spec),
        invert_match: invert,
        ..Default::default()
    }
}

fn forward(cluster: &str) -> Option<route::Action> {
    Some(route::Action::Route(RouteAction {
        cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(cluster.into())),
        ..Default::default()
    }))
}

#[test]
fn routes_take_string_match_present_invert_separated_prefix_weights_and_retries() {
    let rc = RouteConfiguration {
        name: "9080".into(),
        virtual_hosts: vec![VirtualHost {
            name: "reviews:9080".into(),
            domains: vec!["reviews".into(), "reviews:9080".into()],
            routes: vec![
                Route {
                    r#match: Some(RouteMatch {
                        path_specifier: Some(route_match::PathSpecifier::PathSeparatedPrefix(
                            "/api".into(),
                        )),
                        headers: vec![
                            header(
                                "end-user",
                                HeaderMatchSpecifier::StringMatch(StringMatcher {
                                    match_pattern: Some(string_matcher::MatchPattern::Prefix(
                                        "ja.".into(),
                                    )),
                                    ignore_case: true,
                                }),
                                false,
                            ),
                            header("x-canary", HeaderMatchSpecifier::PresentMatch(true), true),
                        ],
                        ..Default::default()
                    }),
                    action: forward("v2"),
                    ..Default::default()
                },
                Route {
                    r#match: Some(RouteMatch {
                        path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())),
                        ..Default::default()
                    }),
                    action: Some(route::Action::Route(RouteAction {
                        cluster_specifier: Some(route_action::ClusterSpecifier::WeightedClusters(
                            WeightedCluster {
                                clusters: vec![
                                    weighted_cluster::ClusterWeight {
                                        name: "v1".into(),
                                        weight: Some(UInt32Value { value: 90 }),
                                        ..Default::default()
                                    },
                                    weighted_cluster::ClusterWeight {
                                        name: "v2".into(),
                                        weight: Some(UInt32Value { value: 10 }),
                                        ..Default::default()
                                    },
                                ],
                                ..Default::default()
                            },
                        )),
                        retry_policy: Some(RetryPolicy {
                            retry_on: "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes".into(),
                            num_retries: Some(UInt32Value { value: 2 }),
                            retriable_status_codes: vec![503],
                            ..Default::default()
                        }),
                        ..Default::default()
                    })),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut s = Store::default();
    put(&mut s, "9080", &rc);
    let t = translate(&s);
    assert!(t.rejected.is_empty(), "{:?}", t.rejected);
    let r = &t.routers[0].1["virtual_hosts"][0]["routers"];
    assert_eq!(r[0]["match"]["path_separated_prefix"], "/api");
    assert_eq!(
        r[0]["match"]["headers"][0],
        json!({"name": "end-user", "value": "(?i)ja\\..*", "regex": true})
    );
    assert_eq!(
        r[0]["match"]["headers"][1],
        json!({"name": "x-canary", "present_match": true, "invert_match": true})
    );
    assert_eq!(
        r[1]["route"]["weighted_clusters"][0],
        json!({"cluster": {"name": "v1", "weight": 90}})
    );
    assert_eq!(
        r[1]["route"]["retry_policy"],
        json!({"retry_on": true, "num_retries": 2, "status_codes": [503]})
    );
    // The clusters the routes name are placeholders until CDS sends them; it all parses.
    let loaded = parse(&t).unwrap();
    let h = &loaded.config.server.routers[0].virtual_hosts[0].routes[0].headers;
    assert!(h[1].present && h[1].invert);
}

#[test]
fn a_regex_that_does_not_compile_is_an_error_of_the_parse_with_its_path() {
    let rc = RouteConfiguration {
        name: "r".into(),
        virtual_hosts: vec![VirtualHost {
            name: "v".into(),
            domains: vec!["*".into()],
            routes: vec![Route {
                r#match: Some(RouteMatch {
                    path_specifier: Some(route_match::PathSpecifier::SafeRegex(RegexMatcher {
                        regex: "/a([".into(),
                        ..Default::default()
                    })),
                    ..Default::default()
                }),
                action: forward("c"),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut s = Store::default();
    put(&mut s, "r", &rc);
    let e = parse(&translate(&s)).unwrap_err();
    assert!(e.path.starts_with("servers[0].routers[0]"), "{e}");
}

fn lb(ip: &str, port: u32, health: i32, weight: u32, tls_mode: Option<&str>) -> LbEndpoint {
    let metadata = tls_mode.map(|m| Metadata {
        filter_metadata: [(
            "envoy.transport_socket_match".to_string(),
            Struct {
                fields: [(
                    "tlsMode".to_string(),
                    PbValue {
                        kind: Some(value::Kind::StringValue(m.into())),
                    },
                )]
                .into(),
            },
        )]
        .into(),
        ..Default::default()
    });
    LbEndpoint {
        host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
            address: sock(ip, port),
            ..Default::default()
        })),
        health_status: health,
        load_balancing_weight: Some(UInt32Value { value: weight }),
        metadata,
    }
}

fn eds_cluster(name: &str) -> Cluster {
    Cluster {
        name: name.into(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32,
        )),
        lb_policy: cluster::LbPolicy::LeastRequest as i32,
        ..Default::default()
    }
}

#[test]
fn eds_merges_localities_of_the_best_priority_and_skips_unhealthy_hosts() {
    let mut s = Store::default();
    put(&mut s, "c", &eds_cluster("c"));
    let cla = ClusterLoadAssignment {
        cluster_name: "c".into(),
        endpoints: vec![
            // Priority 0: every host unhealthy (2) or draining (3).
            LocalityLbEndpoints {
                lb_endpoints: vec![
                    lb("10.0.0.1", 80, 2, 1, None),
                    lb("10.0.0.2", 80, 3, 1, None),
                ],
                priority: 0,
                ..Default::default()
            },
            // Priority 1, two localities: both serve.
            LocalityLbEndpoints {
                lb_endpoints: vec![lb("10.0.1.1", 80, 1, 500, None)],
                priority: 1,
                ..Default::default()
            },
            LocalityLbEndpoints {
                lb_endpoints: vec![
                    lb("10.0.2.1", 80, 0, 3, None),
                    lb("10.0.2.2", 80, 2, 1, None),
                ],
                priority: 1,
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    put(&mut s, "c", &cla);
    let t = translate(&s);
    let c = &t.clusters[0].1;
    assert_eq!(c["lb_type"], "LB_LEAST_REQUEST");
    let hosts: Vec<(&str, u64)> = c["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["address"].as_str().unwrap(),
                h["weight"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(hosts, vec![("10.0.1.1:80", 128), ("10.0.2.1:80", 3)]);
    parse(&t).unwrap();
}

#[test]
fn the_transport_socket_is_chosen_per_endpoint_by_its_tls_mode() {
    let mut c = eds_cluster("c");
    let tls = UpstreamTlsContext {
        sni: "outbound_.9080_._.reviews".into(),
        ..Default::default()
    };
    c.transport_socket_matches = vec![
        cluster::TransportSocketMatch {
            name: "tlsMode-istio".into(),
            r#match: Some(Struct {
                fields: [(
                    "tlsMode".to_string(),
                    PbValue {
                        kind: Some(value::Kind::StringValue("istio".into())),
                    },
                )]
                .into(),
            }),
            transport_socket: Some(TransportSocket {
                name: "envoy.transport_sockets.tls".into(),
                config_type: Some(transport_socket::ConfigType::TypedConfig(any(&tls))),
            }),
        },
        cluster::TransportSocketMatch {
            name: "tlsMode-disabled".into(),
            r#match: Some(Struct::default()),
            transport_socket: Some(TransportSocket {
                name: "envoy.transport_sockets.raw_buffer".into(),
                config_type: None,
            }),
        },
    ];
    let mut s = Store::default();
    put(&mut s, "c", &c);
    put(
        &mut s,
        "c",
        &ClusterLoadAssignment {
            cluster_name: "c".into(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![
                    lb("10.0.0.1", 80, 1, 1, Some("istio")),
                    lb("10.0.0.2", 80, 1, 1, None),
                ],
                ..Default::default()
            }],
            ..Default::default()
        },
    );
    let t = translate(&s);
    let c = &t.clusters[0].1;
    assert_eq!(c["tls_context"]["server_name"], "outbound_.9080_._.reviews");
    assert_eq!(c["hosts"][0].get("tls_disable"), None, "{c}");
    assert_eq!(
        c["hosts"][0]["metadata"]["filter_metadata"]["mosn.lb"]["tlsMode"],
        "istio"
    );
    assert_eq!(c["hosts"][1]["tls_disable"], true);
    parse(&t).unwrap();
}

#[test]
fn resources_of_the_wrong_type_or_garbage_bytes_are_rejected_by_name() {
    let mut s = Store::default();
    // A Cluster where a Listener belongs.
    s.update(
        crate::types::LISTENER,
        vec![(
            "wrong".into(),
            Entry {
                version: "1".into(),
                body: any(&eds_cluster("x")),
            },
        )],
        &[],
    );
    // Bytes that are no protobuf.
    s.update(
        crate::types::ROUTE,
        vec![(
            "garbage".into(),
            Entry {
                version: "1".into(),
                body: Any {
                    type_url: crate::types::ROUTE.into(),
                    value: vec![0xff; 64],
                },
            },
        )],
        &[],
    );
    let t = translate(&s);
    let by: BTreeMap<&str, &str> = t
        .rejected
        .iter()
        .map(|r| (r.name.as_str(), r.message.as_str()))
        .collect();
    assert!(by["wrong"].contains("has type"), "{by:?}");
    assert!(by["garbage"].contains("does not decode"), "{by:?}");
}
