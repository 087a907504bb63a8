//! `ip_access`: MOSN 0.26's IP access control list. Rules are tried in order; the first whose
//! addresses contain the client IP decides (`allow` or `deny`); otherwise `default_action`. The IP
//! is the connection's peer, or the first address in the request header `header` when set (for
//! a proxy behind a load balancer: `x-forwarded-for`). A denied request gets 403 with flag `RBAC`.
//!
//! Config: `{"default_action": "allow"|"deny", "header": "x-real-ip", "ips": [{"action":
//! "deny", "addrs": ["10.0.0.0/8", "192.168.1.1"]}]}`.

use std::net::IpAddr;
use std::sync::Arc;

use mosn_api::{
    Decision, FilterConfigError, FilterCx, Headers, LocalReply, Phase, ResponseFlag, StreamFilter,
};
use mosn_config::Cidr;

use crate::conf::{Obj, Result};

struct Rule {
    allow: bool,
    addrs: Vec<Cidr>,
}

/// The built filter.
pub struct IpAccess {
    default_allow: bool,
    header: Option<String>,
    rules: Vec<Rule>,
}

fn action(o: &Obj<'_>, key: &str) -> Result<Option<bool>> {
    match o.str(key)? {
        None => Ok(None),
        Some(a) if a.eq_ignore_ascii_case("allow") => Ok(Some(true)),
        Some(a) if a.eq_ignore_ascii_case("deny") => Ok(Some(false)),
        Some(a) => Err(FilterConfigError::new(
            o.key_path(key),
            format!("{a:?} is not \"allow\" or \"deny\""),
        )),
    }
}

fn cidr(s: &str, path: &str) -> Result<Cidr> {
    let (ip, len) = match s.split_once('/') {
        Some((ip, len)) => (ip, Some(len)),
        None => (s, None),
    };
    let ip: IpAddr = ip
        .trim()
        .parse()
        .map_err(|_| FilterConfigError::new(path, format!("{s:?} is not an IP address or CIDR")))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let length = match len {
        None => max,
        Some(l) => l
            .trim()
            .parse::<u8>()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(|| FilterConfigError::new(path, format!("{s:?}: bad prefix length")))?,
    };
    Ok(Cidr {
        address: ip,
        length,
    })
}

/// Builds the filter (see the module doc for the config).
pub fn build(config: &serde_json::Value, path: &str) -> Result<Arc<dyn StreamFilter>> {
    let o = Obj::new(config, path)?;
    let mut rules = Vec::new();
    for (p, v) in o.array("ips")? {
        let r = Obj::new(v, &p)?;
        let allow = action(&r, "action")?
            .ok_or_else(|| FilterConfigError::new(r.key_path("action"), "is required"))?;
        let mut addrs = Vec::new();
        for (ap, a) in r.array("addrs")? {
            let s = a
                .as_str()
                .ok_or_else(|| FilterConfigError::new(&ap, "expected a string"))?;
            addrs.push(cidr(s, &ap)?);
        }
        rules.push(Rule { allow, addrs });
    }
    Ok(Arc::new(IpAccess {
        default_allow: action(&o, "default_action")?.unwrap_or(true),
        header: o.str("header")?.map(|h| h.to_ascii_lowercase()),
        rules,
    }))
}

impl IpAccess {
    fn allows(&self, ip: Option<IpAddr>) -> bool {
        let Some(ip) = ip else {
            return self.default_allow;
        };
        self.rules
            .iter()
            .find(|r| r.addrs.iter().any(|c| c.contains(ip)))
            .map_or(self.default_allow, |r| r.allow)
    }
}

impl StreamFilter for IpAccess {
    fn name(&self) -> &'static str {
        "ip_access"
    }

    fn before_route_only(&self) -> bool {
        true
    }

    fn on_request(&self, phase: Phase, head: &mut dyn Headers, cx: &mut FilterCx<'_>) -> Decision {
        if phase != Phase::BeforeRoute {
            return Decision::Continue;
        }
        let ip = match &self.header {
            Some(h) => head
                .get_str(h)
                .and_then(|v| v.split(',').next())
                .and_then(|v| v.trim().parse().ok()),
            None if cx.peer.port() == 0 && cx.peer.ip().is_unspecified() => None,
            None => Some(cx.peer.ip()),
        };
        if self.allows(ip) {
            Decision::Continue
        } else {
            let mut r = LocalReply::new(403, "");
            r.flag = Some(ResponseFlag::AccessDenied);
            Decision::Reply(r)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mosn_api::{HeaderVec, Protocol, StreamInfo};

    fn decide(f: &Arc<dyn StreamFilter>, peer: &str, head: &mut HeaderVec) -> u16 {
        let mut info = StreamInfo::new(Protocol::Http1, std::time::Instant::now());
        let mut cx = FilterCx {
            peer: format!("{peer}:1000").parse().unwrap(),
            info: &mut info,
            cluster: None,
            host: None,
            content_length: None,
        };
        match f.on_request(Phase::BeforeRoute, head, &mut cx) {
            Decision::Reply(r) => r.status,
            _ => 200,
        }
    }

    #[test]
    fn first_matching_rule_decides_else_default() {
        let f = build(
            &serde_json::json!({"default_action": "deny", "ips": [
                {"action": "deny", "addrs": ["10.1.0.0/16"]},
                {"action": "allow", "addrs": ["10.0.0.0/8", "127.0.0.1"]}]}),
            "c",
        )
        .unwrap();
        let mut h = HeaderVec::default();
        assert_eq!(decide(&f, "10.1.2.3", &mut h), 403);
        assert_eq!(decide(&f, "10.2.2.3", &mut h), 200);
        assert_eq!(decide(&f, "127.0.0.1", &mut h), 200);
        assert_eq!(decide(&f, "192.168.0.1", &mut h), 403);
    }

    #[test]
    fn the_ip_can_come_from_a_header() {
        let f = build(
            &serde_json::json!({"header": "X-Real-IP", "ips": [{"action": "deny", "addrs": ["1.2.3.4"]}]}),
            "c",
        )
        .unwrap();
        let mut h = HeaderVec(vec![("x-real-ip".into(), b"1.2.3.4".to_vec())]);
        assert_eq!(decide(&f, "127.0.0.1", &mut h), 403);
        let mut h = HeaderVec(vec![("x-real-ip".into(), b"5.6.7.8, 1.2.3.4".to_vec())]);
        assert_eq!(decide(&f, "127.0.0.1", &mut h), 200);
    }

    #[test]
    fn bad_configs_name_their_path() {
        let e = build(
            &serde_json::json!({"ips": [{"action": "deny", "addrs": ["10.0.0.0/40"]}]}),
            "c",
        )
        .err()
        .unwrap();
        assert_eq!(e.path, "c.ips[0].addrs[0]");
        let e = build(&serde_json::json!({"default_action": "maybe"}), "c")
            .err()
            .unwrap();
        assert_eq!(e.path, "c.default_action");
    }
}
