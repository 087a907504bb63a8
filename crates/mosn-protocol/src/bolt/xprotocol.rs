//! Bolt as an [`XProtocol`]: MOSN's `bolt` and `boltv2`. One codec reads both versions (as MOSN's
//! `bolt` codec does); the version of frames the proxy makes itself (heartbeats) is the instance's.

use bytes::BytesMut;
use mosn_api::{LocalReply, PoolMode, Protocol};

use super::frame::{decode, BoltError, Frame, Kind, Version};
use super::{status, CMD_HEARTBEAT, CMD_REQUEST, PROTO_V1, PROTO_V2};
use crate::detect::Match;
use crate::xprotocol::{FrameKind, XProtocol};

/// MOSN's `CmdCodeGoAway` (a control command code; MOSN sends it only when enabled).
pub const CMD_GOAWAY: u16 = 100;

/// The Bolt protocol: `v2: false` for `bolt`, `true` for `boltv2`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bolt {
    /// Make heartbeats as Bolt v2 (with `ver1` 2 and no CRC).
    pub v2: bool,
    /// Send GoAway (command code [`CMD_GOAWAY`]) on graceful shutdown: MOSN's
    /// `enable_bolt_goaway`, off by default.
    pub goaway: bool,
}

impl Bolt {
    /// The version of frames the proxy makes itself: v2 has `ver1` 2 and no CRC.
    fn version(&self) -> Version {
        if self.v2 {
            Version::V2 { ver1: 2, switch: 0 }
        } else {
            Version::V1
        }
    }
}

impl XProtocol for Bolt {
    type Frame = Frame;
    type Error = BoltError;

    fn protocol(&self) -> Protocol {
        if self.v2 {
            Protocol::BoltV2
        } else {
            Protocol::Bolt
        }
    }

    /// The protocol byte (1 or 2) followed by a command type (0, 1 or 2); v2 has `ver1` between.
    fn matches(&self, first: &[u8]) -> Match {
        let ty_at = match first.first() {
            Some(&PROTO_V1) => 1,
            Some(&PROTO_V2) => 2,
            Some(_) => return Match::No,
            None => return Match::NeedMore,
        };
        match first.get(ty_at) {
            None => Match::NeedMore,
            Some(0..=2) => Match::Yes,
            Some(_) => Match::No,
        }
    }

    fn decode(&self, buf: &mut BytesMut) -> Result<Option<Frame>, BoltError> {
        decode(buf)
    }

    fn encode(&self, frame: &Frame, out: &mut BytesMut) {
        frame.encode(out)
    }

    fn kind(&self, f: &Frame) -> FrameKind {
        match (f.cmd_code, f.kind) {
            (CMD_HEARTBEAT, Kind::Response) => FrameKind::HeartbeatReply,
            (CMD_HEARTBEAT, _) => FrameKind::Heartbeat,
            (CMD_GOAWAY, _) => FrameKind::GoAway,
            (_, Kind::Request) => FrameKind::Request,
            (_, Kind::Oneway) => FrameKind::Oneway,
            (_, Kind::Response) => FrameKind::Response,
        }
    }

    /// The frame's `timeout` in milliseconds; 0 and -1 (`u32::MAX`, heartbeats) mean none.
    fn timeout(&self, f: &Frame) -> Option<std::time::Duration> {
        match f.timeout_ms {
            0 | u32::MAX => None,
            ms if f.kind != Kind::Response => Some(std::time::Duration::from_millis(ms.into())),
            _ => None,
        }
    }

    fn request_id(&self, f: &Frame) -> u64 {
        u64::from(f.request_id)
    }

    /// Bolt ids are 32 bits: the id is taken modulo 2^32 (MOSN's issue 2403 fix does the same).
    fn set_request_id(&self, f: &mut Frame, id: u64) {
        f.request_id = id as u32;
    }

    /// A heartbeat as MOSN's `Trigger` makes it: hessian2 codec, timeout -1.
    fn heartbeat(&self, id: u64) -> Frame {
        let mut f = Frame::heartbeat_template(self.version());
        self.set_request_id(&mut f, id);
        f
    }

    fn heartbeat_reply(&self, request: &Frame) -> Frame {
        request.heartbeat_ack()
    }

    fn hijack(&self, request: &Frame, reply: &LocalReply) -> Frame {
        request.hijack(status::for_reply(reply))
    }

    /// With `goaway` set (MOSN's `enable_bolt_goaway`): a request with command code 100, id 0,
    /// hessian2 codec, timeout 0 and nothing else, in the instance's version, as MOSN's
    /// `GoAway` makes it. `None` otherwise (MOSN's default).
    fn goaway(&self) -> Option<Frame> {
        if !self.goaway {
            return None;
        }
        Some(Frame::empty(self.version(), Kind::Request, CMD_GOAWAY))
    }

    fn http_status(&self, f: &Frame) -> u16 {
        status::to_http(f.status)
    }

    fn pool_mode(&self) -> PoolMode {
        PoolMode::Multiplex
    }
}

/// For `Auto`: `bolt` claims connections whose first byte is 1 (v1), `boltv2` those starting with
/// 2, each followed by a command type.
impl crate::detect::Matcher for Bolt {
    fn protocol(&self) -> Protocol {
        XProtocol::protocol(self)
    }
    fn matches(&self, first: &[u8]) -> Match {
        let want = if self.v2 { PROTO_V2 } else { PROTO_V1 };
        match first.first() {
            Some(&b) if b == want => XProtocol::matches(self, first),
            Some(_) => Match::No,
            None => Match::NeedMore,
        }
    }
}

impl Frame {
    /// A heartbeat request of `version` with id 0 (see [`Bolt::heartbeat`]).
    fn heartbeat_template(version: Version) -> Frame {
        let mut f = Frame::empty(version, Kind::Request, CMD_HEARTBEAT);
        f.timeout_ms = u32::MAX;
        f
    }

    /// An RPC request of `version` with no class, header or content (for tests and builders).
    pub fn request(version: Version, id: u32) -> Frame {
        let mut f = Frame::empty(version, Kind::Request, CMD_REQUEST);
        f.request_id = id;
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mosn_api::{Headers, ResponseFlag};

    #[test]
    fn matches_v1_and_v2_starts_and_nothing_else() {
        let b = Bolt::default();
        assert_eq!(b.matches(&[1]), Match::NeedMore);
        assert_eq!(b.matches(&[1, 1, 0, 1]), Match::Yes);
        assert_eq!(b.matches(&[2, 2, 0]), Match::Yes);
        assert_eq!(b.matches(&[1, 7]), Match::No);
        assert_eq!(b.matches(b"GET "), Match::No);
        assert_eq!(b.matches(&[0xda, 0xbb]), Match::No);
    }

    #[test]
    fn heartbeats_ids_and_hijacks_through_the_trait() {
        for v2 in [false, true] {
            let b = Bolt { v2, goaway: false };
            assert!(b.goaway().is_none(), "GoAway is off by default, as in MOSN");
            let g = Bolt { v2, goaway: true }.goaway().unwrap();
            assert_eq!(
                (b.kind(&g), g.request_id, g.cmd_code),
                (FrameKind::GoAway, 0, 100)
            );
            let mut wire = BytesMut::new();
            b.encode(&g, &mut wire);
            assert_eq!(wire.len(), if v2 { 24 } else { 22 });
            assert_eq!(b.decode(&mut wire).unwrap().unwrap(), g);
            let hb = b.heartbeat(42);
            assert_eq!(b.kind(&hb), FrameKind::Heartbeat);
            assert_eq!(b.request_id(&hb), 42);
            let mut wire = BytesMut::new();
            b.encode(&hb, &mut wire);
            let back = b.decode(&mut wire).unwrap().unwrap();
            assert_eq!(back, hb);
            let reply = b.heartbeat_reply(&back);
            assert_eq!(b.kind(&reply), FrameKind::HeartbeatReply);
            assert_eq!(b.request_id(&reply), 42);

            let mut req = Frame::request(hb.version, 7);
            req.set("service", b"com.example.Echo:1.0");
            b.set_request_id(&mut req, (1u64 << 32) + 9);
            assert_eq!(b.request_id(&req), 9, "ids are 32 bits");
            let r = b.hijack(
                &req,
                &LocalReply {
                    flag: Some(ResponseFlag::UpstreamRequestTimeout),
                    status: 504,
                    body: Default::default(),
                },
            );
            assert_eq!(b.kind(&r), FrameKind::Response);
            assert_eq!((r.status, b.http_status(&r)), (status::TIMEOUT, 504));
            assert_eq!(b.pool_mode(), PoolMode::Multiplex);
        }
    }
}
