//! mTLS between two mosn-rs instances with certificates served over SDS, as Istio does it: each
//! instance runs on Istio's bootstrap, takes its listeners and clusters over ADS and its `default`
//! certificate and `ROOTCA` trust anchor over SDS (`SecretDiscoveryService.StreamSecrets` on the
//! bootstrap's `sds-grpc` cluster), from the test's ADS server (`tests/peers/ads_server.py`).
//! The certificates are made with rcgen here: SPIFFE identities as URI SANs.
//!
//! The client side ("sleep") uses Istio's own outbound cluster (`describe_http_config.json`: the
//! `tlsMode-istio` transport socket match, SDS secrets, `match_subject_alt_names`), and an
//! endpoint carrying `tlsMode: istio`. The server side ("productpage") is an inbound listener
//! requiring client certificates. Shown: requests cross mTLS; a cluster expecting another
//! identity fails with 502 (SAN verification); a client without a certificate is refused; the
//! server's certificate rotates mid-load (a new `default` secret) and no request fails.

mod common;
use common::xds::*;
use common::*;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType};
use serde_json::{json, Value};

/// The identity Istio's test cluster expects (its first `match_subject_alt_names` entry).
const PRODUCTPAGE_ID: &str = "spiffe://cluster.local/ns/default/sa/bookinfo-productpage";
const SLEEP_ID: &str = "spiffe://cluster.local/ns/default/sa/sleep";
const GOOD: &str = "outbound|9080|v1|productpage.default.svc.cluster.local";
const WRONG_ID: &str = "outbound|9080|v2|productpage.default.svc.cluster.local";

fn ca() -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(DnType::CommonName, "cluster.local");
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

/// A workload certificate: `(cert PEM, key PEM)` with a SPIFFE URI SAN and a common name.
fn workload(ca: &CertifiedIssuer<'static, KeyPair>, id: &str, cn: &str) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.subject_alt_names = vec![SanType::URI(id.try_into().unwrap())];
    p.distinguished_name.push(DnType::CommonName, cn);
    let c = p.signed_by(&key, ca).unwrap();
    (c.pem(), key.serialize_pem())
}

fn secrets(cert: &(String, String), ca_pem: &str) -> Vec<Value> {
    vec![
        json!({"name": "default", "tls_certificate": {
            "certificate_chain": {"inline_string": cert.0}, "private_key": {"inline_string": cert.1}}}),
        json!({"name": "ROOTCA", "validation_context": {"trusted_ca": {"inline_string": ca_pem}}}),
    ]
}

/// Istio's SDS reference to a secret (`sds-grpc`).
fn sds(name: &str) -> Value {
    json!({"name": name, "sds_config": {"api_config_source": {"api_type": "GRPC",
        "grpc_services": [{"envoy_grpc": {"cluster_name": "sds-grpc"}}],
        "set_node_on_first_message_only": true, "transport_api_version": "V3"},
        "initial_fetch_timeout": "0s", "resource_api_version": "V3"}})
}

fn static_cluster(name: &str, to: SocketAddr) -> Value {
    json!({"name": name, "type": "STATIC", "connect_timeout": "1s", "load_assignment": {
        "cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address":
        {"socket_address": {"address": to.ip().to_string(), "port_value": to.port()}}}}]}]}})
}

fn hcm(route_config: Value) -> Value {
    json!({"name": "envoy.filters.network.http_connection_manager", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "test", "route_config": route_config,
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config":
            {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}})
}

/// The server side: an inbound listener with mTLS (SDS `default` and `ROOTCA`, client
/// certificates required, Istio's inbound ALPN) in front of the app.
fn server_state(version: u32, cert: &(String, String), ca_pem: &str, app: SocketAddr) -> Value {
    let listener = json!({"name": "virtualInbound-9080",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
        "filter_chains": [{
            "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                "require_client_certificate": true,
                "common_tls_context": {
                    "alpn_protocols": ["h2", "http/1.1"],
                    "tls_certificate_sds_secret_configs": [sds("default")],
                    "combined_validation_context": {"default_validation_context": {},
                        "validation_context_sds_secret_config": sds("ROOTCA")}}}},
            "filters": [hcm(json!({"name": "inbound|9080||", "virtual_hosts": [{"name": "inbound", "domains": ["*"],
                "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "inbound|9080||"}}]}]}))]}]});
    json!({"version": format!("v{version}"), "resources": {
        LDS: [listener], CDS: [static_cluster("inbound|9080||", app)], SECRET: secrets(cert, ca_pem)}})
}

/// The client side: Istio's outbound cluster (auto-mTLS to the server's address, whose endpoint
/// says `tlsMode: istio`), and the same with an identity the server does not have.
fn client_state(cert: &(String, String), ca_pem: &str, server: SocketAddr) -> Value {
    let d = istio("describe_http_config.json");
    let good = d["configs"][1]["dynamic_active_clusters"][0]["cluster"].clone();
    let mut wrong = good.clone();
    wrong["name"] = json!(WRONG_ID);
    wrong["eds_cluster_config"]["service_name"] = json!(WRONG_ID);
    wrong["transport_socket_matches"][0]["transport_socket"]["typed_config"]
        ["common_tls_context"]["combined_validation_context"]["default_validation_context"]
        ["match_subject_alt_names"] =
        json!([{"exact": "spiffe://cluster.local/ns/default/sa/nobody"}]);
    let endpoint = |name: &str| {
        json!({"cluster_name": name, "endpoints": [{"lb_endpoints": [{
            "endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": server.port()}}},
            "metadata": {"filter_metadata": {"envoy.transport_socket_match": {"tlsMode": "istio"}}}}]}]})
    };
    let listener = json!({"name": "outbound",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "outbound", "rds": {"config_source": {"ads": {}}, "route_config_name": "9080"},
            "http_filters": [{"name": "envoy.filters.http.router", "typed_config":
                {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]});
    let routes = json!({"name": "9080", "virtual_hosts": [{"name": "productpage", "domains": ["*"], "routes": [
        {"match": {"prefix": "/wrong"}, "route": {"cluster": WRONG_ID}},
        {"match": {"prefix": "/"}, "route": {"cluster": GOOD}}]}]});
    json!({"version": "v1", "resources": {
        LDS: [listener], RDS: [routes], CDS: [good, wrong],
        EDS: [endpoint(GOOD), endpoint(WRONG_ID)], SECRET: secrets(cert, ca_pem)}})
}

/// mosn-rs on Istio's bootstrap with ADS and SDS on the test server at `port`.
fn start(dir: &Path, port: u16) -> Proc {
    let addr = json!({"socket_address": {"address": "127.0.0.1", "port_value": port}});
    let mut b = bootstrap("GRPC", addr.clone());
    for c in b["static_resources"]["clusters"].as_array_mut().unwrap() {
        if c["name"] == "sds-grpc" {
            c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"] =
                addr.clone();
        }
    }
    let cfg = dir.join("bootstrap.json");
    std::fs::write(&cfg, serde_json::to_vec_pretty(&b).unwrap()).unwrap();
    spawn(&cfg)
}

/// The subject of the certificate a TLS server presents, read with `openssl s_client` (which
/// presents `client` as its own certificate).
fn served_subject(addr: SocketAddr, dir: &Path, client: &(String, String), ca_pem: &str) -> String {
    let (cert, key, ca) = (dir.join("c.pem"), dir.join("c.key"), dir.join("ca.pem"));
    std::fs::write(&cert, &client.0).unwrap();
    std::fs::write(&key, &client.1).unwrap();
    std::fs::write(&ca, ca_pem).unwrap();
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string(), "-brief"])
        .arg("-cert")
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .arg("-CAfile")
        .arg(&ca)
        .stdin(Stdio::null())
        .output()
        .expect("openssl");
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    text.lines()
        .find(|l| l.starts_with("Peer certificate:"))
        .unwrap_or("")
        .to_string()
}

/// One HTTP request over `openssl s_client` (with `client` as its certificate, if any): the exit
/// code and everything it printed.
fn openssl_get(
    addr: SocketAddr,
    dir: &Path,
    client: Option<&(String, String)>,
    ca_pem: &str,
) -> (Option<i32>, String) {
    use std::io::Write;
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let mut cmd = Command::new("openssl");
    cmd.args([
        "s_client",
        "-connect",
        &addr.to_string(),
        "-quiet",
        "-verify_return_error",
    ])
    .arg("-CAfile")
    .arg(&ca);
    if let Some(c) = client {
        let (cert, key) = (dir.join("g.pem"), dir.join("g.key"));
        std::fs::write(&cert, &c.0).unwrap();
        std::fs::write(&key, &c.1).unwrap();
        cmd.arg("-cert").arg(&cert).arg("-key").arg(&key);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl");
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn mtls_between_two_instances_with_sds_certificates_and_a_rotation_under_load() {
    let ca = ca();
    let ca_pem = ca.pem();
    let server_cert = workload(&ca, PRODUCTPAGE_ID, "productpage-1");
    let rotated = workload(&ca, PRODUCTPAGE_ID, "productpage-2");
    let client_cert = workload(&ca, SLEEP_ID, "sleep");
    let app = text_upstream("productpage-app");

    let sdir = temp_dir("xds-mtls-server");
    publish(&sdir, &server_state(1, &server_cert, &ca_pem, app));
    let (_sads, sport) = ads_server(&sdir, None, None);
    let server = start(&sdir, sport);
    let inbound = server.log_addr(&["listener added", "listener=virtualInbound-9080 "]);

    let cdir = temp_dir("xds-mtls-client");
    publish(&cdir, &client_state(&client_cert, &ca_pem, inbound));
    let (_cads, cport) = ads_server(&cdir, None, None);
    let client = start(&cdir, cport);
    let outbound = client.log_addr(&["listener added", "listener=outbound "]);

    // Both asked for their secrets on the SDS stream, by the names Istio uses.
    for dir in [&sdir, &cdir] {
        within(Duration::from_secs(5), "SDS request", || {
            requests(dir)
                .iter()
                .any(|r| r["api"] == "sds" && r["names"] == json!(["ROOTCA", "default"]))
        });
    }
    within(Duration::from_secs(5), "mTLS request", || {
        bodies(outbound, "/", "", 1)[0] == "productpage-app"
    });
    // The server presents its SDS certificate.
    assert!(
        served_subject(inbound, &cdir, &client_cert, &ca_pem).contains("productpage-1"),
        "{}",
        served_subject(inbound, &cdir, &client_cert, &ca_pem)
    );
    // A cluster expecting another identity: the handshake fails its SAN check, so the upstream
    // connection fails (mosn-rs's 502, flag UF).
    assert_eq!(KeepAlive::new(outbound).get("/wrong", "").unwrap().0, 502);
    // A client without a certificate gets no answer from the server.
    let (code, out) = openssl_get(inbound, &cdir, None, &ca_pem);
    assert!(!out.contains("productpage-app"), "{code:?} {out}");
    let (_, out) = openssl_get(inbound, &cdir, Some(&client_cert), &ca_pem);
    assert!(out.contains("productpage-app"), "with a certificate: {out}");

    // The server's certificate rotates mid-load: new connections get the new one, nothing fails.
    let load = Load::start(outbound, 4);
    std::thread::sleep(Duration::from_millis(300));
    publish(&sdir, &server_state(2, &rotated, &ca_pem, app));
    within(Duration::from_secs(2), "rotation", || {
        served_subject(inbound, &cdir, &client_cert, &ca_pem).contains("productpage-2")
    });
    std::thread::sleep(Duration::from_millis(300));
    let (ok, failed) = load.finish();
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(ok > 200, "only {ok} requests");
    eprintln!("mTLS over SDS: {ok} requests through a certificate rotation, 0 failed");
    drop(client);
    drop(server);
}

/// Istio's `virtualInbound` (the sidecar dump's, 8 filter chains told apart by destination port,
/// TLS and ALPN) serves, on one port, mTLS from a mosn-rs client with Istio's outbound cluster
/// and plain HTTP from a client outside the mesh (Istio's PERMISSIVE mode): mosn-rs chooses the
/// chain per connection. Rewrites: the listener is bound on a test port P with `bind_to_port`,
/// its port-80 chains match P (no iptables here), the AuthorizationPolicy filters are removed,
/// and the inbound clusters (ORIGINAL_DST in Istio) are static ones to the test app.
#[test]
fn istio_virtual_inbound_serves_mtls_and_plaintext_on_one_port() {
    let ca = ca();
    let ca_pem = ca.pem();
    let server_cert = workload(&ca, PRODUCTPAGE_ID, "productpage-1");
    let client_cert = workload(&ca, SLEEP_ID, "sleep");
    let app = text_upstream("productpage-app");
    let port = closed_port();

    let mut inbound = listener("virtualInbound");
    inbound["address"]["socket_address"]["port_value"] = json!(port.port());
    for c in inbound["filter_chains"].as_array_mut().unwrap() {
        if c["filter_chain_match"]["destination_port"] == json!(80) {
            c["filter_chain_match"]["destination_port"] = json!(port.port());
        }
    }
    let mut s = json!({"version": "v1", "resources": {
        LDS: [inbound],
        CDS: [static_cluster("inbound|80||", app), static_cluster("InboundPassthroughClusterIpv4", app),
              {"name": "BlackHoleCluster", "type": "STATIC", "connect_timeout": "1s"}],
        SECRET: secrets(&server_cert, &ca_pem)}});
    without_authz(&mut s);
    let sdir = temp_dir("xds-inbound-server");
    publish(&sdir, &s);
    let (_sads, sport) = ads_server(&sdir, None, None);
    let server = start(&sdir, sport);
    server.log_line(&["listener added", "listener=virtualInbound "]);
    let nacks: Vec<Value> = requests(&sdir)
        .into_iter()
        .filter(|r| !r["error"].is_null())
        .collect();
    assert!(nacks.is_empty(), "{nacks:#?}");

    // Plain HTTP from outside the mesh: the port's raw_buffer chain.
    within(
        Duration::from_secs(5),
        "plaintext through virtualInbound",
        || try_http(port, "GET", "/", &[], "").is_some_and(|r| r.body == "productpage-app"),
    );
    // mTLS from a mosn-rs client with Istio's outbound cluster: the port's TLS chain.
    let cdir = temp_dir("xds-inbound-client");
    publish(&cdir, &client_state(&client_cert, &ca_pem, port));
    let (_cads, cport) = ads_server(&cdir, None, None);
    let client = start(&cdir, cport);
    let outbound = client.log_addr(&["listener added", "listener=outbound "]);
    within(
        Duration::from_secs(5),
        "mTLS through virtualInbound",
        || bodies(outbound, "/", "", 1)[0] == "productpage-app",
    );
    // A TLS client without a certificate gets nothing from the TLS chain.
    let (_, out) = openssl_get(port, &cdir, None, &ca_pem);
    assert!(!out.contains("productpage-app"), "{out}");
}
