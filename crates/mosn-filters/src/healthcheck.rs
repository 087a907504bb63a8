//! `healthcheck`: MOSN's SOFARPC health-check filter, as MOSN's own Bolt server examples
//! (`sofarpc-with-xprotocol-sample/server_config.json`, `configs/mosn_rpc_config*.json`) configure
//! it. In MOSN it intercepted heartbeat requests and answered them in the proxy (unless
//! `passthrough`); MOSN removed the filter when XProtocol started answering heartbeats itself.
//!
//! mosn-rs's XProtocol driver answers every heartbeat itself (see `mosn-proxy`'s `xprotocol`), so
//! this filter holds config only: it accepts MOSN's keys and checks them, and never changes a
//! stream. `passthrough: true` (heartbeats forwarded to the upstream) is refused, because the
//! driver never forwards a heartbeat.
//!
//! Config: `{"passthrough": false, "cache_time": "2s", "cluster_min_healthy_percentages":
//! {"cluster": 70}}`, every key optional. Source: MOSN 0.9
//! `pkg/filter/stream/healthcheck/sofarpc` and `v2.HealthCheckFilter`.

use std::sync::Arc;

use mosn_api::{FilterConfigError, StreamFilter};

use crate::conf::{Obj, Result};

/// The built filter (no per-stream effect; see the module doc).
pub struct HealthCheck;

/// Builds the filter (see the module doc for the config).
///
/// Errors: `passthrough: true`; a key of the wrong type; a percentage over 100.
pub fn build(config: &serde_json::Value, path: &str) -> Result<Arc<dyn StreamFilter>> {
    let o = Obj::new(config, path)?;
    if o.bool("passthrough")? == Some(true) {
        return Err(FilterConfigError::new(
            o.key_path("passthrough"),
            "heartbeats are always answered by mosn-rs itself; passing them through is not supported",
        ));
    }
    o.duration("cache_time")?;
    if let Some(p) = o.obj("cluster_min_healthy_percentages")? {
        for (name, v) in p.map {
            if !v.as_f64().is_some_and(|x| (0.0..=100.0).contains(&x)) {
                return Err(FilterConfigError::new(
                    p.key_path(name),
                    format!("expected a percentage from 0 to 100, found {v}"),
                ));
            }
        }
    }
    Ok(Arc::new(HealthCheck))
}

impl StreamFilter for HealthCheck {
    fn name(&self) -> &'static str {
        "healthcheck"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_mosn_keys_and_refuses_passthrough() {
        assert!(build(&json!({}), "f").is_ok());
        assert!(build(
            &json!({"passthrough": false, "cache_time": "2s", "cluster_min_healthy_percentages": {"c": 70}}),
            "f"
        )
        .is_ok());
        let e = build(&json!({"passthrough": true}), "f").err().unwrap();
        assert_eq!(e.path, "f.passthrough");
        let e = build(&json!({"cluster_min_healthy_percentages": {"c": 170}}), "f")
            .err()
            .unwrap();
        assert_eq!(e.path, "f.cluster_min_healthy_percentages.c");
    }
}
