//! Dubbo as an [`XProtocol`]: MOSN's `dubbo`. Requests are routed by the header fields read from
//! their hessian2 body ([`Frame::read_headers`]); the body itself goes on untouched, and only the
//! request id in the header is rewritten upstream.
//!
//! Differences from MOSN, each a fix:
//! - a one-way call (two-way bit clear) is forwarded without waiting for an answer (MOSN waits
//!   for one until its timeout);
//! - a request whose body cannot be read (not hessian2, malformed) gets an error response and the
//!   connection stays open (MOSN closes it);
//! - a provider's read-only event (Dubbo's graceful shutdown notice) stops new requests on that
//!   upstream connection, and the proxy sends the same event to its own clients on graceful
//!   shutdown when `goaway` is set.

use bytes::{Bytes, BytesMut};
use mosn_api::{LocalReply, PoolMode, Protocol};

use super::{decode, status, DubboError, Frame, FLAG_EVENT, FLAG_REQUEST, FLAG_TWO_WAY, HESSIAN2};
use super::{HEARTBEAT_BODY, MAGIC, READONLY_BODY};
use crate::detect::Match;
use crate::xprotocol::{FrameKind, XProtocol};

/// The Dubbo protocol.
#[derive(Debug, Clone, Copy, Default)]
pub struct Dubbo {
    /// Send Dubbo's read-only event to every client connection on graceful shutdown, so Dubbo
    /// consumers stop choosing this connection before it closes. Off by default: MOSN sends
    /// nothing.
    pub goaway: bool,
}

impl XProtocol for Dubbo {
    type Frame = Frame;
    type Error = DubboError;

    fn protocol(&self) -> Protocol {
        Protocol::Dubbo
    }

    /// The magic `0xdabb` (MOSN's matcher waits for 16 bytes; two decide).
    fn matches(&self, first: &[u8]) -> Match {
        match first {
            [] => Match::NeedMore,
            [a] if *a == MAGIC[0] => Match::NeedMore,
            [a, b, ..] if [*a, *b] == MAGIC => Match::Yes,
            _ => Match::No,
        }
    }

    fn decode(&self, buf: &mut BytesMut) -> Result<Option<Frame>, DubboError> {
        if buf.is_empty() {
            return Ok(None);
        }
        let mut f = decode(buf)?;
        if let Some(f) = &mut f {
            f.read_headers();
        }
        Ok(f)
    }

    fn encode(&self, frame: &Frame, out: &mut BytesMut) {
        frame.encode(out)
    }

    fn kind(&self, f: &Frame) -> FrameKind {
        match (f.is_request(), f.is_event()) {
            (true, true) if f.is_readonly_event() => FrameKind::GoAway,
            (true, true) => FrameKind::Heartbeat,
            (false, true) => FrameKind::HeartbeatReply,
            (true, false) if f.is_two_way() => FrameKind::Request,
            (true, false) => FrameKind::Oneway,
            (false, false) => FrameKind::Response,
        }
    }

    fn request_id(&self, f: &Frame) -> u64 {
        f.request_id
    }

    fn set_request_id(&self, f: &mut Frame, id: u64) {
        f.request_id = id;
    }

    /// A two-way heartbeat event with a `null` body, as a Dubbo client sends it (MOSN sends none;
    /// mosn-rs sends them only when the cluster sets `keepalive`).
    fn heartbeat(&self, id: u64) -> Frame {
        Frame::new(
            FLAG_REQUEST | FLAG_TWO_WAY | FLAG_EVENT | HESSIAN2,
            0,
            id,
            Bytes::from_static(HEARTBEAT_BODY),
        )
    }

    fn heartbeat_reply(&self, request: &Frame) -> Frame {
        request.heartbeat_reply()
    }

    fn hijack(&self, request: &Frame, reply: &LocalReply) -> Frame {
        let (text, status) = status::for_reply(reply);
        request.error_response(status, &text)
    }

    /// Dubbo's read-only event (`READONLY_EVENT`), one-way, id 0.
    fn goaway(&self) -> Option<Frame> {
        self.goaway.then(|| {
            Frame::new(
                FLAG_REQUEST | FLAG_EVENT | HESSIAN2,
                0,
                0,
                Bytes::from_static(READONLY_BODY),
            )
        })
    }

    fn refused(&self, f: &Frame) -> Option<LocalReply> {
        f.unreadable.as_ref().map(|why| LocalReply {
            flag: Some(mosn_api::ResponseFlag::DownstreamProtocolError),
            status: 400,
            body: Bytes::copy_from_slice(why.as_bytes()),
        })
    }

    fn http_status(&self, f: &Frame) -> u16 {
        status::to_http(f.status)
    }

    fn pool_mode(&self) -> PoolMode {
        PoolMode::Multiplex
    }
}

/// For `Auto`: the magic `0xdabb`.
impl crate::detect::Matcher for Dubbo {
    fn protocol(&self) -> Protocol {
        Protocol::Dubbo
    }
    fn matches(&self, first: &[u8]) -> Match {
        XProtocol::matches(self, first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mosn_api::{Headers, ResponseFlag};

    fn data(name: &str) -> BytesMut {
        let p = format!(
            "{}/../../tests/data/dubbo/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        BytesMut::from(&std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))[..])
    }

    #[test]
    fn real_requests_expose_their_call_as_headers() {
        let d = Dubbo::default();
        let f = d.decode(&mut data("dubbo_req.bin")).unwrap().unwrap();
        assert_eq!(d.kind(&f), FrameKind::Request);
        assert_eq!(f.get_str("service"), Some("com.test.TestService"));
        assert_eq!(f.get_str("method"), Some("test-method"));
        assert_eq!(f.get_str("version"), Some("1.0.0"));
        assert_eq!(f.get_str("path"), Some("com.test.TestService"));
        assert!(f.get_str("dubbo").is_some());
        assert!(f.unreadable.is_none() && d.refused(&f).is_none());
        let f = d
            .decode(&mut data("dubbo_req_java_class.bin"))
            .unwrap()
            .unwrap();
        assert_eq!(f.get_str("service"), Some("com.test.TestService"));
        // Responses and heartbeats carry no call.
        let r = d.decode(&mut data("dubbo_res.bin")).unwrap().unwrap();
        assert_eq!(d.kind(&r), FrameKind::Response);
        assert_eq!((r.get("service"), d.http_status(&r)), (None, 200));
        let hb = d.decode(&mut data("heartbeat_req.bin")).unwrap().unwrap();
        assert_eq!(d.kind(&hb), FrameKind::Heartbeat);
        let hr = d.decode(&mut data("heartbeat_res.bin")).unwrap().unwrap();
        assert_eq!(d.kind(&hr), FrameKind::HeartbeatReply);
        let e = d
            .decode(&mut data("dubbo_res_with_sys_error.bin"))
            .unwrap()
            .unwrap();
        assert_eq!(d.http_status(&e), 500);
        assert_eq!(d.decode(&mut BytesMut::new()).unwrap(), None);
    }

    #[test]
    fn interface_attachment_overrides_the_path_and_group_is_read() {
        // dubbo "2.0.2", path "p.Svc", version "1.0", method "m", descriptor "", attachments.
        let mut body = BytesMut::new();
        for s in ["2.0.2", "p.Svc", "1.0", "m", ""] {
            super::super::hessian::write_string(&mut body, s);
        }
        body.extend_from_slice(b"H");
        for s in ["interface", "p.Iface", "group", "blue"] {
            super::super::hessian::write_string(&mut body, s);
        }
        body.extend_from_slice(b"Z");
        let req = Frame::new(0xc2, 0, 5, body.freeze());
        let mut wire = BytesMut::new();
        req.encode(&mut wire);
        let d = Dubbo::default();
        let f = d.decode(&mut wire).unwrap().unwrap();
        assert_eq!(f.get_str("service"), Some("p.Iface"));
        assert_eq!(f.get_str("group"), Some("blue"));
        assert_eq!(f.get_str("version"), Some("1.0"));
        // One-way: the two-way bit clear.
        let mut ow = f.clone();
        ow.flags = FLAG_REQUEST | HESSIAN2;
        assert_eq!(d.kind(&ow), FrameKind::Oneway);
    }

    #[test]
    fn a_sofa_rpc_node_call_keeps_its_service_over_its_service_attachment() {
        // Captured from npm dubbo-remoting 2.1.4 under sofa-rpc-node 2.10.0: its attachments
        // carry `service` = `interface:version` and `group` = `SOFA`.
        let mut wire = BytesMut::from(
            &b"\xda\xbb\xc2\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\xb6\x055.3.0\x1bcom.nodejs.test.TestService\x051.0.0\x04echo\x12Ljava/lang/String;\x02hiH\x05dubbo\x055.3.0\x05group\x04SOFA\x04path\x1bcom.nodejs.test.TestService\x07service0!com.nodejs.test.TestService:1.0.0\x07version\x051.0.0Z"[..],
        );
        let d = Dubbo::default();
        let f = d.decode(&mut wire).unwrap().unwrap();
        assert_eq!(f.get_str("service"), Some("com.nodejs.test.TestService"));
        assert_eq!(f.get_str("version"), Some("1.0.0"));
        assert_eq!(f.get_str("method"), Some("echo"));
        assert_eq!(f.get_str("group"), Some("SOFA"));
        assert!(wire.is_empty());
    }

    #[test]
    fn unreadable_requests_are_refused_with_an_error_response() {
        let d = Dubbo::default();
        // Kryo (id 8): framed, but not read.
        let mut wire = BytesMut::new();
        Frame::new(0xc8, 0, 9, Bytes::from_static(b"\x01\x02")).encode(&mut wire);
        let f = d.decode(&mut wire).unwrap().unwrap();
        let r = d.refused(&f).expect("refused");
        assert_eq!(r.flag, Some(ResponseFlag::DownstreamProtocolError));
        let resp = d.hijack(&f, &r);
        assert_eq!((resp.request_id, resp.status), (9, status::SERVICE_ERROR));
        assert!(!resp.is_request());
        // Hessian2 but garbage.
        let mut wire = BytesMut::new();
        Frame::new(0xc2, 0, 10, Bytes::from_static(b"\xff")).encode(&mut wire);
        assert!(d.refused(&d.decode(&mut wire).unwrap().unwrap()).is_some());
    }

    #[test]
    fn hijacks_carry_mosn_text_as_a_hessian_string() {
        let d = Dubbo::default();
        let req = d.decode(&mut data("dubbo_req.bin")).unwrap().unwrap();
        let r = d.hijack(
            &req,
            &LocalReply {
                flag: Some(ResponseFlag::NoRoute),
                status: 404,
                body: Bytes::new(),
            },
        );
        assert_eq!((r.status, r.request_id, r.flags), (60, 1, 0x02));
        let msg = super::super::hessian::Reader::new(&r.body)
            .string()
            .unwrap();
        assert_eq!(msg.as_deref(), Some("404|router unavailable"));
        assert_eq!(d.http_status(&r), 404);
    }

    #[test]
    fn heartbeats_goaway_and_matching() {
        let d = Dubbo::default();
        let hb = d.heartbeat(77);
        assert_eq!((d.kind(&hb), d.request_id(&hb)), (FrameKind::Heartbeat, 77));
        let reply = d.heartbeat_reply(&hb);
        assert_eq!(
            (d.kind(&reply), reply.request_id),
            (FrameKind::HeartbeatReply, 77)
        );
        assert!(d.goaway().is_none(), "off by default, as in MOSN");
        let g = Dubbo { goaway: true }.goaway().unwrap();
        assert_eq!(d.kind(&g), FrameKind::GoAway);
        assert!(!g.is_two_way());
        assert_eq!(XProtocol::matches(&d, &[0xda]), Match::NeedMore);
        assert_eq!(XProtocol::matches(&d, &[0xda, 0xbb]), Match::Yes);
        assert_eq!(XProtocol::matches(&d, b"GET"), Match::No);
        assert_eq!(XProtocol::matches(&d, &[1, 1]), Match::No);
        assert_eq!(d.pool_mode(), PoolMode::Multiplex);
    }
}
