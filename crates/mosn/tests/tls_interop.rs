//! TLS interop on the real binary with software we did not write: curl (server verification by
//! CA) and `openssl s_client` (a client certificate for mTLS, and a rejected one).

mod common;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use serde_json::json;
use std::io::Write;
use std::process::{Command, Stdio};

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

fn leaf(ca: &CertifiedIssuer<'static, KeyPair>, names: &[&str]) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let c = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .unwrap()
        .signed_by(&key, ca)
        .unwrap();
    (c.pem(), key.serialize_pem())
}

/// Runs `openssl s_client`, sends one HTTP request, returns its output.
fn s_client(port: u16, ca: &str, cert: Option<(&str, &str)>) -> String {
    let mut cmd = Command::new("openssl");
    cmd.args([
        "s_client",
        "-connect",
        &format!("127.0.0.1:{port}"),
        "-servername",
        "localhost",
        "-CAfile",
        ca,
        "-quiet",
        "-verify_return_error",
    ]);
    if let Some((c, k)) = cert {
        cmd.args(["-cert", c, "-key", k]);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl is installed");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn curl_and_openssl_s_client_speak_tls_and_mtls_to_mosn() {
    let d = temp_dir("tls-interop");
    let w = |n: &str, t: &str| {
        let p = d.join(n);
        std::fs::write(&p, t).unwrap();
        p.to_str().unwrap().to_string()
    };
    let ca1 = ca("interop ca");
    let ca2 = ca("stranger ca");
    let (sc, sk) = leaf(&ca1, &["localhost"]);
    let (cc, ck) = leaf(&ca1, &["client"]);
    let (xc, xk) = leaf(&ca2, &["client"]);
    let ca_path = w("ca.pem", &ca1.pem());
    let listener = |name: &str, tls: serde_json::Value| {
        json!({"name": name, "address": "127.0.0.1:0", "bind_port": true, "filter_chains": [{"tls_context": tls,
            "filters": [{"type": "proxy", "config": {"downstream_protocol": "Http1", "router_config_name": "r"}}]}]})
    };
    let cfg = json!({
        "servers": [{"default_log_path": "stderr",
            "routers": [{"router_config_name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"], "routers": [
                {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": "hello over tls\n"}}]}]}],
            "listeners": [
                listener("tls", json!({"status": true, "cert_chain": w("s.pem", &sc), "private_key": w("s.key", &sk), "alpn": "http/1.1"})),
                listener("mtls", json!({"status": true, "cert_chain": w("s.pem", &sc), "private_key": w("s.key", &sk),
                    "ca_cert": ca_path, "verify_client": true, "require_client_cert": true}))]}]
    });
    let p = write_temp("tls-interop.json", &cfg.to_string());
    let m = spawn(&p);
    let tls = m.listener("tls");
    let mtls = m.listener("mtls");

    // curl verifies the server against the CA (and negotiates http/1.1 by ALPN).
    let url = format!("https://localhost:{}/", tls.port());
    let resolve = format!("localhost:{}:127.0.0.1", tls.port());
    assert_eq!(
        curl(&["--cacert", &ca_path, "--resolve", &resolve, &url]),
        "hello over tls\n"
    );
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", "--resolve", &resolve, &url])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "curl must refuse a server it cannot verify"
    );

    // openssl s_client with a client certificate from the right CA, then from a stranger.
    let ok = s_client(
        mtls.port(),
        &ca_path,
        Some((&w("c.pem", &cc), &w("c.key", &ck))),
    );
    assert!(ok.contains("hello over tls"), "{ok}");
    let no = s_client(
        mtls.port(),
        &ca_path,
        Some((&w("x.pem", &xc), &w("x.key", &xk))),
    );
    assert!(
        !no.contains("hello over tls"),
        "a client certificate from another CA was accepted: {no}"
    );
    let none = s_client(mtls.port(), &ca_path, None);
    assert!(
        !none.contains("hello over tls"),
        "no client certificate was accepted: {none}"
    );
}
