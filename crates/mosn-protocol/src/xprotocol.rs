//! XProtocol, after MOSN 0.26's framework: one trait that every multiplexed RPC protocol (Bolt,
//! Dubbo, ...) implements, so one generic connection driver serves them all, downstream and
//! upstream. The trait covers what the driver needs and nothing protocol-specific leaks past it:
//! the first-bytes match for `Auto`, frame decode and encode, request ids (rewritten on multiplexed
//! upstream connections), heartbeats, the protocol's own error reply (hijack), GoAway, the
//! mapping of the protocol's status to an HTTP-like one, and the pool mode.
//!
//! Source: MOSN `pkg/protocol/xprotocol` and `mosn.io/api` `XProtocol`.

use bytes::BytesMut;
use mosn_api::{Headers, LocalReply, PoolMode, Protocol};

use crate::detect::Match;

/// What a decoded frame is, for the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// A request that expects a response.
    Request,
    /// A request without response.
    Oneway,
    /// A response.
    Response,
    /// A heartbeat request (answered by the driver itself, never routed).
    Heartbeat,
    /// A heartbeat reply.
    HeartbeatReply,
    /// A GoAway: the peer will not take new requests on this connection.
    GoAway,
}

/// One multiplexed RPC protocol.
pub trait XProtocol: Send + Sync + 'static {
    /// A decoded frame; its header fields are readable through [`Headers`].
    type Frame: Headers + Send + 'static;
    /// Why bytes are not a frame of this protocol.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The protocol.
    fn protocol(&self) -> Protocol;

    /// Whether a connection's first bytes start this protocol (for `Auto`).
    fn matches(&self, first: &[u8]) -> Match;

    /// Splits one frame off `buf`; `Ok(None)` when it is not complete (nothing consumed).
    ///
    /// Errors: the bytes are not this protocol; the connection cannot be read further.
    fn decode(&self, buf: &mut BytesMut) -> Result<Option<Self::Frame>, Self::Error>;

    /// Appends `frame` to `out`.
    fn encode(&self, frame: &Self::Frame, out: &mut BytesMut);

    /// What `frame` is.
    fn kind(&self, frame: &Self::Frame) -> FrameKind;

    /// The request's own timeout, when its frame carries one (Bolt's `timeout` field); the
    /// proxy answers with a timeout error when it passes, or at the route's timeout if earlier.
    fn timeout(&self, _frame: &Self::Frame) -> Option<std::time::Duration> {
        None
    }

    /// The frame's request id.
    fn request_id(&self, frame: &Self::Frame) -> u64;

    /// Sets the frame's request id (the driver maps ids on a shared upstream connection).
    fn set_request_id(&self, frame: &mut Self::Frame, id: u64);

    /// A heartbeat request with `id`, sent on idle upstream connections (`keepalive`).
    fn heartbeat(&self, id: u64) -> Self::Frame;

    /// The reply to a heartbeat request.
    fn heartbeat_reply(&self, request: &Self::Frame) -> Self::Frame;

    /// The protocol's own error response to `request` for a local reply (no route, no upstream,
    /// timeout, overflow, a filter's refusal): MOSN's `Hijack` with `Mapping`.
    fn hijack(&self, request: &Self::Frame, reply: &LocalReply) -> Self::Frame;

    /// Why a well-framed request cannot be served (its body is unreadable), as the local reply
    /// to answer it with through [`XProtocol::hijack`]; the connection stays open. `None` for
    /// a request that can be routed.
    fn refused(&self, _request: &Self::Frame) -> Option<LocalReply> {
        None
    }

    /// A GoAway frame, where the protocol has one.
    fn goaway(&self) -> Option<Self::Frame>;

    /// The HTTP-like status of a response, for retries and metrics.
    fn http_status(&self, response: &Self::Frame) -> u16;

    /// Whether upstream connections carry many requests at once or one at a time.
    fn pool_mode(&self) -> PoolMode;
}
