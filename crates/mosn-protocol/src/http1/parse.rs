//! Parsing heads with `httparse`, then deciding the body's framing by RFC 9112 §6.
//!
//! Requests (§6.1–6.3, §11.2): `Transfer-Encoding` must end in `chunked`, applied once, and comes
//! without `Content-Length`; several `Content-Length`s must agree; HTTP/1.0 requests carry no
//! `Transfer-Encoding`; HTTP/1.1 requests carry exactly one `Host` (§3.2). Anything else is a
//! [`ParseError`] that the server side answers with 400 and a close. HTTP/1.2 and later minors are
//! read as HTTP/1.1 (RFC 9110 §2.5).
//!
//! Requests that are valid but that some other parser could frame differently (a body on GET or
//! HEAD, a repeated `Content-Length`, a field named like a framing field, e.g. `Transfer_Encoding`)
//! are marked [`RequestHead::ambiguous`]: the proxy forwards them with clean framing and then closes
//! both connections, so nothing can follow them on either.
//!
//! Responses (§6.3): no body for HEAD requests and 1xx/204/304; `chunked` when it is the final
//! transfer coding; read until close for other codings or no framing; otherwise `Content-Length`.

use bytes::{Bytes, BytesMut};

use super::body::Framing;
use super::head::{is_hop_by_hop, Field, FieldList, RequestHead, ResponseHead, Role, Text};
use super::{MAX_HEADERS, MAX_HEAD_BYTES};
use crate::token::{http_version, is_tchar};

/// Why a head was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The head is longer than [`MAX_HEAD_BYTES`] or has more than [`MAX_HEADERS`] fields (431).
    #[error("head too large")]
    TooLarge,
    /// Malformed syntax: bad token, control character, obs-fold, whitespace before a colon (400).
    #[error("malformed head: {0}")]
    Syntax(&'static str),
    /// Framing that two parties could read differently (400, and the request is never forwarded).
    #[error("ambiguous framing: {0}")]
    Framing(&'static str),
    /// A version other than HTTP/1.0 and HTTP/1.1 (505 for requests).
    #[error("unsupported HTTP version")]
    Version,
    /// A method the proxy does not carry (CONNECT; 501).
    #[error("unsupported method")]
    Method,
}

impl ParseError {
    /// The status a server answers with.
    pub fn status(&self) -> u16 {
        match self {
            ParseError::TooLarge => 431,
            ParseError::Version => 505,
            ParseError::Method => 501,
            ParseError::Syntax(_) | ParseError::Framing(_) => 400,
        }
    }
}

/// A complete head and its body framing.
#[derive(Debug)]
pub struct Parsed<H> {
    /// The head.
    pub head: H,
    /// How the body that follows is delimited.
    pub framing: Framing,
}

fn syntax(e: httparse::Error) -> ParseError {
    match e {
        httparse::Error::TooManyHeaders => ParseError::TooLarge,
        httparse::Error::Version => ParseError::Version,
        httparse::Error::HeaderName => ParseError::Syntax("invalid header name"),
        httparse::Error::HeaderValue => ParseError::Syntax("invalid header value"),
        httparse::Error::NewLine => ParseError::Syntax("invalid line ending"),
        httparse::Error::Status => ParseError::Syntax("invalid status"),
        httparse::Error::Token => ParseError::Syntax("invalid token"),
    }
}

/// `part` as a range of `base` (it must be a sub-slice; anything else is copied).
/// The length of a complete head from httparse's verdict, `None` when more bytes are needed.
/// `buffered` is how many bytes were offered: a head still incomplete at [`MAX_HEAD_BYTES`] is
/// too large.
fn head_len(
    r: Result<httparse::Status<usize>, httparse::Error>,
    buffered: usize,
) -> Result<Option<usize>, ParseError> {
    match r {
        Ok(httparse::Status::Complete(n)) if n > MAX_HEAD_BYTES => Err(ParseError::TooLarge),
        Ok(httparse::Status::Complete(n)) => Ok(Some(n)),
        Ok(httparse::Status::Partial) if buffered >= MAX_HEAD_BYTES => Err(ParseError::TooLarge),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(syntax(e)),
    }
}

/// httparse's fields as ranges of `base`, all forwarded until classified.
fn fields_of(base: &[u8], headers: &[httparse::Header<'_>]) -> Vec<Field> {
    headers
        .iter()
        .map(|h| Field {
            name: offset(base, h.name.as_bytes()),
            value: offset(base, h.value),
            role: Role::Forward,
        })
        .collect()
}

fn offset(base: &[u8], part: &[u8]) -> Text {
    let start = (part.as_ptr() as usize).wrapping_sub(base.as_ptr() as usize);
    match start.checked_add(part.len()) {
        Some(end) if end <= base.len() => Text::Raw(start as u32, end as u32),
        _ => Text::Own(Bytes::copy_from_slice(part)),
    }
}

/// What the framing fields of a head say.
#[derive(Default)]
struct FramingFields {
    content_length: Option<u64>,
    /// `chunked` was among the transfer codings.
    chunked: bool,
    /// A coding came after `chunked`, or `chunked` came twice.
    after_chunked: bool,
    /// A transfer coding that is not a token.
    bad_coding: bool,
    /// The codings other than `chunked`, in order, joined by `, ` (their parameters dropped).
    codings: Option<Vec<u8>>,
    transfer_encoding: bool,
    /// How many `Content-Length` values were given (fields and list elements).
    content_lengths: u32,
    /// A field name that is not a framing field but reads as one once `-`/`_` and case are
    /// ignored (`Transfer_Encoding`, `content__length`).
    lookalike: bool,
    close: bool,
    keep_alive: bool,
    hosts: u32,
    expect_continue: bool,
}

fn trim(v: &[u8]) -> &[u8] {
    let s = v
        .iter()
        .position(|b| *b != b' ' && *b != b'\t')
        .unwrap_or(v.len());
    let e = v
        .iter()
        .rposition(|b| *b != b' ' && *b != b'\t')
        .map_or(s, |i| i + 1);
    &v[s..e.max(s)]
}

/// True when `name`, ignoring case, `-` and `_`, spells `target` (which has no `-`) but is not
/// `exact` itself.
fn resembles(name: &[u8], exact: &[u8], target: &[u8]) -> bool {
    if name.len() < target.len() || name.eq_ignore_ascii_case(exact) {
        return false;
    }
    let mut letters = name.iter().filter(|b| **b != b'-' && **b != b'_');
    target
        .iter()
        .all(|t| letters.next().is_some_and(|b| b.eq_ignore_ascii_case(t)))
        && letters.next().is_none()
}

fn tokens(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|b| *b == b',').map(trim).filter(|t| !t.is_empty())
}

/// Reads the fields that decide framing and connection handling, marks hop-by-hop fields and
/// those named by `Connection`.
fn classify(list: &mut FieldList) -> Result<FramingFields, ParseError> {
    let mut f = FramingFields::default();
    let raw = list.raw.clone();
    let mut named: [Option<(u32, u32)>; 8] = [None; 8];
    let mut n_named = 0;
    for field in &mut list.fields {
        let name = field.name.get(&raw);
        let value = field.value.get(&raw);
        if is_hop_by_hop(name) {
            field.role = Role::Hop;
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            // A list (`5, 5`) is refused: RFC 9110 §8.6 allows either reading, and the two
            // sides of a proxy must not differ. Repeated fields with one value are forwarded as
            // one and marked ambiguous.
            if value.contains(&b',') {
                return Err(ParseError::Framing("Content-Length with a list of values"));
            }
            let t = trim(value);
            f.content_lengths += 1;
            if t.is_empty() || !t.iter().all(u8::is_ascii_digit) {
                return Err(ParseError::Framing("invalid Content-Length"));
            }
            let mut n: u64 = 0;
            for d in t {
                n = n
                    .checked_mul(10)
                    .and_then(|n| n.checked_add(u64::from(d - b'0')))
                    .ok_or(ParseError::Framing("Content-Length overflows"))?;
            }
            match f.content_length {
                Some(prev) if prev != n => {
                    return Err(ParseError::Framing("differing Content-Length values"))
                }
                _ => f.content_length = Some(n),
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            f.transfer_encoding = true;
            // transfer-coding = token *( OWS ";" OWS transfer-parameter ) (RFC 9112 §7); empty
            // list elements are allowed and ignored (RFC 9110 §5.6.1).
            for element in value.split(|b| *b == b',').map(trim) {
                let coding = trim(element.split(|b| *b == b';').next().unwrap_or_default());
                if element.is_empty() {
                    continue;
                }
                if coding.is_empty() || !coding.iter().all(|b| is_tchar(*b)) {
                    f.bad_coding = true;
                } else if f.chunked {
                    f.after_chunked = true;
                } else if coding.eq_ignore_ascii_case(b"chunked") {
                    f.chunked = true;
                } else {
                    let list = f.codings.get_or_insert_with(Vec::new);
                    if !list.is_empty() {
                        list.extend_from_slice(b", ");
                    }
                    list.extend_from_slice(coding);
                }
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            for t in tokens(value) {
                if t.eq_ignore_ascii_case(b"close") {
                    f.close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") {
                    f.keep_alive = true;
                } else if n_named < named.len() {
                    let Text::Raw(a, _) = offset(&raw, t) else {
                        continue;
                    };
                    named[n_named] = Some((a, a + t.len() as u32));
                    n_named += 1;
                } else {
                    return Err(ParseError::Syntax("too many Connection options"));
                }
            }
        } else if name.eq_ignore_ascii_case(b"host") {
            f.hosts += 1;
        } else if resembles(name, b"content-length", b"contentlength")
            || resembles(name, b"transfer-encoding", b"transferencoding")
        {
            f.lookalike = true;
        } else if name.eq_ignore_ascii_case(b"expect")
            && value.eq_ignore_ascii_case(b"100-continue")
        {
            f.expect_continue = true;
        }
    }
    if n_named > 0 {
        for field in &mut list.fields {
            let name = field.name.get(&raw);
            if named[..n_named].iter().flatten().any(|(a, b)| {
                raw.get(*a as usize..*b as usize)
                    .is_some_and(|t| t.eq_ignore_ascii_case(name))
            }) {
                field.role = Role::Hop;
            }
        }
    }
    Ok(f)
}

/// Parses a request head at the start of `buf`. On success the head's bytes are split off `buf`
/// (the body and any pipelined request stay in it). `Ok(None)`: the head is not complete yet.
///
/// Errors: see [`ParseError`]; [`ParseError::TooLarge`] also when `buf` holds
/// [`MAX_HEAD_BYTES`] without a complete head.
pub fn parse_request(buf: &mut BytesMut) -> Result<Option<Parsed<RequestHead>>, ParseError> {
    match parse_request_once(buf) {
        Err(ParseError::Version) => match version_of(buf) {
            Version::Later => parse_request_once(buf),
            Version::Other => Err(ParseError::Version),
            Version::Malformed => Err(ParseError::Syntax("malformed request line")),
        },
        r => r,
    }
}

/// What the request line says when httparse refused its version.
enum Version {
    /// `HTTP/1.2`–`HTTP/1.9`, now rewritten to `HTTP/1.1` in place: processed as HTTP/1.1
    /// (RFC 9110 §2.5), and the proxy writes its own request line anyway.
    Later,
    /// A well-formed version the proxy does not speak (`HTTP/0.9`, `HTTP/2.0`): 505.
    Other,
    /// Not `method SP target SP HTTP/d.d` (a space in the target, no version): 400.
    Malformed,
}

fn version_of(buf: &mut BytesMut) -> Version {
    let Some(lf) = buf.iter().take(MAX_HEAD_BYTES).position(|b| *b == b'\n') else {
        return Version::Malformed;
    };
    let end = if lf > 0 && buf[lf - 1] == b'\r' {
        lf - 1
    } else {
        lf
    };
    let line = &buf[..end];
    let v = match line.iter().filter(|b| **b == b' ').count() {
        2 => &line[line.len() - line.iter().rev().take_while(|b| **b != b' ').count()..],
        _ => return Version::Malformed,
    };
    match http_version(v) {
        None => Version::Malformed,
        Some((1, minor)) if minor >= 2 => {
            buf[end - 1] = b'1';
            Version::Later
        }
        Some(_) => Version::Other,
    }
}

fn parse_request_once(buf: &mut BytesMut) -> Result<Option<Parsed<RequestHead>>, ParseError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let Some(len) = head_len(req.parse(buf), buf.len())? else {
        return Ok(None);
    };
    let base: &[u8] = buf;
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(ParseError::Syntax("incomplete request line"));
    };
    if method == "CONNECT" {
        return Err(ParseError::Method);
    }
    let method_t = offset(base, method.as_bytes());
    let fields = fields_of(base, req.headers);
    // Origin form (`/p`), absolute form (`http://a/p`, §3.2.2) or asterisk form (`*`, OPTIONS).
    let t = target.as_bytes();
    let (target_t, authority) = if t.first() == Some(&b'/') || t == b"*" {
        (offset(base, t), None)
    } else {
        let rest = strip_scheme(t).ok_or(ParseError::Syntax("invalid request target"))?;
        let end = rest
            .iter()
            .position(|b| *b == b'/' || *b == b'?')
            .unwrap_or(rest.len());
        let auth = &rest[..end];
        if auth.is_empty() || auth.contains(&b'@') {
            return Err(ParseError::Syntax("invalid request target authority"));
        }
        let path = &rest[end..];
        let path_t = if path.is_empty() {
            Text::Own(Bytes::from_static(b"/"))
        } else if path[0] == b'?' {
            let mut v = Vec::with_capacity(path.len() + 1);
            v.push(b'/');
            v.extend_from_slice(path);
            Text::Own(Bytes::from(v))
        } else {
            offset(base, path)
        };
        (path_t, Some(offset(base, auth)))
    };
    let raw = buf.split_to(len).freeze();
    let mut list = FieldList { raw, fields };
    let f = classify(&mut list)?;
    if f.transfer_encoding && f.content_length.is_some() {
        return Err(ParseError::Framing(
            "Transfer-Encoding together with Content-Length",
        ));
    }
    if f.transfer_encoding && minor == 0 {
        return Err(ParseError::Framing(
            "Transfer-Encoding in an HTTP/1.0 request",
        ));
    }
    if f.bad_coding {
        return Err(ParseError::Framing("invalid transfer coding"));
    }
    if f.transfer_encoding && (!f.chunked || f.after_chunked) {
        return Err(ParseError::Framing(
            "transfer coding other than a final chunked applied once",
        ));
    }
    if f.hosts > 1 {
        return Err(ParseError::Syntax("more than one Host"));
    }
    if minor == 1 && f.hosts == 0 && authority.is_none() {
        return Err(ParseError::Syntax("HTTP/1.1 request without Host"));
    }
    let framing = if f.chunked {
        Framing::Chunked
    } else {
        match f.content_length {
            Some(0) | None => Framing::Empty,
            Some(n) => Framing::Length(n),
        }
    };
    let method = method_t.get(&list.raw);
    let ambiguous = if f.lookalike {
        Some("a field named like Content-Length or Transfer-Encoding")
    } else if f.content_lengths > 1 {
        Some("a repeated Content-Length")
    } else if framing != Framing::Empty && (method == b"GET" || method == b"HEAD") {
        Some("a body on GET or HEAD")
    } else {
        None
    };
    let keep_alive = ambiguous.is_none()
        && if minor == 0 {
            f.keep_alive && !f.close
        } else {
            !f.close
        };
    Ok(Some(Parsed {
        head: RequestHead {
            ambiguous,
            codings: f.codings.map(Bytes::from),
            method: method_t,
            target: target_t,
            minor,
            fields: list,
            authority,
            keep_alive,
            expect_continue: f.expect_continue && minor == 1,
        },
        framing,
    }))
}

fn strip_scheme(t: &[u8]) -> Option<&[u8]> {
    for s in [&b"http://"[..], b"https://"] {
        if t.len() > s.len() && t[..s.len()].eq_ignore_ascii_case(s) {
            return Some(&t[s.len()..]);
        }
    }
    None
}

/// Parses a response head at the start of `buf`, for a request whose method was HEAD when
/// `head_request`. 1xx responses are returned like any other (the caller skips them). On success
/// the head's bytes are split off `buf`. `Ok(None)`: not complete yet.
///
/// Errors: see [`ParseError`]; an invalid or differing `Content-Length` is a framing error.
pub fn parse_response(
    buf: &mut BytesMut,
    head_request: bool,
) -> Result<Option<Parsed<ResponseHead>>, ParseError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let Some(len) = head_len(resp.parse(buf), buf.len())? else {
        return Ok(None);
    };
    let base: &[u8] = buf;
    let (Some(status), Some(minor)) = (resp.code, resp.version) else {
        return Err(ParseError::Syntax("incomplete status line"));
    };
    // Three digits, first 1–5 (RFC 9110 §15): `004` or `600` could not be written back as sent.
    if !(100..=599).contains(&status) {
        return Err(ParseError::Syntax("status code out of range"));
    }
    let reason = offset(base, resp.reason.unwrap_or("").as_bytes());
    let fields = fields_of(base, resp.headers);
    let raw = buf.split_to(len).freeze();
    let mut list = FieldList { raw, fields };
    let f = classify(&mut list)?;
    let no_body = head_request || (100..200).contains(&status) || status == 204 || status == 304;
    let mut keep_alive = if minor == 0 {
        f.keep_alive && !f.close
    } else {
        !f.close
    };
    let framing = if no_body {
        if status != 204 && !(100..200).contains(&status) {
            // HEAD and 304 describe the body they do not carry: keep Content-Length as sent.
            for field in &mut list.fields {
                if field
                    .name
                    .get(&list.raw)
                    .eq_ignore_ascii_case(b"content-length")
                {
                    field.role = Role::Forward;
                }
            }
        }
        Framing::Empty
    } else if f.transfer_encoding {
        // §6.3: chunked when final, else read until close; with Content-Length too, the
        // connection must not be reused.
        if f.content_length.is_some() {
            keep_alive = false;
        }
        if f.bad_coding || f.after_chunked {
            // chunked applied twice or followed by another coding: the body cannot be re-framed
            // for the client without changing what it means.
            return Err(ParseError::Framing(
                "transfer coding after chunked, or an invalid coding",
            ));
        }
        if f.chunked {
            Framing::Chunked
        } else {
            keep_alive = false;
            Framing::Close
        }
    } else {
        match f.content_length {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => {
                keep_alive = false;
                Framing::Close
            }
        }
    };
    let mut head = ResponseHead::new(status, reason, minor, list);
    head.keep_alive = keep_alive;
    if framing != Framing::Empty {
        head.codings = f.codings.map(Bytes::from);
    }
    Ok(Some(Parsed { head, framing }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mosn_api::Headers;

    fn req(s: &str) -> Result<Option<Parsed<RequestHead>>, ParseError> {
        parse_request(&mut BytesMut::from(s))
    }

    #[test]
    fn a_simple_request_keeps_names_as_sent() {
        let mut b = BytesMut::from("GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-Mixed-Case: v\r\nConnection: keep-alive, x-drop\r\nx-drop: 1\r\n\r\nNEXT");
        let p = parse_request(&mut b).unwrap().unwrap();
        assert_eq!(&b[..], b"NEXT");
        assert_eq!(p.head.method(), b"GET");
        assert_eq!(p.head.path(), b"/a");
        assert_eq!(p.head.get(":path"), Some(&b"/a?b=1"[..]));
        assert_eq!(p.head.get(":authority"), Some(&b"x"[..]));
        assert_eq!(p.head.get("x-mixed-case"), Some(&b"v"[..]));
        let fwd: Vec<_> = p.head.fields.forwarded().map(|(n, _)| n.to_vec()).collect();
        assert_eq!(fwd, vec![b"Host".to_vec(), b"X-Mixed-Case".to_vec()]);
        assert_eq!(p.framing, Framing::Empty);
        assert!(p.head.keep_alive);
    }

    #[test]
    fn codings_before_chunked_are_kept_for_the_upstream() {
        let p = req("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip ;\r\nTransfer-Encoding: , deflate, chunked;p=1\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(p.framing, Framing::Chunked);
        assert_eq!(p.head.codings.as_deref(), Some(&b"gzip, deflate"[..]));
        let mut out = BytesMut::new();
        crate::http1::encode::request(&p.head, p.framing, Default::default(), &mut out);
        let s = String::from_utf8_lossy(&out).into_owned();
        assert!(
            s.contains("transfer-encoding: gzip, deflate, chunked\r\n"),
            "{s}"
        );
        assert_eq!(s.matches("ransfer-").count(), 1, "{s}");
    }

    #[test]
    fn valid_requests_another_parser_could_frame_differently_are_marked() {
        for (r, why) in [
            (
                "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n",
                "GET",
            ),
            (
                "HEAD / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
                "GET",
            ),
            (
                "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
                "repeated",
            ),
            (
                "POST / HTTP/1.1\r\nHost: x\r\nTransfer_Encoding: chunked\r\n\r\n",
                "named like",
            ),
            (
                "POST / HTTP/1.1\r\nHost: x\r\ncontent--length: 3\r\n\r\n",
                "named like",
            ),
        ] {
            let p = req(r).unwrap().unwrap();
            assert!(
                p.head.ambiguous.is_some_and(|a| a.contains(why)),
                "{r:?}: {:?}",
                p.head.ambiguous
            );
            assert!(!p.head.keep_alive, "{r:?} keeps the connection");
        }
        for r in [
            "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nX-Content-Length: 3\r\n\r\n",
        ] {
            let p = req(r).unwrap().unwrap();
            assert_eq!(p.head.ambiguous, None, "{r:?}");
            assert!(p.head.keep_alive);
        }
    }

    #[test]
    fn later_minor_versions_are_read_as_11_and_others_refused() {
        let p = req("GET / HTTP/1.2\r\nHost: x\r\n\r\n").unwrap().unwrap();
        assert_eq!(p.head.minor, 1);
        for r in [
            "GET / HTTP/0.9\r\n\r\n",
            "GET / HTTP/2.0\r\n\r\n",
            "GET /\r\n\r\n",
        ] {
            assert!(req(r).is_err(), "{r:?}");
        }
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        let bad = [
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked,chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
        ];
        for b in bad {
            assert!(req(b).is_err(), "accepted: {b:?}");
        }
        // A list of equal values is refused too (http_desync_guardian rates it Severe).
        assert!(req("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n").is_err());
    }

    #[test]
    fn absolute_form_gives_origin_form_and_authority() {
        let p = req("GET http://example.com:8080?q HTTP/1.1\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(p.head.path_and_query(), b"/?q");
        assert_eq!(p.head.host(), Some(&b"example.com:8080"[..]));
    }

    #[test]
    fn too_large_heads_are_431() {
        let mut b = BytesMut::from(&b"GET / HTTP/1.1\r\nx: "[..]);
        b.extend_from_slice(&vec![b'a'; MAX_HEAD_BYTES]);
        assert_eq!(parse_request(&mut b).unwrap_err().status(), 431);
    }

    #[test]
    fn response_framing_follows_rfc_9112_6_3() {
        let r = |s: &str, head: bool| {
            parse_response(&mut BytesMut::from(s), head)
                .unwrap()
                .unwrap()
        };
        assert_eq!(
            r("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", false).framing,
            Framing::Length(3)
        );
        assert_eq!(
            r("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", true).framing,
            Framing::Empty
        );
        assert_eq!(
            r("HTTP/1.1 204 No Content\r\n\r\n", false).framing,
            Framing::Empty
        );
        assert_eq!(
            r(
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
                false
            )
            .framing,
            Framing::Empty
        );
        let c = r(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            false,
        );
        assert_eq!(c.framing, Framing::Chunked);
        assert!(!c.head.keep_alive);
        let e = r("HTTP/1.1 200 OK\r\n\r\n", false);
        assert_eq!(e.framing, Framing::Close);
        assert!(!e.head.keep_alive);
        assert_eq!(e.head.get(":status"), Some(&b"200"[..]));
        assert!(parse_response(
            &mut BytesMut::from(
                "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"
            ),
            false
        )
        .is_err());
    }
}
