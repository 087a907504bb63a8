//! Header rules of an HTTP/1.1 proxy: hop-by-hop headers are removed (RFC 9110 §7.6.1), the client
//! address is appended to `X-Forwarded-For`.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TRANSFER_ENCODING,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

fn is_hop_by_hop(k: &HeaderName) -> bool {
    HOP_BY_HOP.contains(k) || k == header::PROXY_AUTHENTICATE || k == header::EXPECT
}

/// Removes hop-by-hop headers, including those named by `Connection`. `Expect` goes too: the
/// proxy has answered `100-continue` itself. One pass finds the names present; only those are
/// removed (a hash lookup each), so the usual single `Connection: keep-alive` costs one removal.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    let mut found: [Option<HeaderName>; 12] = Default::default();
    let mut n = 0;
    for k in h.keys() {
        if is_hop_by_hop(k) && n < found.len() {
            found[n] = Some(k.clone());
            n += 1;
        }
    }
    if n == 0 {
        return;
    }
    if let Some(conn) = h.get(header::CONNECTION) {
        let named: Vec<HeaderName> = conn
            .to_str()
            .unwrap_or("")
            .split(',')
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .filter(|t| !is_hop_by_hop(t))
            .collect();
        for t in named {
            h.remove(t);
        }
    }
    for k in found.iter_mut().take(n).filter_map(Option::take) {
        h.remove(k);
    }
}

/// Name of the `X-Forwarded-For` header.
pub static XFF: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Appends `client` to `X-Forwarded-For` (`a, b, client`), or sets it.
pub fn append_xff(h: &mut HeaderMap, client: &HeaderValue) {
    match h.get(&XFF) {
        Some(prev) => {
            let mut v = Vec::with_capacity(prev.len() + 2 + client.len());
            v.extend_from_slice(prev.as_bytes());
            v.extend_from_slice(b", ");
            v.extend_from_slice(client.as_bytes());
            if let Ok(v) = HeaderValue::from_bytes(&v) {
                h.insert(XFF.clone(), v);
            }
        }
        None => {
            h.insert(XFF.clone(), client.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        h.insert("x-keep", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
    }

    #[test]
    fn xff_appends() {
        let mut h = HeaderMap::new();
        let ip = HeaderValue::from_static("10.0.0.2");
        append_xff(&mut h, &ip);
        assert_eq!(h[&XFF], "10.0.0.2");
        append_xff(&mut h, &ip);
        assert_eq!(h[&XFF], "10.0.0.2, 10.0.0.2");
    }
}
