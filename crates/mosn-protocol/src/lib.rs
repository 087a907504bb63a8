//! Protocol codecs. Each protocol is a module; the codecs are sans-IO (bytes in, bytes out), so the
//! proxy's connection drivers own every socket, timer and buffer.
//!
//! - [`http1`]: HTTP/1.0 and HTTP/1.1 (RFC 9112), heads parsed with `httparse`, framing, chunked
//!   coding and head encoding written here, strict about ambiguous framing.
//! - [`http2`]: HTTP/2 (RFC 9113) heads over the `h2` crate, and the translation between
//!   HTTP/1 and HTTP/2 heads and trailers.
//! - [`detect`]: which protocol a connection speaks, from its first bytes (MOSN's `Auto`).
//! - [`xprotocol`]: the trait every multiplexed RPC protocol implements for the generic driver.
//! - [`bolt`]: SOFA Bolt v1/v2 frames (MOSN's `bolt`, `boltv2`), content carried opaque, and Bolt
//!   as an [`xprotocol::XProtocol`].
//! - [`dubbo`]: Dubbo 2 frames (header and opaque body).

#![forbid(unsafe_code)]

pub mod bolt;
pub mod detect;
pub mod dubbo;
pub mod http1;
pub mod http2;
pub mod token;
pub mod xprotocol;
