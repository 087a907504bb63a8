//! Bolt frames from arbitrary bytes: the decoder never panics, consumes nothing for an incomplete
//! frame, and a frame it accepts re-encodes to bytes that decode to the same frame.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mosn_protocol::bolt::decode;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    match decode(&mut buf) {
        Ok(Some(f)) => {
            let mut out = BytesMut::new();
            f.encode(&mut out);
            let again = decode(&mut out).expect("own encoding refused").expect("own encoding incomplete");
            assert!(out.is_empty(), "own encoding left bytes");
            assert_eq!(again, f);
        }
        Ok(None) => assert_eq!(buf.len(), data.len(), "an incomplete frame consumed bytes"),
        Err(_) => {}
    }
});
