//! `header_to_metadata`: copies request headers into the stream's metadata before routing, so a
//! route's host subset can follow a header (Envoy's filter; MOSN reads subsets from `mosn.lb`).
//! Only the `mosn.lb` (or Envoy's `envoy.lb`) namespace feeds host subsets.
//!
//! Config: `{"request_rules": [{"header": "x-version", "on_header_present": {"metadata_namespace":
//! "mosn.lb", "key": "version"}, "on_header_missing": {"metadata_namespace": "mosn.lb", "key":
//! "version", "value": "1.0"}, "remove": false}]}`. `on_header_present` without `value` takes the
//! header's value; with one, it sets that value.

use std::sync::Arc;

use mosn_api::{Decision, FilterConfigError, FilterCx, Headers, Phase, StreamFilter};

use crate::conf::{Obj, Result};

struct Target {
    /// Feeds host subsets (`mosn.lb`, `envoy.lb`).
    lb: bool,
    key: String,
    value: Option<String>,
}

struct Rule {
    header: String,
    present: Option<Target>,
    missing: Option<Target>,
    remove: bool,
}

/// The built filter.
pub struct HeaderToMetadata {
    rules: Vec<Rule>,
}

fn target(o: &Obj<'_>, key: &str) -> Result<Option<Target>> {
    let Some(t) = o.obj(key)? else {
        return Ok(None);
    };
    let ns = t.str("metadata_namespace")?.unwrap_or("mosn.lb");
    let k = t
        .str("key")?
        .filter(|k| !k.is_empty())
        .ok_or_else(|| FilterConfigError::new(t.key_path("key"), "is required"))?;
    Ok(Some(Target {
        lb: ns == "mosn.lb" || ns == "envoy.lb",
        key: k.to_string(),
        value: t.str("value")?.map(str::to_string),
    }))
}

/// Builds the filter (see the module doc for the config).
pub fn build(config: &serde_json::Value, path: &str) -> Result<Arc<dyn StreamFilter>> {
    let o = Obj::new(config, path)?;
    let mut rules = Vec::new();
    for (p, v) in o.array("request_rules")? {
        let r = Obj::new(v, &p)?;
        let header = r
            .str("header")?
            .filter(|h| !h.is_empty())
            .ok_or_else(|| FilterConfigError::new(r.key_path("header"), "is required"))?
            .to_ascii_lowercase();
        let present = target(&r, "on_header_present")?;
        let missing = target(&r, "on_header_missing")?;
        if present.is_none() && missing.is_none() {
            return Err(FilterConfigError::new(
                &p,
                "needs on_header_present or on_header_missing",
            ));
        }
        if missing.as_ref().is_some_and(|m| m.value.is_none()) {
            return Err(FilterConfigError::new(
                r.key_path("on_header_missing.value"),
                "is required",
            ));
        }
        rules.push(Rule {
            header,
            present,
            missing,
            remove: r.bool("remove")?.unwrap_or(false),
        });
    }
    Ok(Arc::new(HeaderToMetadata { rules }))
}

impl StreamFilter for HeaderToMetadata {
    fn name(&self) -> &'static str {
        "header_to_metadata"
    }

    fn before_route_only(&self) -> bool {
        true
    }

    fn on_request(&self, phase: Phase, head: &mut dyn Headers, cx: &mut FilterCx<'_>) -> Decision {
        if phase != Phase::BeforeRoute {
            return Decision::Continue;
        }
        for r in &self.rules {
            let got = head.get_str(&r.header).map(str::to_string);
            let (t, value) = match (&got, &r.present, &r.missing) {
                (Some(v), Some(t), _) => (t, t.value.clone().unwrap_or_else(|| v.clone())),
                (None, _, Some(t)) => (t, t.value.clone().unwrap_or_default()),
                _ => continue,
            };
            if t.lb && !value.is_empty() {
                cx.info.metadata.retain(|(k, _)| *k != t.key);
                cx.info.metadata.push((t.key.clone(), value));
            }
            if r.remove && got.is_some() {
                head.remove(&r.header);
            }
        }
        Decision::Continue
    }
}
