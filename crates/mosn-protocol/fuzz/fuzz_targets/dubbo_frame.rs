//! Dubbo frames from arbitrary bytes, through the XProtocol decoder the proxy uses (framing,
//! then the hessian2 call read into header fields): it never panics, consumes nothing of an
//! incomplete frame, an accepted frame re-encodes to exactly the bytes it was read from, and
//! every request can be answered with an error response that decodes again.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mosn_api::{LocalReply, ResponseFlag};
use mosn_protocol::dubbo::Dubbo;
use mosn_protocol::xprotocol::{FrameKind, XProtocol};

fuzz_target!(|data: &[u8]| {
    let d = Dubbo::default();
    let mut buf = BytesMut::from(data);
    match d.decode(&mut buf) {
        Ok(Some(f)) => {
            let used = data.len() - buf.len();
            let mut out = BytesMut::new();
            d.encode(&f, &mut out);
            assert_eq!(&out[..], &data[..used], "re-encoding changed the frame");
            if matches!(d.kind(&f), FrameKind::Request | FrameKind::Oneway) {
                let reply = d.refused(&f).unwrap_or(LocalReply {
                    flag: Some(ResponseFlag::NoRoute),
                    status: 404,
                    body: Default::default(),
                });
                let mut wire = BytesMut::new();
                d.encode(&d.hijack(&f, &reply), &mut wire);
                let back = d.decode(&mut wire).unwrap().unwrap();
                assert_eq!(back.request_id, f.request_id);
            }
        }
        Ok(None) => assert_eq!(buf.len(), data.len(), "an incomplete frame consumed bytes"),
        Err(_) => {}
    }
});
