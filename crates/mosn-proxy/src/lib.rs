//! The proxy: the `proxy` network filter for HTTP/1.1 with its per-request state machine
//! (route, load balance, pool, retries, timeouts), the workers that run it and the server that
//! starts them.
//!
//! Source: MOSN `pkg/proxy` (downstream/upstream request flow) and Envoy's router filter for the
//! retry and timeout semantics.

pub mod access_log;
pub mod http;
pub mod server;
pub mod snapshot;
pub mod stats;
pub mod tcp;
pub mod udp;
pub mod worker;

pub use server::{Server, StartError};
pub use snapshot::Snapshot;
