//! HTTP/2 heads (as `h2` hands them over: method, URI, names and values that the `http` crate
//! accepts) translated to HTTP/1 must encode as exactly one request that our own HTTP/1 parser
//! reads back with the same method and target, nothing left over: an HTTP/2 value can never
//! smuggle a second request. Arbitrary trailer sections translate to HTTP/2 and back without
//! panicking, into field lines the trailer parser accepts.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mosn_protocol::http1::{encode, parse_request, Framing};
use mosn_protocol::http2::{translate, Head};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|b| *b == 0);
    let (Some(method), Some(uri)) = (parts.next(), parts.next()) else {
        return;
    };
    let Ok(method) = http::Method::from_bytes(method) else {
        return;
    };
    let Ok(uri) = http::Uri::try_from(uri) else {
        return;
    };
    if uri.path_and_query().is_none() {
        return;
    }
    let mut b = http::Request::builder().method(method).uri(uri);
    let mut fields = 0;
    while let (Some(n), Some(v)) = (parts.next(), parts.next()) {
        let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(n),
            http::HeaderValue::from_bytes(v),
        ) else {
            continue;
        };
        b = b.header(n, v);
        fields += 1;
    }
    let Ok(req) = b.body(()) else { return };
    let _ = fields;
    let head = Head::from_request(req.into_parts().0);
    let h1 = translate::request_to_h1(&head);
    let mut out = BytesMut::new();
    encode::request(&h1, Framing::Chunked, Default::default(), &mut out);
    out.extend_from_slice(b"0\r\n\r\n");
    match parse_request(&mut out) {
        Ok(Some(p)) => {
            assert_eq!(p.head.method(), head.method());
            assert_eq!(p.head.path_and_query(), head.path());
        }
        // A target or field our strict parser refuses is a 400 for the client, never a split.
        Err(_) => return,
        Ok(None) => panic!("translated head is incomplete"),
    }
    assert_eq!(&out[..], b"0\r\n\r\n", "bytes beyond the one request");

    let t = translate::trailers_to_h2(data);
    let mut raw = BytesMut::new();
    translate::trailers_to_h1(&t, &mut raw);
    let again = translate::trailers_to_h2(&raw);
    assert_eq!(again.len(), t.len());
});
