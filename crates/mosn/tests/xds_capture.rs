//! A sidecar's outbound capture, end to end, on Istio's own listeners: in a network namespace
//! this test makes, iptables REDIRECTs the client's connections to 15001, where Istio's
//! `virtualOutbound` (`use_original_dst`) hands each to the listener of its original
//! destination: Istio's `0.0.0.0_9080` (`bind_to_port: false`, RDS "9080"), or, for a port no
//! listener has, its own `PassthroughCluster` chain. mosn-rs takes them over delta ADS on a unix
//! socket, as from istio-agent. The listeners are Istio's unchanged; the endpoint's address is the
//! test app's, without its `tlsMode: istio` metadata (the app is no sidecar).

mod common;
use common::netns::{capture_namespace, curl_in};
use common::xds::*;
use common::*;

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

/// SDS `default` (a workload certificate made here with rcgen) and `ROOTCA`.
fn workload_secrets() -> Vec<Value> {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.subject_alt_names = vec![SanType::URI(
        "spiffe://cluster.local/ns/default/sa/app"
            .try_into()
            .unwrap(),
    )];
    let cert = p.signed_by(&key, &ca).unwrap();
    vec![
        json!({"name": "default", "tls_certificate": {
            "certificate_chain": {"inline_string": cert.pem()},
            "private_key": {"inline_string": key.serialize_pem()}}}),
        json!({"name": "ROOTCA", "validation_context": {"trusted_ca": {"inline_string": ca.pem()}}}),
    ]
}

/// An HTTP app answering `body` to every GET, inside the namespace on 10.9.9.9:`port`.
fn app_in(ns: &str, port: u16, body: &str) -> Killed {
    let script = format!(
        "import http.server as h\n\
         class H(h.BaseHTTPRequestHandler):\n\
         \x20def do_GET(self):\n\
         \x20 b=b'{body}'; self.send_response(200); self.send_header('content-length', str(len(b))); self.end_headers(); self.wfile.write(b)\n\
         \x20def log_message(self, *a): pass\n\
         h.ThreadingHTTPServer(('10.9.9.9', {port}), H).serve_forever()"
    );
    let app = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(xds_python())
        .args(["-c", &script])
        .stdout(Stdio::null())
        .spawn()
        .expect("python");
    Killed(app)
}

/// mosn-rs inside the namespace on the config `cfg`.
fn mosn_in(ns: &str, cfg: &std::path::Path) -> Killed {
    let mosn = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            env!("CARGO_BIN_EXE_mosn"),
            "start",
            "-c",
        ])
        .arg(cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Killed(mosn)
}

#[test]
fn istio_virtual_outbound_hands_redirected_connections_to_port_listeners() {
    let Some(netns) = capture_namespace("xds", 15001) else {
        return;
    };
    let ns = netns.0.clone();
    // The app: inside the namespace on 10.9.9.9:19080.
    let _app = app_in(&ns, 19080, "productpage-app");

    let dir = temp_dir("xds-capture");
    let app_addr: std::net::SocketAddr = "10.9.9.9:19080".parse().unwrap();
    let d = istio("describe_http_config.json");
    let mut routes = d["configs"][0]["dynamic_route_configs"][0]["route_config"].clone();
    routes["name"] = json!("9080");
    let state = json!({"version": "v1", "resources": {
        LDS: [listener_as_is("virtualOutbound"), listener_as_is("0.0.0.0_9080")],
        RDS: [routes],
        CDS: [cluster(PRODUCTPAGE),
              {"name": "PassthroughCluster", "type": "ORIGINAL_DST", "lb_policy": "CLUSTER_PROVIDED", "connect_timeout": "1s"},
              {"name": "BlackHoleCluster", "type": "STATIC", "connect_timeout": "1s"}],
        EDS: [assignment(PRODUCTPAGE, PRODUCTPAGE, &[app_addr])]}});
    publish(&dir, &state);
    let unix = dir.join("XDS");
    let (_ads, _) = ads_server(&dir, Some(&unix), None);
    let mut boot = bootstrap(
        "DELTA_GRPC",
        json!({"pipe": {"path": unix.to_str().unwrap()}}),
    );
    boot["admin"] = serde_json::Value::Null;
    let cfg = dir.join("bootstrap.json");
    std::fs::write(&cfg, boot.to_string()).unwrap();
    let _mosn = mosn_in(&ns, &cfg);

    // 10.9.9.9:9080 has no socket: the connection reaches the app only through the capture,
    // virtualOutbound's hand-off, 0.0.0.0_9080's route and the EDS endpoint.
    within(Duration::from_secs(15), "the routed request", || {
        curl_in(&ns, "http://10.9.9.9:9080/productpage") == (0, "productpage-app".into())
    });
    // A port no listener has: virtualOutbound's catch-all chain, PassthroughCluster (ORIGINAL_DST).
    assert_eq!(
        curl_in(&ns, "http://10.9.9.9:19080/any"),
        (0, "productpage-app".into())
    );
}

/// The inbound side: iptables REDIRECTs the client's connections to 15006, where Istio's
/// `virtualInbound` (its listener filter restores the original destination, 10.9.9.9:80) picks
/// the port-80 plaintext chain, whose route goes to Istio's inbound cluster `inbound|80||`, an
/// ORIGINAL_DST cluster: the request reaches the app on 10.9.9.9:80. The AuthorizationPolicy
/// filters of the dump are removed (mosn-rs has no RBAC yet).
#[test]
fn istio_virtual_inbound_routes_redirected_requests_to_the_app_through_original_dst() {
    let Some(netns) = capture_namespace("xds-in", 15006) else {
        return;
    };
    let ns = netns.0.clone();
    let _app = app_in(&ns, 80, "inbound-app");
    let dir = temp_dir("xds-capture-in");
    let mut state = json!({"version": "v1", "resources": {
        LDS: [listener_as_is("virtualInbound")],
        CDS: [{"name": "inbound|80||", "type": "ORIGINAL_DST", "lb_policy": "CLUSTER_PROVIDED",
               "connect_timeout": "10s",
               "upstream_bind_config": {"source_address": {"address": "127.0.0.6", "port_value": 0}}},
              {"name": "InboundPassthroughClusterIpv4", "type": "ORIGINAL_DST", "lb_policy": "CLUSTER_PROVIDED", "connect_timeout": "10s"},
              {"name": "BlackHoleCluster", "type": "STATIC", "connect_timeout": "1s"}],
        // The listener's TLS chains wait for these (a listener is served once all its secrets are).
        SECRET: workload_secrets()}});
    without_authz(&mut state);
    publish(&dir, &state);
    let unix = dir.join("XDS");
    let (_ads, _) = ads_server(&dir, Some(&unix), None);
    let pipe = json!({"pipe": {"path": unix.to_str().unwrap()}});
    let mut boot = bootstrap("DELTA_GRPC", pipe.clone());
    boot["admin"] = serde_json::Value::Null;
    // SDS from the same server, on the same socket.
    for c in boot["static_resources"]["clusters"].as_array_mut().unwrap() {
        if c["name"] == "sds-grpc" {
            c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"] =
                pipe.clone();
        }
    }
    let cfg = dir.join("bootstrap.json");
    std::fs::write(&cfg, boot.to_string()).unwrap();
    let _mosn = mosn_in(&ns, &cfg);
    within(Duration::from_secs(15), "the inbound request", || {
        curl_in(&ns, "http://10.9.9.9:80/anything") == (0, "inbound-app".into())
    });
}
