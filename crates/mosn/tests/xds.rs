//! xDS from a real ADS server (PyPI xds-protos + grpcio, `tests/peers/ads_server.py`) serving
//! Istio-generated resources (`tests/data/istio`), over delta (on a unix socket, as istio-agent
//! serves it) and state of the world (on TCP), to mosn-rs started on Istio's own bootstrap.
//!
//! Rewrites of the Istio data, all here: listener addresses become `127.0.0.1:0` with
//! `bind_to_port: true` (no iptables redirection in this test), endpoint addresses become test
//! upstreams, and endpoints lose their `tlsMode: istio` metadata (the upstreams are plain HTTP
//! servers, not sidecars), so Istio's `tlsMode-disabled` transport socket applies to them.
//!
//! Shown: requests reach the upstreams the routes name; scripted updates (a weight change, a
//! removed endpoint, a new route and cluster, a removed listener) take effect within 1 s under a
//! keep-alive load that sees no failed request; a resource with an error is NACKed with a message
//! naming it while the previous config keeps serving; a control plane that restarts mid-load
//! fails no request.

mod common;
use common::xds::*;
use common::*;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{json, Value};

fn scenario(api: &str) {
    let dir = temp_dir(&format!("xds-{}", api.to_ascii_lowercase()));
    let world = World::start();
    let mut plan = Plan::first();
    publish(&dir, &state(&world, &plan));
    // Delta on a unix socket (istio-agent's `XDS` pipe); state of the world on TCP.
    let unix = dir.join("XDS");
    let delta = api == "DELTA_GRPC";
    let (mut ads, port) = ads_server(&dir, delta.then_some(unix.as_path()), None);
    let server = if delta {
        json!({"pipe": {"path": unix.to_str().unwrap()}})
    } else {
        json!({"socket_address": {"address": "127.0.0.1", "port_value": port}})
    };
    let cfg = dir.join("bootstrap.json");
    std::fs::write(
        &cfg,
        serde_json::to_vec_pretty(&bootstrap(api, server)).unwrap(),
    )
    .unwrap();
    let m = spawn(&cfg);
    let admin = m.log_addr(&["admin listening"]);
    let http = m.log_addr(&["listener added", "listener=0.0.0.0_9080 "]);
    let tcp = m.log_addr(&["listener added", "listener=10.96.0.1_443 "]);

    // The routes' upstreams answer: an exact path, a prefix, a header match (string_match) and
    // weighted clusters; TCP through tcp_proxy.
    within(Duration::from_secs(5), "first routes", || {
        bodies(http, "/productpage", "", 1)[0].starts_with("productpage-")
    });
    let pp = bodies(http, "/productpage", "", 20);
    assert!(
        pp.iter().any(|b| b == "productpage-1") && pp.iter().any(|b| b == "productpage-2"),
        "{pp:?}"
    );
    assert!(bodies(http, "/static/x.css", "", 3)
        .iter()
        .all(|b| b.starts_with("productpage-")));
    assert!(bodies(http, "/reviews/1", "", 10)
        .iter()
        .all(|b| b == "reviews-v1"));
    assert!(bodies(http, "/reviews/1", "end-user: jason\r\n", 5)
        .iter()
        .all(|b| b == "reviews-v2"));
    assert_eq!(KeepAlive::new(http).get("/nope", "").unwrap().0, 404);
    let mut t = TcpStream::connect(tcp).unwrap();
    t.write_all(b"ping").unwrap();
    let mut got = [0u8; 4];
    t.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping");
    drop(t);

    // The node goes on the stream's first request only (Istio's bootstrap says so).
    let reqs = requests(&dir);
    assert_eq!(reqs[0]["node"], json!(true), "{:?}", reqs[0]);
    assert!(reqs[1..].iter().all(|r| r["node"] == json!(false)));
    assert!(
        reqs.iter().all(|r| r["error"].is_null()),
        "no NACK yet: {reqs:?}"
    );

    let load = Load::start(http, 4);
    std::thread::sleep(Duration::from_millis(200));
    let mut took = Vec::new();

    // A weight change: reviews v1 → v2.
    plan.version += 1;
    plan.weights = (0, 100);
    publish(&dir, &state(&world, &plan));
    took.push(within(Duration::from_secs(1), "weight change", || {
        bodies(http, "/reviews", "", 4)
            .iter()
            .all(|b| b == "reviews-v2")
    }));

    // A removed endpoint: productpage-2 goes.
    plan.version += 1;
    plan.productpage = 1;
    publish(&dir, &state(&world, &plan));
    took.push(within(Duration::from_secs(1), "removed endpoint", || {
        bodies(http, "/productpage", "", 6)
            .iter()
            .all(|b| b == "productpage-1")
    }));

    // A new route and cluster (path_separated_prefix).
    plan.version += 1;
    plan.details = true;
    publish(&dir, &state(&world, &plan));
    took.push(within(Duration::from_secs(1), "new route", || {
        bodies(http, "/details/7", "", 1)[0] == "details"
    }));
    assert_ne!(bodies(http, "/detailsx", "", 1)[0], "details");

    // A removed listener stops accepting.
    plan.version += 1;
    plan.tcp_listener = false;
    publish(&dir, &state(&world, &plan));
    took.push(within(Duration::from_secs(1), "removed listener", || {
        TcpStream::connect(tcp).is_err()
    }));

    // A bad resource: NACKed with its name and the field; the previous config keeps serving.
    plan.version += 1;
    plan.bad_regex = true;
    publish(&dir, &state(&world, &plan));
    let nack = || {
        requests(&dir)
            .into_iter()
            .find_map(|r| r["error"].as_str().map(str::to_string))
    };
    within(Duration::from_secs(2), "NACK", || nack().is_some());
    let msg = nack().unwrap();
    assert!(msg.contains("\"9080\"") && msg.contains("regex"), "{msg}");
    assert_eq!(bodies(http, "/details/1", "", 1)[0], "details");
    let status = curl(&[&format!("http://{admin}/api/v1/extends")]);
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["xds"]["connected"], json!(true), "{status}");
    assert_eq!(status["xds"]["types"]["rds"]["nacks"], json!(1), "{status}");
    // The config dump shows what xDS applied; the stats carry the client's counters.
    let dump = curl(&[&format!("http://{admin}/api/v1/config_dump")]);
    assert!(
        dump.contains("0.0.0.0_9080") && dump.contains(DETAILS),
        "{dump}"
    );
    let stats = curl(&[&format!("http://{admin}/api/v1/stats")]);
    assert!(stats.contains("xds"), "{stats}");
    plan.bad_regex = false;
    plan.version += 1;
    publish(&dir, &state(&world, &plan));

    // The control plane restarts mid-load: nothing fails meanwhile.
    let before = requests(&dir).len();
    drop(ads);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        bodies(http, "/details/1", "", 1)[0],
        "details",
        "served while disconnected"
    );
    (ads, _) = ads_server(
        &dir,
        delta.then_some(unix.as_path()),
        (!delta).then_some(port),
    );
    within(Duration::from_secs(10), "reconnect", || {
        requests(&dir)[before..]
            .iter()
            .any(|r| r["node"] == json!(true))
    });
    std::thread::sleep(Duration::from_millis(500));
    let (ok, failed) = load.finish();
    drop(ads);
    assert!(
        failed.is_empty(),
        "{} failed of {}: {:?}",
        failed.len(),
        ok + failed.len() as u64,
        &failed[..failed.len().min(10)]
    );
    assert!(ok > 1000, "only {ok} requests");
    eprintln!("{api}: {ok} requests under load, 0 failed; updates took {took:?}");
}

#[test]
fn delta_ads_drives_listeners_routes_clusters_and_endpoints() {
    scenario("DELTA_GRPC");
}

#[test]
fn state_of_the_world_ads_drives_listeners_routes_clusters_and_endpoints() {
    scenario("GRPC");
}

/// pilot-agent's generated bootstraps are accepted (with warnings for what mosn-rs leaves out).
#[test]
fn istio_bootstraps_are_accepted() {
    for f in ["default", "authsds", "runningsds"] {
        let p = repo().join(format!("tests/data/istio/bootstrap_{f}_golden.json"));
        let out = mosn().args(["check", "-c"]).arg(&p).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{f}: {err}");
        assert!(err.contains("static_resources.listeners[0]"), "{f}: {err}");
    }
    // An unsupported part is named by its JSON path.
    let mut b = istio("bootstrap_default_golden.json");
    b["dynamic_resources"]["ads_config"]["api_type"] = json!("REST");
    let f = write_temp("bad-bootstrap.json", &b.to_string());
    let out = mosn().args(["check", "-c"]).arg(&*f).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("dynamic_resources.ads_config.api_type"),
        "{err}"
    );
}

/// Hostile or malformed ADS responses: a resource of the wrong type, bytes that are no protobuf,
/// a listener with an address that is no IP, a huge cluster (50 000 endpoints). Each bad one is
/// NACKed by name, the huge one is taken, and the proxy keeps serving throughout.
#[test]
fn malformed_and_hostile_ads_responses_are_nacked_and_never_crash() {
    let dir = temp_dir("xds-hostile");
    let world = World::start();
    let plan = Plan {
        productpage: 1,
        tcp_listener: false,
        ..Plan::first()
    };
    publish(&dir, &state(&world, &plan));
    let (_ads, port) = ads_server(&dir, None, None);
    let cfg = dir.join("bootstrap.json");
    let addr = json!({"socket_address": {"address": "127.0.0.1", "port_value": port}});
    std::fs::write(&cfg, bootstrap("GRPC", addr).to_string()).unwrap();
    let mut m = spawn(&cfg);
    let admin = m.log_addr(&["admin listening"]);
    let http = m.log_addr(&["listener added", "listener=0.0.0.0_9080 "]);
    within(Duration::from_secs(5), "first routes", || {
        bodies(http, "/productpage", "", 1)[0] == "productpage-1"
    });

    let mut s = state(
        &world,
        &Plan {
            version: 2,
            ..plan.clone()
        },
    );
    let raw = |name: &str, type_url: &str, bytes: &[u8]| {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        json!({"@raw": {"name": name, "type_url": type_url, "hex": hex}})
    };
    let lds = s["resources"][LDS].as_array_mut().unwrap();
    // A Cluster where a Listener belongs (field 1, the name, reads "wrong-type").
    lds.push(raw("wrong-type", CDS, b"\x0a\x0awrong-type"));
    // A listener on an address that is no IP.
    lds.push(json!({"name": "bad-address", "address": {"socket_address": {"address": "not-an-ip", "port_value": 1}},
        "filter_chains": [{"filters": []}]}));
    // Bytes that are no protobuf, as a route config.
    s["resources"][RDS]
        .as_array_mut()
        .unwrap()
        .push(raw("garbage", RDS, &[0xff; 64]));
    // A huge cluster: 50 000 endpoints.
    let eps: Vec<Value> = (0..50_000u32)
        .map(|i| {
            json!({"endpoint": {"address": {"socket_address": {
            "address": format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255), "port_value": 80}}}})
        })
        .collect();
    s["resources"][CDS].as_array_mut().unwrap().push(json!({"name": "huge", "type": "STATIC",
        "connect_timeout": "1s", "load_assignment": {"cluster_name": "huge", "endpoints": [{"lb_endpoints": eps}]}}));
    publish(&dir, &s);
    let nacks = || -> Vec<String> {
        requests(&dir)
            .into_iter()
            .filter_map(|r| r["error"].as_str().map(str::to_string))
            .collect()
    };
    within(Duration::from_secs(20), "NACKs for LDS", || {
        nacks().iter().any(|n| n.contains("wrong-type"))
    });
    let all = nacks().join("\n");
    assert!(
        all.contains("wrong-type") && all.contains("has type"),
        "{all}"
    );
    assert!(
        all.contains("bad-address") && all.contains("not-an-ip"),
        "{all}"
    );
    // The proxy is alive and serves as before; the huge cluster was taken.
    assert!(m.child.try_wait().unwrap().is_none(), "mosn-rs exited");
    assert_eq!(bodies(http, "/productpage", "", 1)[0], "productpage-1");
    within(Duration::from_secs(20), "the huge cluster", || {
        let v: Value =
            serde_json::from_str(&curl(&[&format!("http://{admin}/api/v1/extends")])).unwrap();
        v["xds"]["types"]["cds"]["resources"].as_u64() == Some(6)
    });
}

/// `examples/xds` as its README runs it (its fixed ports: 18000, 2055, 2056, 34911).
#[test]
fn the_xds_example_serves() {
    let dir = temp_dir("xds-example");
    std::fs::copy(
        repo().join("examples/xds/resources.json"),
        dir.join("state.json"),
    )
    .unwrap();
    let (_ads, _) = ads_server(&dir, None, Some(18000));
    let m = spawn(&repo().join("examples/xds/bootstrap.json"));
    m.log_line(&["listener added", "listener=front "]);
    let front: std::net::SocketAddr = "127.0.0.1:2055".parse().unwrap();
    within(Duration::from_secs(10), "the example's answer", || {
        try_http(front, "GET", "/", &[], "").is_some_and(|r| r.body == "Hello from xDS!\n")
    });
    let v: Value = serde_json::from_str(&curl(&["http://127.0.0.1:34911/api/v1/extends"])).unwrap();
    assert_eq!(v["xds"]["connected"], json!(true), "{v}");
    assert_eq!(v["xds"]["types"]["eds"]["resources"], json!(1), "{v}");
}

/// MOSN's mixed mode: `servers` (a listener of the file) and `dynamic_resources` in one file;
/// both the file's listener and the control plane's serve.
#[test]
fn mixed_mode_serves_the_file_and_the_control_plane() {
    let dir = temp_dir("xds-mixed");
    std::fs::copy(
        repo().join("examples/xds/resources.json"),
        dir.join("state.json"),
    )
    .unwrap();
    let mut state: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("state.json")).unwrap()).unwrap();
    // The example's fixed ports, made free ones.
    let (front, back) = (closed_port(), closed_port());
    let lds = state["resources"][LDS].as_array_mut().unwrap();
    lds[0]["address"]["socket_address"]["port_value"] = json!(front.port());
    lds[1]["address"]["socket_address"]["port_value"] = json!(back.port());
    state["resources"][EDS][0]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
        ["socket_address"]["port_value"] = json!(back.port());
    publish(&dir, &state);
    let (_ads, port) = ads_server(&dir, None, None);
    let addr = json!({"socket_address": {"address": "127.0.0.1", "port_value": port}});
    let mut cfg = bootstrap("GRPC", addr);
    cfg["servers"] = json!([{"default_log_path": "stderr",
        "routers": [{"router_config_name": "file", "virtual_hosts": [{"name": "v", "domains": ["*"],
            "routers": [{"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": "from the file"}}]}]}],
        "listeners": [{"name": "file", "address": "127.0.0.1:0", "filter_chains": [{"filters": [
            {"type": "proxy", "config": {"downstream_protocol": "Http1", "router_config_name": "file"}}]}]}]}]);
    let file = dir.join("mixed.json");
    std::fs::write(&file, cfg.to_string()).unwrap();
    let m = spawn(&file);
    let from_file = m.listener("file");
    assert_eq!(http(from_file, "GET", "/", &[], "").body, "from the file");
    within(
        Duration::from_secs(10),
        "the control plane's listener",
        || try_http(front, "GET", "/", &[], "").is_some_and(|r| r.body == "Hello from xDS!\n"),
    );
}
