//! Dubbo frames from arbitrary bytes: the decoder never panics, consumes nothing of an incomplete
//! frame, and an accepted frame re-encodes to exactly the bytes it was read from.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mosn_protocol::dubbo::decode;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    match decode(&mut buf) {
        Ok(Some(f)) => {
            let used = data.len() - buf.len();
            let mut out = BytesMut::new();
            f.encode(&mut out);
            assert_eq!(&out[..], &data[..used], "re-encoding changed the frame");
        }
        Ok(None) => assert_eq!(buf.len(), data.len(), "an incomplete frame consumed bytes"),
        Err(_) => {}
    }
});
