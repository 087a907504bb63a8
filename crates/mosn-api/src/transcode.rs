//! Transcoders: convert a request from the client's protocol into another upstream protocol, and
//! the response back (MOSN 0.26's `transcoder` stream filter and `transcoder.Transcoder`).
//!
//! A transcoder is chosen per request by the `transcoder` stream filter, which records it in
//! [`StreamInfo::transcoder`](crate::StreamInfo::transcoder); the proxy then sends the request
//! upstream in [`Transcoder::upstream`] instead of the listener's `upstream_protocol`.
//!
//! Two kinds exist:
//! - between HTTP/1 and HTTP/2 ([`Transcoder::upstream`] is `Http1` or `Http2`) the proxy's own
//!   streaming translation converts heads, bodies and trailers; [`Transcoder::request`] and
//!   [`Transcoder::response`] are not called (MOSN's `httpTohttp2`, `http2Tohttp`);
//! - toward an RPC protocol (Bolt) the proxy reads the whole request body (up to
//!   [`MAX_TRANSCODED_BODY`] bytes), hands the request to [`Transcoder::request`] as a
//!   [`Message`], sends what it returns, and hands the response to [`Transcoder::response`],
//!   whose result goes back to the client in its own protocol (MOSN's `http2bolt_simple`).
//!
//! Transcoders are built by name from a [`TranscoderRegistry`], so more plug in the way stream
//! filters do.

use bytes::Bytes;

use crate::{HeaderVec, Headers, Protocol};

/// Largest request or response body a transcoder converts, in bytes; a larger request is answered
/// 413, a larger response 502.
pub const MAX_TRANSCODED_BODY: usize = 16 << 20;

/// A whole message as a transcoder reads and makes it: its head as fields and its body.
///
/// The head holds the protocol's header fields (lower-case names) and its pseudo-fields:
/// - HTTP requests: `:method`, `:path` (path and query), `:authority`; responses: `:status`;
/// - Bolt requests: `:class` (the class name), `:codec` (1 hessian2, 11 protobuf; default 1),
///   `:timeout` (ms; default none); responses: `:class`, `:status` (Bolt's response status).
///
/// Every other field is a Bolt header-map entry, or an HTTP header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// The head: fields and pseudo-fields.
    pub head: HeaderVec,
    /// The body (Bolt: the content), never decoded by the proxy.
    pub body: Bytes,
}

impl Message {
    /// The head's pseudo-field `key` parsed as a decimal number.
    pub fn number(&self, key: &str) -> Option<u64> {
        self.head.get_str(key).and_then(|v| v.trim().parse().ok())
    }
}

/// Why a transcoder could not convert a message. The proxy answers 400 (request) or 500
/// (response) with flag `TF`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TranscodeError(pub String);

/// Converts requests and responses between two protocols (see the module doc).
pub trait Transcoder: Send + Sync + 'static {
    /// The name it is registered under, e.g. `http2bolt_simple`.
    fn name(&self) -> &'static str;

    /// The protocol requests go upstream in.
    fn upstream(&self) -> Protocol;

    /// Whether it converts this request, which came in `downstream` (MOSN's `Accept`).
    fn accept(&self, downstream: Protocol, head: &dyn Headers) -> bool;

    /// The upstream request made from the client's whole request. Only called for an RPC
    /// upstream.
    ///
    /// Errors: the request cannot be expressed upstream; the client gets 400.
    fn request(&self, request: Message) -> Result<Message, TranscodeError> {
        Ok(request)
    }

    /// The client's response made from the upstream's whole response. Only called for an RPC
    /// upstream.
    ///
    /// Errors: the response cannot be expressed to the client; it gets 500.
    fn response(&self, response: Message) -> Result<Message, TranscodeError> {
        Ok(response)
    }
}

impl std::fmt::Debug for dyn Transcoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Transcoder({})", self.name())
    }
}

impl crate::filter::Registered for dyn Transcoder {
    const KIND: &'static str = "transcoder";
}

/// Builds a transcoder from the rule's `config` object, found at JSON path `path`.
pub type TranscoderFactory = crate::filter::Factory<dyn Transcoder>;

/// Transcoder factories by name.
pub type TranscoderRegistry = crate::filter::Registry<dyn Transcoder>;
