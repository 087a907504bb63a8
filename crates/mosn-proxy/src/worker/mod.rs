//! A worker: one thread with a single-threaded tokio runtime, its own listener sockets
//! (SO_REUSEPORT), its own upstream pools and load-balancer state. Nothing on the data path is
//! shared with other workers but the read-only config snapshot and the circuit-breaker gauges.
//!
//! [`state`] holds what a worker owns (the lower floor, used by every network filter);
//! [`accept`] accepts connections and hands them to a network filter (the top floor), through
//! [`chain`] when the listener has filter chains to choose among.

pub mod accept;
pub mod chain;
pub mod state;

pub use accept::{accept_loop, Accepting};
pub use state::{Busy, Worker, UNIX_PEER};
