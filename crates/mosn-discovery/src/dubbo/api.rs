//! MOSN's `dubbo_registry` HTTP API: POST `/sub`, `/unsub`, `/pub`, `/unpub` with MOSN's JSON
//! bodies, always answered 200 with `{"err_no": 0|1, "err_msg": "..."}` and MOSN's texts.
//!
//! Binding as MOSN's (chi + `binding.Default`): the `Content-Type` must be exactly
//! `application/json`, unknown fields are ignored, `registry.type` must be `zookeeper`,
//! `registry.addr` one `host:port`, `service.interface` non-empty, `service.methods` present.
//! Another method gets 405 and another path 404, as chi answers them.
//!
//! Source: MOSN `pkg/upstream/servicediscovery/dubbod/{bootstrap,structs,sub,pub}.go`.

use serde_json::{json, Value};

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `/sub`: register a consumer and watch the interface's providers.
    Sub,
    /// `/unsub`: remove the consumer and stop watching.
    Unsub,
    /// `/pub`: register this proxy as a provider of the interface.
    Pub,
    /// `/unpub`: remove the provider.
    Unpub,
}

impl Op {
    /// The `err_msg` on success.
    pub fn success(self) -> &'static str {
        match self {
            Op::Sub => "subscribe success",
            Op::Unsub => "unsubscribe success",
            Op::Pub => "publish success",
            Op::Unpub => "unpub success",
        }
    }

    /// The `err_msg` for a failure `e` of the operation itself.
    pub fn failure(self, e: &str) -> String {
        match self {
            Op::Sub => format!("subscribe fail, err: {e}"),
            Op::Unsub => format!("unsubscribe fail, err: {e}"),
            Op::Pub => format!("publish fail, err: {e}"),
            Op::Unpub => format!("unpub fail, err: {e}"),
        }
    }

    /// The `err_msg` for a request that does not bind: `/sub` and `/unsub` wrap it as a failure,
    /// `/pub` and `/unpub` give the binding error alone (MOSN's quirk, kept).
    pub fn bind_failure(self, e: &str) -> String {
        match self {
            Op::Sub | Op::Unsub => self.failure(e),
            Op::Pub | Op::Unpub => e.to_string(),
        }
    }
}

/// A bound request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `registry.addr`: one ZooKeeper `host:port`.
    pub addr: String,
    /// `service.interface`.
    pub interface: String,
    /// `service.methods`.
    pub methods: Vec<String>,
    /// `service.group` (may be empty).
    pub group: String,
    /// `service.version`: read by `/pub` and `/unpub`; MOSN's `/sub` has no such field, mosn-rs
    /// reads it on `/sub` too (see the registry's version rule).
    pub version: String,
}

/// An API answer: the HTTP status and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// 200 for every API answer; 404 or 405 from the router.
    pub status: u16,
    /// The body.
    pub body: String,
}

impl Reply {
    /// MOSN's `{"err_no", "err_msg"}` answer (`err_no` 0 success, 1 failure).
    pub fn result(ok: bool, msg: &str) -> Reply {
        Reply {
            status: 200,
            body: json!({"err_no": if ok { 0 } else { 1 }, "err_msg": msg}).to_string(),
        }
    }
}

/// Routes a request: the operation, or the router's own answer (404, 405).
pub fn route(method: &http::Method, path: &str) -> Result<Op, Reply> {
    let op = match path {
        "/sub" => Op::Sub,
        "/unsub" => Op::Unsub,
        "/pub" => Op::Pub,
        "/unpub" => Op::Unpub,
        _ => {
            return Err(Reply {
                status: 404,
                body: "404 page not found\n".into(),
            })
        }
    };
    if method != http::Method::POST {
        return Err(Reply {
            status: 405,
            body: String::new(),
        });
    }
    Ok(op)
}

/// Binds and validates a body as MOSN does. Errors: the binding error text.
pub fn bind(content_type: Option<&str>, body: &[u8]) -> Result<Request, String> {
    if content_type != Some("application/json") {
        // MOSN falls back to form binding, whose validation then fails.
        return Err("Key: 'registry.type' Error:Field validation for 'type' failed on the 'eq' tag; the body is read as JSON only with Content-Type: application/json".into());
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let reg = v.get("registry").cloned().unwrap_or(Value::Null);
    let svc = v.get("service").cloned().unwrap_or(Value::Null);
    let s = |o: &Value, k: &str| -> Result<String, String> {
        match o.get(k) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(format!("json: {k} must be a string, found {other}")),
        }
    };
    let typ = s(&reg, "type")?;
    if typ != "zookeeper" {
        return Err(
            "Key: 'registry.type' Error:Field validation for 'type' failed on the 'eq' tag".into(),
        );
    }
    let addr = s(&reg, "addr")?;
    if !is_host_port(&addr) {
        return Err("Key: 'registry.addr' Error:Field validation for 'addr' failed on the 'hostname_port' tag".into());
    }
    let interface = s(&svc, "interface")?;
    if interface.is_empty() {
        return Err("Key: 'service.interface' Error:Field validation for 'interface' failed on the 'required' tag".into());
    }
    let methods = match svc.get("methods") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|m| {
                m.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("json: methods must be strings, found {m}"))
            })
            .collect::<Result<Vec<_>, _>>()?,
        None | Some(Value::Null) => return Err("Key: 'service.methods' Error:Field validation for 'methods' failed on the 'required' tag".into()),
        Some(other) => return Err(format!("json: methods must be a list, found {other}")),
    };
    Ok(Request {
        addr,
        interface,
        methods,
        group: s(&svc, "group")?,
        version: s(&svc, "version")?,
    })
}

/// `host:port` with a non-empty host and a port from 1 to 65535 (go-playground's
/// `hostname_port`).
fn is_host_port(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((h, p)) => {
            !h.is_empty()
                && !h.contains(',')
                && !h.contains('/')
                && p.parse::<u16>().is_ok_and(|p| p > 0)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUB: &str = r#"{"registry": {"type": "zookeeper", "addr": "127.0.0.1:2181", "username": "", "password": ""},
        "service": {"interface": "com.ikurento.user.UserProvider", "methods": ["GetUser"], "group": "", "name": "x"}}"#;

    #[test]
    fn mosn_bodies_bind() {
        let r = bind(Some("application/json"), SUB.as_bytes()).unwrap();
        assert_eq!(r.addr, "127.0.0.1:2181");
        assert_eq!(r.interface, "com.ikurento.user.UserProvider");
        assert_eq!(r.methods, vec!["GetUser".to_string()]);
        assert_eq!((r.group.as_str(), r.version.as_str()), ("", ""));
    }

    #[test]
    fn bad_bodies_fail_as_mosn_does() {
        // The charset parameter makes Go bind a form: validation fails.
        assert!(bind(Some("application/json; charset=utf-8"), SUB.as_bytes()).is_err());
        assert!(bind(Some("application/json"), b"").is_err());
        for bad in [
            r#"{"registry": {"type": "nacos", "addr": "a:1"}, "service": {"interface": "i", "methods": []}}"#,
            r#"{"registry": {"type": "zookeeper", "addr": "a:1,b:2"}, "service": {"interface": "i", "methods": []}}"#,
            r#"{"registry": {"type": "zookeeper", "addr": "a"}, "service": {"interface": "i", "methods": []}}"#,
            r#"{"registry": {"type": "zookeeper", "addr": "a:1"}, "service": {"methods": []}}"#,
            r#"{"registry": {"type": "zookeeper", "addr": "a:1"}, "service": {"interface": "i"}}"#,
        ] {
            assert!(
                bind(Some("application/json"), bad.as_bytes()).is_err(),
                "{bad}"
            );
        }
        assert_eq!(
            Reply::result(false, &Op::Pub.bind_failure("x")).body,
            r#"{"err_msg":"x","err_no":1}"#
        );
        assert_eq!(Op::Sub.bind_failure("x"), "subscribe fail, err: x");
    }

    #[test]
    fn router_answers_404_and_405() {
        assert_eq!(route(&http::Method::POST, "/sub"), Ok(Op::Sub));
        assert_eq!(route(&http::Method::GET, "/sub").unwrap_err().status, 405);
        assert_eq!(route(&http::Method::POST, "/nope").unwrap_err().status, 404);
    }
}
