//! A network namespace for tests that need iptables (transparent proxying): made by the test,
//! removed on drop. Needs CAP_NET_ADMIN (CI runs as root).

use std::process::Command;

/// A network namespace, deleted on drop.
pub struct Netns(pub String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

pub fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("ip (iproute2) is installed by scripts/install-test-deps.sh");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// curl inside the namespace from 10.9.9.10: (exit code, body).
pub fn curl_in(ns: &str, url: &str) -> (i32, String) {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "curl",
            "-sS",
            "--max-time",
            "5",
            "--interface",
            "10.9.9.10",
            url,
        ])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// A namespace whose loopback holds 10.9.9.9 and 10.9.9.10, where iptables REDIRECTs every TCP
/// connection from 10.9.9.10 to port `to` (15001: a sidecar's outbound capture; 15006: inbound).
/// `None`, with the reason printed, when namespaces cannot be made here (no CAP_NET_ADMIN).
pub fn capture_namespace(tag: &str, to: u16) -> Option<Netns> {
    let ns = format!("mosn-{tag}-{}", std::process::id());
    match Command::new("ip").args(["netns", "add", &ns]).output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            eprintln!(
                "SKIPPED: cannot create a network namespace (needs CAP_NET_ADMIN, e.g. root): {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            return None;
        }
        Err(e) => panic!("the ip command is missing ({e}): run scripts/install-test-deps.sh"),
    }
    let netns = Netns(ns.clone());
    // The namespace's own loopback holds the two test-host addresses (no dummy or veth module is
    // needed).
    ip(&["-n", &ns, "link", "set", "lo", "up"]);
    ip(&["-n", &ns, "addr", "add", "10.9.9.9/32", "dev", "lo"]);
    ip(&["-n", &ns, "addr", "add", "10.9.9.10/32", "dev", "lo"]);
    let ipt = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns,
            "iptables",
            "-t",
            "nat",
            "-A",
            "OUTPUT",
            "-p",
            "tcp",
            "-s",
            "10.9.9.10",
            "-j",
            "REDIRECT",
            "--to-ports",
            &to.to_string(),
        ])
        .output()
        .expect("iptables is installed by scripts/install-test-deps.sh");
    assert!(
        ipt.status.success(),
        "iptables: {}",
        String::from_utf8_lossy(&ipt.stderr)
    );
    Some(netns)
}
