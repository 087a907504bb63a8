//! What every protocol's stream shares: the protocol, the record of a stream that metrics and access
//! logs read when it ends, and the local reply each downstream codec renders in its own protocol.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::transcode::Transcoder;
use crate::ResponseFlag;
use std::sync::Arc;

/// The protocols mosn-rs knows, with MOSN's names (`Http1`, `Http2`, `bolt`, `boltv2`, `dubbo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// HTTP/1.0 or HTTP/1.1 (RFC 9112).
    Http1,
    /// HTTP/2 (RFC 9113).
    Http2,
    /// SOFA Bolt v1.
    Bolt,
    /// SOFA Bolt v2.
    BoltV2,
    /// Dubbo.
    Dubbo,
}

impl Protocol {
    /// MOSN's config name: `Http1`, `Http2`, `bolt`, `boltv2`, `dubbo`.
    pub fn mosn_name(self) -> &'static str {
        match self {
            Protocol::Http1 => "Http1",
            Protocol::Http2 => "Http2",
            Protocol::Bolt => "bolt",
            Protocol::BoltV2 => "boltv2",
            Protocol::Dubbo => "dubbo",
        }
    }
}

/// How a connection is shared between streams: one stream at a time (HTTP/1), or many at once
/// (HTTP/2, Bolt, Dubbo). Pools are built for one mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    /// One request at a time; the request owns the connection while it is checked out.
    PingPong,
    /// Many requests at once, told apart by a stream or request id.
    Multiplex,
}

/// A local answer to a stream (no route, no host, a filter's 403, a fault abort, ...). Each
/// downstream codec renders it natively: an HTTP status and body, or an RPC error frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    /// Why the upstream's answer is not used, for the access log and metrics.
    pub flag: Option<ResponseFlag>,
    /// HTTP-like status (RPC codecs map it to their own status).
    pub status: u16,
    /// Body bytes (may be empty).
    pub body: Bytes,
}

impl LocalReply {
    /// A reply with `status` and `body`, and no flag.
    pub fn new(status: u16, body: impl Into<Bytes>) -> Self {
        LocalReply {
            flag: None,
            status,
            body: body.into(),
        }
    }

    /// The reply for a data-path error: its status, and its flag as the body (`"UF\n"`).
    pub fn from_error(e: &crate::ProxyError) -> Self {
        LocalReply {
            flag: Some(e.flag),
            status: e.status().as_u16(),
            body: Bytes::from(format!("{}\n", e.flag.short())),
        }
    }
}

/// The upstream a stream went to (its last try).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamRef {
    /// Cluster index in the snapshot's cluster manager.
    pub cluster: usize,
    /// Stable host id (see `mosn_upstream::HostId`).
    pub host: usize,
    /// Local address of the upstream connection, once connected.
    pub local: Option<SocketAddr>,
}

/// What is known about one stream while it runs; metrics and the access log read it when it ends.
#[derive(Debug, Clone)]
pub struct StreamInfo {
    /// The downstream protocol.
    pub protocol: Protocol,
    /// Minor HTTP version of the request (0 or 1) for HTTP/1; 0 otherwise.
    pub http_minor: u8,
    /// When the request head was complete.
    pub start: Instant,
    /// Status sent to the client (HTTP-like for RPC).
    pub status: u16,
    /// Response flag, when the response is not the upstream's as asked.
    pub flag: Option<ResponseFlag>,
    /// The upstream of the last try.
    pub upstream: Option<UpstreamRef>,
    /// From `start` until the request was handed to the upstream connection.
    pub request_sent: Option<Duration>,
    /// From `start` until the upstream's response head arrived.
    pub response_head: Option<Duration>,
    /// Request body bytes received from the client.
    pub bytes_received: u64,
    /// Response body bytes sent to the client.
    pub bytes_sent: u64,
    /// Metadata set by stream filters (e.g. `header_to_metadata`), merged into the route's
    /// `metadata_match` to pick a host subset. Key and value are strings, as in MOSN's `mosn.lb`.
    pub metadata: Vec<(String, String)>,
    /// The `grpc-status` the client got (from the response trailers, or the head of a
    /// trailers-only response); `None` when the response carried none.
    pub grpc_status: Option<u32>,
    /// The transcoder the `transcoder` filter chose for this request: the request goes upstream
    /// in its [`Transcoder::upstream`] protocol, converted by it (MOSN's
    /// `VariableUpstreamProtocol`). `None`: the listener's `upstream_protocol`.
    pub transcoder: Option<Arc<dyn Transcoder>>,
}

impl StreamInfo {
    /// A new record for a stream whose head is complete now.
    pub fn new(protocol: Protocol, start: Instant) -> Self {
        StreamInfo {
            protocol,
            http_minor: 1,
            start,
            status: 0,
            flag: None,
            upstream: None,
            request_sent: None,
            response_head: None,
            bytes_received: 0,
            bytes_sent: 0,
            metadata: Vec::new(),
            grpc_status: None,
            transcoder: None,
        }
    }

    /// The access log's `protocol` text: `HTTP/1.1`, `HTTP/1.0`, `HTTP/2.0`, `bolt`, ...
    pub fn protocol_text(&self) -> &'static str {
        match (self.protocol, self.http_minor) {
            (Protocol::Http1, 0) => "HTTP/1.0",
            (Protocol::Http1, _) => "HTTP/1.1",
            (Protocol::Http2, _) => "HTTP/2.0",
            (p, _) => p.mosn_name(),
        }
    }
}
