//! Transparent proxying in a network namespace this test creates: iptables REDIRECTs the client's
//! connections to port 15001, and mosn hands each to the listener of its original destination, or
//! serves it itself through an ORIGINAL_DST cluster.
//!
//! Needs CAP_NET_ADMIN (CI runs as root) for `ip netns` and iptables; without it the test says so
//! and skips. All traffic stays inside the namespace (10.9.9.9 and 10.9.9.10 live on its
//! loopback interface).

mod common;

use common::netns::{capture_namespace, curl_in};
use common::*;
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A process killed on drop, with the config file it reads (kept until then).
struct Killed(Child, #[allow(dead_code)] Option<TempFile>);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_in(ns: &str, cfg: &serde_json::Value, name: &str) -> Killed {
    let p = write_temp(name, &cfg.to_string());
    Killed(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                env!("CARGO_BIN_EXE_mosn"),
                "start",
                "-c",
            ])
            .arg(&p)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        Some(p),
    )
}

fn http_listener(name: &str, addr: &str, router: &str, bind: bool) -> serde_json::Value {
    json!({"name": name, "address": addr, "bind_port": bind, "filter_chains": [{"filters": [
        {"type": "proxy", "config": {"downstream_protocol": "Http1", "router_config_name": router}}]}]})
}

fn direct(name: &str, body: &str) -> serde_json::Value {
    json!({"router_config_name": name, "virtual_hosts": [{"name": name, "domains": ["*"], "routers": [
        {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": body}}]}]})
}

#[test]
fn iptables_redirect_reaches_the_listener_of_the_original_destination() {
    let Some(netns) = capture_namespace("od", 15001) else {
        return;
    };
    let ns = netns.0.clone();

    // The sidecar: 15001 takes every redirected connection; a virtual listener owns port 80.
    let sidecar = json!({
        "servers": [{"default_log_path": "stderr",
            "routers": [direct("virtual80", "virtual listener 80\n")],
            "listeners": [
                {"name": "outbound", "address": "0.0.0.0:15001", "bind_port": true, "use_original_dst": "redirect",
                 "listener_filters": [{"type": "original_dst", "config": {"type": "redirect"}}],
                 "filter_chains": [{"filters": [{"type": "tcp_proxy", "config": {"cluster": "passthrough"}}]}]},
                http_listener("virtual80", "0.0.0.0:80", "virtual80", false)]}],
        "cluster_manager": {"clusters": [{"name": "passthrough", "type": "ORIGINAL_DST", "lb_type": "LB_ORIGINAL_DST"}]}
    });
    // A real service on 10.9.9.9:8080, with no listener of its own in the sidecar.
    let service = json!({
        "servers": [{"default_log_path": "stderr", "routers": [direct("svc", "real service 8080\n")],
            "listeners": [http_listener("svc", "10.9.9.9:8080", "svc", true)]}]
    });
    let _s = start_in(&ns, &service, "od-service.json");
    let _p = start_in(&ns, &sidecar, "od-sidecar.json");
    let until = Instant::now() + Duration::from_secs(10);
    while curl_in(&ns, "http://10.9.9.9:80/").0 != 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        curl_in(&ns, "http://10.9.9.9:80/"),
        (0, "virtual listener 80\n".into()),
        "handed to the bind_port:false listener"
    );
    assert_eq!(
        curl_in(&ns, "http://10.9.9.9:8080/"),
        (0, "real service 8080\n".into()),
        "served through the ORIGINAL_DST cluster"
    );
    // Proof that the proxy intercepts: nothing listens on 9999, yet the connection is accepted
    // (by 15001) and then closed once the original destination refuses. curl reports an empty
    // reply (52) or, as the request it sent was never read, a reset (56); without interception it
    // would be a refusal (7).
    let code = curl_in(&ns, "http://10.9.9.9:9999/").0;
    assert!(code == 52 || code == 56, "curl exit {code}");
}
