//! Writing heads. The proxy writes the framing fields itself (`Content-Length` or
//! `Transfer-Encoding: chunked`, and `Connection` when it closes), after the forwarded fields.

use bytes::{BufMut, BytesMut};

use super::body::{BodyEncoder, Framing};
use super::head::{RequestHead, ResponseHead};

/// What the proxy adds to a request it forwards.
#[derive(Debug, Default, Clone, Copy)]
pub struct RequestExtras<'a> {
    /// The client's address for `X-Forwarded-For` (appended to the client's list).
    pub forwarded_for: Option<&'a [u8]>,
    /// A `Host` to send when the request has none (an HTTP/1.0 client).
    pub default_host: Option<&'a [u8]>,
    /// Ask the upstream to close after this request (`Connection: close`).
    pub close: bool,
}

/// Writes the head of `req` as an HTTP/1.1 request for the upstream, with a body of `framing`,
/// and returns the encoder its body must go through.
pub fn request(
    req: &RequestHead,
    framing: Framing,
    extras: RequestExtras<'_>,
    out: &mut BytesMut,
) -> BodyEncoder {
    let raw = &req.fields.raw;
    out.reserve(raw.len() + 64);
    out.put_slice(req.method());
    out.put_u8(b' ');
    out.put_slice(req.path_and_query());
    out.put_slice(b" HTTP/1.1\r\n");
    let mut xff_done = extras.forwarded_for.is_none();
    let mut has_host = false;
    for f in &req.fields.fields {
        if f.role != super::head::Role::Forward {
            continue;
        }
        let name = f.name.get(raw);
        let value = f.value.get(raw);
        if !has_host && name.eq_ignore_ascii_case(b"host") {
            has_host = true;
        }
        out.put_slice(name);
        out.put_slice(b": ");
        out.put_slice(value);
        if !xff_done && name.eq_ignore_ascii_case(b"x-forwarded-for") {
            // The first X-Forwarded-For gets the client appended (later ones pass as sent).
            if let Some(c) = extras.forwarded_for {
                out.put_slice(b", ");
                out.put_slice(c);
            }
            xff_done = true;
        }
        out.put_slice(b"\r\n");
    }
    if !has_host {
        if let Some(h) = req
            .authority
            .as_ref()
            .map(|a| a.get(raw))
            .or(extras.default_host)
        {
            out.put_slice(b"host: ");
            out.put_slice(h);
            out.put_slice(b"\r\n");
        }
    }
    if !xff_done {
        if let Some(c) = extras.forwarded_for {
            out.put_slice(b"x-forwarded-for: ");
            out.put_slice(c);
            out.put_slice(b"\r\n");
        }
    }
    let enc = framing_fields(framing, true, req.codings.as_deref(), out);
    if extras.close {
        out.put_slice(b"connection: close\r\n");
    }
    out.put_slice(b"\r\n");
    enc
}

/// Writes the framing fields for a body of `framing` and returns its encoder. A close-delimited
/// body is sent chunked when `chunked_ok` (an HTTP/1.1 peer); `codings` (`gzip`) go before
/// `chunked` in `Transfer-Encoding`.
fn framing_fields(
    framing: Framing,
    chunked_ok: bool,
    codings: Option<&[u8]>,
    out: &mut BytesMut,
) -> BodyEncoder {
    match framing {
        Framing::Empty => BodyEncoder::Identity,
        Framing::Length(n) => {
            out.put_slice(b"content-length: ");
            out.put_slice(itoa::Buffer::new().format(n).as_bytes());
            out.put_slice(b"\r\n");
            BodyEncoder::Identity
        }
        Framing::Chunked | Framing::Close if chunked_ok => {
            out.put_slice(b"transfer-encoding: ");
            if let Some(c) = codings {
                out.put_slice(c);
                out.put_slice(b", ");
            }
            out.put_slice(b"chunked\r\n");
            BodyEncoder::Chunked
        }
        Framing::Chunked | Framing::Close => BodyEncoder::Identity,
    }
}

/// How a response goes to the client.
#[derive(Debug, Clone, Copy)]
pub struct ResponseOptions {
    /// The client's minor version (0: HTTP/1.0, which cannot take chunked coding).
    pub client_minor: u8,
    /// The proxy closes the connection after this response.
    pub close: bool,
    /// The request was HEAD (no body is written whatever the framing).
    pub head_request: bool,
}

/// Writes a response head for the client and returns the encoder its body must go through, and
/// whether the connection must close after it (a close-delimited body for an HTTP/1.0 client).
pub fn response(
    resp: &ResponseHead,
    framing: Framing,
    opts: ResponseOptions,
    out: &mut BytesMut,
) -> (BodyEncoder, bool) {
    let raw = &resp.fields.raw;
    out.reserve(raw.len() + 64);
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(itoa::Buffer::new().format(resp.status).as_bytes());
    out.put_u8(b' ');
    let reason = resp.reason();
    out.put_slice(if reason.is_empty() {
        reason_phrase(resp.status)
    } else {
        reason
    });
    out.put_slice(b"\r\n");
    for f in &resp.fields.fields {
        if f.role == super::head::Role::Forward {
            out.put_slice(f.name.get(raw));
            out.put_slice(b": ");
            out.put_slice(f.value.get(raw));
            out.put_slice(b"\r\n");
        }
    }
    let chunked_ok = opts.client_minor >= 1;
    let mut close = opts.close;
    let no_body = opts.head_request
        || resp.status == 204
        || resp.status == 304
        || (100..200).contains(&resp.status);
    let enc = if no_body {
        BodyEncoder::Discard
    } else {
        if framing == Framing::Close && !chunked_ok {
            close = true;
        }
        if framing == Framing::Chunked && !chunked_ok {
            // An HTTP/1.0 client gets the decoded body and the end of the connection.
            close = true;
        }
        framing_fields(framing, chunked_ok, resp.codings.as_deref(), out)
    };
    if framing == Framing::Empty && !no_body {
        out.put_slice(b"content-length: 0\r\n");
    }
    if close {
        out.put_slice(b"connection: close\r\n");
    } else if opts.client_minor == 0 {
        out.put_slice(b"connection: keep-alive\r\n");
    }
    out.put_slice(b"\r\n");
    (enc, close)
}

/// The standard reason phrase of a status (RFC 9110 §15), or `""`.
pub fn reason_phrase(status: u16) -> &'static [u8] {
    match status {
        100 => b"Continue",
        200 => b"OK",
        201 => b"Created",
        202 => b"Accepted",
        204 => b"No Content",
        206 => b"Partial Content",
        301 => b"Moved Permanently",
        302 => b"Found",
        303 => b"See Other",
        304 => b"Not Modified",
        307 => b"Temporary Redirect",
        308 => b"Permanent Redirect",
        400 => b"Bad Request",
        401 => b"Unauthorized",
        403 => b"Forbidden",
        404 => b"Not Found",
        405 => b"Method Not Allowed",
        408 => b"Request Timeout",
        413 => b"Payload Too Large",
        429 => b"Too Many Requests",
        431 => b"Request Header Fields Too Large",
        500 => b"Internal Server Error",
        501 => b"Not Implemented",
        502 => b"Bad Gateway",
        503 => b"Service Unavailable",
        504 => b"Gateway Timeout",
        505 => b"HTTP Version Not Supported",
        _ => b"",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::parse::{parse_request, parse_response};
    use mosn_api::Headers;

    #[test]
    fn request_is_forwarded_with_names_as_sent_xff_and_own_framing() {
        let mut b = BytesMut::from(
            "POST /p HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.1.1.1\r\nConnection: x-hop\r\nx-hop: 1\r\nTransfer-Encoding: chunked\r\nX-Keep: Yes\r\n\r\n",
        );
        let p = parse_request(&mut b).unwrap().unwrap();
        let mut out = BytesMut::new();
        let enc = request(
            &p.head,
            p.framing,
            RequestExtras {
                forwarded_for: Some(b"10.0.0.2"),
                default_host: None,
                close: false,
            },
            &mut out,
        );
        assert_eq!(enc, BodyEncoder::Chunked);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "POST /p HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.1.1.1, 10.0.0.2\r\nX-Keep: Yes\r\ntransfer-encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn http10_client_without_host_gets_one_and_xff_is_added() {
        let mut b = BytesMut::from("GET / HTTP/1.0\r\n\r\n");
        let p = parse_request(&mut b).unwrap().unwrap();
        let mut out = BytesMut::new();
        request(
            &p.head,
            p.framing,
            RequestExtras {
                forwarded_for: Some(b"1.2.3.4"),
                default_host: Some(b"up:80"),
                close: true,
            },
            &mut out,
        );
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "GET / HTTP/1.1\r\nhost: up:80\r\nx-forwarded-for: 1.2.3.4\r\nconnection: close\r\n\r\n"
        );
    }

    #[test]
    fn responses_close_delimited_become_chunked_for_11_and_close_for_10() {
        let mut b = BytesMut::from("HTTP/1.1 200 Fine\r\nServer: s\r\n\r\n");
        let p = parse_response(&mut b, false).unwrap().unwrap();
        let mut out = BytesMut::new();
        let opts = ResponseOptions {
            client_minor: 1,
            close: false,
            head_request: false,
        };
        let (enc, close) = response(&p.head, p.framing, opts, &mut out);
        assert_eq!((enc, close), (BodyEncoder::Chunked, false));
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "HTTP/1.1 200 Fine\r\nServer: s\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        let mut out = BytesMut::new();
        let (enc, close) = response(
            &p.head,
            p.framing,
            ResponseOptions {
                client_minor: 0,
                ..opts
            },
            &mut out,
        );
        assert_eq!((enc, close), (BodyEncoder::Identity, true));
        assert!(std::str::from_utf8(&out)
            .unwrap()
            .ends_with("connection: close\r\n\r\n"));
    }

    #[test]
    fn local_replies_get_standard_reasons_and_status_can_change() {
        let mut h = ResponseHead::local(404);
        h.append("x-a", b"1");
        let mut out = BytesMut::new();
        let opts = ResponseOptions {
            client_minor: 1,
            close: true,
            head_request: false,
        };
        response(&h, Framing::Length(3), opts, &mut out);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "HTTP/1.1 404 Not Found\r\nx-a: 1\r\ncontent-length: 3\r\nconnection: close\r\n\r\n"
        );
        h.set(":status", b"503");
        assert_eq!(h.status, 503);
        assert_eq!(h.get(":status"), Some(&b"503"[..]));
    }
}
