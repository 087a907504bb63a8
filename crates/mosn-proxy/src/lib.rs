//! The proxy: the `proxy` network filter with its per-stream state machine (filters, route, load
//! balance, pool, retries, timeouts) and the HTTP/1 driver, `tcp_proxy` and `udp_proxy`, the
//! workers that run them and the server that starts them.
//!
//! Layout, from the top floor down: `worker::accept` (accept, TLS, dispatch) → `http1` (the
//! HTTP/1 connection driver and upstream exchange), `tcp`, `udp` → `stream` (the protocol-agnostic
//! steps) → `conn` (a connection's context) → `worker::state`, `snapshot`, `stats`, `access_log`.
//!
//! Source: MOSN `pkg/proxy` (downstream/upstream request flow) and Envoy's router filter for the
//! retry and timeout semantics.

#![forbid(unsafe_code)]

pub mod access_log;
pub mod conn;
pub mod http1;
pub mod http2;
pub mod server;
pub mod snapshot;
pub mod stats;
pub mod stream;
pub mod tcp;
pub mod transcode;
pub mod transfer;
pub mod udp;
pub mod worker;
pub mod xprotocol;

pub use server::{Server, StartError};
pub use snapshot::Snapshot;
