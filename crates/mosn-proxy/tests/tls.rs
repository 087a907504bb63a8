//! TLS over real sockets with certificates made at test time (rcgen): server TLS, mTLS accepted
//! and rejected, SNI selection, TLS and plaintext on one port (inspector), upstream TLS with
//! verification success and failure, certificate reload, and configuration errors.

mod common;
use common::*;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls_pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        Ca {
            issuer: CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap(),
        }
    }
    fn pem(&self) -> String {
        self.issuer.pem()
    }
    /// A leaf for `names`: (certificate PEM, key PEM, certificate DER).
    fn leaf(&self, names: &[&str]) -> (String, String, CertificateDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        let c = p.signed_by(&key, &self.issuer).unwrap();
        (c.pem(), key.serialize_pem(), c.der().clone())
    }
}

/// A temporary folder for certificates, removed when the returned guard drops.
fn dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("mosn-tls-{name}-"))
        .tempdir()
        .unwrap()
}

fn write(d: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p = d.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

/// One HTTP listener answering `body` directly, with `tls` as its filter chain's TLS keys.
fn tls_listener_config(tls: Value, body: &str) -> Value {
    json!({
        "servers": [{"default_log_path": "stderr",
            "routers": [{"router_config_name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"], "routers": [
                {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": body}}]}]}],
            "listeners": [{"name": "l", "address": "127.0.0.1:0", "bind_port": true,
                "filter_chains": [{"filters": [{"type": "proxy", "config": {"downstream_protocol": "Http1", "router_config_name": "r"}}]}]}]}],
    })
    .as_object()
    .cloned()
    .map(|mut o| {
        let chain = &mut o["servers"][0]["listeners"][0]["filter_chains"][0];
        for (k, v) in tls.as_object().unwrap() {
            chain[k] = v.clone();
        }
        Value::Object(o)
    })
    .unwrap()
}

fn client_config(ca_pem: &str, client: Option<(&str, &str)>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    use rustls_pki_types::pem::PemObject;
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let mut cfg = match client {
        Some((cert, key)) => {
            let certs = CertificateDer::pem_slice_iter(cert.as_bytes())
                .map(|c| c.unwrap())
                .collect();
            b.with_client_auth_cert(
                certs,
                rustls_pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap()
        }
        None => b.with_no_client_auth(),
    };
    // Full handshakes only: a resumed session reports the certificate of the session it resumes.
    cfg.resumption = rustls::client::Resumption::disabled();
    Arc::new(cfg)
}

/// GET / over TLS with SNI `sni`: Ok((body, certificate the server presented)) or the error text.
async fn tls_get(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    sni: &str,
) -> Result<(String, CertificateDer<'static>), String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let mut s = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let presented = s.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned();
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
        .await
        .map_err(|_| "timeout".to_string())?
        .map_err(|e| e.to_string())?;
    if !out.starts_with("HTTP/1.1 200") {
        return Err(format!("not 200: {out}"));
    }
    Ok((
        out.split("\r\n\r\n").nth(1).unwrap_or("").to_string(),
        presented,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_tls_and_mtls() {
    let ca = Ca::new("test ca");
    let other = Ca::new("other ca");
    let d = dir("mtls");
    let (cert, key, _) = ca.leaf(&["localhost"]);
    let tls = json!({"tls_context": {"status": true, "cert_chain": write(&d, "s.pem", &cert),
        "private_key": write(&d, "s.key", &key), "ca_cert": write(&d, "ca.pem", &ca.pem()),
        "verify_client": true, "require_client_cert": true}});
    let p = proxy(tls_listener_config(tls, "secret"));
    let (good_c, good_k, _) = ca.leaf(&["client"]);
    let (bad_c, bad_k, _) = other.leaf(&["client"]);
    let ok = tls_get(
        p.addr,
        client_config(&ca.pem(), Some((&good_c, &good_k))),
        "localhost",
    )
    .await;
    assert_eq!(ok.map(|r| r.0), Ok("secret".to_string()));
    assert!(
        tls_get(p.addr, client_config(&ca.pem(), None), "localhost")
            .await
            .is_err(),
        "no client certificate"
    );
    assert!(
        tls_get(
            p.addr,
            client_config(&ca.pem(), Some((&bad_c, &bad_k))),
            "localhost"
        )
        .await
        .is_err(),
        "wrong CA"
    );
    let failed = || {
        mosn_proxy::stats::sum(p.server.stats(), |w| {
            w.listeners
                .get(0)
                .map_or(0, |l| l.tls_handshake_failed.get())
        })
    };
    assert!(
        eventually(Duration::from_secs(5), || failed() == 2).await,
        "{}",
        failed()
    );
    // Plaintext to a TLS port gets no HTTP answer.
    let (out, _) = raw(
        p.addr,
        b"GET / HTTP/1.1\r\nhost: x\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert!(!out.contains("secret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_selects_the_certificate() {
    let ca = Ca::new("test ca");
    let d = dir("sni");
    let (c1, k1, der1) = ca.leaf(&["first.test"]);
    let (c2, k2, der2) = ca.leaf(&["a.test"]);
    let (c3, k3, der3) = ca.leaf(&["*.b.test"]);
    let ctx = |c: &str, k: &str, n: &str| json!({"status": true, "cert_chain": write(&d, &format!("{n}.pem"), c), "private_key": write(&d, &format!("{n}.key"), k)});
    let tls =
        json!({"tls_context_set": [ctx(&c1, &k1, "1"), ctx(&c2, &k2, "2"), ctx(&c3, &k3, "3")]});
    let p = proxy(tls_listener_config(tls, "ok"));
    let cfg = client_config(&ca.pem(), None);
    assert_eq!(
        tls_get(p.addr, cfg.clone(), "a.test").await.unwrap().1,
        der2,
        "exact name"
    );
    assert_eq!(
        tls_get(p.addr, cfg.clone(), "x.b.test").await.unwrap().1,
        der3,
        "wildcard"
    );
    assert_eq!(
        tls_get(p.addr, cfg.clone(), "first.test").await.unwrap().1,
        der1
    );
    // Unknown name: the first certificate (which the client then rejects for the wrong name).
    let e = tls_get(p.addr, cfg, "nobody.test").await.unwrap_err();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspector_serves_tls_and_plaintext_on_one_port() {
    let ca = Ca::new("test ca");
    let d = dir("inspector");
    let (cert, key, _) = ca.leaf(&["localhost"]);
    let tls = json!({"tls_context": {"status": true, "cert_chain": write(&d, "s.pem", &cert), "private_key": write(&d, "s.key", &key)}});
    let mut cfg = tls_listener_config(tls, "both");
    cfg["servers"][0]["listeners"][0]["inspector"] = json!(true);
    let p = proxy(cfg);
    assert_eq!(
        tls_get(p.addr, client_config(&ca.pem(), None), "localhost")
            .await
            .unwrap()
            .0,
        "both"
    );
    assert_eq!(get(p.addr, "/", &[]).await.text(), "both");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_verifies_the_host() {
    let ca = Ca::new("test ca");
    let other = Ca::new("other ca");
    let d = dir("upstream");
    let (cert, key, _) = ca.leaf(&["backend.test"]);
    let tls = json!({"tls_context": {"status": true, "cert_chain": write(&d, "s.pem", &cert), "private_key": write(&d, "s.key", &key)}});
    let backend = proxy(tls_listener_config(tls, "over tls"));
    let plain = named("plain").await;
    let front = |tls: Value, hosts: Value| {
        proxy(config(
            json!([{"name": "v", "domains": ["*"], "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "b"}}]}]),
            json!([{"name": "b", "type": "SIMPLE", "tls_context": tls, "hosts": hosts}]),
        ))
    };
    let host = json!([{"address": backend.addr.to_string()}]);
    let good = front(
        json!({"status": true, "server_name": "backend.test", "ca_cert": write(&d, "ca.pem", &ca.pem())}),
        host.clone(),
    );
    assert_eq!(get(good.addr, "/", &[]).await.text(), "over tls");
    let wrong = front(
        json!({"status": true, "server_name": "backend.test", "ca_cert": write(&d, "other.pem", &other.pem())}),
        host.clone(),
    );
    assert_eq!(
        get(wrong.addr, "/", &[]).await.status,
        502,
        "an unverified upstream is a connect failure"
    );
    let skip = front(json!({"status": true, "insecure_skip": true}), host);
    assert_eq!(get(skip.addr, "/", &[]).await.text(), "over tls");
    let disabled = front(
        json!({"status": true, "insecure_skip": true}),
        json!([{"address": plain.addr.to_string(), "tls_disable": true}]),
    );
    assert_eq!(get(disabled.addr, "/", &[]).await.text(), "plain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_files_reload_without_restart() {
    let ca = Ca::new("test ca");
    let d = dir("reload");
    let (c1, k1, der1) = ca.leaf(&["localhost"]);
    let (c2, k2, der2) = ca.leaf(&["localhost"]);
    let cert_path = write(&d, "s.pem", &c1);
    let key_path = write(&d, "s.key", &k1);
    let tls =
        json!({"tls_context": {"status": true, "cert_chain": cert_path, "private_key": key_path}});
    let p = proxy(tls_listener_config(tls, "hi"));
    let cfg = client_config(&ca.pem(), None);
    assert_eq!(
        tls_get(p.addr, cfg.clone(), "localhost").await.unwrap().1,
        der1
    );
    // An established connection, kept open across the change.
    let tcp = TcpStream::connect(p.addr).await.unwrap();
    let mut kept = tokio_rustls::TlsConnector::from(cfg.clone())
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    // Write the key first, then the certificate, as a deploy would.
    std::fs::write(&key_path, &k2).unwrap();
    std::fs::write(&cert_path, &c2).unwrap();
    let mut now = None;
    for _ in 0..100 {
        let der = tls_get(p.addr, cfg.clone(), "localhost")
            .await
            .map(|r| r.1)
            .ok();
        if der.as_ref() == Some(&der2) {
            now = der;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        now,
        Some(der2),
        "new handshakes present the new certificate"
    );
    kept.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    kept.read_to_string(&mut out).await.unwrap();
    assert!(
        out.ends_with("hi"),
        "the established connection still works: {out}"
    );
}

#[test]
fn bad_tls_settings_are_config_errors_with_json_paths() {
    let ca = Ca::new("test ca");
    let d = dir("errors");
    let (cert, _, _) = ca.leaf(&["localhost"]);
    let (_, other_key, _) = ca.leaf(&["localhost"]);
    let cert_path = write(&d, "s.pem", &cert);
    let key_path = write(&d, "other.key", &other_key);
    let base = json!({"status": true, "cert_chain": cert_path, "private_key": key_path});
    let check = |patch: Value| -> String {
        let mut t = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            t[k] = v.clone();
        }
        let cfg = tls_listener_config(json!({"tls_context": t}), "x");
        let loaded = mosn_config::from_value(&cfg).map_err(|e| e.to_string());
        match loaded {
            Err(e) => e,
            Ok(l) => mosn_proxy::Snapshot::build(&l.config)
                .map(|_| String::new())
                .unwrap_or_else(|e| e.to_string()),
        }
    };
    let p = "servers[0].listeners[0].filter_chains[0].tls_context";
    assert!(
        check(json!({})).starts_with(&format!("{p}.private_key: does not match the certificate")),
        "{}",
        check(json!({}))
    );
    let e = check(json!({"cert_chain": "/nonexistent/cert.pem"}));
    assert!(
        e.starts_with(&format!("{p}.cert_chain: cannot read")),
        "{e}"
    );
    let e = check(json!({"cipher_suites": "ECDHE-RSA-AES128-GCM-SHA256:RC4-MD5"}));
    assert!(
        e.starts_with(&format!("{p}.cipher_suites: \"RC4-MD5\"")),
        "{e}"
    );
    let e = check(json!({"ecdh_curves": "P521"}));
    assert!(e.starts_with(&format!("{p}.ecdh_curves: \"P521\"")), "{e}");
    let e = check(json!({"min_version": "TLSv1_0"}));
    assert!(e.starts_with(&format!("{p}.min_version")), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_mtls_presents_the_cluster_client_certificate() {
    let ca = Ca::new("test ca");
    let d = dir("upstream-mtls");
    let (cert, key, _) = ca.leaf(&["backend.test"]);
    let (cc, ck, _) = ca.leaf(&["proxy-client"]);
    let ca_path = write(&d, "ca.pem", &ca.pem());
    let tls = json!({"tls_context": {"status": true, "cert_chain": write(&d, "s.pem", &cert), "private_key": write(&d, "s.key", &key),
        "ca_cert": ca_path, "verify_client": true, "require_client_cert": true}});
    let backend = proxy(tls_listener_config(tls, "mutual"));
    let front = |tls: Value| {
        proxy(config(
            json!([{"name": "v", "domains": ["*"], "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "b"}}]}]),
            json!([{"name": "b", "type": "SIMPLE", "tls_context": tls, "hosts": [{"address": backend.addr.to_string()}]}]),
        ))
    };
    let with_cert = front(
        json!({"status": true, "server_name": "backend.test", "ca_cert": ca_path,
        "cert_chain": write(&d, "c.pem", &cc), "private_key": write(&d, "c.key", &ck)}),
    );
    assert_eq!(get(with_cert.addr, "/", &[]).await.text(), "mutual");
    let without = front(json!({"status": true, "server_name": "backend.test", "ca_cert": ca_path}));
    assert_eq!(
        get(without.addr, "/", &[]).await.status,
        502,
        "the upstream requires a client certificate"
    );
}

/// A listener whose filter chains are child listeners (`parent_listener` +
/// `filter_chain_match`, Envoy's matching): TLS with a given SNI, other TLS, plaintext HTTP (by
/// its first bytes: HTTP/1 or h2c), and any other plaintext each go to their chain on one port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_chains_are_chosen_by_tls_sni_alpn_and_first_bytes() {
    let ca = Ca::new("chains");
    let (cert, key, _) = ca.leaf(&["localhost", "special.example.com"]);
    let echo = tcp_server(|mut s| async move {
        let mut b = [0u8; 64];
        while let Ok(n) = s.read(&mut b).await {
            if n == 0 || s.write_all(&b[..n]).await.is_err() {
                return;
            }
        }
    })
    .await;
    let answer = |name: &str, body: &str| {
        json!({"router_config_name": name, "virtual_hosts": [{"name": "v", "domains": ["*"], "routers": [
            {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": body}}]}]})
    };
    let http = |router: &str| json!([{"type": "proxy", "config": {"downstream_protocol": "Auto", "router_config_name": router}}]);
    let tls = json!({"status": true, "cert_chain": cert, "private_key": key});
    let cfg = json!({
        "servers": [{"default_log_path": "stderr",
            "routers": [answer("sni", "sni-chain"), answer("tls", "tls-chain"), answer("plain", "http-chain"),
                        answer("h2only", "h2c-chain")],
            "listeners": [
                {"name": "l", "address": "127.0.0.1:0",
                 "filter_chains": [{"filters": [{"type": "tcp_proxy", "config": {"cluster": "nowhere"}}]}]},
                {"name": "l/sni", "address": "127.0.0.1:0", "bind_port": false, "parent_listener": "l",
                 "filter_chain_match": {"server_names": ["special.example.com"], "transport_protocol": "tls"},
                 "filter_chains": [{"tls_context": tls.clone(), "filters": http("sni")}]},
                {"name": "l/tls", "address": "127.0.0.1:0", "bind_port": false, "parent_listener": "l",
                 "filter_chain_match": {"transport_protocol": "tls"},
                 "filter_chains": [{"tls_context": tls, "filters": http("tls")}]},
                {"name": "l/h2c", "address": "127.0.0.1:0", "bind_port": false, "parent_listener": "l",
                 "filter_chain_match": {"transport_protocol": "raw_buffer", "application_protocols": ["h2c"]},
                 "filter_chains": [{"filters": http("h2only")}]},
                {"name": "l/http", "address": "127.0.0.1:0", "bind_port": false, "parent_listener": "l",
                 "filter_chain_match": {"transport_protocol": "raw_buffer", "application_protocols": ["http/1.1"]},
                 "filter_chains": [{"filters": http("plain")}]},
                {"name": "l/tcp", "address": "127.0.0.1:0", "bind_port": false, "parent_listener": "l",
                 "filter_chain_match": {"transport_protocol": "raw_buffer", "source_prefix_ranges": [{"address": "127.0.0.0", "length": 8}]},
                 "filter_chains": [{"filters": [{"type": "tcp_proxy", "config": {"cluster": "echo"}}]}]}
            ]}],
        "cluster_manager": {"clusters": [cluster("echo", &[echo]), cluster("nowhere", &[])]}
    });
    let p = proxy(cfg);
    let client = client_config(&ca.pem(), None);
    let (body, _) = tls_get(p.addr, client.clone(), "special.example.com")
        .await
        .unwrap();
    assert_eq!(body, "sni-chain");
    let (body, _) = tls_get(p.addr, client, "localhost").await.unwrap();
    assert_eq!(body, "tls-chain");
    assert_eq!(get(p.addr, "/", &[]).await.text(), "http-chain");
    assert_eq!(
        String::from_utf8(h2_get(p.addr, "/").await.1).unwrap(),
        "h2c-chain"
    );
    // Plaintext that is not HTTP: of the raw_buffer chains, the one asking no ALPN.
    let (echoed, _) = raw(p.addr, b"{\"ping\": 1}\n", Duration::from_millis(500)).await;
    assert_eq!(echoed, "{\"ping\": 1}\n");
}

/// `tcp_proxy` with TLS on both sides: a plaintext client → listener `origin` (`tcp_proxy` to a
/// cluster with TLS, verified against the CA) → listener `term` (TLS terminated, `tcp_proxy`) →
/// a plain echo server. Bytes cross both hops and come back; a half-close travels through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_proxy_terminates_and_originates_tls() {
    let ca = Ca::new("tcp-tls");
    let (cert, key, _) = ca.leaf(&["localhost"]);
    let echo = tcp_server(|mut s| async move {
        let mut all = Vec::new();
        let _ = s.read_to_end(&mut all).await;
        let _ = s.write_all(&all).await;
    })
    .await;
    let term_addr = closed_port();
    let cfg = json!({
        "servers": [{"default_log_path": "stderr", "listeners": [
            {"name": "origin", "address": "127.0.0.1:0",
             "filter_chains": [{"filters": [{"type": "tcp_proxy", "config": {"cluster": "tls-hop"}}]}]},
            {"name": "term", "address": term_addr.to_string(),
             "filter_chains": [{"tls_context": {"status": true, "cert_chain": cert, "private_key": key},
                "filters": [{"type": "tcp_proxy", "config": {"cluster": "echo"}}]}]}]}],
        "cluster_manager": {"clusters": [
            cluster("echo", &[echo]),
            {"name": "tls-hop", "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN",
             "tls_context": {"status": true, "server_name": "localhost", "ca_cert": ca.pem()},
             "hosts": [{"address": term_addr.to_string()}]}]}
    });
    let p = proxy(cfg);
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    c.write_all(&payload).await.unwrap();
    c.shutdown().await.unwrap();
    let mut back = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(back.len(), payload.len());
    assert!(back == payload, "the bytes came back changed");
}
