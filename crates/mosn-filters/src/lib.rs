//! Stream filters, each a module that registers a factory under its MOSN `type` name:
//!
//! | type | phase | what |
//! |---|---|---|
//! | `ip_access` | BeforeRoute | allow or deny by client IP (or an IP read from a header), 403 |
//! | `fault` | AfterRoute | delay and/or abort a share of requests (MOSN's fault injection) |
//! | `payload_limit` | AfterRoute, request data | 413 (or `http_status`) past `max_entity_size` bytes |
//! | `header_to_metadata` | BeforeRoute | copy request headers into metadata for host subsets |
//! | `grpc_metric` | stream end | per-gRPC-service request, success and failure counters |
//! | `transcoder` | AfterRoute | per request, send upstream in another protocol (HTTP→Bolt, HTTP/1↔HTTP/2) |
//! | `dubbo_stream` | BeforeRoute, stream end | Dubbo `service` as the host and `/` as the path, per-service and per-method counters |
//! | `healthcheck` | none | MOSN's SOFARPC heartbeat filter: config only, heartbeats are answered by the driver |
//!
//! `fault` and `payload_limit` also take a route's (or virtual host's) `per_filter_config`, which
//! replaces the listener's config for that route's streams, as MOSN's `ReadPerRouteConfig` does.
//! The BeforeRoute filters cannot: the route is not known when they run.
//!
//! Source: MOSN `pkg/filter/stream/{ipaccess,faultinject,payloadlimit}` and Envoy's
//! `header_to_metadata` filter.

#![forbid(unsafe_code)]

mod conf;
pub mod counters;
pub mod dubbo_stream;
pub mod fault;
pub mod grpc_metric;
pub mod header_to_metadata;
pub mod healthcheck;
pub mod ip_access;
pub mod payload_limit;
pub mod transcoder;

use mosn_api::FilterRegistry;

/// A registry with every built-in filter and transcoder.
pub fn registry() -> FilterRegistry {
    registry_with(transcoder::builtins())
}

/// A registry with every built-in filter, whose `transcoder` filter builds transcoders from
/// `transcoders` (the built-ins of [`transcoder::builtins`] plus any plugged in).
pub fn registry_with(transcoders: mosn_api::transcode::TranscoderRegistry) -> FilterRegistry {
    let mut r = FilterRegistry::new();
    r.register("transcoder", move |v: &serde_json::Value, p: &str| {
        transcoder::build(&transcoders, v, p)
    });
    r.register("ip_access", ip_access::build);
    r.register("fault", fault::build);
    r.register("payload_limit", payload_limit::build);
    r.register("header_to_metadata", header_to_metadata::build);
    r.register("grpc_metric", grpc_metric::build);
    r.register("healthcheck", healthcheck::build);
    r.register("dubbo_stream", dubbo_stream::build);
    r
}
