//! Helpers of the xDS tests: the ADS server (`tests/peers/ads_server.py`), its state and request
//! log, the Istio test data, Istio's bootstrap pointed at a test server, and a keep-alive load.

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{peer_on_port, repo, Killed};

pub fn istio(file: &str) -> Value {
    let p = repo().join("tests/data/istio").join(file);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

pub fn xds_python() -> PathBuf {
    let p = repo().join("target/peers/venv-xds/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/install-test-deps.sh",
        p.display()
    );
    p
}

/// Writes the control plane's state atomically (the server reloads on rename).
pub fn publish(dir: &Path, s: &Value) {
    let tmp = dir.join("state.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(s).unwrap()).unwrap();
    std::fs::rename(&tmp, dir.join("state.json")).unwrap();
}

pub fn ads_server(dir: &Path, unix: Option<&Path>, port: Option<u16>) -> (Killed, u16) {
    let mut cmd = Command::new(xds_python());
    cmd.arg(repo().join("crates/mosn/tests/peers/ads_server.py"))
        .arg(dir.join("state.json"))
        .arg(dir.join("requests.jsonl"));
    if let Some(u) = unix {
        cmd.env("ADS_UNIX", u);
    }
    if let Some(p) = port {
        cmd.env("ADS_PORT", p.to_string());
    }
    let (k, a) = peer_on_port(cmd);
    (k, a.port())
}

/// The ADS server's request log.
pub fn requests(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("requests.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Istio's bootstrap (pilot-agent's golden output), pointed at the test's ADS server.
pub fn bootstrap(api: &str, server: Value) -> Value {
    let mut b = istio("bootstrap_default_golden.json");
    b["dynamic_resources"]["ads_config"]["api_type"] = json!(api);
    b["admin"]["address"]["socket_address"]["port_value"] = json!(0);
    for c in b["static_resources"]["clusters"].as_array_mut().unwrap() {
        if c["name"] == "xds-grpc" {
            c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"] =
                server.clone();
        }
    }
    b
}

/// A TCP echo upstream.
pub fn echo_upstream() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    a
}

/// One keep-alive HTTP/1.1 connection; reconnects after a response that said `close`.
pub struct KeepAlive {
    addr: SocketAddr,
    pub conn: Option<std::io::BufReader<TcpStream>>,
}

impl KeepAlive {
    pub fn new(addr: SocketAddr) -> Self {
        KeepAlive { addr, conn: None }
    }

    /// `(status, body)`, or an error for a request that failed (no complete response).
    pub fn get(&mut self, path: &str, headers: &str) -> Result<(u16, String), String> {
        if self.conn.is_none() {
            let s = TcpStream::connect(self.addr).map_err(|e| format!("connect: {e}"))?;
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            self.conn = Some(std::io::BufReader::new(s));
        }
        let c = self.conn.as_mut().unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nhost: productpage:9080\r\n{headers}\r\n");
        c.get_mut()
            .write_all(req.as_bytes())
            .map_err(|e| format!("write: {e}"))?;
        let mut head = String::new();
        loop {
            let mut line = String::new();
            let n = c.read_line(&mut line).map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                self.conn = None;
                return Err("closed before the response".into());
            }
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let lower = head.to_ascii_lowercase();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or("bad status line")?;
        let len: usize = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| format!("no content-length in {head:?}"))?;
        let mut body = vec![0u8; len];
        c.read_exact(&mut body).map_err(|e| format!("body: {e}"))?;
        if lower.contains("connection: close") {
            self.conn = None;
        }
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

/// Keep-alive clients requesting `/productpage` and `/reviews` until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<std::sync::Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    pub fn start(addr: SocketAddr, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(std::sync::Mutex::new(Vec::new()));
        let threads = (0..clients)
            .map(|i| {
                let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
                std::thread::spawn(move || {
                    let mut c = KeepAlive::new(addr);
                    let paths = ["/productpage", "/reviews"];
                    let mut n = i;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let path = paths[n % 2];
                        match c.get(path, "") {
                            Ok((200, _)) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok((s, b)) => failed.lock().unwrap().push(format!("{path}: {s} {b}")),
                            Err(e) => {
                                c.conn = None;
                                failed.lock().unwrap().push(format!("{path}: {e}"))
                            }
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            threads,
        }
    }

    /// Requests answered so far.
    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    pub fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.lock().unwrap().clone(),
        )
    }
}

/// Polls `f` for up to `limit`; returns how long it took (panics past the limit).
pub fn within(limit: Duration, what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    start.elapsed()
}

pub fn bodies(addr: SocketAddr, path: &str, headers: &str, n: usize) -> Vec<String> {
    let mut c = KeepAlive::new(addr);
    (0..n)
        .map(|_| c.get(path, headers).map(|r| r.1).unwrap_or_default())
        .collect()
}

pub const LDS: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
pub const RDS: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
pub const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub const EDS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
pub const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

pub const PRODUCTPAGE: &str = "outbound|9080||productpage.default.svc.cluster.local";
pub const REVIEWS_V1: &str = "outbound|9080|v1|reviews.default.svc.cluster.local";
pub const REVIEWS_V2: &str = "outbound|9080|v2|reviews.default.svc.cluster.local";
pub const DETAILS: &str = "outbound|9080||details.default.svc.cluster.local";
pub const KUBERNETES: &str = "outbound|443||kubernetes.default.svc.cluster.local";

/// An Istio listener from the sidecar dump, unchanged.
pub fn listener_as_is(name: &str) -> Value {
    let dump = istio("authz_listeners_configdump.json");
    dump["configs"][0]["dynamic_listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not in the dump"))["active_state"]["listener"]
        .clone()
}

/// An Istio listener from the sidecar dump, bound on a test port.
pub fn listener(name: &str) -> Value {
    let mut l = listener_as_is(name);
    l["address"] = json!({"socket_address": {"address": "127.0.0.1", "port_value": 0}});
    l["bind_to_port"] = json!(true);
    l
}

/// Istio's outbound cluster (auto-mTLS transport socket matches, LEAST_REQUEST, circuit
/// breakers, metadata) renamed.
pub fn cluster(name: &str) -> Value {
    let d = istio("describe_http_config.json");
    let mut c = d["configs"][1]["dynamic_active_clusters"][0]["cluster"].clone();
    c["name"] = json!(name);
    c["eds_cluster_config"]["service_name"] = json!(name);
    c
}

/// A ClusterLoadAssignment from the sidecar dump (`from`), renamed, with its endpoints' addresses
/// replaced by `hosts` (its first endpoint repeated as needed) and no `tlsMode` metadata.
pub fn assignment(from: &str, name: &str, hosts: &[SocketAddr]) -> Value {
    let d = istio("endpoint_configdump.json");
    let mut a = d["configs"][0]["dynamic_endpoint_configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["endpoint_config"]["cluster_name"] == from)
        .unwrap_or_else(|| panic!("{from} is not in the dump"))["endpoint_config"]
        .clone();
    a["cluster_name"] = json!(name);
    let template = a["endpoints"][0]["lb_endpoints"][0].clone();
    let eps: Vec<Value> = hosts
        .iter()
        .map(|h| {
            let mut e = template.clone();
            e["endpoint"]["address"] =
                json!({"socket_address": {"address": h.ip().to_string(), "port_value": h.port()}});
            if let Some(fm) = e["metadata"]["filter_metadata"].as_object_mut() {
                fm.remove("envoy.transport_socket_match");
            }
            e
        })
        .collect();
    a["endpoints"] =
        json!([{"locality": a["endpoints"][0]["locality"].clone(), "lb_endpoints": eps}]);
    a
}

/// The test's upstreams.
pub struct World {
    pub productpage: Vec<SocketAddr>,
    pub reviews_v1: SocketAddr,
    pub reviews_v2: SocketAddr,
    pub details: SocketAddr,
    pub kubernetes: SocketAddr,
}

impl World {
    /// Text upstreams answering their names (two productpage hosts), and a TCP echo upstream.
    pub fn start() -> World {
        World {
            productpage: vec![
                super::text_upstream("productpage-1"),
                super::text_upstream("productpage-2"),
            ],
            reviews_v1: super::text_upstream("reviews-v1"),
            reviews_v2: super::text_upstream("reviews-v2"),
            details: super::text_upstream("details"),
            kubernetes: echo_upstream(),
        }
    }
}

impl Plan {
    /// The first state: everything to reviews v1, both productpage hosts, the TCP listener, no
    /// `/details`, no error.
    pub fn first() -> Plan {
        Plan {
            version: 1,
            weights: (100, 0),
            productpage: 2,
            details: false,
            tcp_listener: true,
            bad_regex: false,
        }
    }
}

/// What the control plane serves, in steps.
#[derive(Clone)]
pub struct Plan {
    pub version: u32,
    /// Weights of reviews v1 and v2.
    pub weights: (u32, u32),
    /// How many productpage endpoints are served.
    pub productpage: usize,
    /// The `/details` route and its cluster.
    pub details: bool,
    /// The TCP listener `10.96.0.1_443`.
    pub tcp_listener: bool,
    /// A route with a regex that does not compile.
    pub bad_regex: bool,
}

pub fn route_config(w: &Plan) -> Value {
    let d = istio("describe_http_config.json");
    let mut rc = d["configs"][0]["dynamic_route_configs"][0]["route_config"].clone();
    // The sidecar's listener asks for RDS "9080".
    rc["name"] = json!("9080");
    let vh = &mut rc["virtual_hosts"][0];
    let routes = vh["routes"].as_array_mut().unwrap();
    let mut extra = vec![
        json!({"match": {"prefix": "/reviews", "headers": [{"name": "end-user", "string_match": {"exact": "jason"}}]},
               "route": {"cluster": REVIEWS_V2, "timeout": "0s"}}),
        json!({"match": {"prefix": "/reviews"},
               "route": {"weighted_clusters": {"clusters": [
                   {"name": REVIEWS_V1, "weight": w.weights.0}, {"name": REVIEWS_V2, "weight": w.weights.1}]},
                   "timeout": "0s",
                   "retry_policy": {"retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
                                    "num_retries": 2, "retriable_status_codes": [503]}}}),
    ];
    if w.details {
        extra.push(json!({"match": {"path_separated_prefix": "/details"}, "route": {"cluster": DETAILS, "timeout": "0s"}}));
    }
    if w.bad_regex {
        extra.push(
            json!({"match": {"safe_regex": {"regex": "/broken(["}}, "route": {"cluster": DETAILS}}),
        );
    }
    for (i, r) in extra.into_iter().enumerate() {
        routes.insert(i, r);
    }
    rc
}

pub fn state(world: &World, w: &Plan) -> Value {
    let mut listeners = vec![listener("0.0.0.0_9080")];
    if w.tcp_listener {
        listeners.push(listener("10.96.0.1_443"));
    }
    let mut clusters = vec![
        cluster(PRODUCTPAGE),
        cluster(REVIEWS_V1),
        cluster(REVIEWS_V2),
        cluster(KUBERNETES),
        json!({"name": "PassthroughCluster", "type": "ORIGINAL_DST", "lb_policy": "CLUSTER_PROVIDED", "connect_timeout": "10s"}),
    ];
    let mut endpoints = vec![
        assignment(
            PRODUCTPAGE,
            PRODUCTPAGE,
            &world.productpage[..w.productpage],
        ),
        assignment(
            "outbound|9080||reviews.default.svc.cluster.local",
            REVIEWS_V1,
            &[world.reviews_v1],
        ),
        assignment(
            "outbound|9080||reviews.default.svc.cluster.local",
            REVIEWS_V2,
            &[world.reviews_v2],
        ),
        assignment(KUBERNETES, KUBERNETES, &[world.kubernetes]),
    ];
    if w.details {
        clusters.push(cluster(DETAILS));
        endpoints.push(assignment(DETAILS, DETAILS, &[world.details]));
    }
    json!({"version": format!("v{}", w.version), "resources": {
        LDS: listeners, RDS: [route_config(w)], CDS: clusters, EDS: endpoints}})
}

/// Removes the HTTP and network filters of Istio's AuthorizationPolicy (`rbac`, `ext_authz`),
/// which mosn-rs does not have yet and would NACK.
pub fn without_authz(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for key in ["filters", "http_filters"] {
                if let Some(Value::Array(fs)) = m.get_mut(key) {
                    fs.retain(|f| {
                        !f["name"].as_str().is_some_and(|n| {
                            n.ends_with(".rbac") || n == "envoy.filters.http.ext_authz"
                        })
                    });
                }
            }
            m.values_mut().for_each(without_authz);
        }
        Value::Array(a) => a.iter_mut().for_each(without_authz),
        _ => {}
    }
}
