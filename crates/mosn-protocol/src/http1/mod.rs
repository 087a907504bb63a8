//! HTTP/1 codec: request and response heads ([`head`]), their parsing with RFC 9112's framing rules
//! ([`parse`]), bodies by `Content-Length`, chunked coding or connection close ([`body`]), and head
//! encoding ([`encode`]).
//!
//! Framing is never ambiguous (RFC 9112 §6, §7, §11.2): a request with both `Transfer-Encoding` and
//! `Content-Length`, differing `Content-Length`s, a transfer coding other than a single `chunked`,
//! obs-fold, whitespace before a colon, control characters in a field, an overflowing chunk size,
//! or an unbounded chunk extension or trailer section is an error, never forwarded.

pub mod body;
pub mod encode;
pub mod head;
pub mod parse;

pub use body::{BodyDecoder, BodyEncoder, BodyError, Framing};
pub use head::{FieldList, RequestHead, ResponseHead};
pub use parse::{parse_request, parse_response, ParseError, Parsed};

/// Largest head accepted, in bytes (request or status line plus header lines). A larger request
/// head gets 431. Envoy's default is 60 KiB; mosn-rs's, since its first release, 64 KiB.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Most header fields in one head (hyper's and nginx's order of magnitude). More gets 431.
pub const MAX_HEADERS: usize = 100;
