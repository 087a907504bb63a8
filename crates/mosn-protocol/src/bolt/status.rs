//! Bolt response statuses, and their mapping to and from the HTTP-like statuses the proxy's stream
//! layer uses (for retries, metrics and local replies). Source: SOFABolt `ResponseStatus`, and MOSN
//! `pkg/protocol/xprotocol/bolt/{types,mapping,protocol}.go` (`Mapping`, `MappingHeaderStatusCode`).

use mosn_api::{LocalReply, ResponseFlag};

use super::frame::{Frame, Kind};
use super::CMD_RESPONSE;

/// `SUCCESS`.
pub const SUCCESS: u16 = 0x00;
/// `ERROR`.
pub const ERROR: u16 = 0x01;
/// `SERVER_EXCEPTION`.
pub const SERVER_EXCEPTION: u16 = 0x02;
/// `UNKNOWN`.
pub const UNKNOWN: u16 = 0x03;
/// `SERVER_THREADPOOL_BUSY`.
pub const SERVER_THREADPOOL_BUSY: u16 = 0x04;
/// `ERROR_COMM`.
pub const ERROR_COMM: u16 = 0x05;
/// `NO_PROCESSOR`.
pub const NO_PROCESSOR: u16 = 0x06;
/// `TIMEOUT`.
pub const TIMEOUT: u16 = 0x07;
/// `CLIENT_SEND_ERROR`.
pub const CLIENT_SEND_ERROR: u16 = 0x08;
/// `CODEC_EXCEPTION`.
pub const CODEC_EXCEPTION: u16 = 0x09;
/// `CONNECTION_CLOSED`.
pub const CONNECTION_CLOSED: u16 = 0x10;
/// `SERVER_SERIAL_EXCEPTION`.
pub const SERVER_SERIAL_EXCEPTION: u16 = 0x11;
/// `SERVER_DESERIAL_EXCEPTION`.
pub const SERVER_DESERIAL_EXCEPTION: u16 = 0x12;

/// The Bolt status a local reply is sent with, as MOSN maps its codes: no route and no healthy or
/// reachable upstream → `NO_PROCESSOR`; overflow → `SERVER_THREADPOOL_BUSY`; timeout → `TIMEOUT`;
/// a refused request (ACL, fault, payload limit) → `SERVER_EXCEPTION` (Bolt has no permission
/// code); a malformed request → `CODEC_EXCEPTION`; a 200 → `SUCCESS`; anything else `UNKNOWN`.
pub fn for_reply(reply: &LocalReply) -> u16 {
    match reply.flag {
        Some(ResponseFlag::NoRoute)
        | Some(ResponseFlag::NoHealthyUpstream)
        | Some(ResponseFlag::UpstreamConnectionFailure)
        | Some(ResponseFlag::UpstreamConnectionTermination) => NO_PROCESSOR,
        Some(ResponseFlag::UpstreamOverflow) | Some(ResponseFlag::UpstreamRetryLimitExceeded) => {
            SERVER_THREADPOOL_BUSY
        }
        Some(ResponseFlag::UpstreamRequestTimeout) => TIMEOUT,
        Some(ResponseFlag::DownstreamProtocolError) => CODEC_EXCEPTION,
        _ => match reply.status {
            200 => SUCCESS,
            403 | 413 | 429 => SERVER_EXCEPTION,
            404 | 502 => NO_PROCESSOR,
            503 => SERVER_THREADPOOL_BUSY,
            504 => TIMEOUT,
            400 => CODEC_EXCEPTION,
            _ => UNKNOWN,
        },
    }
}

/// The HTTP-like status of a Bolt response status, for retries and metrics (MOSN's
/// `MappingHeaderStatusCode`): 200, 503 (thread pool busy), 504 (timeout), 502 (connection
/// closed), else 500.
pub fn to_http(status: u16) -> u16 {
    match status {
        SUCCESS => 200,
        SERVER_THREADPOOL_BUSY => 503,
        TIMEOUT => 504,
        CONNECTION_CLOSED => 502,
        _ => 500,
    }
}

impl Frame {
    /// The response the proxy sends in place of an upstream's (MOSN's `Hijack`): the request's
    /// version, id and codec, `status`, and no class, header or content.
    pub fn hijack(&self, status: u16) -> Frame {
        let mut f = self.heartbeat_ack();
        f.kind = Kind::Response;
        f.cmd_code = CMD_RESPONSE;
        f.status = status;
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bolt::decode;
    use bytes::BytesMut;

    #[test]
    fn local_replies_map_to_mosn_s_bolt_statuses_and_back() {
        let r = |flag, status| {
            for_reply(&LocalReply {
                flag,
                status,
                body: Default::default(),
            })
        };
        assert_eq!(r(Some(ResponseFlag::NoRoute), 404), NO_PROCESSOR);
        assert_eq!(r(Some(ResponseFlag::NoHealthyUpstream), 503), NO_PROCESSOR);
        assert_eq!(
            r(Some(ResponseFlag::UpstreamOverflow), 503),
            SERVER_THREADPOOL_BUSY
        );
        assert_eq!(r(Some(ResponseFlag::UpstreamRequestTimeout), 504), TIMEOUT);
        assert_eq!(r(Some(ResponseFlag::AccessDenied), 403), SERVER_EXCEPTION);
        assert_eq!(r(None, 200), SUCCESS);
        assert_eq!(r(None, 418), UNKNOWN);
        for (bolt, http) in [
            (SUCCESS, 200),
            (SERVER_THREADPOOL_BUSY, 503),
            (TIMEOUT, 504),
            (CONNECTION_CLOSED, 502),
            (SERVER_EXCEPTION, 500),
        ] {
            assert_eq!(to_http(bolt), http);
        }
    }

    #[test]
    fn a_hijack_answers_the_request_in_its_own_version() {
        // A Bolt v2 request with CRC (no class, header or content).
        let mut req = BytesMut::new();
        req.extend_from_slice(&[
            2, 2, 1, 0, 1, 1, 0, 0, 0, 9, 1, 1, 0, 0, 0x0b, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0,
        ]);
        let crc = crc32fast::hash(&req);
        req.extend_from_slice(&crc.to_be_bytes());
        let f = decode(&mut req).unwrap().unwrap();
        let mut out = BytesMut::new();
        f.hijack(NO_PROCESSOR).encode(&mut out);
        let h = decode(&mut out).unwrap().unwrap();
        assert_eq!(
            (h.kind, h.cmd_code, h.request_id, h.status),
            (Kind::Response, CMD_RESPONSE, 9, NO_PROCESSOR)
        );
        assert_eq!(h.version, f.version, "v2 with CRC, as the request");
    }
}
