//! Protocol detection for `Auto` listeners: which protocol a connection speaks, from its first bytes,
//! decided as soon as the bytes allow (no fixed wait, no fixed length).
//!
//! Each protocol is a [`Matcher`] that answers [`Match::Yes`], [`Match::No`] or [`Match::NeedMore`]
//! for the bytes received so far; [`detect`] asks the candidates in order. HTTP/2 is recognised by
//! its client connection preface (RFC 9113 §3.4), HTTP/1.x by a method token followed by a space
//! (RFC 9112 §3). The HTTP/2 preface starts like an HTTP/1 request (`PRI * ...`), so HTTP/2 is asked
//! first and HTTP/1 is only decided once the preface is ruled out. The RPC protocols add their own
//! matchers (Bolt's and Dubbo's magic bytes) with the XProtocol codecs.

use mosn_api::Protocol;

use crate::token::is_tchar;

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Longest HTTP/1 method token accepted before the space, in bytes (the registered methods are at
/// most 17 characters long; a longer token is not taken for HTTP/1).
pub const MAX_METHOD_LEN: usize = 24;

/// One protocol's verdict on the first bytes of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// These bytes start this protocol.
    Yes,
    /// They cannot start this protocol.
    No,
    /// They could: more bytes are needed.
    NeedMore,
}

/// Recognises one protocol from a connection's first bytes.
pub trait Matcher {
    /// The protocol recognised.
    fn protocol(&self) -> Protocol;
    /// The verdict on `first` (every byte received so far, at least one).
    fn matches(&self, first: &[u8]) -> Match;
}

/// HTTP/2 by its client preface.
#[derive(Debug, Clone, Copy, Default)]
pub struct Http2Preface;

impl Matcher for Http2Preface {
    fn protocol(&self) -> Protocol {
        Protocol::Http2
    }
    fn matches(&self, first: &[u8]) -> Match {
        let n = first.len().min(H2_PREFACE.len());
        if first[..n] != H2_PREFACE[..n] {
            Match::No
        } else if n == H2_PREFACE.len() {
            Match::Yes
        } else {
            Match::NeedMore
        }
    }
}

/// HTTP/1.x by a method token (RFC 9110 §5.6.2 `tchar`s) followed by a space.
#[derive(Debug, Clone, Copy, Default)]
pub struct Http1Method;

impl Matcher for Http1Method {
    fn protocol(&self) -> Protocol {
        Protocol::Http1
    }
    fn matches(&self, first: &[u8]) -> Match {
        for (i, b) in first.iter().enumerate() {
            if *b == b' ' {
                return if i == 0 { Match::No } else { Match::Yes };
            }
            if !is_tchar(*b) || i >= MAX_METHOD_LEN {
                return Match::No;
            }
        }
        Match::NeedMore
    }
}

/// What [`detect`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    /// The connection speaks this protocol.
    Protocol(Protocol),
    /// Some candidate still needs more bytes to decide.
    NeedMore,
    /// No candidate matches: close, or hand the connection to the fallback network filter
    /// (`fallback_for_unknown_protocol`).
    Unknown,
}

/// Decides among `candidates`, in order: the first `Yes` wins unless an earlier candidate still
/// needs more bytes (so a prefix of the HTTP/2 preface waits rather than being taken for HTTP/1).
pub fn detect(first: &[u8], candidates: &[&dyn Matcher]) -> Detected {
    if first.is_empty() {
        return Detected::NeedMore;
    }
    for m in candidates {
        match m.matches(first) {
            Match::Yes => return Detected::Protocol(m.protocol()),
            Match::NeedMore => return Detected::NeedMore,
            Match::No => {}
        }
    }
    Detected::Unknown
}

/// The candidates of MOSN's `Auto` for HTTP: HTTP/2 first, then HTTP/1.
pub const HTTP_AUTO: &[&dyn Matcher] = &[&Http2Preface, &Http1Method];

/// What an `Auto` listener tells apart: HTTP/2, HTTP/1.x, Bolt v1, Bolt v2 and Dubbo. None of
/// them can start like another (Bolt's first byte, 1 or 2, and Dubbo's `0xda` are no method
/// character).
pub const AUTO: &[&dyn Matcher] = &[
    &Http2Preface,
    &Http1Method,
    &crate::bolt::Bolt {
        v2: false,
        goaway: false,
    },
    &crate::bolt::Bolt {
        v2: true,
        goaway: false,
    },
    &crate::dubbo::Dubbo { goaway: false },
];

#[cfg(test)]
mod tests {
    use super::*;

    fn every_prefix(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
        (1..=bytes.len()).map(move |n| &bytes[..n])
    }

    #[test]
    fn http2_is_decided_by_the_whole_preface_and_waits_before_it() {
        for p in every_prefix(H2_PREFACE) {
            let want = if p.len() == H2_PREFACE.len() {
                Detected::Protocol(Protocol::Http2)
            } else {
                Detected::NeedMore
            };
            assert_eq!(
                detect(p, HTTP_AUTO),
                want,
                "{:?}",
                String::from_utf8_lossy(p)
            );
        }
        let mut more = H2_PREFACE.to_vec();
        more.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        assert_eq!(
            detect(&more, HTTP_AUTO),
            Detected::Protocol(Protocol::Http2)
        );
    }

    #[test]
    fn http1_is_decided_at_the_space_after_the_method() {
        for req in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"POST /x HTTP/1.0\r\n",
            b"PRI /not-h2 HTTP/1.1\r\n",
        ] {
            let sp = req.iter().position(|b| *b == b' ').unwrap();
            for p in every_prefix(req) {
                let got = detect(p, HTTP_AUTO);
                if p.len() > sp && !H2_PREFACE.starts_with(p) {
                    assert_eq!(got, Detected::Protocol(Protocol::Http1), "{p:?}");
                } else {
                    assert_eq!(got, Detected::NeedMore, "{p:?}");
                }
            }
        }
    }

    #[test]
    fn anything_else_is_unknown_at_once() {
        for first in [
            &b"\x16\x03\x01\x02\x00"[..], // a TLS ClientHello
            b"\x01\x01\x00\x01",          // SOFA Bolt v1 request
            b"\xda\xbb\xc2\x00",          // Dubbo
            b" GET / HTTP/1.1",
            b"SSH-2.0-OpenSSH_9.2\r\n",
        ] {
            assert_eq!(detect(first, HTTP_AUTO), Detected::Unknown, "{first:?}");
        }
        let long = [b'A'; MAX_METHOD_LEN + 2];
        assert_eq!(detect(&long, HTTP_AUTO), Detected::Unknown);
    }
}
