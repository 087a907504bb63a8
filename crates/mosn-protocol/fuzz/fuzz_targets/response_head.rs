//! Response heads from arbitrary bytes (first byte: whether the request was HEAD and the client's
//! minor version): the parser never panics, and an accepted head re-encodes for the client into
//! bytes the parser accepts again with the same status.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mosn_protocol::http1::encode::{self, ResponseOptions};
use mosn_protocol::http1::{parse_response, ParseError, MAX_HEADERS, MAX_HEAD_BYTES};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let head_request = flags & 1 == 1;
    let mut buf = BytesMut::from(rest);
    let Ok(Some(p)) = parse_response(&mut buf, head_request) else {
        return;
    };
    let mut out = BytesMut::new();
    let opts = ResponseOptions {
        client_minor: (flags >> 1) & 1,
        close: flags & 4 == 4,
        head_request,
    };
    encode::response(&p.head, p.framing, opts, &mut out);
    let again = match parse_response(&mut out, head_request) {
        Ok(Some(a)) => a,
        // The proxy writes up to two fields of its own (framing, Connection): a head at the limits
        // may grow past them, and the client sees the same 431-class refusal any parser gives.
        Err(ParseError::TooLarge)
            if p.head.fields.len() + 2 > MAX_HEADERS
                || rest.len() - buf.len() + 64 > MAX_HEAD_BYTES =>
        {
            return
        }
        other => panic!("re-encoded head refused: {other:?}"),
    };
    assert!(out.is_empty(), "re-encoded head left bytes behind");
    assert_eq!(again.head.status, p.head.status);
});
