//! Dubbo 2 frames (MOSN's `dubbo`), sans-IO: the 16-byte header and the body, kept opaque on the
//! wire. [`Invocation::read`] reads what routing needs out of a hessian2 request body (Dubbo
//! version, service path, service version, method, parameter types, attachments), skipping the
//! arguments without decoding them ([`hessian`]).
//!
//! Header (big-endian; source: Apache Dubbo `ExchangeCodec`, MOSN `pkg/protocol/xprotocol/dubbo`):
//!
//! | bytes | field |
//! |---|---|
//! | 0–1 | magic `0xdabb` |
//! | 2 | flags: `0x80` request, `0x40` two-way, `0x20` event (heartbeat); low 5 bits the serialization id (2 = hessian2) |
//! | 3 | status (responses): 20 OK, 30/31 client/server timeout, 40 bad request, 50 bad response, 60 service not found, 70 service error, 80 server error, 90 client error, 100 thread pool exhausted |
//! | 4–11 | request id (u64) |
//! | 12–15 | body length (u32) |

pub mod hessian;
pub mod status;
pub mod xprotocol;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use mosn_api::{HeaderVec, Headers};

pub use xprotocol::Dubbo;

/// The magic number at the start of every frame.
pub const MAGIC: [u8; 2] = [0xda, 0xbb];
/// Header length in bytes.
pub const HEADER_LEN: usize = 16;
/// Largest body accepted, in bytes (Dubbo's default `payload` limit is 8 MiB; this is a hard cap).
pub const MAX_BODY_BYTES: usize = 64 << 20;
/// Flag bit: a request.
pub const FLAG_REQUEST: u8 = 0x80;
/// Flag bit: the request expects a response.
pub const FLAG_TWO_WAY: u8 = 0x40;
/// Flag bit: an event (heartbeat).
pub const FLAG_EVENT: u8 = 0x20;
/// Status: OK.
pub const STATUS_OK: u8 = 20;
/// The body of a heartbeat event: hessian2 `null`.
pub const HEARTBEAT_BODY: &[u8] = b"N";
/// The body of Dubbo's read-only event (`READONLY_EVENT`, the hessian2 string `"R"`): a server
/// that is shutting down tells its clients to send no new requests on the connection.
pub const READONLY_BODY: &[u8] = b"\x01R";
/// The serialization id of hessian2, the only one whose requests mosn-rs reads.
pub const HESSIAN2: u8 = 2;

/// Bytes that are not a Dubbo frame. The connection cannot be read further.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DubboError {
    /// The first two bytes are not `0xdabb`.
    #[error("not a Dubbo frame: magic {0:#06x}")]
    Magic(u16),
    /// The declared body is larger than [`MAX_BODY_BYTES`].
    #[error("Dubbo body of {0} bytes is over the {MAX_BODY_BYTES}-byte limit")]
    TooLarge(usize),
}

/// One Dubbo frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The flags byte (request, two-way, event and serialization id).
    pub flags: u8,
    /// The status byte (meaningful in responses).
    pub status: u8,
    /// The request id, which the proxy rewrites on multiplexed upstream connections.
    pub request_id: u64,
    /// The body, not decoded.
    pub body: Bytes,
    /// What the request body says, as header fields ([`Frame::read_headers`]): every string
    /// attachment (`group` comes from there), then `dubbo`, `service` (the `interface`
    /// attachment when present, as in MOSN, else the service path), `version` (the call's, or
    /// the attachment's when the call has none) and `method`. Empty for responses and events.
    /// Changing them never changes the body sent on.
    pub headers: HeaderVec,
    /// Why a request's body could not be read (not hessian2, or malformed); such a request is
    /// answered with an error response and never forwarded.
    pub unreadable: Option<String>,
}

impl Frame {
    /// True for a request (else a response).
    pub fn is_request(&self) -> bool {
        self.flags & FLAG_REQUEST != 0
    }

    /// True for a request that expects a response.
    pub fn is_two_way(&self) -> bool {
        self.flags & FLAG_TWO_WAY != 0
    }

    /// True for an event (a heartbeat, request or reply).
    pub fn is_event(&self) -> bool {
        self.flags & FLAG_EVENT != 0
    }

    /// The serialization id (2: hessian2).
    pub fn serialization(&self) -> u8 {
        self.flags & 0x1f
    }

    /// A frame with `flags`, `status`, `request_id` and `body`, and no header fields.
    pub fn new(flags: u8, status: u8, request_id: u64, body: Bytes) -> Frame {
        Frame {
            flags,
            status,
            request_id,
            body,
            headers: HeaderVec::default(),
            unreadable: None,
        }
    }

    /// The reply to a heartbeat request, as Dubbo sends it: event, same serialization and id,
    /// status OK, a `null` body.
    pub fn heartbeat_reply(&self) -> Frame {
        Frame::new(
            FLAG_EVENT | self.serialization(),
            STATUS_OK,
            self.request_id,
            Bytes::from_static(HEARTBEAT_BODY),
        )
    }

    /// True for Dubbo's read-only event: the peer takes no new requests on this connection.
    pub fn is_readonly_event(&self) -> bool {
        self.is_event() && self.body[..] == *READONLY_BODY
    }

    /// Fills [`Frame::headers`] from a request's body (MOSN's decoder, `decoder.go`), or sets
    /// [`Frame::unreadable`]. Responses and events are left alone.
    pub fn read_headers(&mut self) {
        if !self.is_request() || self.is_event() {
            return;
        }
        if self.serialization() != HESSIAN2 {
            self.unreadable = Some(format!(
                "serialization id {} is not hessian2 (2); mosn-rs reads only hessian2 Dubbo calls",
                self.serialization()
            ));
            return;
        }
        match Invocation::read(&self.body) {
            Ok(inv) => {
                let Invocation {
                    dubbo_version,
                    service,
                    version,
                    method,
                    attachments,
                    ..
                } = inv;
                // The strings move into the fields: one allocation each, made by the reader.
                let h = &mut self.headers.0;
                h.reserve(attachments.len() + 4);
                let mut interface = None;
                let mut attached_version = false;
                for (mut k, v) in attachments {
                    k.make_ascii_lowercase();
                    match k.as_str() {
                        "interface" if interface.is_none() => interface = Some(v.clone()),
                        "version" => attached_version = true,
                        _ => {}
                    }
                    h.push((k, v.into_bytes()));
                }
                // The call's own fields win over attachments of the same name (sofa-rpc-node
                // sends a `service` attachment of `interface:version`), except that an
                // `interface` attachment names the service (MOSN's rule).
                let mut own = vec![
                    ("service", interface.unwrap_or(service)),
                    ("dubbo", dubbo_version),
                    ("method", method),
                ];
                if !version.is_empty() || !attached_version {
                    own.push(("version", version));
                }
                for (k, v) in own {
                    h.retain(|(name, _)| name != k);
                    h.push((k.to_string(), v.into_bytes()));
                }
            }
            Err(e) => self.unreadable = Some(format!("unreadable Dubbo request body: {e}")),
        }
    }

    /// Appends the frame to `out`. A body longer than a u32 length is cut (a decoded frame always
    /// fits).
    pub fn encode(&self, out: &mut BytesMut) {
        let body = &self.body[..self.body.len().min(u32::MAX as usize)];
        out.reserve(HEADER_LEN + body.len());
        out.put_slice(&MAGIC);
        out.put_u8(self.flags);
        out.put_u8(self.status);
        out.put_u64(self.request_id);
        out.put_u32(body.len() as u32);
        out.put_slice(body);
    }
}

/// The request's call as header fields ([`Frame::headers`]).
impl Headers for Frame {
    fn get(&self, key: &str) -> Option<&[u8]> {
        self.headers.get(key)
    }
    fn set(&mut self, key: &str, value: &[u8]) {
        self.headers.set(key, value)
    }
    fn append(&mut self, key: &str, value: &[u8]) {
        self.headers.append(key, value)
    }
    fn remove(&mut self, key: &str) {
        self.headers.remove(key)
    }
    fn visit(&self, f: &mut dyn FnMut(&[u8], &[u8])) {
        self.headers.visit(f)
    }
}

/// What a Dubbo request body says, for routing (Dubbo's `DecodeableRpcInvocation` order: Dubbo
/// version, service path, service version, method, parameter descriptor, the arguments, the
/// attachments).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Invocation {
    /// The Dubbo version (`2.0.2`).
    pub dubbo_version: String,
    /// The service path (interface name, `com.example.DemoService`).
    pub service: String,
    /// The service version (`1.0.0`), possibly empty.
    pub version: String,
    /// The method name.
    pub method: String,
    /// The JVM parameter descriptor (`Ljava/lang/String;I`).
    pub param_types: String,
    /// The attachments with string keys and values (`group`, `interface`, `timeout`, ...).
    pub attachments: Vec<(String, String)>,
}

impl Invocation {
    /// Reads a hessian2 request body (serialization id 2).
    ///
    /// Errors: the body is not the hessian2 a Dubbo request carries.
    pub fn read(body: &[u8]) -> Result<Invocation, hessian::HessianError> {
        let mut r = hessian::Reader::new(body);
        let mut s =
            || -> Result<String, hessian::HessianError> { Ok(r.string()?.unwrap_or_default()) };
        let dubbo_version = s()?;
        let service = s()?;
        let version = s()?;
        let method = s()?;
        let param_types = s()?;
        for _ in 0..hessian::descriptor_count(&param_types)? {
            r.skip()?;
        }
        let attachments = if r.at_end() {
            Vec::new()
        } else {
            r.string_map()?
        };
        Ok(Invocation {
            dubbo_version,
            service,
            version,
            method,
            param_types,
            attachments,
        })
    }

    /// The attachment `key`, if any.
    pub fn attachment(&self, key: &str) -> Option<&str> {
        self.attachments
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Splits one frame off the front of `buf`. `Ok(None)`: not complete yet (nothing consumed).
///
/// Errors: see [`DubboError`].
pub fn decode(buf: &mut BytesMut) -> Result<Option<Frame>, DubboError> {
    let n = buf.len().min(2);
    if buf[..n] != MAGIC[..n] {
        let mut m = [0u8; 2];
        m[..n].copy_from_slice(&buf[..n]);
        return Err(DubboError::Magic(u16::from_be_bytes(m)));
    }
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let mut h = &buf[2..HEADER_LEN];
    let flags = h.get_u8();
    let status = h.get_u8();
    let request_id = h.get_u64();
    let len = h.get_u32() as usize;
    if len > MAX_BODY_BYTES {
        return Err(DubboError::TooLarge(len));
    }
    if buf.len() < HEADER_LEN + len {
        return Ok(None);
    }
    let mut raw = buf.split_to(HEADER_LEN + len);
    raw.advance(HEADER_LEN);
    Ok(Some(Frame::new(flags, status, request_id, raw.freeze())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(name: &str) -> Vec<u8> {
        let p = format!(
            "{}/../../tests/data/dubbo/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
    }

    #[test]
    fn real_frames_decode_and_re_encode_byte_exact() {
        for name in [
            "dubbo_req.bin",
            "dubbo_req_java_class.bin",
            "dubbo_res.bin",
            "dubbo_res_with_error.bin",
            "dubbo_res_with_null.bin",
            "dubbo_res_with_sys_error.bin",
            "heartbeat_req.bin",
            "heartbeat_res.bin",
            "login.bin",
        ] {
            let bytes = data(name);
            for cut in 0..bytes.len() {
                let mut b = BytesMut::from(&bytes[..cut]);
                assert_eq!(decode(&mut b), Ok(None), "{name}: complete at {cut}");
                assert_eq!(b.len(), cut);
            }
            let mut b = BytesMut::from(&bytes[..]);
            let f = decode(&mut b).unwrap().unwrap();
            assert!(b.is_empty(), "{name}: one frame");
            let mut out = BytesMut::new();
            f.encode(&mut out);
            assert_eq!(&out[..], &bytes[..], "{name}");
        }
        let req = decode(&mut BytesMut::from(&data("dubbo_req.bin")[..]))
            .unwrap()
            .unwrap();
        assert!(req.is_request() && req.is_two_way() && !req.is_event());
        assert_eq!((req.serialization(), req.request_id), (2, 1));
        let err = decode(&mut BytesMut::from(
            &data("dubbo_res_with_sys_error.bin")[..],
        ))
        .unwrap()
        .unwrap();
        assert!(!err.is_request());
        assert_eq!(err.status, 70, "service error");
    }

    #[test]
    fn invocations_are_read_from_real_requests_skipping_their_arguments() {
        let f = decode(&mut BytesMut::from(&data("dubbo_req.bin")[..]))
            .unwrap()
            .unwrap();
        let inv = Invocation::read(&f.body).unwrap();
        assert_eq!(inv.service, "com.test.TestService");
        assert_eq!(inv.version, "1.0.0");
        assert_eq!(inv.method, "test-method");
        // int, boolean, double, Date, byte[], ArrayList, HashMap: all skipped.
        assert_eq!(
            inv.param_types,
            "IZDLjava/util/Date;[BLjava/util/ArrayList;Ljava/util/HashMap;"
        );
        assert_eq!(inv.attachment("path"), Some("com.test.TestService"));
        assert_eq!(inv.attachment("version"), Some("1.0.0"));
        assert_eq!(inv.attachment("dubbo"), Some(inv.dubbo_version.as_str()));
        // A Java object argument: a class definition, then an instance of it.
        let f = decode(&mut BytesMut::from(&data("dubbo_req_java_class.bin")[..]))
            .unwrap()
            .unwrap();
        let inv = Invocation::read(&f.body).unwrap();
        assert_eq!(inv.param_types, "Lcom/test/TestClass;");
        assert_eq!(inv.attachment("path"), Some("com.test.TestService"));
        // `login.bin` and `multiple.bin` carry hessian maps, not invocations: an error, no panic.
        let mut b = BytesMut::from(&data("multiple.bin")[..]);
        while let Some(f) = decode(&mut b).unwrap() {
            assert!(Invocation::read(&f.body).is_err());
        }
    }

    #[test]
    fn back_to_back_frames_split_in_order() {
        let mut b = BytesMut::from(&data("multiple.bin")[..]);
        let ids: Vec<u64> = std::iter::from_fn(|| decode(&mut b).unwrap())
            .map(|f| f.request_id)
            .collect();
        assert_eq!(ids, vec![1, 2]);
        assert!(b.is_empty());
    }

    #[test]
    fn the_heartbeat_reply_is_the_captured_one() {
        let hb = decode(&mut BytesMut::from(&data("heartbeat_req.bin")[..]))
            .unwrap()
            .unwrap();
        assert!(hb.is_request() && hb.is_event());
        let mut out = BytesMut::new();
        hb.heartbeat_reply().encode(&mut out);
        assert_eq!(&out[..], &data("heartbeat_res.bin")[..]);
    }

    #[test]
    fn not_dubbo_or_too_large_is_an_error() {
        assert_eq!(
            decode(&mut BytesMut::from(&b"GET /"[..])),
            Err(DubboError::Magic(0x4745))
        );
        assert_eq!(decode(&mut BytesMut::from(&b"\xda"[..])), Ok(None));
        assert_eq!(
            decode(&mut BytesMut::from(&b"\xdb"[..])),
            Err(DubboError::Magic(0xdb00))
        );
        let mut huge = vec![0xda, 0xbb, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            decode(&mut BytesMut::from(&huge[..])),
            Err(DubboError::TooLarge(_))
        ));
    }
}
