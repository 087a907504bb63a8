//! One view of a request or response head for every protocol.
//!
//! Keys are lower-case. HTTP exposes its header fields plus the HTTP/2-style pseudo-headers
//! `:method`, `:path` (path and query), `:authority` (the Host), `:scheme` and, on responses,
//! `:status`. An RPC protocol exposes its header map and names such as `service` and `method`.
//! Routing, stream filters, access logs and metrics read and write heads only through this trait,
//! so a route on `service` or a filter on a header works the same for every protocol.
//!
//! Source: MOSN `api.HeaderMap` (`Get`, `Set`, `Add`, `Del`, `Range`), Envoy's `HeaderMap` with
//! pseudo-headers (RFC 9113 §8.3).

/// A protocol head seen as a multimap of lower-case keys to byte values.
pub trait Headers {
    /// The first value of `key` (lower-case), or `None` when absent.
    fn get(&self, key: &str) -> Option<&[u8]>;
    /// Replaces every value of `key` with `value` (adds it when absent).
    fn set(&mut self, key: &str, value: &[u8]);
    /// Adds one more value of `key`, keeping the others.
    fn append(&mut self, key: &str, value: &[u8]);
    /// Removes every value of `key`.
    fn remove(&mut self, key: &str);
    /// Calls `f` for each field in order, with its name as sent and its value. Pseudo-headers are
    /// not visited.
    fn visit(&self, f: &mut dyn FnMut(&[u8], &[u8]));

    /// [`Headers::get`] as UTF-8 text; `None` when absent or not valid UTF-8.
    fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(|v| std::str::from_utf8(v).ok())
    }
}

/// A small owned multimap implementing [`Headers`], for local replies and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderVec(pub Vec<(String, Vec<u8>)>);

impl Headers for HeaderVec {
    fn get(&self, key: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_slice())
    }
    fn set(&mut self, key: &str, value: &[u8]) {
        self.remove(key);
        self.append(key, value);
    }
    fn append(&mut self, key: &str, value: &[u8]) {
        self.0.push((key.to_ascii_lowercase(), value.to_vec()));
    }
    fn remove(&mut self, key: &str) {
        self.0.retain(|(k, _)| !k.eq_ignore_ascii_case(key));
    }
    fn visit(&self, f: &mut dyn FnMut(&[u8], &[u8])) {
        for (k, v) in &self.0 {
            f(k.as_bytes(), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_vec_is_a_case_insensitive_multimap() {
        let mut h = HeaderVec::default();
        h.append("X-A", b"1");
        h.append("x-a", b"2");
        assert_eq!(h.get("x-a"), Some(&b"1"[..]));
        h.set("x-a", b"3");
        assert_eq!(h.0.len(), 1);
        assert_eq!(h.get_str("x-a"), Some("3"));
        h.remove("X-A");
        assert!(h.get("x-a").is_none());
    }
}
