//! One Bolt frame: decoding, encoding and its header view.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use mosn_api::Headers;

use super::{CMD_HEARTBEAT, PROTO_V1, PROTO_V2, STATUS_SUCCESS};

/// Largest frame accepted, in bytes (header, class, header map, content and CRC). A larger one is
/// [`BoltError::TooLarge`].
pub const MAX_FRAME_BYTES: usize = 64 << 20;

/// The protocol version and, for v2, its extra bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Bolt v1 (`bolt`).
    V1,
    /// Bolt v2 (`boltv2`): `ver1`, and `switch` whose bit 0 turns the trailing CRC32 on.
    V2 {
        /// The `ver1` byte.
        ver1: u8,
        /// The `switch` byte.
        switch: u8,
    },
}

impl Version {
    /// True when the frame ends with a CRC32.
    pub fn crc(self) -> bool {
        matches!(self, Version::V2 { switch, .. } if switch & 1 == 1)
    }
}

/// The command type (`type` byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `1`: a request that expects a response.
    Request,
    /// `2`: a request without response.
    Oneway,
    /// `0`: a response.
    Response,
}

impl Kind {
    fn byte(self) -> u8 {
        match self {
            Kind::Response => 0,
            Kind::Request => 1,
            Kind::Oneway => 2,
        }
    }
}

/// A byte sequence that is not a valid Bolt frame. The connection cannot be read further.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoltError {
    /// The first byte is not 1 (v1) or 2 (v2).
    #[error("not a Bolt frame: protocol byte {0:#04x}")]
    Protocol(u8),
    /// The `type` byte is not 0, 1 or 2.
    #[error("unknown Bolt command type {0}")]
    Type(u8),
    /// The declared frame is larger than [`MAX_FRAME_BYTES`].
    #[error("Bolt frame of {0} bytes is over the {MAX_FRAME_BYTES}-byte limit")]
    TooLarge(usize),
    /// The header map's lengths do not add up to `headerLen`.
    #[error("malformed Bolt header map")]
    HeaderMap,
    /// A v2 frame's CRC32 does not match its bytes.
    #[error("Bolt v2 CRC32 mismatch")]
    Crc,
}

/// One Bolt frame. Class, header keys and values, and content share the received buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Version (and v2's `ver1`/`switch`).
    pub version: Version,
    /// Request, oneway or response.
    pub kind: Kind,
    /// `cmdcode`: [`super::CMD_REQUEST`], [`super::CMD_RESPONSE`] or [`super::CMD_HEARTBEAT`].
    pub cmd_code: u16,
    /// `ver2`.
    pub ver2: u8,
    /// `requestId`, which the proxy rewrites on multiplexed upstream connections.
    pub request_id: u32,
    /// `codec`: 1 hessian2, 11 protobuf.
    pub codec: u8,
    /// Request timeout in milliseconds (requests and oneways; 0 in responses).
    pub timeout_ms: u32,
    /// Response status (responses; 0 in requests).
    pub status: u16,
    /// The class name (`com.alipay.sofa.rpc.core.request.SofaRequest`), possibly empty.
    pub class: Bytes,
    headers: Vec<(Bytes, Bytes)>,
    /// The content, never decoded.
    pub content: Bytes,
}

fn fixed_len(version: Version, kind: Kind) -> usize {
    let base = if kind == Kind::Response { 20 } else { 22 };
    match version {
        Version::V1 => base,
        Version::V2 { .. } => base + 2,
    }
}

/// Splits one frame off the front of `buf`. `Ok(None)`: the frame is not complete yet (nothing is
/// consumed).
///
/// Errors: see [`BoltError`]; after one, the stream cannot be resynchronised.
pub fn decode(buf: &mut BytesMut) -> Result<Option<Frame>, BoltError> {
    let Some(&proto) = buf.first() else {
        return Ok(None);
    };
    let o = match proto {
        PROTO_V1 => 1,
        PROTO_V2 => 2,
        p => return Err(BoltError::Protocol(p)),
    };
    let Some(&ty) = buf.get(o) else {
        return Ok(None);
    };
    let kind = match ty {
        0 => Kind::Response,
        1 => Kind::Request,
        2 => Kind::Oneway,
        t => return Err(BoltError::Type(t)),
    };
    let version = if proto == PROTO_V2 {
        // ver1 at 1; switch after codec, read below once the fixed part is there.
        Version::V2 { ver1: 0, switch: 0 }
    } else {
        Version::V1
    };
    let fixed = fixed_len(version, kind);
    if buf.len() < fixed {
        return Ok(None);
    }
    let mut h = &buf[o + 1..fixed];
    let cmd_code = h.get_u16();
    let ver2 = h.get_u8();
    let request_id = h.get_u32();
    let codec = h.get_u8();
    let version = match version {
        Version::V2 { .. } => Version::V2 {
            ver1: buf[1],
            switch: h.get_u8(),
        },
        v => v,
    };
    let (timeout_ms, status) = if kind == Kind::Response {
        (0, h.get_u16())
    } else {
        (h.get_u32(), 0)
    };
    let class_len = usize::from(h.get_u16());
    let header_len = usize::from(h.get_u16());
    let content_len = h.get_u32() as usize;
    let crc_len = if version.crc() { 4 } else { 0 };
    let total = fixed + class_len + header_len + content_len + crc_len;
    if total > MAX_FRAME_BYTES {
        return Err(BoltError::TooLarge(total));
    }
    if buf.len() < total {
        // No reservation for the declared size: the reader grows the buffer as bytes arrive, so
        // a peer cannot make the proxy allocate by announcing a large frame.
        return Ok(None);
    }
    let raw = buf.split_to(total).freeze();
    if crc_len > 0 {
        let body = total - 4;
        let want = u32::from_be_bytes([raw[body], raw[body + 1], raw[body + 2], raw[body + 3]]);
        if crc32fast::hash(&raw[..body]) != want {
            return Err(BoltError::Crc);
        }
    }
    let class = raw.slice(fixed..fixed + class_len);
    let map = raw.slice(fixed + class_len..fixed + class_len + header_len);
    let content_at = fixed + class_len + header_len;
    let content = raw.slice(content_at..content_at + content_len);
    Ok(Some(Frame {
        version,
        kind,
        cmd_code,
        ver2,
        request_id,
        codec,
        timeout_ms,
        status,
        class,
        headers: header_map(&map)?,
        content,
    }))
}

/// Reads `u32 keyLen, key, u32 valueLen, value` pairs covering all of `map`.
fn header_map(map: &Bytes) -> Result<Vec<(Bytes, Bytes)>, BoltError> {
    let mut out = Vec::new();
    let mut at = 0;
    let take = |at: &mut usize| -> Result<Bytes, BoltError> {
        let len_end = at.checked_add(4).filter(|e| *e <= map.len());
        let Some(len_end) = len_end else {
            return Err(BoltError::HeaderMap);
        };
        let n = u32::from_be_bytes([map[*at], map[*at + 1], map[*at + 2], map[*at + 3]]) as usize;
        let end = len_end
            .checked_add(n)
            .filter(|e| *e <= map.len())
            .ok_or(BoltError::HeaderMap)?;
        *at = end;
        Ok(map.slice(len_end..end))
    };
    while at < map.len() {
        let k = take(&mut at)?;
        let v = take(&mut at)?;
        out.push((k, v));
    }
    Ok(out)
}

impl Frame {
    /// Appends the frame to `out`, with lengths and (for v2 with CRC) the CRC32 computed from the
    /// current fields.
    ///
    /// The class name must fit in a u16 length, the header map in a u16 length and the content in
    /// a u32 length; longer values are cut (a decoded frame always fits).
    pub fn encode(&self, out: &mut BytesMut) {
        let start = out.len();
        let map_len: usize = self
            .headers
            .iter()
            .map(|(k, v)| 8 + k.len() + v.len())
            .sum();
        let class = &self.class[..self.class.len().min(usize::from(u16::MAX))];
        let content = &self.content[..self.content.len().min(u32::MAX as usize)];
        out.reserve(24 + class.len() + map_len + content.len() + 4);
        match self.version {
            Version::V1 => {
                out.put_u8(PROTO_V1);
                out.put_u8(self.kind.byte());
            }
            Version::V2 { ver1, .. } => {
                out.put_u8(PROTO_V2);
                out.put_u8(ver1);
                out.put_u8(self.kind.byte());
            }
        }
        out.put_u16(self.cmd_code);
        out.put_u8(self.ver2);
        out.put_u32(self.request_id);
        out.put_u8(self.codec);
        if let Version::V2 { switch, .. } = self.version {
            out.put_u8(switch);
        }
        if self.kind == Kind::Response {
            out.put_u16(self.status);
        } else {
            out.put_u32(self.timeout_ms);
        }
        out.put_u16(class.len() as u16);
        out.put_u16(map_len.min(usize::from(u16::MAX)) as u16);
        out.put_u32(content.len() as u32);
        out.put_slice(class);
        let map_start = out.len();
        for (k, v) in &self.headers {
            if out.len() - map_start + 8 + k.len() + v.len() > usize::from(u16::MAX) {
                break;
            }
            out.put_u32(k.len() as u32);
            out.put_slice(k);
            out.put_u32(v.len() as u32);
            out.put_slice(v);
        }
        out.put_slice(content);
        if self.version.crc() {
            let crc = crc32fast::hash(&out[start..]);
            out.put_u32(crc);
        }
    }

    /// True for a heartbeat (request or reply).
    pub fn is_heartbeat(&self) -> bool {
        self.cmd_code == CMD_HEARTBEAT
    }

    /// A frame with no class, header or content: hessian2 codec, `ver2` 1, id 0.
    pub(crate) fn empty(version: Version, kind: Kind, cmd_code: u16) -> Frame {
        Frame {
            version,
            kind,
            cmd_code,
            ver2: 1,
            request_id: 0,
            codec: 1,
            timeout_ms: 0,
            status: STATUS_SUCCESS,
            class: Bytes::new(),
            headers: Vec::new(),
            content: Bytes::new(),
        }
    }

    /// The reply the proxy sends to a heartbeat request itself: same version, id and codec,
    /// status success, no body.
    pub fn heartbeat_ack(&self) -> Frame {
        let mut f = Frame::empty(self.version, Kind::Response, CMD_HEARTBEAT);
        f.ver2 = self.ver2;
        f.request_id = self.request_id;
        f.codec = self.codec;
        f
    }
}

/// The header map as [`Headers`], keys matched case-insensitively; the class name reads as the
/// pseudo-key `:class` (not visited).
impl Headers for Frame {
    fn get(&self, key: &str) -> Option<&[u8]> {
        if key == ":class" {
            return Some(&self.class);
        }
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key.as_bytes()))
            .map(|(_, v)| &v[..])
    }
    fn set(&mut self, key: &str, value: &[u8]) {
        if key == ":class" {
            self.class = Bytes::copy_from_slice(value);
            return;
        }
        self.remove(key);
        self.append(key, value);
    }
    fn append(&mut self, key: &str, value: &[u8]) {
        self.headers.push((
            Bytes::copy_from_slice(key.as_bytes()),
            Bytes::copy_from_slice(value),
        ));
    }
    fn remove(&mut self, key: &str) {
        self.headers
            .retain(|(k, _)| !k.eq_ignore_ascii_case(key.as_bytes()));
    }
    fn visit(&self, f: &mut dyn FnMut(&[u8], &[u8])) {
        for (k, v) in &self.headers {
            f(k, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bolt::{CMD_REQUEST, CMD_RESPONSE};

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// A SOFARPC (Node) request captured between a real client and server (the team's peers notes).
    const V1_REQUEST: &str = "0101000101000000010100000bb8002c002e000000ef636f6d2e616c69706179
        2e736f66612e7270632e636f72652e726571756573742e536f66615265717565
        737400000007736572766963650000001f636f6d2e6e6f64656a732e74657374
        2e54657374536572766963653a312e304fbc636f6d2e616c697061792e736f66
        612e7270632e636f72652e726571756573742e536f666152657175657374950a
        6d6574686f644e616d650d6d6574686f64417267536967731774617267657453
        657276696365556e697175654e616d650d7461726765744170704e616d650c72
        65717565737450726f70736f9004706c7573567400115b6a6176612e6c616e67
        2e537472696e676e0203696e7403696e747a1f636f6d2e6e6f64656a732e7465
        73742e54657374536572766963653a312e304e4d07736572766963651f636f6d
        2e6e6f64656a732e746573742e54657374536572766963653a312e307a9191";

    fn data(name: &str) -> Vec<u8> {
        let p = format!(
            "{}/../../tests/data/bolt/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
    }

    fn roundtrip(bytes: &[u8]) -> Frame {
        // Every split point: nothing until the whole frame is there.
        for cut in 0..bytes.len() {
            let mut b = BytesMut::from(&bytes[..cut]);
            assert_eq!(
                decode(&mut b),
                Ok(None),
                "complete at {cut} of {}",
                bytes.len()
            );
            assert_eq!(b.len(), cut, "consumed bytes of an incomplete frame");
        }
        let mut b = BytesMut::from(bytes);
        b.extend_from_slice(b"\x01next");
        let f = decode(&mut b).unwrap().unwrap();
        assert_eq!(&b[..], b"\x01next", "the following bytes stay");
        let mut out = BytesMut::new();
        f.encode(&mut out);
        assert_eq!(&out[..], bytes, "re-encoding changed the frame");
        f
    }

    #[test]
    fn a_real_v1_request_exposes_service_and_keeps_its_content() {
        let bytes = hex(V1_REQUEST);
        assert_eq!(bytes.len(), 351);
        let f = roundtrip(&bytes);
        assert_eq!(
            (f.version, f.kind, f.cmd_code),
            (Version::V1, Kind::Request, CMD_REQUEST)
        );
        assert_eq!((f.request_id, f.codec, f.timeout_ms), (1, 1, 3000));
        assert_eq!(
            f.get_str(":class"),
            Some("com.alipay.sofa.rpc.core.request.SofaRequest")
        );
        assert_eq!(
            f.get_str("service"),
            Some("com.nodejs.test.TestService:1.0")
        );
        assert_eq!(
            f.get_str("SERVICE"),
            Some("com.nodejs.test.TestService:1.0")
        );
        assert_eq!(f.content.len(), 239);
        assert_eq!(
            &f.content[f.content.len() - 2..],
            b"\x91\x91",
            "hessian args 1, 1"
        );
    }

    #[test]
    fn real_java_responses_v1_and_v2_with_crc() {
        let f = roundtrip(&data("bolt_response_server_exception_java.bin"));
        assert_eq!(
            (f.version, f.kind, f.cmd_code),
            (Version::V1, Kind::Response, CMD_RESPONSE)
        );
        let f = roundtrip(&data("boltv2_response_java_crc.bin"));
        assert_eq!(f.version, Version::V2 { ver1: 2, switch: 1 });
        assert_eq!(
            (f.kind, f.cmd_code, f.request_id, f.status),
            (Kind::Response, CMD_RESPONSE, 1, 0)
        );
        assert_eq!(
            f.get_str(":class"),
            Some("com.alipay.sofa.rpc.core.response.SofaResponse")
        );
        assert_eq!(f.content.len(), 750);
        // A flipped content byte fails the CRC.
        let mut bad = data("boltv2_response_java_crc.bin");
        bad[100] ^= 1;
        assert_eq!(decode(&mut BytesMut::from(&bad[..])), Err(BoltError::Crc));
    }

    #[test]
    fn heartbeats_are_answered_with_the_captured_ack() {
        let hb = hex("01 01 0000 01 00000007 01 00000bb8 0000 0000 00000000");
        let f = roundtrip(&hb);
        assert!(f.is_heartbeat());
        let mut out = BytesMut::new();
        f.heartbeat_ack().encode(&mut out);
        assert_eq!(
            &out[..],
            &hex("01 00 0000 01 00000007 01 0000 0000 0000 00000000")[..]
        );
    }

    #[test]
    fn header_changes_and_id_rewrites_re_encode_with_a_fresh_crc() {
        let mut f = roundtrip(&data("boltv2_response_java_crc.bin"));
        f.request_id = 77;
        f.set("x-mosn-host", b"10.0.0.1");
        let mut out = BytesMut::new();
        f.encode(&mut out);
        let g = decode(&mut out).unwrap().unwrap();
        assert_eq!(g.request_id, 77);
        assert_eq!(g.get_str("x-mosn-host"), Some("10.0.0.1"));
        assert_eq!(g.content, f.content);
        let mut seen = Vec::new();
        g.visit(&mut |k, v| seen.push((k.to_vec(), v.to_vec())));
        assert_eq!(seen, vec![(b"x-mosn-host".to_vec(), b"10.0.0.1".to_vec())]);
    }

    #[test]
    fn malformed_frames_are_errors() {
        assert_eq!(
            decode(&mut BytesMut::from(&b"GET / HTTP/1.1"[..])),
            Err(BoltError::Protocol(b'G'))
        );
        assert_eq!(
            decode(&mut BytesMut::from(&b"\x01\x07"[..])),
            Err(BoltError::Type(7))
        );
        // headerLen 5 with a key length that runs past it.
        let mut bad = hex("01 01 0001 01 00000001 01 00000bb8 0000 0005 00000000");
        bad.extend_from_slice(&[0, 0, 0, 9, b'k']);
        assert_eq!(
            decode(&mut BytesMut::from(&bad[..])),
            Err(BoltError::HeaderMap)
        );
        // A declared content of 4 GiB.
        let huge = hex("01 01 0001 01 00000001 01 00000bb8 0000 0000 ffffffff");
        assert!(matches!(
            decode(&mut BytesMut::from(&huge[..])),
            Err(BoltError::TooLarge(_))
        ));
    }
}
