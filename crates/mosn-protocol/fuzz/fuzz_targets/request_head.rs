//! Request heads from arbitrary bytes: the parser never panics, and a head it accepts re-encodes
//! (as the proxy forwards it) into bytes the parser accepts again with the same method, target
//! and body framing, so the upstream reads the request exactly as the proxy did.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mosn_protocol::http1::encode::{self, RequestExtras};
use mosn_protocol::http1::{parse_request, ParseError, MAX_HEADERS, MAX_HEAD_BYTES};

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    let Ok(Some(p)) = parse_request(&mut buf) else {
        return;
    };
    let mut out = BytesMut::new();
    let extras = RequestExtras {
        forwarded_for: Some(b"127.0.0.1"),
        default_host: Some(b"default"),
        close: false,
    };
    encode::request(&p.head, p.framing, extras, &mut out);
    let again = match parse_request(&mut out) {
        Ok(Some(a)) => a,
        // The proxy adds up to two fields (Host, X-Forwarded-For): a head at the limits may grow
        // past them, and the upstream answers 431 as the proxy itself would.
        Err(ParseError::TooLarge)
            if p.head.fields.len() + 2 > MAX_HEADERS
                || data.len() - buf.len() + 64 > MAX_HEAD_BYTES =>
        {
            return
        }
        other => panic!("re-encoded head refused: {other:?}"),
    };
    assert!(out.is_empty(), "re-encoded head left bytes behind");
    assert_eq!(again.head.method(), p.head.method());
    assert_eq!(again.head.path_and_query(), p.head.path_and_query());
    assert_eq!(again.framing, p.framing);
});
