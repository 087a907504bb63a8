//! HTTP/2 through the proxy with real peers: curl (h2c prior knowledge, and h2 by ALPN over TLS),
//! nghttp, h2load, grpcio's client and server in every call shape, nghttpd as an HTTP/2 upstream;
//! and, with the `h2` crate as a client or upstream under the test's control, translation both
//! ways, trailers, and resets in both directions.
//!
//! The peers are installed by `scripts/install-test-deps.sh` (apt: nghttp2-client, nghttp2-server,
//! curl; a venv in target/peers with grpcio). A missing peer fails the test with that hint.

mod common;
use common::*;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A proxy listener with these protocols, routing everything to one cluster `c` at `up`.
fn h2_config(downstream: &str, upstream: &str, up: SocketAddr) -> Value {
    json!({
        "servers": [{"default_log_path": "stderr",
            "routers": [{"router_config_name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"],
                "routers": [
                    {"match": {"prefix": "/local"}, "direct_response": {"status": 201, "body": "local answer"}},
                    {"match": {"prefix": "/"}, "route": {"cluster_name": "c"}}]}]}],
            "listeners": [{"name": "l", "address": "127.0.0.1:0", "bind_port": true,
                "filter_chains": [{"filters": [{"type": "proxy", "config": {
                    "downstream_protocol": downstream, "upstream_protocol": upstream,
                    "router_config_name": "r", "extend_config": {"http2_use_stream": true}}}]}]}]}],
        "cluster_manager": {"clusters": [cluster("c", &[up])]}
    })
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Python of the test venv (grpcio, h2).
fn python() -> PathBuf {
    let p = repo_root().join("target/peers/venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/install-test-deps.sh",
        p.display()
    );
    p
}

fn peer(cmd: &str) -> tokio::process::Command {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(found, "{cmd} is missing: run scripts/install-test-deps.sh");
    let mut c = tokio::process::Command::new(cmd);
    c.kill_on_drop(true);
    c
}

/// Runs a peer command to its end (at most 120 s); returns (success, stdout + stderr).
async fn run(mut c: tokio::process::Command) -> (bool, String) {
    let out = tokio::time::timeout(Duration::from_secs(120), c.output())
        .await
        .expect("peer command timed out")
        .expect("peer command could not start");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A gRPC server (grpcio) on a free port, killed on drop.
struct GrpcServer {
    addr: SocketAddr,
    _child: tokio::process::Child,
}

fn grpc_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/grpc_peer.py")
}

async fn grpc_server() -> GrpcServer {
    let mut c = tokio::process::Command::new(python());
    c.arg(grpc_script())
        .arg("server")
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    let mut child = c.spawn().expect("python");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("grpc server did not start")
        .unwrap()
        .unwrap_or_default();
    let port: u16 = line
        .strip_prefix("PORT ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("grpc server said {line:?}"));
    GrpcServer {
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        _child: child,
    }
}

/// Every call shape of the grpcio client must pass through `addr`.
async fn grpc_client_passes(addr: SocketAddr) {
    let mut c = tokio::process::Command::new(python());
    c.arg(grpc_script())
        .arg("client")
        .arg(addr.to_string())
        .kill_on_drop(true);
    let (ok, out) = run(c).await;
    assert!(ok, "grpc client failed:\n{out}");
    for case in [
        "unary",
        "large_unary",
        "status_code_and_message",
        "server_streaming",
        "client_streaming",
        "bidi_ping_pong",
        "cancel_observed_by_server",
    ] {
        assert!(
            out.contains(&format!("OK {case}\n")),
            "{case} missing:\n{out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcio_calls_of_every_shape_pass_with_http2_on_both_sides() {
    let server = grpc_server().await;
    let p = proxy(h2_config("Http2", "Http2", server.addr));
    grpc_client_passes(p.addr).await;
    // The same through an Auto listener, whose upstream follows the client's protocol.
    let p = proxy(h2_config("Auto", "Auto", server.addr));
    grpc_client_passes(p.addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_and_nghttp_speak_h2c_to_an_http1_upstream() {
    let up = upstream(|req| async move {
        let host = req
            .headers()
            .get("host")
            .map(|h| h.to_str().unwrap().to_string());
        let te = req.headers().get("te").is_some();
        let body = format!(
            "{} {} {:?} host={} te={te}",
            req.method(),
            req.uri(),
            req.version(),
            host.unwrap_or_default()
        );
        let mut r = text(200, body);
        r.headers_mut().insert("x-up", "yes".parse().unwrap());
        r
    })
    .await;
    let p = proxy(h2_config("Http2", "Http1", up.addr));
    let mut c = peer("curl");
    c.args(["-s", "--http2-prior-knowledge", "-H", "te: trailers"])
        .args(["-w", "\n%{http_version} %{http_code}"])
        .arg(format!("http://{}/path?q=1", p.addr));
    let (ok, out) = run(c).await;
    assert!(ok, "{out}");
    assert_eq!(
        out,
        format!("GET /path?q=1 HTTP/1.1 host={} te=false\n2 200", p.addr),
        "Host comes from :authority, TE stays behind"
    );
    // A local answer over HTTP/2.
    let mut c = peer("curl");
    c.args(["-s", "--http2-prior-knowledge", "-w", " %{http_code}"])
        .arg(format!("http://{}/local", p.addr));
    assert_eq!(run(c).await.1, "local answer 201");
    // nghttp, a second HTTP/2 implementation: a POST body goes up, headers come down.
    let mut c = peer("nghttp");
    c.args(["-v", "-d", "-"])
        .arg(format!("http://{}/upload", p.addr))
        .stdin(Stdio::null());
    let (ok, out) = run(c).await;
    assert!(ok, "{out}");
    assert!(out.contains(":status: 200"), "{out}");
    assert!(out.contains("x-up: yes"), "{out}");
    assert!(out.contains("POST /upload HTTP/1.1"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2load_gets_only_2xx() {
    let up = named("fine").await;
    let p = proxy(h2_config("Http2", "Http1", up.addr));
    let mut c = peer("h2load");
    c.args(["-n", "2000", "-c", "4", "-m", "20"])
        .arg(format!("http://{}/", p.addr));
    let (ok, out) = run(c).await;
    assert!(ok, "{out}");
    assert!(out.contains("2000 succeeded, 0 failed, 0 errored"), "{out}");
    assert!(out.contains("status codes: 2000 2xx"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_client_reaches_an_http2_upstream_and_gets_its_trailers() {
    // nghttpd serves files over h2c; the proxy translates for an HTTP/1.1 curl.
    let www = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(www.path().join("big"), &big).unwrap();
    let port = closed_port().port();
    let mut d = peer("nghttpd");
    d.args(["--no-tls", "-a", "127.0.0.1", "-d"])
        .arg(www.path())
        .arg(port.to_string())
        .stdout(Stdio::null());
    let _nghttpd = d.spawn().unwrap();
    let up = SocketAddr::from(([127, 0, 0, 1], port));
    assert!(
        eventually(Duration::from_secs(10), || std::net::TcpStream::connect(up)
            .is_ok())
        .await,
        "nghttpd did not start"
    );
    let p = proxy(h2_config("Http1", "Http2", up));
    let got = tokio::time::timeout(Duration::from_secs(30), async {
        let mut s = TcpStream::connect(p.addr).await.unwrap();
        s.write_all(b"GET /big HTTP/1.1\r\nHost: files\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        out
    })
    .await
    .unwrap();
    let at = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&got[..at]).to_string();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("content-length: 3000000"), "{head}");
    assert_eq!(&got[at + 4..], &big[..], "the body arrives whole");

    // gRPC over an HTTP/1.1 client: the trailers come as chunked trailers.
    let server = grpc_server().await;
    let p = proxy(h2_config("Http1", "Http2", server.addr));
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    let frame = b"\x00\x00\x00\x00\x04ping";
    let req = format!(
        "POST /test.Svc/Unary HTTP/1.1\r\nHost: g\r\nContent-Type: application/grpc\r\nTE: trailers\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        frame.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    s.write_all(frame).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("transfer-encoding: chunked"), "{text}");
    assert!(text.contains("pong:ping"), "{text}");
    assert!(
        text.ends_with("0\r\ngrpc-status: 0\r\n\r\n") || text.contains("\r\ngrpc-status: 0\r\n"),
        "grpc-status arrives as a trailer: {text:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_trailers_from_an_http1_upstream_reach_an_http2_client() {
    let up = tcp_server(|mut s| async move {
        let mut buf = vec![0u8; 4096];
        let mut got = Vec::new();
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                return;
            }
            got.extend_from_slice(&buf[..n]);
        }
        s.write_all(
            b"HTTP/1.1 200 Fine\r\nTransfer-Encoding: chunked\r\nTrailer: x-checksum\r\n\r\n\
              5\r\nhello\r\n0\r\nx-checksum: abc\r\n\r\n",
        )
        .await
        .unwrap();
    })
    .await;
    let p = proxy(h2_config("Http2", "Http1", up));
    let mut send = h2_client(p.addr).await;
    let (resp, _) = send.send_request(h2_request(p.addr, "/t"), true).unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("transfer-encoding").is_none());
    assert!(resp.headers().get("trailer").is_none());
    let mut body = resp.into_body();
    let mut data = Vec::new();
    while let Some(d) = body.data().await {
        data.extend_from_slice(&d.unwrap());
    }
    assert_eq!(data, b"hello");
    let t = body.trailers().await.unwrap().expect("trailers");
    assert_eq!(t["x-checksum"], "abc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_cross_in_both_directions() {
    // Upstream resets mid-body: the client's stream is reset with the same code.
    let up = h2_upstream(|req, mut respond| async move {
        let path = req.uri().path().to_string();
        if path == "/before-head" {
            respond.send_reset(h2::Reason::INTERNAL_ERROR);
            return;
        }
        if path == "/observe-cancel" {
            let mut s = respond
                .send_response(http::Response::new(()), false)
                .unwrap();
            s.send_data(bytes::Bytes::from_static(b"started"), false)
                .unwrap();
            let reason = std::future::poll_fn(|cx| s.poll_reset(cx)).await;
            OBSERVED
                .lock()
                .unwrap()
                .push(format!("{:?}", reason.map_err(|e| e.to_string())));
            return;
        }
        let mut s = respond
            .send_response(http::Response::new(()), false)
            .unwrap();
        s.send_data(bytes::Bytes::from_static(b"partial"), false)
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        s.send_reset(h2::Reason::ENHANCE_YOUR_CALM);
    })
    .await;
    let p = proxy(h2_config("Http2", "Http2", up));
    let mut send = h2_client(p.addr).await;
    let (resp, _) = send
        .send_request(h2_request(p.addr, "/mid-body"), true)
        .unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let first = body.data().await.unwrap().unwrap();
    assert_eq!(&first[..], b"partial");
    let err = loop {
        match body.data().await {
            Some(Ok(_)) => continue,
            Some(Err(e)) => break e,
            None => panic!("the stream ended cleanly"),
        }
    };
    assert_eq!(err.reason(), Some(h2::Reason::ENHANCE_YOUR_CALM), "{err}");

    // A reset before the response head is a 502 with flag UC; the connection goes on.
    let (resp, _) = send
        .send_request(h2_request(p.addr, "/before-head"), true)
        .unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 502);
    assert_eq!(
        p.flag_count(mosn_api::ResponseFlag::UpstreamConnectionTermination),
        2
    );

    // The client cancels: the upstream sees its stream reset.
    let (resp, mut stream) = send
        .send_request(h2_request(p.addr, "/observe-cancel"), false)
        .unwrap();
    let resp = resp.await.unwrap();
    let mut body = resp.into_body();
    assert_eq!(&body.data().await.unwrap().unwrap()[..], b"started");
    stream.send_reset(h2::Reason::CANCEL);
    assert!(
        eventually(Duration::from_secs(10), || !OBSERVED
            .lock()
            .unwrap()
            .is_empty())
        .await,
        "the upstream never saw the cancellation"
    );
    assert_eq!(OBSERVED.lock().unwrap()[0], "Ok(CANCEL)");
}

static OBSERVED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_over_tls_gets_h2_by_alpn_and_http1_still_works() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let up = named("over tls").await;
    let mut cfg = h2_config("Http1", "Http1", up.addr);
    cfg["servers"][0]["listeners"][0]["filter_chains"][0]["tls_context"] = json!({
        "status": true, "cert_chain": cert_path, "private_key": key_path,
        "alpn": ["h2", "http/1.1"]});
    let p = proxy(cfg);
    for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let mut c = peer("curl");
        c.args(["-sk", flag, "-w", " %{http_version}"])
            .arg(format!("https://localhost:{}/", p.addr.port()))
            .args([
                "--resolve",
                &format!("localhost:{}:127.0.0.1", p.addr.port()),
            ]);
        let (ok, out) = run(c).await;
        assert!(ok, "{out}");
        assert_eq!(out, format!("over tls {version}"));
    }
}

/// gRPC's official interop suite (Debian's ruby-grpc 1.51: `src/ruby/pb/test/{server,client}.rb`),
/// client → mosn-rs (Http2 both sides) → server. Every case but the two compression ones, which
/// the 1.51 Ruby server cannot check (they fail even without a proxy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_interop_suite_passes_through_the_proxy() {
    let out = std::process::Command::new("dpkg")
        .args(["-L", "ruby-grpc"])
        .output()
        .expect("dpkg");
    let listing = String::from_utf8_lossy(&out.stdout);
    let server_rb = listing
        .lines()
        .find(|l| l.ends_with("pb/test/server.rb"))
        .expect("ruby-grpc is missing: run scripts/install-test-deps.sh")
        .to_string();
    let dir = PathBuf::from(&server_rb).parent().unwrap().to_path_buf();
    let port = closed_port().port();
    let mut s = peer("ruby");
    s.arg(&server_rb)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _server = s.spawn().unwrap();
    let up = SocketAddr::from(([127, 0, 0, 1], port));
    assert!(
        eventually(Duration::from_secs(30), || std::net::TcpStream::connect(up)
            .is_ok())
        .await,
        "the interop server did not start"
    );
    let p = proxy(h2_config("Http2", "Http2", up));
    let cases = [
        "empty_unary",
        "large_unary",
        "client_streaming",
        "server_streaming",
        "ping_pong",
        "empty_stream",
        "cancel_after_begin",
        "cancel_after_first_response",
        "timeout_on_sleeping_server",
        "status_code_and_message",
        "custom_metadata",
        "unimplemented_method",
        "unimplemented_service",
    ];
    let mut runs = Vec::new();
    for case in cases {
        let mut c = peer("ruby");
        c.arg(dir.join("client.rb"))
            .args(["--server_host=127.0.0.1", "--use_tls=false"])
            .arg(format!("--server_port={}", p.addr.port()))
            .arg(format!("--test_case={case}"));
        runs.push((case, tokio::spawn(run(c))));
    }
    let mut failed = Vec::new();
    for (case, r) in runs {
        let (ok, out) = r.await.unwrap();
        if !ok || !out.contains(&format!("OK: {case}")) {
            failed.push(format!("{case}: {out}"));
        }
    }
    assert!(
        failed.is_empty(),
        "interop cases failed:\n{}",
        failed.join("\n")
    );
}

/// What a hand-written HTTP/2 upstream saw: PING frames, and whether the proxy closed.
#[derive(Default)]
struct PingSeen {
    pings: std::sync::atomic::AtomicUsize,
    closed: std::sync::atomic::AtomicBool,
}

/// An HTTP/2 upstream written frame by frame (the `h2` crate answers PINGs out of sight): it
/// answers every request `200` with no body, counts PINGs, and acknowledges them only when
/// `answer_pings` is set.
async fn ping_upstream(answer_pings: bool) -> (SocketAddr, std::sync::Arc<PingSeen>) {
    use std::sync::atomic::Ordering;
    let seen = std::sync::Arc::new(PingSeen::default());
    let s2 = seen.clone();
    let addr = tcp_server(move |mut s| {
        let seen = s2.clone();
        async move {
            let mut preface = [0u8; 24];
            if s.read_exact(&mut preface).await.is_err() {
                return;
            }
            // Our SETTINGS (empty).
            let _ = s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await;
            loop {
                let mut h = [0u8; 9];
                if s.read_exact(&mut h).await.is_err() {
                    seen.closed.store(true, Ordering::SeqCst);
                    return;
                }
                let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
                let (kind, flags) = (h[3], h[4]);
                let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
                let mut payload = vec![0u8; len];
                if s.read_exact(&mut payload).await.is_err() {
                    seen.closed.store(true, Ordering::SeqCst);
                    return;
                }
                let reply: Vec<u8> = match kind {
                    // SETTINGS without ACK: acknowledge.
                    4 if flags & 1 == 0 => vec![0, 0, 0, 4, 1, 0, 0, 0, 0],
                    // HEADERS ending the request: `:status: 200` (HPACK static index 8), END_STREAM.
                    1 if flags & 1 == 1 => {
                        let mut f = vec![0, 0, 1, 1, 5];
                        f.extend_from_slice(&stream.to_be_bytes());
                        f.push(0x88);
                        f
                    }
                    6 if flags & 1 == 0 => {
                        seen.pings.fetch_add(1, Ordering::SeqCst);
                        if !answer_pings {
                            continue;
                        }
                        let mut f = vec![0, 0, 8, 6, 1, 0, 0, 0, 0];
                        f.extend_from_slice(&payload);
                        f
                    }
                    _ => continue,
                };
                if s.write_all(&reply).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_keepalive_pings_http2_upstreams_and_closes_silent_ones() {
    use std::sync::atomic::Ordering;
    let keepalive = |up: SocketAddr| {
        let mut cfg = h2_config("Http1", "Http2", up);
        cfg["cluster_manager"]["clusters"][0]["keepalive"] =
            json!({"interval": "100ms", "timeout": "300ms"});
        cfg
    };

    // An upstream that answers PINGs: they keep coming and the connection stays.
    let (up, seen) = ping_upstream(true).await;
    let p = proxy(keepalive(up));
    assert_eq!(get(p.addr, "/a", &[]).await.status, 200);
    assert!(
        eventually(Duration::from_secs(10), || seen
            .pings
            .load(Ordering::SeqCst)
            >= 3)
        .await,
        "PINGs seen: {}",
        seen.pings.load(Ordering::SeqCst)
    );
    assert!(
        !seen.closed.load(Ordering::SeqCst),
        "an answering upstream was closed"
    );
    assert_eq!(get(p.addr, "/b", &[]).await.status, 200);

    // An upstream that never answers: the proxy closes the connection after `timeout`.
    let (up, seen) = ping_upstream(false).await;
    let p = proxy(keepalive(up));
    assert_eq!(get(p.addr, "/a", &[]).await.status, 200);
    assert!(
        eventually(Duration::from_secs(10), || seen
            .closed
            .load(Ordering::SeqCst))
        .await,
        "a silent upstream was kept open (PINGs seen: {})",
        seen.pings.load(Ordering::SeqCst)
    );
    assert_eq!(
        seen.pings.load(Ordering::SeqCst),
        1,
        "one unanswered PING closes"
    );
    // The next request opens a fresh connection.
    assert_eq!(get(p.addr, "/b", &[]).await.status, 200);
}

/// Writes the client preface, an empty SETTINGS and `pings` PING frames; then reads frames until
/// the proxy closes or `deadline` passes. Returns the GOAWAY error code, if one came, and the
/// number of PING ACKs read.
async fn ping_burst(addr: SocketAddr, pings: usize, deadline: Duration) -> (Option<u32>, usize) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    for i in 0..pings as u64 {
        out.extend_from_slice(&[0, 0, 8, 6, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&i.to_be_bytes());
    }
    let (mut r, mut w) = s.split();
    let write = async {
        let _ = w.write_all(&out).await;
        std::future::pending::<()>().await
    };
    let read = async {
        let (mut goaway, mut acks) = (None, 0);
        loop {
            let mut h = [0u8; 9];
            if r.read_exact(&mut h).await.is_err() {
                break;
            }
            let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
            let mut p = vec![0u8; len];
            if r.read_exact(&mut p).await.is_err() {
                break;
            }
            match h[3] {
                6 if h[4] & 1 == 1 => acks += 1,
                7 if len >= 8 => goaway = Some(u32::from_be_bytes([p[4], p[5], p[6], p[7]])),
                _ => {}
            }
            if acks == pings {
                break;
            }
        }
        (goaway, acks)
    };
    tokio::select! {
        r = read => r,
        _ = write => unreachable!(),
        _ = tokio::time::sleep(deadline) => (None, usize::MAX),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_gets_enhance_your_calm_and_a_busy_client_does_not() {
    let up = upstream(|_| async { text(200, "ok") }).await;
    let p = proxy(h2_config("Http2", "Http1", up.addr));
    // 500 PINGs at once is within the budget: every one is acknowledged, no GOAWAY.
    let (goaway, acks) = ping_burst(p.addr, 500, Duration::from_secs(20)).await;
    assert_eq!((goaway, acks), (None, 500));
    // 20 000 at once is a flood: GOAWAY ENHANCE_YOUR_CALM (0xb) and the connection closes.
    let (goaway, acks) = ping_burst(p.addr, 20_000, Duration::from_secs(20)).await;
    assert_eq!(goaway, Some(0xb), "PING ACKs read before the end: {acks}");
    assert!(acks < 20_000);
    // Other clients are still served.
    assert_eq!(h2_get(p.addr, "/x").await.0, 200);
}
