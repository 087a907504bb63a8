//! Upstream side of the proxy: the cluster manager with stable host ids, load balancers, circuit
//! breakers and per-worker connection pools.
//!
//! Source: MOSN `pkg/upstream/cluster` and the `cluster_manager` config
//! (<https://mosn.io/docs/configuration/>); Envoy's circuit breaking for the counters.

#![forbid(unsafe_code)]

pub mod cluster;
pub mod lb;
pub mod multiplex;
pub mod pool;
pub mod stats;

pub use cluster::{host_id, Cluster, ClusterManager, Host, Slot, Target};
pub use lb::LbState;
pub use multiplex::{H2Stream, Keepalive};
pub use pool::{Pools, UpstreamConn};
