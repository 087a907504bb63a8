//! HTTP/2 (RFC 9113) heads for the proxy, with the `h2` crate doing the framing, HPACK, flow
//! control and stream state on both sides. This module holds what `h2` does not: the [`Head`] view
//! that routing and filters read through [`Headers`], and the translation between HTTP/1 and
//! HTTP/2 heads and trailers ([`translate`]).
//!
//! `h2` checks what it receives (pseudo-headers, lower-case names, no connection-specific fields,
//! valid values, `content-length` against DATA); what it hands over is still translated with care,
//! because a value that is valid in HTTP/2 must not become two requests in HTTP/1 (the
//! `h2_translate` fuzz target checks exactly that).

pub mod frames;
pub mod translate;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;
use mosn_api::Headers;

/// Why a head cannot be expressed in HTTP/2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    /// The method is not a token.
    #[error("invalid method")]
    Method,
    /// The target, authority or scheme does not form a URI.
    #[error("invalid request target: {0}")]
    Uri(String),
    /// The status is outside 100..=999.
    #[error("invalid status {0}")]
    Status(u16),
}

/// An HTTP/2 request or response head: pseudo-headers and fields.
///
/// As [`Headers`]: `:method`, `:scheme`, `:authority`, `:path` (requests) and `:status`
/// (responses) are the pseudo-headers; every other key is a field of [`Head::fields`]. A `set` or
/// `append` of a name or value HTTP/2 cannot carry (upper case, CR, LF, NUL) is ignored.
#[derive(Debug, Clone, Default)]
pub struct Head {
    method: Bytes,
    scheme: Bytes,
    authority: Bytes,
    path: Bytes,
    status: u16,
    status_text: [u8; 3],
    /// The regular fields (no pseudo-headers, no connection-specific fields).
    pub fields: HeaderMap,
}

impl Head {
    /// The head of a request `h2` received. The authority is `:authority`, else the `host`
    /// field (RFC 9113 §8.3.1); a `host` field is dropped once the authority is known.
    pub fn from_request(parts: http::request::Parts) -> Head {
        let http::request::Parts {
            method,
            uri,
            mut headers,
            ..
        } = parts;
        let authority = match uri.authority() {
            Some(a) => Bytes::copy_from_slice(a.as_str().as_bytes()),
            None => headers
                .get(http::header::HOST)
                .map(|h| Bytes::copy_from_slice(h.as_bytes()))
                .unwrap_or_default(),
        };
        if !authority.is_empty() {
            headers.remove(http::header::HOST);
        }
        Head {
            method: Bytes::copy_from_slice(method.as_str().as_bytes()),
            scheme: Bytes::copy_from_slice(uri.scheme_str().unwrap_or("http").as_bytes()),
            authority,
            path: Bytes::copy_from_slice(
                uri.path_and_query().map_or("/", |p| p.as_str()).as_bytes(),
            ),
            status: 0,
            status_text: [0; 3],
            fields: headers,
        }
    }

    /// The head of a response `h2` received.
    pub fn from_response(parts: http::response::Parts) -> Head {
        let mut h = Head {
            fields: parts.headers,
            ..Head::default()
        };
        h.set_status(parts.status.as_u16());
        h
    }

    /// A response head with `status` and no field.
    pub fn response(status: u16) -> Head {
        let mut h = Head::default();
        h.set_status(status);
        h
    }

    /// A request head from its parts; `path` includes the query.
    pub fn request(method: &[u8], scheme: &[u8], authority: &[u8], path: &[u8]) -> Head {
        Head {
            method: Bytes::copy_from_slice(method),
            scheme: Bytes::copy_from_slice(scheme),
            authority: Bytes::copy_from_slice(authority),
            path: Bytes::copy_from_slice(path),
            ..Head::default()
        }
    }

    /// The status of a response head (0 for a request).
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The method of a request head.
    pub fn method(&self) -> &[u8] {
        &self.method
    }

    /// The path and query of a request head.
    pub fn path(&self) -> &[u8] {
        &self.path
    }

    /// The authority of a request head (may be empty).
    pub fn authority(&self) -> &[u8] {
        &self.authority
    }

    /// Sets the status; values outside 100..=999 are ignored.
    pub fn set_status(&mut self, status: u16) {
        if (100..=999).contains(&status) {
            self.status = status;
            self.status_text = [
                b'0' + (status / 100) as u8,
                b'0' + (status / 10 % 10) as u8,
                b'0' + (status % 10) as u8,
            ];
        }
    }

    /// The request `h2` sends for this head.
    ///
    /// Errors: [`TranslateError::Method`] or [`TranslateError::Uri`] when the method, scheme,
    /// authority or path do not form a request (an empty authority is allowed: RFC 9113 §8.3.1).
    pub fn to_request(&self) -> Result<http::Request<()>, TranslateError> {
        let method = http::Method::from_bytes(&self.method).map_err(|_| TranslateError::Method)?;
        let mut uri = http::Uri::builder()
            .scheme(std::str::from_utf8(&self.scheme).unwrap_or("http"))
            .path_and_query(&self.path[..]);
        if !self.authority.is_empty() {
            uri = uri.authority(&self.authority[..]);
        }
        let uri = uri
            .build()
            .map_err(|e| TranslateError::Uri(e.to_string()))?;
        let mut req = http::Request::new(());
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        *req.version_mut() = http::Version::HTTP_2;
        *req.headers_mut() = self.fields.clone();
        Ok(req)
    }

    /// The response `h2` sends for this head.
    ///
    /// Errors: [`TranslateError::Status`] for a head without a status.
    pub fn to_response(&self) -> Result<http::Response<()>, TranslateError> {
        let status = http::StatusCode::from_u16(self.status)
            .map_err(|_| TranslateError::Status(self.status))?;
        let mut resp = http::Response::new(());
        *resp.status_mut() = status;
        *resp.version_mut() = http::Version::HTTP_2;
        *resp.headers_mut() = self.fields.clone();
        Ok(resp)
    }
}

fn field(key: &str, value: &[u8]) -> Option<(HeaderName, HeaderValue)> {
    let name = HeaderName::from_bytes(key.as_bytes()).ok()?;
    let value = HeaderValue::from_bytes(value).ok()?;
    Some((name, value))
}

impl Headers for Head {
    fn get(&self, key: &str) -> Option<&[u8]> {
        fn pseudo(b: &Bytes) -> Option<&[u8]> {
            (!b.is_empty()).then_some(&b[..])
        }
        match key {
            ":method" => pseudo(&self.method),
            ":scheme" => pseudo(&self.scheme),
            ":authority" => pseudo(&self.authority),
            ":path" => pseudo(&self.path),
            ":status" => (self.status != 0).then_some(&self.status_text[..]),
            _ => self.fields.get(key).map(HeaderValue::as_bytes),
        }
    }
    fn set(&mut self, key: &str, value: &[u8]) {
        let v = Bytes::copy_from_slice(value);
        match key {
            ":method" => self.method = v,
            ":scheme" => self.scheme = v,
            ":authority" => self.authority = v,
            ":path" => self.path = v,
            ":status" => {
                if let Some(s) = std::str::from_utf8(value).ok().and_then(|s| s.parse().ok()) {
                    self.set_status(s)
                }
            }
            _ if key.starts_with(':') => {}
            _ => {
                if let Some((n, v)) = field(key, value) {
                    self.fields.insert(n, v);
                }
            }
        }
    }
    fn append(&mut self, key: &str, value: &[u8]) {
        if key.starts_with(':') {
            return self.set(key, value);
        }
        if let Some((n, v)) = field(key, value) {
            self.fields.append(n, v);
        }
    }
    fn remove(&mut self, key: &str) {
        if !key.starts_with(':') {
            self.fields.remove(key);
        }
    }
    fn visit(&self, f: &mut dyn FnMut(&[u8], &[u8])) {
        for (k, v) in &self.fields {
            f(k.as_str().as_bytes(), v.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_received_request_reads_through_headers() {
        let req = http::Request::builder()
            .method("POST")
            .uri("https://example.com:8443/svc/Call?x=1")
            .header("host", "other")
            .header("x-a", "1")
            .header("x-a", "2")
            .body(())
            .unwrap();
        let mut h = Head::from_request(req.into_parts().0);
        assert_eq!(h.get_str(":method"), Some("POST"));
        assert_eq!(h.get_str(":scheme"), Some("https"));
        assert_eq!(h.get_str(":authority"), Some("example.com:8443"));
        assert_eq!(h.get_str(":path"), Some("/svc/Call?x=1"));
        assert_eq!(h.get("host"), None, "host gives way to :authority");
        assert_eq!(h.get_str("x-a"), Some("1"));
        h.append("X-B", b"3");
        h.set("x-a", b"9");
        h.set("bad name", b"v");
        h.set("x-c", b"bad\r\nvalue");
        let mut seen = Vec::new();
        h.visit(&mut |k, v| {
            seen.push(format!(
                "{}={}",
                String::from_utf8_lossy(k),
                String::from_utf8_lossy(v)
            ))
        });
        assert_eq!(seen, ["x-a=9", "x-b=3"]);
        h.set(":path", b"/new");
        let out = h.to_request().unwrap();
        assert_eq!(out.uri().to_string(), "https://example.com:8443/new");
    }

    #[test]
    fn status_reads_and_writes_as_text() {
        let mut h = Head::response(200);
        assert_eq!(h.get_str(":status"), Some("200"));
        h.set(":status", b"503");
        assert_eq!(h.status(), 503);
        h.set(":status", b"99");
        assert_eq!(h.status(), 503, "out of range is ignored");
        assert_eq!(h.to_response().unwrap().status(), 503);
    }
}
