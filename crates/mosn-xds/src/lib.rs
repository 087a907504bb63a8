//! xDS for mosn-rs: an ADS client over gRPC ([`client`]), the resources it holds ([`store`]),
//! and their translation into MOSN's JSON config model ([`translate`]), which the proxy then
//! parses, validates and applies like a config file.
//!
//! Sources: the xDS protocol (<https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol>),
//! Envoy's v3 API (types from the `envoy-types` crate), and what a current Istio sends to a sidecar
//! (`istio/istio` `pilot/pkg/networking/core`).

#![forbid(unsafe_code)]

pub mod client;
pub mod status;
pub mod store;
pub mod translate;

/// The type URLs of the resources mosn-rs subscribes to.
pub mod types {
    /// LDS.
    pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
    /// RDS.
    pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
    /// CDS.
    pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
    /// EDS.
    pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
    /// SDS.
    pub const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

    /// The short name used in logs, metrics and the admin API (`lds`, `rds`, `cds`, `eds`, `sds`).
    pub fn short(type_url: &str) -> &'static str {
        match type_url {
            LISTENER => "lds",
            ROUTE => "rds",
            CLUSTER => "cds",
            ENDPOINT => "eds",
            SECRET => "sds",
            _ => "other",
        }
    }
}

pub use client::{spawn, Apply, ApplyError, Handle};
pub use status::Status;
pub use store::Store;
pub use translate::{translate, Rejection, Translated};
