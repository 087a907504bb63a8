//! `dubbo_stream`: MOSN's Dubbo stream filter. For a Dubbo request, at BeforeRoute, the `service`
//! header becomes the host (`:authority`) and `/` the path, so HTTP-style virtual hosts whose
//! domains are Dubbo service names (Istio's RDS for Dubbo) select the route. The pod's labels
//! (the downward-API file `/etc/istio/pod/labels`, lines `key="value"`) are added to the request
//! headers for routing, as MOSN does; they never reach the wire, since a Dubbo body is sent on
//! unchanged.
//!
//! Counters, as MOSN names them: metric type `mosn` with labels `method`, `service` (and
//! `subset`: the value of the pod label named by `subset`, when set), counters `request_total`,
//! `response_succ_total` (the client got Dubbo status 20) and `response_fail_total`; in
//! Prometheus `mosn_request_total{method="sayHello",service="org.demo.Greeter"}`. MOSN adds a
//! `listener` label but keys its counters by service and method only, so the first listener's
//! name wins; mosn-rs leaves the label out and sums a service's calls over listeners. Service
//! and method names come from clients: at most `max_services` (default 1000) label sets, further
//! ones count under `_overflow`.
//!
//! Config: `{}`, or `{"subset": "<pod label key>", "max_services": 1000, "pod_labels_path":
//! "/etc/istio/pod/labels"}` (the last two are mosn-rs's). Other protocols' streams pass
//! untouched. A Dubbo request without `service` is refused (MOSN's `StreamFiltertermination`).
//!
//! Source: MOSN `pkg/filter/stream/dubbo/{dubbo,stats}.go`.

use std::sync::Arc;

use mosn_api::{
    Decision, FilterCx, FilterMetrics, Headers, LocalReply, Phase, Protocol, ResponseFlag,
    StreamFilter, StreamInfo,
};

use crate::conf::{Obj, Result};
use crate::counters::Labelled;

/// Where Istio's sidecar injector puts the pod's labels (downward API).
pub const POD_LABELS_PATH: &str = "/etc/istio/pod/labels";

/// The built filter.
pub struct DubboStream {
    pod_labels: Vec<(String, String)>,
    subset: Option<String>,
    counters: Labelled,
}

/// Builds the filter (see the module doc for the config).
///
/// Errors: a key of the wrong type. A missing labels file means no labels.
pub fn build(config: &serde_json::Value, path: &str) -> Result<Arc<dyn StreamFilter>> {
    let o = Obj::new(config, path)?;
    let subset_key = o.str("subset")?.filter(|s| !s.is_empty());
    let max = o.u64("max_services", 1_000_000)?.unwrap_or(1000) as usize;
    let file = o.str("pod_labels_path")?.unwrap_or(POD_LABELS_PATH);
    let pod_labels = std::fs::read_to_string(file)
        .map(|t| pod_labels(&t))
        .unwrap_or_default();
    let subset = subset_key.and_then(|k| {
        pod_labels
            .iter()
            .find(|(l, _)| l == k)
            .map(|(_, v)| v.clone())
    });
    let names: &'static [&'static str] = if subset.is_some() {
        &["method", "service", "subset"]
    } else {
        &["method", "service"]
    };
    Ok(Arc::new(DubboStream {
        pod_labels,
        subset,
        counters: Labelled::new("mosn", names, max),
    }))
}

/// Labels from the downward-API format: one `key="value"` per line; other lines are skipped.
pub fn pod_labels(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            let v = v.trim().strip_prefix('"')?.strip_suffix('"')?;
            Some((k.trim().to_string(), v.to_string()))
        })
        .collect()
}

impl StreamFilter for DubboStream {
    fn name(&self) -> &'static str {
        "dubbo_stream"
    }

    fn before_route_only(&self) -> bool {
        true
    }

    fn on_request(&self, phase: Phase, head: &mut dyn Headers, cx: &mut FilterCx<'_>) -> Decision {
        if phase != Phase::BeforeRoute || cx.info.protocol != Protocol::Dubbo {
            return Decision::Continue;
        }
        let Some(service) = head.get("service").map(<[u8]>::to_vec) else {
            return Decision::Reply(LocalReply {
                flag: Some(ResponseFlag::DownstreamProtocolError),
                status: 400,
                body: bytes::Bytes::from_static(b"dubbo request without service"),
            });
        };
        head.set(":authority", &service);
        head.set(":path", b"/");
        for (k, v) in &self.pod_labels {
            head.set(k, v.as_bytes());
        }
        Decision::Continue
    }

    fn on_stream_end(&self, request: &dyn Headers, info: &StreamInfo) {
        if info.protocol != Protocol::Dubbo {
            return;
        }
        let (Some(service), method) = (request.get_str("service"), request.get_str("method"))
        else {
            return;
        };
        let method = method.unwrap_or("");
        let ok = info.status == 200 && info.flag.is_none();
        match &self.subset {
            Some(s) => self.counters.counts(&[method, service, s]),
            None => self.counters.counts(&[method, service]),
        }
        .add(ok);
    }

    fn metrics(&self) -> Vec<FilterMetrics> {
        self.counters.export()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mosn_api::HeaderVec;
    use serde_json::json;

    fn call(service: &str, method: &str) -> HeaderVec {
        let mut h = HeaderVec::default();
        h.set("service", service.as_bytes());
        h.set("method", method.as_bytes());
        h
    }

    fn before_route(f: &dyn StreamFilter, h: &mut HeaderVec, p: Protocol) -> Decision {
        let mut info = StreamInfo::new(p, std::time::Instant::now());
        let mut cx = FilterCx {
            peer: "127.0.0.1:1".parse().unwrap(),
            info: &mut info,
            cluster: None,
            host: None,
            content_length: None,
        };
        f.on_request(Phase::BeforeRoute, h, &mut cx)
    }

    #[test]
    fn service_becomes_the_host_and_pod_labels_headers() {
        let dir = std::env::temp_dir().join(format!("dubbo-stream-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let labels = dir.join("labels");
        std::fs::write(&labels, "app=\"demo\"\ngroup=\"blue\"\nbroken line\n").unwrap();
        let f = build(
            &json!({"subset": "group", "pod_labels_path": labels.to_str().unwrap()}),
            "f",
        )
        .unwrap();
        let mut h = call("org.demo.Greeter", "sayHello");
        assert_eq!(
            before_route(&*f, &mut h, Protocol::Dubbo),
            Decision::Continue
        );
        assert_eq!(h.get_str(":authority"), Some("org.demo.Greeter"));
        assert_eq!(h.get_str(":path"), Some("/"));
        assert_eq!(h.get_str("app"), Some("demo"));
        // HTTP streams pass untouched.
        let mut h = call("x", "y");
        before_route(&*f, &mut h, Protocol::Http1);
        assert_eq!(h.get(":authority"), None);
        // A Dubbo call without service is refused.
        let mut h = HeaderVec::default();
        assert!(matches!(
            before_route(&*f, &mut h, Protocol::Dubbo),
            Decision::Reply(_)
        ));
        // Counters with the subset label.
        let mut info = StreamInfo::new(Protocol::Dubbo, std::time::Instant::now());
        info.status = 200;
        f.on_stream_end(&call("org.demo.Greeter", "sayHello"), &info);
        info.status = 500;
        f.on_stream_end(&call("org.demo.Greeter", "sayHello"), &info);
        let m = f.metrics();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].typ, "mosn");
        assert_eq!(
            m[0].labels,
            vec![
                ("method", "sayHello".to_string()),
                ("service", "org.demo.Greeter".to_string()),
                ("subset", "blue".to_string())
            ]
        );
        assert_eq!(
            m[0].counters,
            vec![
                ("request_total", 2),
                ("response_succ_total", 1),
                ("response_fail_total", 1)
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn labels_file_format() {
        assert_eq!(
            pod_labels("a=\"1\"\nb=2\nc=\"x=y\"\n"),
            vec![("a".into(), "1".into()), ("c".into(), "x=y".into())]
        );
    }
}
