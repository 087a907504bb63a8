//! Config reload without a restart: `mosn reload -c FILE` validates the file and has the running
//! mosn (found by its `pid` file) apply it (SIGUSR2). A good file changes the routes of the
//! running process, `config_dump` shows it; a bad file is refused by `mosn reload` with its JSON
//! path and, signalled directly, changes nothing; a file that moves a listener binds the new
//! address and drains the old one.
//! With `--watch`, saving the file is enough.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

fn config(pid: &str, cluster: &str, a: &str, b: &str, port: u16) -> Value {
    json!({
        "pid": pid,
        "servers": [{"default_log_path": "stderr",
            "routers": [{"router_config_name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"],
                "routers": [{"match": {"prefix": "/"}, "route": {"cluster_name": cluster}}]}]}],
            "listeners": [{"name": "l", "address": format!("127.0.0.1:{port}"), "bind_port": true,
                "filter_chains": [{"filters": [{"type": "proxy", "config": {
                    "downstream_protocol": "Http1", "router_config_name": "r"}}]}]}]}],
        "cluster_manager": {"clusters": [
            {"name": "a", "type": "SIMPLE", "hosts": [{"address": a}]},
            {"name": "b", "type": "SIMPLE", "hosts": [{"address": b}]}]},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}}
    })
}

fn reload_cmd(file: &std::path::Path) -> (bool, String) {
    let out = mosn().args(["reload", "-c"]).arg(file).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout),
    )
}

/// Two upstreams answering `from a` and `from b`, a folder with the config file and pid file
/// paths, and a free port for the listener.
struct Setup {
    a: String,
    b: String,
    dir: TestDir,
    file: std::path::PathBuf,
    pid: String,
    port: u16,
}

fn setup(name: &str) -> Setup {
    let dir = temp_dir(name);
    Setup {
        a: text_upstream("from a").to_string(),
        b: text_upstream("from b").to_string(),
        file: dir.join("mosn.json"),
        pid: dir.join("mosn.pid").to_string_lossy().into_owned(),
        port: closed_port().port(),
        dir,
    }
}

#[test]
fn reload_applies_a_good_file_and_refuses_a_bad_one() {
    let Setup {
        a,
        b,
        dir: _dir,
        file,
        pid,
        port,
    } = setup("reload");
    let write =
        |v: &Value| std::fs::write(&file, serde_json::to_string_pretty(v).unwrap()).unwrap();
    write(&config(&pid, "a", &a, &b, port));
    let m = spawn_with(&file, &[]);
    let l = m.listener("l");
    let admin = m.log_addr(&["admin listening"]);
    assert!(eventually(Duration::from_secs(5), || std::path::Path::new(
        &pid
    )
    .exists()));
    assert_eq!(curl(&[&format!("http://{l}/")]), "from a");

    // A good file: the routes change in the running process.
    write(&config(&pid, "b", &a, &b, port));
    let (ok, out) = reload_cmd(&file);
    assert!(ok, "{out}");
    assert!(
        eventually(Duration::from_secs(5), || curl(&[&format!("http://{l}/")])
            == "from b"),
        "the reload took effect"
    );
    m.log_line(&["config reloaded"]);
    let dump = curl(&[&format!("http://{admin}/api/v1/config_dump?allrouters")]);
    assert!(
        dump.contains(r#""cluster_name":"b""#) || dump.contains(r#""cluster_name": "b""#),
        "{dump}"
    );

    // A bad file: `mosn reload` refuses it with the JSON path, before signalling.
    let mut bad = config(&pid, "b", &a, &b, port);
    bad["cluster_manager"]["clusters"][0]["lb_type"] = json!("LB_NOPE");
    write(&bad);
    let (ok, out) = reload_cmd(&file);
    assert!(!ok);
    assert!(out.contains("cluster_manager.clusters[0].lb_type"), "{out}");
    // Signalled anyway (a file edited after the check): the process logs it and keeps serving.
    m.signal("-USR2");
    m.log_line(&["config error", "lb_type"]);
    assert_eq!(curl(&[&format!("http://{l}/")]), "from b");

    // A file that moves the listener: the new address is bound and serves, the old one stops
    // accepting (its open connections drain).
    let moved = closed_port();
    write(&config(&pid, "a", &a, &b, moved.port()));
    let (ok, out) = reload_cmd(&file);
    assert!(ok, "{out}");
    assert!(
        eventually(Duration::from_secs(5), || curl(&[&format!(
            "http://{moved}/"
        )]) == "from a"),
        "the moved listener serves"
    );
    assert!(
        eventually(Duration::from_secs(5), || std::net::TcpStream::connect(l)
            .is_err()),
        "the old address stops accepting"
    );
}

#[test]
fn watch_reloads_the_file_when_it_changes() {
    let Setup {
        a,
        b,
        dir: _dir,
        file,
        pid,
        port,
    } = setup("watch");
    let write =
        |v: &Value| std::fs::write(&file, serde_json::to_string_pretty(v).unwrap()).unwrap();
    write(&config(&pid, "a", &a, &b, port));
    let m = spawn_with(&file, &["--watch"]);
    let l = m.listener("l");
    assert_eq!(curl(&[&format!("http://{l}/")]), "from a");
    // A half-written file: logged, nothing changes.
    std::fs::write(&file, "{\"servers\": [").unwrap();
    m.log_line(&["config error"]);
    assert_eq!(curl(&[&format!("http://{l}/")]), "from a");
    write(&config(&pid, "b", &a, &b, port));
    assert!(
        eventually(Duration::from_secs(5), || curl(&[&format!("http://{l}/")])
            == "from b"),
        "the saved file took effect"
    );
}
