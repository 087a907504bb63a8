//! Dubbo response statuses, and their mapping to and from the HTTP-like statuses the proxy's
//! stream layer uses. Source: Apache Dubbo `Response` (the status constants), MOSN
//! `pkg/protocol/xprotocol/dubbo/{types,mapping,protocol}.go` (`Hijack` and its code table).

use bytes::{Bytes, BytesMut};
use mosn_api::{LocalReply, ResponseFlag};

use super::{hessian, Frame};

/// `OK`.
pub const OK: u8 = 20;
/// `CLIENT_TIMEOUT`.
pub const CLIENT_TIMEOUT: u8 = 30;
/// `SERVER_TIMEOUT`.
pub const SERVER_TIMEOUT: u8 = 31;
/// `BAD_REQUEST`.
pub const BAD_REQUEST: u8 = 40;
/// `BAD_RESPONSE`.
pub const BAD_RESPONSE: u8 = 50;
/// `SERVICE_NOT_FOUND`.
pub const SERVICE_NOT_FOUND: u8 = 60;
/// `SERVICE_ERROR`.
pub const SERVICE_ERROR: u8 = 70;
/// `SERVER_ERROR`.
pub const SERVER_ERROR: u8 = 80;
/// `CLIENT_ERROR`.
pub const CLIENT_ERROR: u8 = 90;
/// `SERVER_THREADPOOL_EXHAUSTED_ERROR`.
pub const SERVER_THREADPOOL_EXHAUSTED: u8 = 100;

/// MOSN's code, text and Dubbo status for a local reply (the table of MOSN's `Hijack`):
///
/// | cause | MOSN code and text | Dubbo status |
/// |---|---|---|
/// | no route | `404\|router unavailable` | 60 |
/// | no healthy or reachable upstream | `502\|no health upstream` | 60 |
/// | overflow, retries exhausted, rate limit | `503\|upstream overflow`, `509\|limit exceeded` | 40 |
/// | timeout | `504\|timeout` | 30 |
/// | refused (ACL, fault abort 403) | `403\|permission denied` | 80 |
/// | unreadable request | `3\|deserial exception` | 70 |
/// | internal error | `500\|internal error` | 70 |
/// | any other status `n` | `n status not define` | 70 |
pub fn for_reply(reply: &LocalReply) -> (String, u8) {
    let code = match reply.flag {
        Some(ResponseFlag::NoRoute) => 404,
        Some(
            ResponseFlag::NoHealthyUpstream
            | ResponseFlag::UpstreamConnectionFailure
            | ResponseFlag::UpstreamConnectionTermination,
        ) => 502,
        Some(ResponseFlag::UpstreamOverflow | ResponseFlag::UpstreamRetryLimitExceeded) => 503,
        Some(ResponseFlag::UpstreamRequestTimeout) => 504,
        Some(ResponseFlag::DownstreamProtocolError) => 3,
        _ => match reply.status {
            429 => 509,
            400 => 3,
            s => s,
        },
    };
    let (text, status) = match code {
        3 => ("deserial exception", SERVICE_ERROR),
        200 => ("success", OK),
        403 => ("permission denied", SERVER_ERROR),
        404 => ("router unavailable", SERVICE_NOT_FOUND),
        500 => ("internal error", SERVICE_ERROR),
        502 => ("no health upstream", SERVICE_NOT_FOUND),
        503 => ("upstream overflow", BAD_REQUEST),
        504 => ("timeout", CLIENT_TIMEOUT),
        509 => ("limit exceeded", BAD_REQUEST),
        n => return (format!("{n} status not define"), SERVICE_ERROR),
    };
    (format!("{code}|{text}"), status)
}

/// The HTTP-like status of a Dubbo response status, for retries and metrics: 200 for OK, 504
/// for timeouts, 400 bad request, 404 service not found, 503 thread pool exhausted, 502 bad
/// response, else 500.
pub fn to_http(status: u8) -> u16 {
    match status {
        OK => 200,
        CLIENT_TIMEOUT | SERVER_TIMEOUT => 504,
        BAD_REQUEST => 400,
        SERVICE_NOT_FOUND => 404,
        SERVER_THREADPOOL_EXHAUSTED => 503,
        BAD_RESPONSE => 502,
        _ => 500,
    }
}

impl Frame {
    /// The error response the proxy sends in place of an upstream's (MOSN's `Hijack`): a
    /// response with the request's id and serialization, `status`, and the hessian2 string
    /// `message` as body (what a Dubbo consumer reads as the error text for a status other than
    /// OK).
    pub fn error_response(&self, status: u8, message: &str) -> Frame {
        let mut body = BytesMut::with_capacity(message.len() + 3);
        hessian::write_string(&mut body, message);
        Frame::new(
            self.serialization(),
            status,
            self.request_id,
            Bytes::from(body),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(flag: Option<ResponseFlag>, status: u16) -> LocalReply {
        LocalReply {
            flag,
            status,
            body: Bytes::new(),
        }
    }

    #[test]
    fn local_replies_map_as_mosn_maps_them() {
        for (flag, status, text, want) in [
            (
                Some(ResponseFlag::NoRoute),
                404,
                "404|router unavailable",
                60,
            ),
            (
                Some(ResponseFlag::UpstreamConnectionFailure),
                503,
                "502|no health upstream",
                60,
            ),
            (
                Some(ResponseFlag::UpstreamOverflow),
                503,
                "503|upstream overflow",
                40,
            ),
            (
                Some(ResponseFlag::UpstreamRequestTimeout),
                504,
                "504|timeout",
                30,
            ),
            (None, 403, "403|permission denied", 80),
            (None, 429, "509|limit exceeded", 40),
            (None, 418, "418 status not define", 70),
        ] {
            assert_eq!(for_reply(&reply(flag, status)), (text.to_string(), want));
        }
        assert_eq!(to_http(OK), 200);
        assert_eq!(to_http(SERVER_TIMEOUT), 504);
        assert_eq!(to_http(SERVICE_ERROR), 500);
    }
}
