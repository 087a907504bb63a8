//! Upstream side of the proxy: the cluster manager, load balancers, circuit breakers and per-worker
//! HTTP/1 connection pools.
//!
//! Source: MOSN `pkg/upstream/cluster` and the `cluster_manager` config
//! (<https://mosn.io/docs/configuration/>); Envoy's circuit breaking for the counters.

pub mod body;
pub mod cluster;
pub mod lb;
pub mod pool;
pub mod stats;

pub use body::RequestBody;
pub use cluster::{Cluster, ClusterManager, Host, Slot, Target};
pub use lb::LbState;
pub use pool::{Conn, PooledBody, Pools};
