//! Dubbo registry URLs as MOSN (dubbo-go) writes and reads them in ZooKeeper: Go's
//! `url.QueryEscape`/`QueryUnescape`, `url.Values.Encode` (keys sorted, values escaped), the
//! provider and consumer URLs of MOSN's `/pub` and `/sub`, and the parts of a provider URL MOSN
//! uses (address, interface, group, version) with dubbo-go's `ServiceKey` rule.
//!
//! Source: MOSN `mosn/pkg` `registry/dubbo/{base_registry.go,common/url.go}`; the layout is in
//! the team's notes (`mosn-dubbo-upgrade-xds.md` §1.4).

use std::net::SocketAddr;

/// Go's `url.QueryEscape`: ASCII letters, digits and `-_.~` stay, a space becomes `+`, every other
/// byte `%XX` (upper-case hex).
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 15)] as char);
            }
        }
    }
    out
}

/// Go's `url.QueryUnescape`: `%XX` and `+` decoded. `None` for a malformed escape or bytes that
/// are not UTF-8.
pub fn query_unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Go's `url.Values.Encode`: `k=v` pairs sorted by key, joined by `&`, each part escaped.
pub fn encode_params(params: &[(&str, String)]) -> String {
    let mut sorted: Vec<&(&str, String)> = params.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    sorted
        .iter()
        .map(|(k, v)| format!("{}={}", query_escape(k), query_escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The URL MOSN's `/pub` registers for a provider:
/// `dubbo://<ip>:<port>/<interface>?anyhost=true&interface=..[&group=..]&ip=..&methods=a,b&pid=..&registry.role=3[&version=..]`.
pub fn provider_url(
    ip: &str,
    port: u16,
    interface: &str,
    group: &str,
    version: &str,
    methods: &[String],
    pid: u32,
) -> String {
    let mut params = vec![
        ("interface", interface.to_string()),
        ("registry.role", "3".to_string()),
        ("pid", pid.to_string()),
        ("ip", ip.to_string()),
        ("anyhost", "true".to_string()),
        ("methods", methods.join(",")),
    ];
    if !group.is_empty() {
        params.push(("group", group.to_string()));
    }
    if !version.is_empty() {
        params.push(("version", version.to_string()));
    }
    format!("dubbo://{ip}:{port}/{interface}?{}", encode_params(&params))
}

/// The URL MOSN's `/sub` registers for a consumer (no port, no methods):
/// `consumer://<ip>/<interface>?group=<g>&ip=..&pid=..&protocol=dubbo&registry.role=0`.
pub fn consumer_url(ip: &str, interface: &str, group: &str, pid: u32) -> String {
    let params = [
        ("group", group.to_string()),
        ("ip", ip.to_string()),
        ("pid", pid.to_string()),
        ("protocol", "dubbo".to_string()),
        ("registry.role", "0".to_string()),
    ];
    format!("consumer://{ip}/{interface}?{}", encode_params(&params))
}

/// The ZooKeeper folder of a service's providers or consumers:
/// `/dubbo/<esc(service)>/<category>`.
pub fn category_path(service: &str, category: &str) -> String {
    format!("/dubbo/{}/{category}", query_escape(service))
}

/// The parts of a provider URL (a child of `/dubbo/<svc>/providers`, unescaped) that routing
/// uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    /// `<ip>:<port>` of the URL.
    pub address: SocketAddr,
    /// The `interface` param, else the path without its `/`.
    pub service: String,
    /// The `group` param (empty when absent).
    pub group: String,
    /// The `version` param (empty when absent).
    pub version: String,
}

impl Provider {
    /// Parses a provider URL (`dubbo://10.0.0.5:20880/com.x.Svc?interface=...&version=1.0.0`).
    /// `None` when it has no `ip:port` or is not a URL.
    pub fn parse(url: &str) -> Option<Provider> {
        let rest = url.split_once("://")?.1;
        let (hostpath, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (host, path) = hostpath.split_once('/').unwrap_or((hostpath, ""));
        let address: SocketAddr = host.parse().ok()?;
        let param = |key: &str| -> String {
            query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| query_unescape(k).as_deref() == Some(key))
                .and_then(|(_, v)| query_unescape(v))
                .unwrap_or_default()
        };
        let mut service = param("interface");
        if service.is_empty() {
            service = path.to_string();
        }
        Some(Provider {
            address,
            service,
            group: param("group"),
            version: param("version"),
        })
    }

    /// dubbo-go's `ServiceKey`: `[group/]interface[:version]`, the version left out when it is
    /// empty or `0.0.0`.
    pub fn service_key(&self) -> String {
        service_key(&self.service, &self.group, &self.version)
    }
}

/// dubbo-go's `ServiceKey` of an interface, group and version (see [`Provider::service_key`]).
pub fn service_key(interface: &str, group: &str, version: &str) -> String {
    let mut k = String::new();
    if !group.is_empty() {
        k.push_str(group);
        k.push('/');
    }
    k.push_str(interface);
    if !version.is_empty() && version != "0.0.0" {
        k.push(':');
        k.push_str(version);
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_as_go_does() {
        assert_eq!(
            query_escape("dubbo://10.0.0.5:20080/a.B?x=1&y=a,b"),
            "dubbo%3A%2F%2F10.0.0.5%3A20080%2Fa.B%3Fx%3D1%26y%3Da%2Cb"
        );
        assert_eq!(query_escape("a b$"), "a+b%24");
        assert_eq!(query_unescape("a+b%24").as_deref(), Some("a b$"));
        assert_eq!(query_unescape("%4"), None);
        assert_eq!(query_unescape("%zz"), None);
    }

    #[test]
    fn provider_urls_are_mosn_s_and_parse_back() {
        let u = provider_url(
            "10.0.0.5",
            20080,
            "com.ikurento.user.UserProvider",
            "",
            "",
            &["GetUser".to_string()],
            4242,
        );
        // The example from the MOSN notes, byte for byte.
        assert_eq!(
            u,
            "dubbo://10.0.0.5:20080/com.ikurento.user.UserProvider?anyhost=true&interface=com.ikurento.user.UserProvider&ip=10.0.0.5&methods=GetUser&pid=4242&registry.role=3"
        );
        let p = Provider::parse(&u).unwrap();
        assert_eq!(p.address, "10.0.0.5:20080".parse().unwrap());
        assert_eq!(p.service, "com.ikurento.user.UserProvider");
        assert_eq!(p.service_key(), "com.ikurento.user.UserProvider");
        let v = provider_url("1.2.3.4", 1, "a.B", "g", "1.0.0", &[], 1);
        let p = Provider::parse(&v).unwrap();
        assert_eq!((p.group.as_str(), p.version.as_str()), ("g", "1.0.0"));
        assert_eq!(p.service_key(), "g/a.B:1.0.0");
        assert_eq!(service_key("a.B", "", "0.0.0"), "a.B");
        // A Java provider's URL: no interface param needed when the path names it.
        let j =
            Provider::parse("dubbo://192.168.1.2:20880/org.demo.Svc?anyhost=true&side=provider")
                .unwrap();
        assert_eq!(j.service, "org.demo.Svc");
        assert!(Provider::parse("not a url").is_none());
        assert!(Provider::parse("dubbo://host-without-port/x").is_none());
    }

    #[test]
    fn consumer_urls_and_paths() {
        assert_eq!(
            consumer_url("10.0.0.5", "a.B", "", 7),
            "consumer://10.0.0.5/a.B?group=&ip=10.0.0.5&pid=7&protocol=dubbo&registry.role=0"
        );
        assert_eq!(
            category_path("a.B$C", "providers"),
            "/dubbo/a.B%24C/providers"
        );
    }
}
