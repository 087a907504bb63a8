//! Service discovery of mosn-rs: the registries that feed clusters and routes at run time.
//!
//! - [`dubbo`]: MOSN's `dubbo_registry` extension (Dubbo providers and consumers in ZooKeeper,
//!   driven by the application through an HTTP API).

#![forbid(unsafe_code)]

pub mod dubbo;
