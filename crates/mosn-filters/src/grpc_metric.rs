//! `grpc_metric`: per-gRPC-service counters, MOSN's `request_total`, `response_succ_total` and
//! `response_fail_total` under metric type `grpc` with label `service`; in Prometheus
//! `grpc_request_total{service="helloworld.Greeter"}`.
//!
//! A stream counts when its request is gRPC (`content-type: application/grpc...`). The service
//! is the first segment of `:path` (`/helloworld.Greeter/SayHello` → `helloworld.Greeter`). It
//! succeeded when the client got `grpc-status: 0` (in the trailers, or in a trailers-only
//! response); anything else fails: another status, a reset, a local reply, a client that left.
//!
//! MOSN counts only the calls its own gRPC server framework answers; mosn-rs counts the calls it
//! proxies, the same way. Service names come from the client, so their number is capped
//! (`max_services`, default 1000); calls to further services count under
//! `service="_overflow"`, so a client cannot grow the proxy's memory without bound.
//!
//! Config: `{}` or `{"max_services": 1000}`.
//!
//! Source: MOSN `pkg/filter/stream/grpcmetric` (names and labels).

use std::sync::Arc;

use mosn_api::{FilterMetrics, Headers, StreamFilter, StreamInfo};

use crate::conf::{Obj, Result};
use crate::counters::Labelled;

/// The label value for calls past `max_services` distinct services.
pub const OVERFLOW_SERVICE: &str = crate::counters::OVERFLOW;

/// The built filter: one per listener, shared by its workers.
pub struct GrpcMetric {
    services: Labelled,
}

/// Builds the filter (see the module doc for the config).
pub fn build(config: &serde_json::Value, path: &str) -> Result<Arc<dyn StreamFilter>> {
    let o = Obj::new(config, path)?;
    let max_services = o.u64("max_services", 1_000_000)?.unwrap_or(1000) as usize;
    Ok(Arc::new(GrpcMetric {
        services: Labelled::new("grpc", &["service"], max_services),
    }))
}

/// The gRPC service of a request: the first segment of `:path`, when the request is gRPC.
pub fn service_of(request: &dyn Headers) -> Option<&str> {
    let ct = request.get_str("content-type")?;
    if !ct
        .get(..16)
        .is_some_and(|p| p.eq_ignore_ascii_case("application/grpc"))
    {
        return None;
    }
    let path = request.get_str(":path")?.strip_prefix('/')?;
    let service = path.split('/').next()?;
    (!service.is_empty()).then_some(service)
}

impl StreamFilter for GrpcMetric {
    fn name(&self) -> &'static str {
        "grpc_metric"
    }

    fn on_stream_end(&self, request: &dyn Headers, info: &StreamInfo) {
        let Some(service) = service_of(request) else {
            return;
        };
        let ok = info.grpc_status == Some(0) && info.flag.is_none();
        self.services.counts(&[service]).add(ok);
    }

    fn metrics(&self) -> Vec<FilterMetrics> {
        self.services.export()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mosn_api::{HeaderVec, Protocol};

    fn req(path: &str, ct: &str) -> HeaderVec {
        let mut h = HeaderVec::default();
        h.set(":path", path.as_bytes());
        h.set("content-type", ct.as_bytes());
        h
    }

    fn end(f: &dyn StreamFilter, r: &HeaderVec, status: Option<u32>) {
        let mut info = StreamInfo::new(Protocol::Http2, std::time::Instant::now());
        info.grpc_status = status;
        f.on_stream_end(r, &info);
    }

    #[test]
    fn counts_per_service_and_result() {
        let f = build(&serde_json::json!({}), "f").unwrap();
        let a = req("/helloworld.Greeter/SayHello", "application/grpc+proto");
        end(&*f, &a, Some(0));
        end(&*f, &a, Some(14));
        end(&*f, &a, None);
        end(&*f, &req("/x.Y/Z", "application/grpc"), Some(0));
        end(&*f, &req("/plain", "text/plain"), Some(0));
        let m = f.metrics();
        assert_eq!(m.len(), 2, "{m:?}");
        assert_eq!(m[0].labels, vec![("service", "helloworld.Greeter".into())]);
        assert_eq!(
            m[0].counters,
            vec![
                ("request_total", 3),
                ("response_succ_total", 1),
                ("response_fail_total", 2)
            ]
        );
        assert_eq!(m[1].counters[0], ("request_total", 1));
    }

    #[test]
    fn services_past_the_cap_share_one_label() {
        let f = build(&serde_json::json!({"max_services": 2}), "f").unwrap();
        for s in ["a", "b", "c", "d", "a"] {
            end(&*f, &req(&format!("/{s}/M"), "application/grpc"), Some(0));
        }
        let names: Vec<String> = f
            .metrics()
            .into_iter()
            .map(|m| m.labels[0].1.clone())
            .collect();
        assert_eq!(names, vec!["_overflow", "a", "b"]);
    }

    #[test]
    fn bad_config_names_its_path() {
        let e = build(
            &serde_json::json!({"max_services": "x"}),
            "l.stream_filters[0].config",
        )
        .err()
        .unwrap();
        assert!(e.path.ends_with("config.max_services"), "{e}");
    }
}
