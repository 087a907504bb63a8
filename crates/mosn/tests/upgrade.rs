//! Hot upgrade with MOSN's protocol, both triggers, under a keep-alive HTTP/1 load: a second
//! process started on the same `uds_dir` (OpenKruise's container swap), then SIGHUP (fork-exec).
//! Each time the new process takes the listening sockets over `listen.sock`, the old one drains
//! and exits, and no request of the load fails; an idle keep-alive connection moves to the new
//! process over `conn.sock` (one connection is served by all three processes in turn). The pid
//! file and the admin API belong to the newest process.

mod common;
use common::xds::{within, Load};
use common::*;

use serde_json::json;
use std::io::{BufRead, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One keep-alive connection sending GETs back to back, never reconnecting: it must survive
/// upgrades by moving between processes.
struct Sticky {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(u64, u16, Option<String>)>,
}

impl Sticky {
    fn start(addr: std::net::SocketAddr) -> Sticky {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let s = std::net::TcpStream::connect(addr).unwrap();
            let port = s.local_addr().unwrap().port();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut r = std::io::BufReader::new(s);
            let mut ok = 0u64;
            while !s2.load(Ordering::Relaxed) {
                if r.get_mut()
                    .write_all(b"GET /sticky HTTP/1.1\r\nhost: x\r\n\r\n")
                    .is_err()
                {
                    return (ok, port, Some("write failed".into()));
                }
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    match r.read_line(&mut line) {
                        Ok(0) | Err(_) => return (ok, port, Some(format!("closed after {ok}"))),
                        Ok(_) if line == "\r\n" => break,
                        Ok(_) => head.push_str(&line.to_ascii_lowercase()),
                    }
                }
                if head.contains("connection: close") {
                    return (ok, port, Some("connection: close".into()));
                }
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0u8; len];
                if r.read_exact(&mut body).is_err() {
                    return (ok, port, Some("body cut".into()));
                }
                ok += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            (ok, port, None)
        });
        Sticky { stop, thread }
    }

    fn finish(self) -> (u64, u16, Option<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// A config with one `proxy` listener `l` on `listener` (`downstream` protocol, HTTP/1 to the
/// upstream), every path routed to the cluster `app` at `app`, and `graceful_timeout`.
fn http_proxy(
    downstream: &str,
    listener: std::net::SocketAddr,
    app: std::net::SocketAddr,
    graceful: &str,
) -> serde_json::Value {
    json!({
        "servers": [{"default_log_path": "stderr", "graceful_timeout": graceful,
            "routers": [{"router_config_name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"],
                "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": "app"}}]}]}],
            "listeners": [{"name": "l", "address": listener.to_string(), "filter_chains": [{"filters": [
                {"type": "proxy", "config": {"downstream_protocol": downstream,
                    "upstream_protocol": "Http1", "router_config_name": "r"}}]}]}]}],
        "cluster_manager": {"clusters": [{"name": "app", "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN",
            "hosts": [{"address": app.to_string()}]}]}
    })
}

/// Writes `cfg` as `mosn.json` in `dir`; its path.
fn write_config(dir: &std::path::Path, cfg: &serde_json::Value) -> std::path::PathBuf {
    let file = dir.join("mosn.json");
    std::fs::write(&file, cfg.to_string()).unwrap();
    file
}

/// Fails the test when a load had failures, showing the first few.
fn none_failed(what: &str, ok: u64, failed: &[String]) {
    assert!(
        failed.is_empty(),
        "{} of {} {what} failed: {:?}",
        failed.len(),
        ok + failed.len() as u64,
        &failed[..failed.len().min(5)]
    );
}

/// The pid in `pid_file` (empty when there is none).
fn pid_in(pid_file: &std::path::Path) -> String {
    std::fs::read_to_string(pid_file)
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// A check that `count` grows by more than `by` within `limit` (the load goes on).
fn grows_by<'a>(count: impl Fn() -> u64 + 'a, by: u64, limit: Duration) -> impl Fn(&str) + 'a {
    move |what: &str| {
        let from = count();
        within(limit, what, || count() > from + by);
    }
}

/// `mosn start -c file`, once it listens on `reconfig.sock` (1 s after it starts, as MOSN): an
/// upgrade can find it.
fn spawn_upgradable(file: &std::path::Path) -> Proc {
    let p = spawn(file);
    p.log_line(&["hot upgrade: listening"]);
    p
}

/// Requests each protocol's load must reach through the two upgrades (the issue's bar).
const AT_LEAST: u64 = 100_000;
/// How long a load may take to reach [`AT_LEAST`] on a loaded machine (a debug build).
const LOAD_LIMIT: Duration = Duration::from_secs(240);

/// A process started by another (SIGHUP's fork-exec), killed on drop.
struct Pid(i32);

impl Drop for Pid {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .arg(self.0.to_string())
            .status();
    }
}

/// OpenKruise's way, then SIGHUP: a second process on the same `uds_dir` takes over from `a`,
/// which drains and exits (code 0); then SIGHUP makes that one start its successor, and it drains
/// and exits too. `progress` is called while each of the three processes serves (the load must
/// go on under each). Returns the second process (its pipes carry the third's log) and the
/// third's pid, read from the pid file, which belongs to the newest process each time.
fn upgrade_twice(
    a: &mut Proc,
    file: &std::path::Path,
    pid_file: &std::path::Path,
    progress: &dyn Fn(&str),
) -> (Proc, Pid) {
    let pid = || pid_in(pid_file);
    progress("the first process serves");
    let mut b = spawn(file);
    b.log_line(&["hot upgrade: sockets received"]);
    b.log_line(&["hot upgrade: this process serves"]);
    a.log_line(&["hot upgrade: draining"]);
    assert_eq!(
        wait_timeout(&mut a.child, Duration::from_secs(15)),
        Some(0),
        "the old process exits once drained"
    );
    assert_eq!(
        pid(),
        b.child.id().to_string(),
        "the pid file is the new process's"
    );
    progress("the second process serves");
    // SIGHUP: the process starts its successor (its log lines come through the same pipes).
    b.log_line(&["hot upgrade: listening"]);
    b.signal("-HUP");
    b.log_line(&["SIGHUP: started the new process"]);
    assert_eq!(
        wait_timeout(&mut b.child, Duration::from_secs(15)),
        Some(0),
        "the SIGHUP'd process exits once drained"
    );
    let mut p = String::new();
    within(Duration::from_secs(5), "the successor's pid file", || {
        p = pid();
        !p.is_empty() && p != b.child.id().to_string()
    });
    let c = Pid(p.parse().unwrap());
    progress("the third process serves");
    (b, c)
}

/// What a [`Scraper`] saw: `(scrapes, every (before, after) where the counter went down,
/// failed scrapes)`.
type Scraped = (u64, Vec<(u64, u64)>, u64);

/// Scrapes `downstream_request_total{proxy="global"}` from a Prometheus sink every 10 ms.
struct Scraper {
    stop: Arc<AtomicBool>,
    last: Arc<std::sync::atomic::AtomicU64>,
    thread: std::thread::JoinHandle<Scraped>,
}

impl Scraper {
    fn start(sink: std::net::SocketAddr) -> Scraper {
        let stop = Arc::new(AtomicBool::new(false));
        let last = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (s2, l2) = (stop.clone(), last.clone());
        let thread = std::thread::spawn(move || {
            let (mut scrapes, mut drops, mut failed, mut prev) = (0, Vec::new(), 0, 0);
            while !s2.load(Ordering::Relaxed) {
                // A scrape in progress when a process hands the sink over may be cut: Prometheus
                // counts that scrape as failed, not as a value.
                let got = try_http(sink, "GET", "/metrics", &[], "").and_then(|r| {
                    r.body.lines().find_map(|l| {
                        l.strip_prefix("downstream_request_total{proxy=\"global\"} ")
                            .and_then(|v| v.trim().parse::<u64>().ok())
                    })
                });
                match got {
                    Some(v) => {
                        scrapes += 1;
                        if v < prev {
                            drops.push((prev, v));
                        }
                        prev = v;
                        l2.store(v, Ordering::Relaxed);
                    }
                    None => failed += 1,
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            (scrapes, drops, failed)
        });
        Scraper { stop, last, thread }
    }

    fn last(&self) -> u64 {
        self.last.load(Ordering::Relaxed)
    }

    fn finish(self) -> Scraped {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

#[test]
fn upgrades_by_a_second_process_and_by_sighup_fail_no_request() {
    let dir = temp_dir("upgrade");
    let app = text_upstream("app");
    let (listener, admin, sink) = (closed_port(), closed_port(), closed_port());
    let pid_file = dir.join("mosn.pid");
    let mut cfg = http_proxy("Http1", listener, app, "3s");
    cfg["pid"] = json!(pid_file.to_str().unwrap());
    cfg["uds_dir"] = json!(dir.join("socks").to_str().unwrap());
    cfg["admin"] = json!({"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin.port()}}});
    cfg["metrics"] = json!({"sinks": [{"type": "prometheus", "config": {"port": sink.port()}}]});
    let file = write_config(&dir, &cfg);
    let pid = || pid_in(&pid_file);
    let mut a = spawn_upgradable(&file);
    let load = Load::start(listener, 4);
    let sticky = Sticky::start(listener);
    std::thread::sleep(Duration::from_millis(300));

    // A new process with a bad config (in the same folder) stops at its JSON-path error and
    // leaves the running one untouched.
    let bad = dir.join("bad.json");
    let mut broken = cfg.clone();
    broken["servers"][0]["listeners"][0]["address"] = json!("not an address");
    std::fs::write(&bad, broken.to_string()).unwrap();
    let out = mosn().args(["start", "-c"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("servers[0].listeners[0].address"), "{err}");
    assert_eq!(pid(), a.child.id().to_string(), "the pid file is untouched");
    assert!(
        a.child.try_wait().unwrap().is_none(),
        "the running process goes on"
    );

    let scraper = Scraper::start(sink);
    let grows = grows_by(|| load.ok(), 500, Duration::from_secs(20));
    let (_b, c) = upgrade_twice(&mut a, &file, &pid_file, &grows);
    within(LOAD_LIMIT, "100,000 requests", || load.ok() >= AT_LEAST);
    drop(grows);
    let (ok, failed) = load.finish();
    let (sticky_ok, sticky_port, sticky_end) = sticky.finish();
    // Every request answered, through the three processes, is in the newest one's counter; and
    // no scrape ever saw it go down (Prometheus would take that for a restart).
    let answered = ok + sticky_ok;
    within(Duration::from_secs(10), "the requests counted", || {
        scraper.last() >= answered
    });
    let (scrapes, drops, failed_scrapes) = scraper.finish();
    assert!(drops.is_empty(), "the counter went down: {drops:?}");
    eprintln!(
        "downstream_request_total never went down over {scrapes} scrapes ({failed_scrapes} failed)"
    );
    let states = curl(&[&format!("http://{admin}/api/v1/states")]);
    let newest = c.0;
    drop(c);
    none_failed("requests", ok, &failed);
    assert!(ok >= AT_LEAST, "only {ok} requests");
    // One keep-alive connection served by all three processes in turn: it moved (MOSN closes it).
    assert_eq!(sticky_end, None, "the sticky connection ended");
    assert!(
        sticky_ok > 100,
        "only {sticky_ok} requests on the sticky connection"
    );
    eprintln!("one keep-alive connection (client port {sticky_port}) through both upgrades: {sticky_ok} requests");
    assert!(states.contains(&format!("pid={newest}")), "{states}");
    eprintln!("two hot upgrades under load: {ok} requests, 0 failed");
}

/// An HTTP/2 load on the `h2` crate: 4 connections with 8 streams each, requests back to back,
/// until stopped. A connection told to go away (GOAWAY) takes no new stream; the client opens a
/// new connection, as gRPC and browsers do. A request counts as failed when it was sent and got
/// no complete 200 (a stream reset, REFUSED_STREAM included, or the connection cut under it).
///
/// Not h2load: h2load opens no new connection after GOAWAY (its client stops), and in its
/// timing mode (`-D`) the summary's "failed" is computed as total minus succeeded, so it cannot
/// show a stream cut by the server.
struct H2Load {
    stop: Arc<AtomicBool>,
    ok: Arc<std::sync::atomic::AtomicU64>,
    connections: Arc<std::sync::atomic::AtomicU64>,
    failed: Arc<std::sync::Mutex<Vec<String>>>,
    thread: std::thread::JoinHandle<()>,
}

impl H2Load {
    fn start(addr: std::net::SocketAddr) -> H2Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let connections = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let failed = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (s2, ok2, c2, f2) = (
            stop.clone(),
            ok.clone(),
            connections.clone(),
            failed.clone(),
        );
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let clients = (0..4).map(|_| {
                    let (stop, ok, conns, failed) =
                        (s2.clone(), ok2.clone(), c2.clone(), f2.clone());
                    tokio::spawn(async move {
                        while !stop.load(Ordering::Relaxed) {
                            let tcp = match tokio::net::TcpStream::connect(addr).await {
                                Ok(t) => t,
                                Err(e) => {
                                    failed.lock().unwrap().push(format!("connect: {e}"));
                                    continue;
                                }
                            };
                            let (send, conn) = match h2::client::handshake(tcp).await {
                                Ok(h) => h,
                                Err(e) => {
                                    failed.lock().unwrap().push(format!("handshake: {e}"));
                                    continue;
                                }
                            };
                            conns.fetch_add(1, Ordering::Relaxed);
                            let driver = tokio::spawn(conn);
                            let streams = (0..8).map(|_| {
                                let (mut send, stop, ok, failed) =
                                    (send.clone(), stop.clone(), ok.clone(), failed.clone());
                                async move {
                                    while !stop.load(Ordering::Relaxed) {
                                        // Not sent yet: a connection going away takes no more.
                                        let Ok(ready) = send.ready().await else {
                                            return;
                                        };
                                        send = ready;
                                        let req = http::Request::get(format!("http://{addr}/h2"))
                                            .body(())
                                            .unwrap();
                                        let Ok((resp, _)) = send.send_request(req, true) else {
                                            return;
                                        };
                                        let got = async {
                                            let r = resp.await?;
                                            let status = r.status();
                                            let mut body = r.into_body();
                                            while let Some(d) = body.data().await {
                                                let d = d?;
                                                let _ =
                                                    body.flow_control().release_capacity(d.len());
                                            }
                                            Ok::<_, h2::Error>(status)
                                        };
                                        match got.await {
                                            Ok(s) if s == 200 => {
                                                ok.fetch_add(1, Ordering::Relaxed);
                                            }
                                            Ok(s) => {
                                                failed.lock().unwrap().push(format!("status {s}"))
                                            }
                                            Err(e) => {
                                                failed.lock().unwrap().push(format!("stream: {e}"))
                                            }
                                        }
                                    }
                                }
                            });
                            for t in streams.map(tokio::spawn).collect::<Vec<_>>() {
                                let _ = t.await;
                            }
                            drop(send);
                            let _ = driver.await;
                        }
                    })
                });
                for c in clients.collect::<Vec<_>>() {
                    let _ = c.await;
                }
            });
        });
        H2Load {
            stop,
            ok,
            connections,
            failed,
            thread,
        }
    }

    fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Stops: `(requests answered 200, connections opened, failures)`.
    fn finish(self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        (
            self.ok.load(Ordering::Relaxed),
            self.connections.load(Ordering::Relaxed),
            self.failed.lock().unwrap().clone(),
        )
    }
}

/// HTTP/2 through both upgrades: the old process sends GOAWAY (first with the largest
/// stream id, then, after a PING round trip, the last stream it took: RFC 9113 §6.8), finishes
/// every stream it took and exits; no stream fails, and the load goes on in the new process.
#[test]
fn http2_through_two_upgrades_fails_no_stream() {
    let dir = temp_dir("upgrade-h2");
    let app = text_upstream("app");
    let listener = closed_port();
    let pid_file = dir.join("mosn.pid");
    let mut cfg = http_proxy("Http2", listener, app, "3s");
    cfg["pid"] = json!(pid_file.to_str().unwrap());
    let file = write_config(&dir, &cfg);
    let mut a = spawn_upgradable(&file);
    let load = H2Load::start(listener);
    let grows = grows_by(|| load.ok(), 500, Duration::from_secs(30));
    let (_b, c) = upgrade_twice(&mut a, &file, &pid_file, &grows);
    within(LOAD_LIMIT, "100,000 HTTP/2 requests", || {
        load.ok() >= AT_LEAST
    });
    drop(grows);
    let (ok, connections, failed) = load.finish();
    drop(c);
    none_failed("HTTP/2 requests", ok, &failed);
    assert!(ok >= AT_LEAST, "only {ok} requests");
    // Each process's GOAWAY sent the clients to a new connection.
    assert!(
        connections > 4,
        "the clients never reconnected: {connections}"
    );
    eprintln!("HTTP/2 through two upgrades: {ok} requests on {connections} connections, 0 failed");
}

/// With listeners from xDS: the new process has none when it takes the sockets over; it keeps
/// them until its own ADS client sends the listeners, which then adopt them, so a load on an
/// xDS listener fails no request across the upgrade.
#[test]
fn an_upgrade_keeps_the_sockets_of_listeners_the_control_plane_sends_later() {
    use common::xds::{ads_server, bootstrap, publish, LDS};
    let dir = temp_dir("upgrade-xds");
    let mut state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("examples/xds/resources.json")).unwrap(),
    )
    .unwrap();
    let (front, back) = (closed_port(), closed_port());
    let lds = state["resources"][LDS].as_array_mut().unwrap();
    lds[0]["address"]["socket_address"]["port_value"] = json!(front.port());
    lds[1]["address"]["socket_address"]["port_value"] = json!(back.port());
    state["resources"][common::xds::EDS][0]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
        ["address"]["socket_address"]["port_value"] = json!(back.port());
    publish(&dir, &state);
    let (_ads, port) = ads_server(&dir, None, None);
    let mut cfg = bootstrap(
        "GRPC",
        json!({"socket_address": {"address": "127.0.0.1", "port_value": port}}),
    );
    cfg["admin"] = serde_json::Value::Null;
    cfg["uds_dir"] = json!(dir.join("socks").to_str().unwrap());
    let file = dir.join("bootstrap.json");
    std::fs::write(&file, cfg.to_string()).unwrap();
    let mut a = spawn(&file);
    a.log_line(&["listener added", "listener=front "]);
    a.log_line(&["hot upgrade: listening"]);
    let load = Load::start(front, 4);
    std::thread::sleep(Duration::from_millis(300));
    let b = spawn(&file);
    b.log_line(&["hot upgrade: this process serves"]);
    b.log_line(&["listener added", "listener=front "]);
    assert_eq!(wait_timeout(&mut a.child, Duration::from_secs(15)), Some(0));
    std::thread::sleep(Duration::from_millis(300));
    let (ok, failed) = load.finish();
    none_failed("requests", ok, &failed);
    assert!(ok > 500, "only {ok} requests");
    drop(b);
}

/// A Bolt echo upstream on the project's own codec: each call is answered with its content.
fn bolt_echo() -> std::net::SocketAddr {
    bolt_echo_holding(Arc::new(AtomicBool::new(true)))
}

/// [`bolt_echo`], except that calls whose content starts with `hold` are answered only once
/// `release` is set (the others meanwhile as they come).
fn bolt_echo_holding(release: Arc<AtomicBool>) -> std::net::SocketAddr {
    use mosn_protocol::bolt::{status, Bolt};
    use mosn_protocol::xprotocol::{FrameKind, XProtocol};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let release = release.clone();
            std::thread::spawn(move || {
                let proto = Bolt::default();
                let out_sock = Arc::new(std::sync::Mutex::new(s.try_clone().unwrap()));
                let mut buf = bytes::BytesMut::new();
                let mut chunk = [0u8; 16384];
                loop {
                    while let Ok(Some(f)) = proto.decode(&mut buf) {
                        let reply = match proto.kind(&f) {
                            FrameKind::Heartbeat => proto.heartbeat_reply(&f),
                            FrameKind::Request => {
                                let mut r = f.hijack(status::SUCCESS);
                                r.content = f.content.clone();
                                r
                            }
                            _ => continue,
                        };
                        let mut out = bytes::BytesMut::new();
                        proto.encode(&reply, &mut out);
                        if f.content.starts_with(b"hold") {
                            let (release, out_sock) = (release.clone(), out_sock.clone());
                            std::thread::spawn(move || {
                                while !release.load(Ordering::Relaxed) {
                                    std::thread::sleep(Duration::from_millis(5));
                                }
                                let _ = out_sock.lock().unwrap().write_all(&out);
                            });
                        } else if out_sock.lock().unwrap().write_all(&out).is_err() {
                            return;
                        }
                    }
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    addr
}

/// A client connection of either kind.
trait ReadWrite: Read + Write + Send {}
impl<T: Read + Write + Send> ReadWrite for T {}

/// One Bolt connection making calls back to back, never reconnecting: `(calls answered, the end
/// if it ended)`.
struct StickyBolt {
    stop: Arc<AtomicBool>,
    answered: Arc<std::sync::atomic::AtomicU64>,
    thread: std::thread::JoinHandle<(u64, Option<String>)>,
}

impl StickyBolt {
    fn start(addr: std::net::SocketAddr) -> StickyBolt {
        StickyBolt::over(move || {
            let s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            Box::new(s)
        })
    }

    /// Over the connection `connect` opens (TCP, or a unix socket).
    fn over(connect: impl FnOnce() -> Box<dyn ReadWrite> + Send + 'static) -> StickyBolt {
        use mosn_api::Headers;
        use mosn_protocol::bolt::{Bolt, Frame, Version};
        use mosn_protocol::xprotocol::XProtocol;
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (s2, a2) = (stop.clone(), answered.clone());
        let thread = std::thread::spawn(move || {
            let proto = Bolt::default();
            let mut s = connect();
            let mut buf = bytes::BytesMut::new();
            let mut chunk = [0u8; 16384];
            let mut ok = 0u64;
            let mut id = 0u32;
            while !s2.load(Ordering::Relaxed) {
                id += 1;
                let mut f = Frame::request(Version::V1, id);
                f.class =
                    bytes::Bytes::from_static(b"com.alipay.sofa.rpc.core.request.SofaRequest");
                f.set("service", b"com.example.Echo");
                f.content = bytes::Bytes::from(format!("call {id}"));
                f.timeout_ms = 3000;
                let mut out = bytes::BytesMut::new();
                proto.encode(&f, &mut out);
                if s.write_all(&out).is_err() {
                    return (ok, Some("write failed".into()));
                }
                let reply = loop {
                    match proto.decode(&mut buf) {
                        Ok(Some(r)) => break r,
                        Ok(None) => {}
                        Err(e) => return (ok, Some(format!("bad frame: {e}"))),
                    }
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => return (ok, Some(format!("closed after {ok}"))),
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                if reply.request_id != id || reply.content != format!("call {id}").as_bytes() {
                    return (ok, Some(format!("wrong answer to call {id}")));
                }
                ok += 1;
                a2.store(ok, Ordering::Relaxed);
            }
            (ok, None)
        });
        StickyBolt {
            stop,
            answered,
            thread,
        }
    }

    /// Calls answered so far.
    fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    /// Waits (30 s at most) until `at_least` calls are answered or the connection ended, then
    /// stops: the number of calls does not depend on how fast a loaded machine runs.
    fn finish(self, at_least: u64) -> (u64, Option<String>) {
        let until = std::time::Instant::now() + Duration::from_secs(30);
        while self.answered() < at_least
            && !self.thread.is_finished()
            && std::time::Instant::now() < until
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// A Bolt connection moves between frames on both upgrades (MOSN's transfer of RPC connections),
/// calls back to back: every call is answered on the one connection, none fails (MOSN's
/// `TestTransfer` runs 5000 calls through the same two upgrades, SIGHUP and a second process).
#[test]
fn a_bolt_connection_moves_between_frames_through_two_upgrades() {
    let dir = temp_dir("upgrade-bolt");
    let up = bolt_echo();
    let listener = closed_port();
    let pid_file = dir.join("mosn.pid");
    let cfg = json!({
        "pid": pid_file.to_str().unwrap(),
        "servers": [{"default_log_path": "stderr", "graceful_timeout": "3s",
            "routers": [{"router_config_name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"],
                "routers": [{"match": {"headers": [{"name": "service", "value": ".*"}]}, "route": {"cluster_name": "up"}}]}]}],
            "listeners": [{"name": "bolt", "address": listener.to_string(), "filter_chains": [{"filters": [
                {"type": "proxy", "config": {"downstream_protocol": "bolt", "upstream_protocol": "bolt", "router_config_name": "r"}}]}]}]}],
        "cluster_manager": {"clusters": [{"name": "up", "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN",
            "hosts": [{"address": up.to_string()}]}]}
    });
    // uds_dir defaults to the config file's folder, as in MOSN.
    let file = write_config(&dir, &cfg);
    let mut a = spawn_upgradable(&file);
    let sticky = StickyBolt::start(listener);
    // Calls go on across each step: the count grows while each process serves the connection.
    let grows = |what: &str| {
        let from = sticky.answered();
        within(Duration::from_secs(10), what, || {
            sticky.answered() > from + 100
        });
    };
    grows("calls answered by the first process");
    let mut b = spawn(&file);
    b.log_line(&["hot upgrade: this process serves"]);
    assert_eq!(wait_timeout(&mut a.child, Duration::from_secs(10)), Some(0));
    grows("calls answered by the second process");
    b.log_line(&["hot upgrade: listening"]);
    b.signal("-HUP");
    assert_eq!(wait_timeout(&mut b.child, Duration::from_secs(10)), Some(0));
    grows("calls answered by the third process");
    // MOSN's TestTransfer runs 5000 calls through the same two upgrades.
    let (ok, end) = sticky.finish(5000);
    let c = std::fs::read_to_string(&pid_file).unwrap_or_default();
    let _ = std::process::Command::new("kill").arg(c.trim()).status();
    assert_eq!(end, None, "the Bolt connection ended");
    assert!(ok >= 5000, "only {ok} calls");
    eprintln!("one Bolt connection through two upgrades: {ok} calls, 0 failed");
}

/// The project's Bolt load generator (`bolt-load client --progress`) in the background: its
/// running totals, and its summary once stopped.
struct BoltLoad {
    child: std::process::Child,
    answered: Arc<std::sync::atomic::AtomicU64>,
    errors: Arc<std::sync::atomic::AtomicU64>,
    summary: std::sync::mpsc::Receiver<String>,
}

/// `bolt-load`, built beside the tests by scripts/test.sh (`cargo build -p bolt-load`).
fn bolt_load() -> std::process::Command {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(|d| d.parent())
        .unwrap()
        .join("bolt-load");
    assert!(
        bin.exists(),
        "{} is missing: run scripts/test.sh (or cargo build -p bolt-load)",
        bin.display()
    );
    std::process::Command::new(bin)
}

impl BoltLoad {
    /// 4 connections with 16 calls in flight each, never reopened (a connection that closes
    /// counts its owed calls as errors).
    fn start(target: std::net::SocketAddr) -> BoltLoad {
        let mut child = bolt_load()
            .args(["client", "--connections", "4", "--in-flight", "16"])
            .args(["--duration", "600", "--progress", "--target"])
            .arg(target.to_string())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let answered = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (tx, summary) = std::sync::mpsc::channel();
        let (a2, e2) = (answered.clone(), errors.clone());
        std::thread::spawn(move || {
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let field = |k: &str| {
                    l.split_whitespace()
                        .find_map(|f| f.strip_prefix(k))
                        .and_then(|v| v.parse::<u64>().ok())
                };
                if l.starts_with("progress ") {
                    a2.store(field("requests=").unwrap_or(0), Ordering::Relaxed);
                    e2.store(field("errors=").unwrap_or(0), Ordering::Relaxed);
                } else {
                    let _ = tx.send(l);
                }
            }
        });
        BoltLoad {
            child,
            answered,
            errors,
            summary,
        }
    }

    fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    /// Stops it (SIGINT: the calls owed are collected first): its summary line.
    fn finish(mut self) -> String {
        let _ = std::process::Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let line = self
            .summary
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_default();
        let _ = self.child.wait();
        line
    }
}

/// Bolt under a pipelined load through both upgrades: `bolt-load` (4 connections, 16 calls in
/// flight on each) and a real SOFARPC client (sofa-rpc-node, 8 calls in flight) through one
/// listener. Each connection moves between frames: the old process stops reading it, answers
/// the calls it took, and hands the socket over with the bytes of any frame begun, so the calls
/// waiting in the socket are read by the new process. `bolt-load` never reopens a connection, so
/// its calls answered under the third process went over the connections opened to the first.
#[test]
fn bolt_load_and_a_sofarpc_client_through_two_upgrades() {
    let dir = temp_dir("upgrade-bolt-load");
    let mut echo = bolt_load()
        .args(["server"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(echo.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let echo_addr = line.trim().strip_prefix("listening ").unwrap().to_string();
    let _echo = Killed(echo);
    let (_sofa, sofa) = sofa_server("up", 0);
    let listener = closed_port();
    let pid_file = dir.join("mosn.pid");
    let cfg = json!({
        "pid": pid_file.to_str().unwrap(),
        "servers": [{"default_log_path": "stderr", "graceful_timeout": "3s",
            "routers": [{"router_config_name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"],
                "routers": [
                    {"match": {"headers": [{"name": "service", "value": "com.nodejs.test.TestService:1.0"}]},
                        "route": {"cluster_name": "sofa"}},
                    {"match": {"headers": [{"name": "service", "value": ".*", "regex": true}]},
                        "route": {"cluster_name": "echo"}}]}]}],
            "listeners": [{"name": "bolt", "address": listener.to_string(), "filter_chains": [{"filters": [
                {"type": "proxy", "config": {"downstream_protocol": "bolt", "upstream_protocol": "bolt",
                    "router_config_name": "r"}}]}]}]}],
        "cluster_manager": {"clusters": [
            {"name": "echo", "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN", "hosts": [{"address": echo_addr}]},
            {"name": "sofa", "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN", "hosts": [{"address": sofa.to_string()}]}]}
    });
    let file = write_config(&dir, &cfg);
    let mut a = spawn_upgradable(&file);
    let load = BoltLoad::start(listener);
    let sofa_load = sofa_node()
        .args(["load", &listener.to_string(), "TestService", "600000"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let grows = |what: &str| {
        let from = load.answered();
        within(Duration::from_secs(30), what, || {
            load.answered() > from + 500
        });
    };
    let (_b, c) = upgrade_twice(&mut a, &file, &pid_file, &grows);
    within(LOAD_LIMIT, "100,000 Bolt calls", || {
        load.answered() >= AT_LEAST || load.errors.load(Ordering::Relaxed) > 0
    });
    let summary = load.finish();
    let _ = std::process::Command::new("kill")
        .arg(sofa_load.id().to_string())
        .status();
    let sofa_out = sofa_load.wait_with_output().unwrap();
    drop(c);
    let sofa_out = String::from_utf8_lossy(&sofa_out.stdout);
    let sofa: serde_json::Value = serde_json::from_str(sofa_out.trim())
        .unwrap_or_else(|e| panic!("SOFARPC load said {sofa_out:?}: {e}"));
    let calls: u64 = summary
        .split_whitespace()
        .find_map(|f| f.strip_prefix("requests="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("bolt-load said {summary:?}"));
    assert!(summary.contains(" errors=0 "), "bolt-load: {summary}");
    assert!(calls >= AT_LEAST, "bolt-load: {summary}");
    assert_eq!(sofa["failed"], 0, "SOFARPC client: {sofa}");
    assert!(
        sofa["ok"].as_u64().unwrap_or(0) > 100,
        "SOFARPC client: {sofa}"
    );
    eprintln!("Bolt through two upgrades: bolt-load {summary}; SOFARPC client {sofa}");
}

/// A Bolt connection moves while the old process still owes it an answer (MOSN's "transfer
/// write"): the connection goes on to the new process at once, which answers the calls sent
/// since, and the owed answer reaches the client later through the new process, on the same
/// connection. The upstream holds that one call until the client has had 50 answers from the new
/// process: an old process that waited for the owed answer before moving the connection would
/// stall it, and the test would fail.
#[test]
fn a_bolt_connection_moves_with_an_answer_still_owed() {
    use mosn_api::Headers;
    use mosn_protocol::bolt::{Bolt, Frame, Version};
    use mosn_protocol::xprotocol::XProtocol;
    let dir = temp_dir("upgrade-owed");
    let release = Arc::new(AtomicBool::new(false));
    let up = bolt_echo_holding(release.clone());
    let listener = closed_port();
    let cfg = json!({
        "servers": [{"default_log_path": "stderr", "graceful_timeout": "20s",
            "routers": [{"router_config_name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"],
                "routers": [{"match": {"headers": [{"name": "service", "value": ".*", "regex": true}]},
                    "route": {"cluster_name": "up"}}]}]}],
            "listeners": [{"name": "bolt", "address": listener.to_string(), "filter_chains": [{"filters": [
                {"type": "proxy", "config": {"downstream_protocol": "bolt", "upstream_protocol": "bolt",
                    "router_config_name": "r"}}]}]}]}],
        "cluster_manager": {"clusters": [{"name": "up", "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN",
            "hosts": [{"address": up.to_string()}]}]}
    });
    let file = write_config(&dir, &cfg);
    let mut a = spawn_upgradable(&file);

    let proto = Bolt::default();
    let mut s = std::net::TcpStream::connect(listener).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = bytes::BytesMut::new();
    let call = |s: &mut std::net::TcpStream, id: u32, content: &str| {
        let mut f = Frame::request(Version::V1, id);
        f.class = bytes::Bytes::from_static(b"com.alipay.sofa.rpc.core.request.SofaRequest");
        f.set("service", b"com.example.Echo");
        f.content = bytes::Bytes::from(content.to_string());
        f.timeout_ms = 30_000;
        let mut out = bytes::BytesMut::new();
        proto.encode(&f, &mut out);
        s.write_all(&out).unwrap();
    };
    let mut answer = |s: &mut std::net::TcpStream| loop {
        if let Some(r) = proto.decode(&mut buf).unwrap() {
            return (
                r.request_id,
                String::from_utf8_lossy(&r.content).into_owned(),
            );
        }
        let mut chunk = [0u8; 16384];
        match s.read(&mut chunk) {
            Ok(0) => panic!("the connection closed"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("no answer: {e}"),
        }
    };
    call(&mut s, 1, "first");
    assert_eq!(answer(&mut s), (1, "first".to_string()));
    // The call the old process will still owe when the connection moves.
    call(&mut s, 2, "hold me");
    let b = spawn(&file);
    b.log_line(&["hot upgrade: this process serves"]);
    a.log_line(&["hot upgrade: draining"]);
    for id in 3..53 {
        call(&mut s, id, &format!("call {id}"));
        assert_eq!(
            answer(&mut s),
            (id, format!("call {id}")),
            "a call sent after the upgrade"
        );
    }
    release.store(true, Ordering::Relaxed);
    assert_eq!(
        answer(&mut s),
        (2, "hold me".to_string()),
        "the answer owed by the old process"
    );
    // The old process owes nothing more: it exits well before its 20 s graceful timeout.
    assert_eq!(wait_timeout(&mut a.child, Duration::from_secs(10)), Some(0));
    call(&mut s, 53, "after");
    assert_eq!(answer(&mut s), (53, "after".to_string()));
    drop(b);
}

/// A TCP echo upstream: every byte comes back.
fn tcp_echo() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut back = s.try_clone().unwrap();
                let _ = std::io::copy(&mut s, &mut back);
            });
        }
    });
    addr
}

/// An iperf-style stream through `tcp_proxy`: one connection on which a writer sends numbered
/// 64-byte records as fast as the path takes them and a reader checks that every one comes back
/// from the echo upstream, in order: `(records back, the end if it ended)`.
struct Stream64 {
    stop: Arc<AtomicBool>,
    back: Arc<std::sync::atomic::AtomicU64>,
    port: u16,
    reader: std::thread::JoinHandle<Option<String>>,
    writer: std::thread::JoinHandle<()>,
}

impl Stream64 {
    fn start(addr: std::net::SocketAddr) -> Stream64 {
        let s = std::net::TcpStream::connect(addr).unwrap();
        let port = s.local_addr().unwrap().port();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let back = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut w = s.try_clone().unwrap();
        let s2 = stop.clone();
        let writer = std::thread::spawn(move || {
            let mut n = 0u64;
            let mut batch = Vec::with_capacity(64 * 256);
            while !s2.load(Ordering::Relaxed) {
                batch.clear();
                for _ in 0..256 {
                    let mut rec = [0xabu8; 64];
                    rec[..8].copy_from_slice(&n.to_be_bytes());
                    batch.extend_from_slice(&rec);
                    n += 1;
                }
                if w.write_all(&batch).is_err() {
                    return;
                }
            }
            let _ = w.shutdown(std::net::Shutdown::Write);
        });
        let (mut r, b2) = (s, back.clone());
        let reader = std::thread::spawn(move || {
            let mut rec = [0u8; 64];
            let mut want = 0u64;
            loop {
                match r.read_exact(&mut rec) {
                    Ok(()) => {}
                    // The writer stopped and the half-close came back through the proxy.
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return None,
                    Err(e) => return Some(format!("after {want} records: {e}")),
                }
                let n = u64::from_be_bytes(rec[..8].try_into().unwrap());
                if n != want || rec[8..].iter().any(|b| *b != 0xab) {
                    return Some(format!("record {n} where {want} was due"));
                }
                want += 1;
                b2.store(want, Ordering::Relaxed);
            }
        });
        Stream64 {
            stop,
            back,
            port,
            reader,
            writer,
        }
    }

    fn back(&self) -> u64 {
        self.back.load(Ordering::Relaxed)
    }

    /// Stops writing; the reader ends at the echoed half-close: `(records back, the end if the
    /// stream broke)`.
    fn finish(self) -> (u64, Option<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.writer.join().unwrap();
        let end = self.reader.join().unwrap();
        (self.back.load(Ordering::Relaxed), end)
    }
}

/// `tcp_proxy` through both upgrades: a stream that keeps flowing (every record back, in order,
/// on one connection whose client port stays) and an idle connection, each moved with its
/// upstream connection to the new process (MOSN lets them die with the old one). The old
/// processes exit once drained, so the records that came back after that went through the new
/// processes on the same connections.
#[test]
fn tcp_proxy_streams_keep_flowing_through_two_upgrades() {
    let dir = temp_dir("upgrade-tcp");
    let up = tcp_echo();
    let listener = closed_port();
    let pid_file = dir.join("mosn.pid");
    let cfg = json!({
        "pid": pid_file.to_str().unwrap(),
        "servers": [{"default_log_path": "stderr", "graceful_timeout": "3s",
            "listeners": [{"name": "tcp", "address": listener.to_string(), "filter_chains": [{"filters": [
                {"type": "tcp_proxy", "config": {"cluster": "up"}}]}]}]}],
        "cluster_manager": {"clusters": [{"name": "up", "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN",
            "hosts": [{"address": up.to_string()}]}]}
    });
    let file = write_config(&dir, &cfg);
    let mut a = spawn_upgradable(&file);
    let stream = Stream64::start(listener);
    let mut idle = std::net::TcpStream::connect(listener).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let echo = |s: &mut std::net::TcpStream, what: &[u8]| {
        s.write_all(what).unwrap();
        let mut got = vec![0u8; what.len()];
        s.read_exact(&mut got).unwrap();
        assert_eq!(got, what);
    };
    echo(&mut idle, b"before");
    let grows = |what: &str| {
        let from = stream.back();
        within(Duration::from_secs(30), what, || {
            stream.back() > from + 10_000
        });
    };
    let (_b, c) = upgrade_twice(&mut a, &file, &pid_file, &grows);
    within(LOAD_LIMIT, "100,000 records back", || {
        stream.back() >= AT_LEAST
    });
    echo(&mut idle, b"after two upgrades");
    let port = stream.port;
    let (records, end) = stream.finish();
    drop(c);
    assert_eq!(end, None, "the stream broke");
    assert!(records >= AT_LEAST, "only {records} records");
    eprintln!(
        "tcp_proxy through two upgrades: {records} records ({} MB) back in order on one connection (client port {port}), and an idle connection moved too",
        records * 64 / 1_000_000
    );
}

/// MOSN's `TestTransfer` (`test/integrate/transfer`): a Bolt mesh in one mosn, the client-side
/// listener on a unix socket, routed to the server-side listener on TCP, routed to the app; one
/// client connection on the unix socket makes calls back to back (MOSN's makes one every 100 ms)
/// through an upgrade by SIGHUP, then one by a second process started directly, MOSN's order.
/// The 5000 calls are all answered, on the one connection: the unix connection moved twice, and
/// the server-side mesh's connections moved as Bolt connections do.
#[test]
fn mosn_test_transfer_bolt_mesh_over_a_unix_socket() {
    let dir = temp_dir("upgrade-mesh");
    let app = bolt_echo();
    let client_sock = dir.join("client.sock");
    let server_mesh = closed_port();
    let pid_file = dir.join("mosn.pid");
    let route = |cluster: &str| {
        json!([{"match": {"headers": [{"name": "service", "value": ".*", "regex": true}]},
            "route": {"cluster_name": cluster}}])
    };
    let bolt = |router: &str| {
        json!([{"filters": [{"type": "proxy", "config": {"downstream_protocol": "bolt",
            "upstream_protocol": "bolt", "router_config_name": router}}]}])
    };
    let cfg = json!({
        "pid": pid_file.to_str().unwrap(),
        "servers": [{"default_log_path": "stderr", "graceful_timeout": "5s",
            "routers": [
                {"router_config_name": "client_router", "virtual_hosts": [{"name": "v", "domains": ["*"], "routers": route("server_mesh")}]},
                {"router_config_name": "server_router", "virtual_hosts": [{"name": "v", "domains": ["*"], "routers": route("app")}]}],
            "listeners": [
                {"name": "client_mesh", "address": client_sock.to_str().unwrap(), "network": "unix",
                    "filter_chains": bolt("client_router")},
                {"name": "server_mesh", "address": server_mesh.to_string(), "filter_chains": bolt("server_router")}]}],
        "cluster_manager": {"clusters": [
            {"name": "server_mesh", "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN", "hosts": [{"address": server_mesh.to_string()}]},
            {"name": "app", "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN", "hosts": [{"address": app.to_string()}]}]}
    });
    let file = write_config(&dir, &cfg);
    let pid = || pid_in(&pid_file);
    let mut a = spawn_upgradable(&file);
    let path = client_sock.clone();
    let sticky = StickyBolt::over(move || {
        let s = std::os::unix::net::UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Box::new(s)
    });
    let grows = |what: &str| {
        let from = sticky.answered();
        within(Duration::from_secs(20), what, || {
            sticky.answered() > from + 100
        });
    };
    grows("calls answered by the first process");
    // SIGHUP: the process starts its successor, hands over and exits once drained.
    a.signal("-HUP");
    a.log_line(&["SIGHUP: started the new process"]);
    assert_eq!(wait_timeout(&mut a.child, Duration::from_secs(15)), Some(0));
    let mut second = String::new();
    within(Duration::from_secs(5), "the successor's pid file", || {
        second = pid();
        !second.is_empty() && second != a.child.id().to_string()
    });
    let second = Pid(second.parse().unwrap());
    grows("calls answered by the SIGHUP'd successor");
    // A second process started directly, once the successor listens on reconfig.sock (the first
    // process removed its own when it exited).
    within(
        Duration::from_secs(10),
        "the successor's reconfig.sock",
        || dir.join("reconfig.sock").exists(),
    );
    let c = spawn(&file);
    c.log_line(&["hot upgrade: this process serves"]);
    within(
        Duration::from_secs(15),
        "the second process to exit",
        || {
            std::fs::metadata(format!("/proc/{}", second.0)).is_err()
                || std::fs::read_to_string(format!("/proc/{}/stat", second.0))
                    .is_ok_and(|s| s.contains(") Z "))
        },
    );
    grows("calls answered by the directly started process");
    let (ok, end) = sticky.finish(5000);
    drop(c);
    drop(second);
    assert_eq!(end, None, "the unix connection ended");
    assert!(ok >= 5000, "only {ok} calls");
    eprintln!("MOSN's TestTransfer shape: {ok} calls on one unix connection through SIGHUP and a second start, 0 failed");
}

/// An old process killed (SIGKILL) while it moves its connections: what it was serving at that
/// moment may fail (at most one request per client of the load, each having one in flight), and
/// the new process serves everything else: the clients reconnect to it and no later request
/// fails.
#[test]
fn an_old_process_killed_mid_transfer_loses_at_most_what_it_was_serving() {
    let dir = temp_dir("upgrade-killed");
    let app = text_upstream("app");
    let listener = closed_port();
    let cfg = http_proxy("Http1", listener, app, "5s");
    let file = write_config(&dir, &cfg);
    let mut a = spawn_upgradable(&file);
    const CLIENTS: usize = 8;
    let load = Load::start(listener, CLIENTS);
    let from = load.ok();
    within(Duration::from_secs(20), "the load runs", || {
        load.ok() > from + 500
    });
    let b = spawn(&file);
    b.log_line(&["hot upgrade: this process serves"]);
    // The old process is moving its keep-alive connections now: killed in the middle of it.
    a.signal("-KILL");
    let _ = a.child.wait();
    let at_kill = load.ok();
    within(
        Duration::from_secs(20),
        "requests served by the new process",
        || load.ok() > at_kill + 2000,
    );
    let (ok, failed) = load.finish();
    assert!(
        b.child.id() > 0 && std::fs::metadata(format!("/proc/{}", b.child.id())).is_ok(),
        "the new process goes on"
    );
    assert!(
        failed.len() <= CLIENTS,
        "{} requests failed, more than the {CLIENTS} in flight: {:?}",
        failed.len(),
        &failed[..failed.len().min(10)]
    );
    eprintln!(
        "old process killed mid-transfer: {} of {} requests failed (at most {CLIENTS} were in flight)",
        failed.len(),
        ok + failed.len() as u64
    );
}

/// TLS connections do not move (their session state stays in the old process): through both
/// upgrades, curl makes requests back to back on keep-alive HTTPS connections; the old process
/// answers the request in flight with `Connection: close` and closes cleanly, and curl goes on on
/// a new connection, which the new process takes. Every request gets its 200, none is reset, and
/// curl opened a new connection once per upgrade (or more, never fewer).
#[test]
fn tls_connections_drain_cleanly_through_two_upgrades() {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let dir = temp_dir("upgrade-tls");
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "upgrade test ca");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let w = |n: &str, t: &str| {
        let p = dir.join(n);
        std::fs::write(&p, t).unwrap();
        p.to_str().unwrap().to_string()
    };
    let (ca_path, cert_path, key_path) = (
        w("ca.pem", &ca.pem()),
        w("s.pem", &cert.pem()),
        w("s.key", &key.serialize_pem()),
    );
    let app = text_upstream("app");
    let listener = closed_port();
    let pid_file = dir.join("mosn.pid");
    let mut cfg = http_proxy("Http1", listener, app, "3s");
    cfg["pid"] = json!(pid_file.to_str().unwrap());
    cfg["servers"][0]["listeners"][0]["filter_chains"][0]["tls_context"] =
        json!({"status": true, "cert_chain": cert_path, "private_key": key_path});
    let file = write_config(&dir, &cfg);
    let mut a = spawn_upgradable(&file);
    // One line per request: the status (000 when it failed) and whether it opened a connection.
    let mut curl = std::process::Command::new("curl")
        .args(["-s", "--http1.1", "--cacert", &ca_path, "--resolve"])
        .arg(format!("localhost:{}:127.0.0.1", listener.port()))
        .args(["-o", "/dev/null", "-w", "%{http_code} %{num_connects}\\n"])
        .arg(format!(
            "https://localhost:{}/r[1-1000000]",
            listener.port()
        ))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("curl (scripts/install-test-deps.sh installs it)");
    let out = curl.stdout.take().unwrap();
    let lines = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let l2 = lines.clone();
    let reader = std::thread::spawn(move || {
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            l2.lock().unwrap().push(l);
        }
    });
    let count = || lines.lock().unwrap().len();
    let grows = |what: &str| {
        let from = count();
        within(Duration::from_secs(30), what, || count() > from + 200);
    };
    let (_b, c) = upgrade_twice(&mut a, &file, &pid_file, &grows);
    let _ = curl.kill();
    let _ = curl.wait();
    reader.join().unwrap();
    drop(c);
    let lines = lines.lock().unwrap();
    // The last line may be the request curl was killed in.
    let done = &lines[..lines.len().saturating_sub(1)];
    let failed: Vec<_> = done.iter().filter(|l| !l.starts_with("200 ")).collect();
    let connects = done.iter().filter(|l| l.ends_with(" 1")).count();
    assert!(
        failed.is_empty(),
        "{} of {} HTTPS requests failed: {:?}",
        failed.len(),
        done.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(connects >= 3, "curl opened {connects} connections");
    eprintln!(
        "HTTPS keep-alive through two upgrades: {} requests, 0 failed, on {connects} connections",
        done.len()
    );
}

/// OpenKruise's exact sequence: the new container's process starts on the shared `uds_dir`
/// while the old one serves; once the new one is ready, Kruise stops the old container
/// (SIGTERM) while it still drains. The old process exits without touching the new one's pid
/// file or `reconfig.sock` (MOSN's old process removed both), no request of the load fails, and
/// the next upgrade (the next SidecarSet rollout) finds the new process.
#[test]
fn openkruise_sigterm_of_the_old_container_mid_drain_leaves_the_new_one_whole() {
    let dir = temp_dir("upgrade-kruise");
    let app = text_upstream("app");
    let listener = closed_port();
    let socks = dir.join("shared");
    let pid_file = dir.join("mosn.pid");
    let mut cfg = http_proxy("Http1", listener, app, "10s");
    cfg["pid"] = json!(pid_file.to_str().unwrap());
    cfg["uds_dir"] = json!(socks.to_str().unwrap());
    let file = write_config(&dir, &cfg);
    let mut old = spawn_upgradable(&file);
    let load = Load::start(listener, 4);
    let grows = grows_by(|| load.ok(), 500, Duration::from_secs(20));
    grows("the old process serves");
    let new = spawn(&file);
    new.log_line(&["hot upgrade: this process serves"]);
    old.log_line(&["hot upgrade: draining"]);
    // Kruise resets the old container once the pod is ready: SIGTERM mid-drain.
    old.signal("-TERM");
    assert_eq!(
        wait_timeout(&mut old.child, Duration::from_secs(15)),
        Some(0)
    );
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        new.child.id().to_string(),
        "the pid file is the new process's"
    );
    within(
        Duration::from_secs(5),
        "the new process's reconfig.sock",
        || socks.join("reconfig.sock").exists(),
    );
    grows("the new process serves");
    // The next rollout finds the running process.
    let mut new = new;
    let next = spawn(&file);
    next.log_line(&["hot upgrade: this process serves"]);
    assert_eq!(
        wait_timeout(&mut new.child, Duration::from_secs(15)),
        Some(0)
    );
    grows("the next process serves");
    drop(grows);
    let (ok, failed) = load.finish();
    none_failed("requests", ok, &failed);
    drop(next);
}

/// `inherit_old_mosnconfig`: the new process runs the old one's effective `servers` (sent on
/// `mosnconfig.sock`), not its own file's, which changed meanwhile.
#[test]
fn inherit_old_mosnconfig_takes_the_running_config() {
    let dir = temp_dir("upgrade-inherit");
    let listener = closed_port();
    let cfg = |body: &str| {
        json!({
            "inherit_old_mosnconfig": true,
            "servers": [{"default_log_path": "stderr", "graceful_timeout": "2s",
                "routers": [{"router_config_name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"],
                    "routers": [{"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": body}}]}]}],
                "listeners": [{"name": "l", "address": listener.to_string(), "filter_chains": [{"filters": [
                    {"type": "proxy", "config": {"downstream_protocol": "Http1", "router_config_name": "r"}}]}]}]}]
        })
    };
    let file = dir.join("mosn.json");
    std::fs::write(&file, cfg("running config").to_string()).unwrap();
    let mut a = spawn_upgradable(&file);
    std::fs::write(&file, cfg("file on disk").to_string()).unwrap();
    let b = spawn(&file);
    b.log_line(&["inherit_old_mosnconfig"]);
    b.log_line(&["hot upgrade: this process serves"]);
    assert_eq!(wait_timeout(&mut a.child, Duration::from_secs(10)), Some(0));
    assert_eq!(http(listener, "GET", "/", &[], "").body, "running config");
}

/// A new process that dies after taking the sockets and before saying it is ready: the old
/// process reports the failed upgrade, goes on serving without failing a request of the load,
/// listens on `reconfig.sock` again, and a later upgrade by a real process succeeds.
///
/// The dying process is played by the test (a stand-in, not a real `mosn`): it follows MOSN's
/// protocol up to the sockets and closes, which is what the old process sees of a new process
/// killed at that point; a real process cannot be killed at that exact point without a race.
#[test]
fn a_new_process_dying_before_it_is_ready_leaves_the_old_one_serving() {
    use std::os::unix::net::{UnixListener, UnixStream};
    let dir = temp_dir("upgrade-dies");
    let app = text_upstream("app");
    let listener = closed_port();
    let socks = dir.join("socks");
    let mut cfg = http_proxy("Http1", listener, app, "2s");
    cfg["uds_dir"] = json!(socks.to_str().unwrap());
    let file = write_config(&dir, &cfg);
    let mut a = spawn_upgradable(&file);
    let load = Load::start(listener, 4);
    std::thread::sleep(Duration::from_millis(300));

    // The stand-in: listen.sock first, then ask on reconfig.sock (MOSN answers one 0x00 byte).
    let listen = UnixListener::bind(socks.join("listen.sock")).unwrap();
    let mut ask = UnixStream::connect(socks.join("reconfig.sock")).unwrap();
    let mut b = [9u8; 1];
    ask.read_exact(&mut b).unwrap();
    assert_eq!(b, [0], "reconfig.sock answers 0x00");
    listen.set_nonblocking(true).unwrap();
    let mut from_old = None;
    within(
        Duration::from_secs(15),
        "the old process dials listen.sock",
        || {
            from_old = listen.accept().ok().map(|(s, _)| s);
            from_old.is_some()
        },
    );
    let mut from_old = from_old.unwrap();
    from_old.set_nonblocking(false).unwrap();
    from_old
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // The sockets come with one data byte; reading it without SCM_RIGHTS space drops them.
    from_old.read_exact(&mut b).unwrap();
    drop(from_old);
    drop(listen);
    std::fs::remove_file(socks.join("listen.sock")).unwrap();
    a.log_line(&["hot upgrade failed; this process goes on serving"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        a.child.try_wait().unwrap().is_none(),
        "the old process goes on"
    );

    // A real upgrade afterwards works: the old process listens on reconfig.sock again.
    // (Probing it by connecting would itself ask for an upgrade.)
    within(Duration::from_secs(5), "reconfig.sock again", || {
        socks.join("reconfig.sock").exists()
    });
    let new = spawn(&file);
    new.log_line(&["hot upgrade: this process serves"]);
    assert_eq!(wait_timeout(&mut a.child, Duration::from_secs(10)), Some(0));
    std::thread::sleep(Duration::from_millis(300));
    let (ok, failed) = load.finish();
    none_failed("requests", ok, &failed);
    assert!(ok > 500, "only {ok} requests");
}
