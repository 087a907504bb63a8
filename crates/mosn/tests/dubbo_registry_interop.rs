//! Dubbo and MOSN's `dubbo_registry` with real peers: a real ZooKeeper (Debian `zookeeper`,
//! started by the test on a port from the OS), Dubbo providers and consumers from npm
//! `dubbo-remoting` 2.1.4 under `sofa-rpc-node` 2.10.0, and PyPI `dubbo-ssl-python` 0.9.6 as a
//! second consumer; all installed by scripts/install-test-deps.sh. The mesh is MOSN's
//! direct-client/direct-server example: the consumer calls the egress listener (router `dubbo`,
//! fed by the registry), which calls the ingress listener this proxy published, which calls the
//! local provider.
//!
//! Shown:
//! - `/pub` and `/sub` with MOSN's bodies and answers, and the nodes in ZooKeeper with MOSN's names;
//! - sequential and concurrent calls, from Node and Python, answered by the provider;
//! - a second provider registered directly in ZooKeeper takes traffic within 1 s; when its
//!   ephemeral node goes away it stops taking traffic within 1 s, and no call fails;
//! - ZooKeeper killed under load: no call fails, the outage shows in the admin API; ZooKeeper
//!   restarted: the session is back, the nodes are there again, and providers added then are used;
//! - SIGTERM: the nodes are gone from ZooKeeper while the proxy drains;
//! - routing by Dubbo version and method to three real providers.
//!
//! The peer script is crates/mosn/tests/peers/dubbo_peer.js.

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use zookeeper_client as zk;

const SERVICE: &str = "com.nodejs.test.TestService";

fn node() -> Command {
    let modules = repo().join("target/peers/dubbo/node_modules");
    assert!(
        modules.join("dubbo-remoting").exists(),
        "{} is missing: run scripts/install-test-deps.sh",
        modules.display()
    );
    let mut c = Command::new("node");
    c.env("NODE_PATH", modules)
        .arg(repo().join("crates/mosn/tests/peers/dubbo_peer.js"));
    c
}

/// A Dubbo provider (Node) named `name` at `version`.
fn provider(name: &str, version: &str) -> (Killed, SocketAddr) {
    let mut cmd = node();
    cmd.args(["server", name, version, "0"]);
    peer_on_port(cmd)
}

/// Runs a client mode of the peer script (60 s at most); its stdout.
fn client(args: &[&str]) -> String {
    let out = node()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node");
    let out = out.wait_with_output().expect("node output");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "dubbo client {args:?} failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// One call from the Python consumer (dubbo-ssl-python, direct host mode); its printed result.
fn python_call(target: SocketAddr, version: &str, method: &str, args: &str) -> String {
    let script = format!(
        "from dubbo_ssl.client import DubboClient\n\
         c = DubboClient('{SERVICE}', group=None, version='{version}', host='{target}')\n\
         print(c.call('{method}', {args}, timeout=3))\n"
    );
    let out = Command::new(venv_python())
        .args(["-c", &script])
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "python client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn free_port() -> u16 {
    closed_port().port()
}

/// A ZooKeeper server (the Debian package's jars) on a port of its own, with its data in a
/// temporary folder; it can be killed and started again on the same port and data.
struct ZooKeeper {
    port: u16,
    dir: TestDir,
    proc: Option<Killed>,
}

impl ZooKeeper {
    fn start() -> ZooKeeper {
        let jar = Path::new("/usr/share/java/zookeeper.jar");
        assert!(
            jar.exists(),
            "{} is missing: run scripts/install-test-deps.sh (Debian zookeeper)",
            jar.display()
        );
        let mut z = ZooKeeper {
            port: free_port(),
            dir: temp_dir("zookeeper"),
            proc: None,
        };
        z.up();
        z
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn up(&mut self) {
        let child = Command::new("java")
            .args([
                "-cp",
                "/etc/zookeeper/conf:/usr/share/java/*",
                "-Dzookeeper.admin.enableServer=false",
                "org.apache.zookeeper.server.ZooKeeperServerMain",
                &self.port.to_string(),
            ])
            .arg(&*self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("java");
        self.proc = Some(Killed(child));
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            if zk_session(&self.addr()).is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("ZooKeeper did not start on {}", self.addr());
    }

    fn kill(&mut self) {
        self.proc = None;
    }
}

/// A ZooKeeper client of the test's own, on a runtime of its own.
struct Zk {
    rt: tokio::runtime::Runtime,
    client: zk::Client,
}

fn zk_session(addr: &str) -> Option<Zk> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .ok()?;
    let client = rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(2),
            zk::Client::connector()
                .with_session_timeout(Duration::from_secs(6))
                .with_fail_eagerly()
                .connect(addr),
        )
        .await
        .ok()?
        .ok()
    })?;
    Some(Zk { rt, client })
}

impl Zk {
    fn children(&self, path: &str) -> Vec<String> {
        let mut c = self
            .rt
            .block_on(self.client.list_children(path))
            .unwrap_or_default();
        c.sort();
        c
    }

    /// Registers a provider directly, as a Dubbo provider registers itself: an ephemeral node.
    fn add_provider(&self, addr: SocketAddr) -> String {
        let url = format!(
            "dubbo://{addr}/{SERVICE}?anyhost=true&interface={SERVICE}&methods=echo,plus,who&side=provider"
        );
        let path = format!("/dubbo/{SERVICE}/providers/{}", mosn_discovery_escape(&url));
        let opts = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
        self.rt
            .block_on(self.client.create(&path, &[], &opts))
            .expect("create provider node");
        path
    }

    fn delete(&self, path: &str) {
        self.rt
            .block_on(self.client.delete(path, None))
            .expect("delete node");
    }
}

/// Go's `url.QueryEscape`, written again here so the test checks the proxy's names against an
/// independent spelling.
fn mosn_discovery_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// MOSN's direct-client/direct-server mesh: `serverListener` (Dubbo, every service to the local
/// provider `app`) and `clientListener` (router `dubbo`), the registry publishing the ingress.
fn mesh_config(app: SocketAddr) -> Value {
    json!({
        "servers": [{"default_log_path": "stderr", "graceful_timeout": "5s",
            "routers": [{"router_config_name": "server_router", "virtual_hosts": [{"name": "s", "domains": ["*"],
                "routers": [{"match": {"headers": [{"name": "service", "value": ".*"}]}, "route": {"cluster_name": "app"}}]}]}],
            "listeners": [
                {"name": "serverListener", "address": "127.0.0.1:0", "bind_port": true,
                 "filter_chains": [{"filters": [{"type": "proxy", "config": {"downstream_protocol": "X",
                    "upstream_protocol": "X", "router_config_name": "server_router",
                    "extend_config": {"sub_protocol": "dubbo"}}}]}]},
                {"name": "clientListener", "address": "127.0.0.1:0", "bind_port": true,
                 "filter_chains": [{"filters": [{"type": "proxy", "config": {"downstream_protocol": "dubbo",
                    "router_config_name": "dubbo"}}]}]}]}],
        "cluster_manager": {"clusters": [{"name": "app", "type": "SIMPLE", "hosts": [{"address": app.to_string()}]}]},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "extends": [{"type": "dubbo_registry", "config": {"enable": true, "server_listener": "serverListener",
            "api_port": 0, "publish_ip": "127.0.0.1", "log_path": "/tmp"}}]
    })
}

fn api(api: SocketAddr, op: &str, interface: &str) -> String {
    let body = json!({"registry": {"type": "zookeeper", "addr": ZK_ADDR.with(|a| a.borrow().clone())},
        "service": {"interface": interface, "methods": ["echo", "plus", "who"], "group": ""}});
    curl(&[
        "-XPOST",
        "-H",
        "Content-Type: application/json",
        &format!("http://{api}/{op}"),
        "-d",
        &body.to_string(),
    ])
}

thread_local! {
    static ZK_ADDR: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// The answers of a `stream` consumer as they arrive: `(arrival, Ok(provider) | Err(message))`.
struct Stream {
    _child: Killed,
    lines: mpsc::Receiver<(Instant, Result<String, String>)>,
    seen: Vec<(Instant, Result<String, String>)>,
}

impl Stream {
    fn start(target: SocketAddr) -> Stream {
        let mut child: Child = node()
            .args(["stream", &target.to_string(), "1.0.0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node");
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let mut parts = l.splitn(3, ' ');
                let (_, kind, rest) = (parts.next(), parts.next(), parts.next().unwrap_or(""));
                let r = match kind {
                    Some("ok") => Ok(rest.to_string()),
                    _ => Err(rest.to_string()),
                };
                if tx.send((Instant::now(), r)).is_err() {
                    return;
                }
            }
        });
        Stream {
            _child: Killed(child),
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// Collects answers for `d`.
    fn run(&mut self, d: Duration) {
        let until = Instant::now() + d;
        while let Ok(x) = self
            .lines
            .recv_timeout(until.saturating_duration_since(Instant::now()))
        {
            self.seen.push(x);
        }
    }

    fn since(&self, t: Instant) -> impl Iterator<Item = &(Instant, Result<String, String>)> {
        self.seen.iter().filter(move |(at, _)| *at >= t)
    }

    fn failures(&self) -> Vec<String> {
        self.seen
            .iter()
            .filter_map(|(_, r)| r.clone().err())
            .collect()
    }
}

fn extends(admin: SocketAddr) -> Value {
    let body = curl(&[&format!("http://{admin}/api/v1/extends")]);
    serde_json::from_str(&body).expect("JSON")
}

#[test]
fn registry_publishes_subscribes_and_follows_providers_live() {
    let mut zoo = ZooKeeper::start();
    ZK_ADDR.with(|a| *a.borrow_mut() = zoo.addr());
    let (_a, app) = provider("A", "1.0.0");
    let dir = temp_dir("dubbo-registry");
    let cfg_path = dir.join("mosn.json");
    std::fs::write(&cfg_path, mesh_config(app).to_string()).unwrap();
    let mosn = spawn(&cfg_path);
    let ingress = mosn.listener("serverListener");
    let egress = mosn.listener("clientListener");
    let admin = mosn.log_addr(&["admin listening"]);
    let api_port = mosn.log_addr(&["dubbo_registry listening"]).port();
    let api_addr = SocketAddr::from(([127, 0, 0, 1], api_port));
    let pid = mosn.child.id();

    // MOSN's API and answers.
    assert_eq!(
        api(api_addr, "pub", SERVICE),
        r#"{"err_msg":"publish success","err_no":0}"#
    );
    assert_eq!(
        api(api_addr, "sub", SERVICE),
        r#"{"err_msg":"subscribe success","err_no":0}"#
    );
    let again = api(api_addr, "sub", SERVICE);
    assert!(
        again.contains(r#""err_no":1"#) && again.contains("already registered"),
        "{again}"
    );
    let unknown = api(api_addr, "unpub", "com.nodejs.test.Nobody");
    assert!(unknown.contains("has not registered"), "{unknown}");
    let form = curl(&["-XPOST", &format!("http://{api_addr}/sub"), "-d", "x=1"]);
    assert!(form.contains(r#""err_no":1"#), "{form}");

    // The nodes, with MOSN's names.
    let z = zk_session(&zoo.addr()).expect("test session");
    let provider_node = mosn_discovery_escape(&format!(
        "dubbo://127.0.0.1:{}/{SERVICE}?anyhost=true&interface={SERVICE}&ip=127.0.0.1&methods={}&pid={pid}&registry.role=3",
        ingress.port(),
        mosn_discovery_escape("echo,plus,who")
    ));
    let consumer_node = mosn_discovery_escape(&format!(
        "consumer://127.0.0.1/{SERVICE}?group=&ip=127.0.0.1&pid={pid}&protocol=dubbo&registry.role=0"
    ));
    let providers = format!("/dubbo/{SERVICE}/providers");
    let consumers = format!("/dubbo/{SERVICE}/consumers");
    assert_eq!(z.children(&providers), vec![provider_node.clone()]);
    assert_eq!(z.children(&consumers), vec![consumer_node.clone()]);

    // Calls through the mesh: Node sequential and concurrent, Python.
    assert!(
        eventually(Duration::from_secs(5), || {
            extends(admin)["dubbo_registry"]["subscriptions"][0]["providers"]
                == json!([ingress.to_string()])
        }),
        "{}",
        extends(admin)
    );
    let seq = client(&["seq", &egress.to_string(), "1.0.0", "200"]);
    assert_eq!(seq.trim(), "OK 200 A:last");
    assert_eq!(
        client(&["many", &egress.to_string(), "1.0.0", "300"]).trim(),
        "OK 300"
    );
    assert_eq!(python_call(egress, "1.0.0", "plus", "[1, 2]"), "3");
    assert_eq!(python_call(egress, "1.0.0", "echo", "['py']"), "A:py");

    // A second provider registered directly in ZooKeeper takes traffic within 1 s.
    let (_b, b_addr) = provider("B", "1.0.0");
    let mut s = Stream::start(egress);
    // The stream is up once it answers steadily (Node takes a while to start on a loaded machine).
    let until = Instant::now() + Duration::from_secs(20);
    while s.since(Instant::now() - Duration::from_millis(500)).count() <= 10 {
        assert!(Instant::now() < until, "the stream runs");
        s.run(Duration::from_millis(200));
    }
    let added = Instant::now();
    let b_node = z.add_provider(b_addr);
    s.run(Duration::from_millis(1500));
    let first_b = s
        .since(added)
        .find(|(_, r)| r.as_deref() == Ok("B"))
        .map(|(t, _)| *t - added)
        .expect("provider B took traffic");
    assert!(
        first_b <= Duration::from_secs(1),
        "B took traffic after {first_b:?}"
    );
    // Its node goes away: no traffic to B after 1 s, and no failed call.
    let removed = Instant::now();
    z.delete(&b_node);
    s.run(Duration::from_millis(1500));
    let after: Vec<_> = s.since(removed + Duration::from_secs(1)).collect();
    assert!(after.len() > 10, "the stream ran on");
    assert!(
        after.iter().all(|(_, r)| r.as_deref() == Ok("A")),
        "B still took traffic 1 s after its node went away"
    );
    assert_eq!(s.failures(), Vec::<String>::new());

    // ZooKeeper killed under load: nothing fails; the outage is visible.
    zoo.kill();
    let down = Instant::now();
    s.run(Duration::from_secs(3));
    assert!(
        s.since(down).count() > 50,
        "calls went on without ZooKeeper"
    );
    assert_eq!(s.failures(), Vec::<String>::new());
    let st = extends(admin);
    assert_eq!(
        st["dubbo_registry"]["registries"][0]["connected"],
        json!(false),
        "{st}"
    );
    assert!(st["dubbo_registry"]["registries"][0]["disconnects"].as_u64() >= Some(1));
    let stats = curl(&[&format!("http://{admin}/api/v1/stats")]);
    assert!(
        stats.contains("dubbo_registry"),
        "the metric set is exported: {stats}"
    );

    // ZooKeeper back: the session and the nodes are back, and new providers are seen.
    zoo.up();
    assert!(
        eventually(Duration::from_secs(20), || extends(admin)["dubbo_registry"]
            ["registries"][0]["connected"]
            == json!(true)),
        "the registry reconnected: {}",
        extends(admin)
    );
    let z = zk_session(&zoo.addr()).expect("test session after restart");
    assert!(
        eventually(Duration::from_secs(10), || z.children(&providers)
            == vec![provider_node.clone()]
            && z.children(&consumers) == vec![consumer_node.clone()]),
        "nodes after the restart: {:?} {:?}",
        z.children(&providers),
        z.children(&consumers)
    );
    let back = Instant::now();
    z.add_provider(b_addr);
    s.run(Duration::from_millis(2000));
    assert!(
        s.since(back).any(|(_, r)| r.as_deref() == Ok("B")),
        "a provider added after the restart takes traffic"
    );
    assert_eq!(s.failures(), Vec::<String>::new());
    let total = s.seen.len();
    assert!(total > 200, "{total} calls in the stream");

    // SIGTERM: the nodes go before the drain ends.
    mosn.signal("-TERM");
    let term = Instant::now();
    assert!(
        eventually(Duration::from_secs(3), || !z
            .children(&providers)
            .contains(&provider_node)
            && z.children(&consumers).is_empty()),
        "nodes still there {:?} after SIGTERM",
        term.elapsed()
    );
    drop(s);
}

/// Routing by Dubbo version and method (not in MOSN, whose Dubbo routing is by service only):
/// version 2.0.0 to C, method `who` to A, everything else to B, with real consumers.
#[test]
fn routes_by_version_and_method_reach_the_right_real_provider() {
    let (_a, a) = provider("A", "1.0.0");
    let (_b, b) = provider("B", "1.0.0");
    let (_c, c) = provider("C", "2.0.0");
    let hdr = |n: &str, v: &str| json!({"name": n, "value": v});
    let cfg = json!({
        "servers": [{"default_log_path": "stderr",
            "routers": [{"router_config_name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"], "routers": [
                {"match": {"headers": [hdr("service", SERVICE), hdr("version", "2.0.0")]}, "route": {"cluster_name": "c"}},
                {"match": {"headers": [hdr("service", SERVICE), hdr("method", "who")]}, "route": {"cluster_name": "a"}},
                {"match": {"headers": [hdr("service", ".*")]}, "route": {"cluster_name": "b"}}]}]}],
            "listeners": [{"name": "dubbo", "address": "127.0.0.1:0", "bind_port": true,
                "filter_chains": [{"filters": [{"type": "proxy", "config": {"downstream_protocol": "dubbo",
                    "router_config_name": "r"}}]}]}]}],
        "cluster_manager": {"clusters": [
            {"name": "a", "type": "SIMPLE", "hosts": [{"address": a.to_string()}]},
            {"name": "b", "type": "SIMPLE", "hosts": [{"address": b.to_string()}]},
            {"name": "c", "type": "SIMPLE", "hosts": [{"address": c.to_string()}]}]}
    });
    let dir = temp_dir("dubbo-routing");
    let path: PathBuf = dir.join("mosn.json");
    std::fs::write(&path, cfg.to_string()).unwrap();
    let mosn = spawn(&path);
    let l = mosn.listener("dubbo").to_string();
    let call = |version: &str, method: &str| -> Value {
        serde_json::from_str(client(&["call", &l, version, method, "x"]).trim()).unwrap()
    };
    assert_eq!(call("2.0.0", "echo"), json!({"result": "C:x"}));
    assert_eq!(call("1.0.0", "who"), json!({"result": "A"}));
    assert_eq!(call("1.0.0", "echo"), json!({"result": "B:x"}));
    let addr: SocketAddr = l.parse().unwrap();
    assert_eq!(python_call(addr, "2.0.0", "echo", "['py']"), "C:py");
    assert_eq!(python_call(addr, "1.0.0", "who", "[]"), "A");
}

/// A hot upgrade with the registry: the new process takes the API socket (same port) and makes
/// the old process's registrations again in its own ZooKeeper sessions (its nodes carry its
/// pid); the old process stops answering the API at the handover and its nodes go with its
/// sessions when it exits, so ZooKeeper always lists this proxy as a provider. With
/// `inherit_old_mosnconfig` (as the OpenKruise setup has it) the new process starts with the
/// routes and providers the registry had learned, so calls through the mesh go on before, during
/// and after the upgrade, and none fails.
#[test]
fn a_hot_upgrade_keeps_the_registry_and_its_nodes() {
    let zoo = ZooKeeper::start();
    ZK_ADDR.with(|a| *a.borrow_mut() = zoo.addr());
    let (_a, app) = provider("A", "1.0.0");
    let dir = temp_dir("dubbo-registry-upgrade");
    let (ingress, egress, api_addr) = (closed_port(), closed_port(), closed_port());
    let mut cfg = mesh_config(app);
    cfg["servers"][0]["listeners"][0]["address"] = json!(ingress.to_string());
    cfg["servers"][0]["listeners"][1]["address"] = json!(egress.to_string());
    cfg["extends"][0]["config"]["api_port"] = json!(api_addr.port());
    cfg["admin"] = Value::Null;
    cfg["inherit_old_mosnconfig"] = json!(true);
    let cfg_path = dir.join("mosn.json");
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let mut old = spawn(&cfg_path);
    old.log_line(&["hot upgrade: listening"]);
    assert!(api(api_addr, "pub", SERVICE).contains(r#""err_no":0"#));
    assert!(api(api_addr, "sub", SERVICE).contains(r#""err_no":0"#));
    let z = zk_session(&zoo.addr()).expect("test session");
    let providers = format!("/dubbo/{SERVICE}/providers");
    let pid_of = |nodes: &[String], pid: u32| {
        nodes
            .iter()
            .filter(|n| n.contains(&mosn_discovery_escape(&format!("&pid={pid}&"))))
            .count()
    };
    assert_eq!(pid_of(&z.children(&providers), old.child.id()), 1);
    assert!(
        eventually(Duration::from_secs(10), || node()
            .args(["seq", &egress.to_string(), "1.0.0", "1"])
            .output()
            .is_ok_and(|o| o.status.success())),
        "the subscription's provider is routed"
    );
    let mut s = Stream::start(egress);
    let answers_grow = |s: &mut Stream, what: &str| {
        let (from, until) = (s.seen.len(), Instant::now() + Duration::from_secs(20));
        while s.seen.len() <= from + 10 {
            assert!(Instant::now() < until, "{what}");
            s.run(Duration::from_millis(200));
        }
    };
    answers_grow(&mut s, "calls go through the mesh");

    let new = spawn(&cfg_path);
    new.log_line(&["hot upgrade: this process serves"]);
    new.log_line(&["dubbo_registry: registered again after a hot upgrade"]);
    assert_eq!(
        wait_timeout(&mut old.child, Duration::from_secs(20)),
        Some(0)
    );
    // The old process's nodes go with its sessions; the new one's stay.
    let (mut nodes, until) = (Vec::new(), Instant::now() + Duration::from_secs(20));
    while Instant::now() < until {
        nodes = z.children(&providers);
        if pid_of(&nodes, old.child.id()) == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(pid_of(&nodes, old.child.id()), 0, "{nodes:?}");
    assert_eq!(pid_of(&nodes, new.child.id()), 1, "{nodes:?}");
    let consumers = z.children(&format!("/dubbo/{SERVICE}/consumers"));
    assert_eq!(pid_of(&consumers, new.child.id()), 1, "{consumers:?}");
    // The API on the same port is the new process's: the registration is there already.
    let again = api(api_addr, "pub", SERVICE);
    assert!(again.contains("already registered"), "{again}");
    answers_grow(&mut s, "calls go on after the upgrade");
    let after = s.seen.len();
    assert!(s.failures().is_empty(), "{:?}", s.failures());
    eprintln!("registry through a hot upgrade: {after} calls, 0 failed; nodes now {nodes:?}");
}
