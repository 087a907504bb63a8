//! Translation between HTTP/1 and HTTP/2 heads and trailers (RFC 9113 §8.2.2, §8.3; RFC 9110
//! §7.6.1), for a proxy whose two sides speak different versions:
//!
//! - Host ↔ `:authority`; the request target ↔ `:path`;
//! - connection-specific fields (`Connection` and the fields it names, `Keep-Alive`,
//!   `Proxy-Connection`, `Transfer-Encoding`, `Upgrade`) never cross; `TE` crosses to HTTP/2 only
//!   as `te: trailers`;
//! - `Content-Length` and chunked framing are the caller's: HTTP/1 framing is written by the
//!   HTTP/1 encoder, HTTP/2 frames bodies itself;
//! - HTTP/2's split `cookie` fields are joined with `"; "` for HTTP/1 (RFC 9113 §8.2.3);
//! - the HTTP/1 reason phrase has no HTTP/2 form; toward HTTP/1 the standard phrase is written;
//! - trailers pass both ways (HTTP/1 only carries them in a chunked body).

use bytes::BytesMut;
use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;

use super::Head;
use crate::http1::{RequestHead, ResponseHead};

/// Most trailer fields read from an HTTP/1 trailer section.
const MAX_TRAILER_FIELDS: usize = 64;

/// Fields that never appear in HTTP/2 (RFC 9113 §8.2.2), besides those a `Connection` field
/// names (which the HTTP/1 parser already marks hop-by-hop).
fn connection_specific(name: &[u8]) -> bool {
    const NAMES: [&[u8]; 7] = [
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"upgrade",
        b"te",
        b"host",
    ];
    NAMES.iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// True when a `TE` value lists the `trailers` token.
fn te_has_trailers(v: &[u8]) -> bool {
    v.split(|b| *b == b',').any(|t| {
        let t = t.split(|b| *b == b';').next().unwrap_or(&[]);
        t.trim_ascii().eq_ignore_ascii_case(b"trailers")
    })
}

/// The HTTP/2 head for an HTTP/1 request going to an HTTP/2 upstream.
///
/// `scheme` is the upstream connection's (`http`, `https`); `forwarded_for` is appended to
/// `X-Forwarded-For` as the HTTP/1 encoder does; `default_host` is the authority of a request
/// without a Host (HTTP/1.0).
pub fn request_to_h2(
    req: &RequestHead,
    scheme: &[u8],
    forwarded_for: Option<&[u8]>,
    default_host: Option<&[u8]>,
) -> Head {
    let authority = req.host().or(default_host).unwrap_or_default();
    let mut h = Head::request(req.method(), scheme, authority, req.path_and_query());
    let mut xff_done = forwarded_for.is_none();
    for (n, v) in req.fields.forwarded() {
        if connection_specific(n) {
            continue;
        }
        let (Ok(name), Ok(mut value)) = (HeaderName::from_bytes(n), HeaderValue::from_bytes(v))
        else {
            continue;
        };
        if !xff_done && name == "x-forwarded-for" {
            if let Some(c) = forwarded_for {
                let mut joined = v.to_vec();
                joined.extend_from_slice(b", ");
                joined.extend_from_slice(c);
                value = HeaderValue::from_bytes(&joined).unwrap_or(value);
            }
            xff_done = true;
        }
        h.fields.append(name, value);
    }
    if !xff_done {
        if let Some(v) = forwarded_for.and_then(|c| HeaderValue::from_bytes(c).ok()) {
            h.fields.append("x-forwarded-for", v);
        }
    }
    if req.fields.get_all("te").any(te_has_trailers) {
        h.fields
            .insert(http::header::TE, HeaderValue::from_static("trailers"));
    }
    h
}

/// The HTTP/1 head for an HTTP/2 request going to an HTTP/1 upstream. `cookie` fields are joined
/// into one; the caller chooses the body framing.
pub fn request_to_h1(h: &Head) -> RequestHead {
    let mut cookie: Option<Vec<u8>> = None;
    let mut fields: Vec<(&[u8], &[u8])> = Vec::with_capacity(h.fields.len() + 1);
    if !h.authority().is_empty() {
        fields.push((b"host", h.authority()));
    }
    for (n, v) in &h.fields {
        if n == http::header::COOKIE {
            let c = cookie.get_or_insert_with(Vec::new);
            if !c.is_empty() {
                c.extend_from_slice(b"; ");
            }
            c.extend_from_slice(v.as_bytes());
            continue;
        }
        fields.push((n.as_str().as_bytes(), v.as_bytes()));
    }
    if let Some(c) = &cookie {
        fields.push((b"cookie", c));
    }
    RequestHead::synthetic(h.method(), h.path(), None, fields)
}

/// The HTTP/2 head for an HTTP/1 response going to an HTTP/2 client.
pub fn response_to_h2(resp: &ResponseHead) -> Head {
    let mut h = Head::response(resp.status);
    for (n, v) in resp.fields.forwarded() {
        if connection_specific(n) {
            continue;
        }
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(n), HeaderValue::from_bytes(v)) {
            h.fields.append(name, value);
        }
    }
    h
}

/// The HTTP/1 head for an HTTP/2 response going to an HTTP/1 client (the encoder writes the
/// standard reason phrase).
pub fn response_to_h1(h: &Head) -> ResponseHead {
    ResponseHead::synthetic(
        h.status(),
        h.fields
            .iter()
            .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes())),
    )
}

/// HTTP/2 trailers from an HTTP/1 trailer section (field lines, as
/// [`crate::http1::BodyDecoder::trailers`] keeps them). Lines HTTP/2 cannot carry, and
/// connection-specific fields, are dropped; at most 64 fields are read.
pub fn trailers_to_h2(raw: &[u8]) -> HeaderMap {
    let mut out = HeaderMap::new();
    if raw.is_empty() {
        return out;
    }
    let mut lines = raw.to_vec();
    lines.extend_from_slice(b"\r\n");
    let mut fields = [httparse::EMPTY_HEADER; MAX_TRAILER_FIELDS];
    if let Ok(httparse::Status::Complete((_, parsed))) =
        httparse::parse_headers(&lines, &mut fields)
    {
        for f in parsed {
            if connection_specific(f.name.as_bytes()) {
                continue;
            }
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(f.name.as_bytes()),
                HeaderValue::from_bytes(f.value),
            ) {
                out.append(n, v);
            }
        }
    }
    out
}

/// The `grpc-status` of trailers (or of a trailers-only response head), when it is a number.
pub fn grpc_status(fields: &HeaderMap) -> Option<u32> {
    std::str::from_utf8(fields.get("grpc-status")?.as_bytes())
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Appends HTTP/2 trailers as HTTP/1 trailer field lines (each ending in CRLF), for
/// [`crate::http1::BodyEncoder::end`].
pub fn trailers_to_h1(t: &HeaderMap, out: &mut BytesMut) {
    for (n, v) in t {
        out.extend_from_slice(n.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::{encode, parse_request, parse_response, Framing};
    use mosn_api::Headers;

    fn h1_request(raw: &[u8]) -> RequestHead {
        let mut b = BytesMut::from(raw);
        parse_request(&mut b).unwrap().unwrap().head
    }

    #[test]
    fn an_http1_request_becomes_http2() {
        let req = h1_request(
            b"POST /a?b=1 HTTP/1.1\r\nHost: svc.local\r\nConnection: keep-alive, x-hop\r\nX-Hop: 1\r\n\
              Keep-Alive: 5\r\nTE: gzip, trailers;q=1\r\nTransfer-Encoding: chunked\r\nUpgrade: h2c\r\n\
              X-Forwarded-For: 10.0.0.1\r\nX-Keep: Yes\r\n\r\n",
        );
        let h = request_to_h2(&req, b"http", Some(b"127.0.0.1"), None);
        assert_eq!(h.get_str(":authority"), Some("svc.local"));
        assert_eq!(h.get_str(":path"), Some("/a?b=1"));
        assert_eq!(h.get_str(":method"), Some("POST"));
        let mut names = Vec::new();
        h.visit(&mut |n, v| {
            names.push(format!(
                "{}: {}",
                String::from_utf8_lossy(n),
                String::from_utf8_lossy(v)
            ))
        });
        assert_eq!(
            names,
            [
                "x-forwarded-for: 10.0.0.1, 127.0.0.1",
                "x-keep: Yes",
                "te: trailers"
            ]
        );
        let r = h.to_request().unwrap();
        assert_eq!(r.uri().to_string(), "http://svc.local/a?b=1");
    }

    #[test]
    fn te_without_trailers_is_dropped_and_a_hostless_request_gets_the_default() {
        let req = h1_request(b"GET / HTTP/1.0\r\nTE: gzip\r\n\r\n");
        let h = request_to_h2(&req, b"http", None, Some(b"10.1.1.1:80"));
        assert_eq!(h.get("te"), None);
        assert_eq!(h.get_str(":authority"), Some("10.1.1.1:80"));
    }

    #[test]
    fn an_http2_request_becomes_http1_with_cookies_joined() {
        let req = http::Request::builder()
            .method("PUT")
            .uri("http://example.com/x")
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .header("content-length", "5")
            .header("x-y", "z")
            .body(())
            .unwrap();
        let h = Head::from_request(req.into_parts().0);
        let h1 = request_to_h1(&h);
        let mut out = BytesMut::new();
        encode::request(&h1, Framing::Length(5), Default::default(), &mut out);
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert_eq!(
            text,
            "PUT /x HTTP/1.1\r\nhost: example.com\r\nx-y: z\r\ncookie: a=1; b=2\r\ncontent-length: 5\r\n\r\n"
        );
    }

    #[test]
    fn responses_cross_both_ways() {
        let mut b = BytesMut::from(
            &b"HTTP/1.1 404 Nope\r\nConnection: close\r\nContent-Length: 0\r\nX-A: 1\r\n\r\n"[..],
        );
        let r = parse_response(&mut b, false).unwrap().unwrap().head;
        let h = response_to_h2(&r);
        assert_eq!(h.status(), 404);
        assert_eq!(h.fields.len(), 1);
        assert_eq!(h.get_str("x-a"), Some("1"));
        let back = response_to_h1(&h);
        assert_eq!(back.status, 404);
        assert_eq!(back.get_str("x-a"), Some("1"));
        assert_eq!(back.reason(), b"", "the encoder writes the standard phrase");
    }

    #[test]
    fn trailers_cross_both_ways() {
        let t = trailers_to_h2(b"grpc-status: 0\r\ngrpc-message: ok\r\nConnection: x\r\n");
        assert_eq!(t.len(), 2);
        assert_eq!(t["grpc-status"], "0");
        let mut out = BytesMut::new();
        trailers_to_h1(&t, &mut out);
        assert_eq!(&out[..], b"grpc-status: 0\r\ngrpc-message: ok\r\n");
        assert!(trailers_to_h2(b"not a field line\r\n").is_empty());
    }
}
