//! `fault`: MOSN's fault injection. After the route is chosen, a share of requests is delayed by
//! `delay.fixed_delay` (`delay.percentage` %) and/or answered with `abort.status`
//! (`abort.percentage` %), only for `upstream_cluster` when set and only for requests whose headers
//! match every `headers` matcher. The delay is a timer the core owns ([`Decision::Delay`]).
//!
//! Config: `{"delay": {"fixed_delay": "1s", "percentage": 100}, "abort": {"status": 503,
//! "percentage": 100}, "upstream_cluster": "c", "headers": [{"name": "x", "value": "y",
//! "regex": false}]}`. An aborted request carries flag `FI`, a delayed one `DI`.

use std::sync::Arc;
use std::time::Duration;

use mosn_api::{
    Decision, FilterConfigError, FilterCx, Headers, LocalReply, Phase, ResponseFlag, StreamFilter,
};

use mosn_router::matcher::HeaderCheck;

use crate::conf::{header_match, roll, Obj, Result};

/// The built filter.
pub struct Fault {
    delay: Option<(Duration, u64)>,
    abort: Option<(u16, u64)>,
    cluster: Option<String>,
    headers: Vec<HeaderCheck>,
}

/// Builds the filter (see the module doc for the config).
pub fn build(config: &serde_json::Value, path: &str) -> Result<Arc<dyn StreamFilter>> {
    let o = Obj::new(config, path)?;
    let delay = match o.obj("delay")? {
        None => None,
        Some(d) => {
            let t = d
                .duration("fixed_delay")?
                .ok_or_else(|| FilterConfigError::new(d.key_path("fixed_delay"), "is required"))?;
            Some((t, d.u64("percentage", 100)?.unwrap_or(100)))
        }
    };
    let abort = match o.obj("abort")? {
        None => None,
        Some(a) => {
            let status = a.u64("status", 599)?.filter(|s| *s >= 200).ok_or_else(|| {
                FilterConfigError::new(
                    a.key_path("status"),
                    "is required: an HTTP status from 200 to 599",
                )
            })?;
            Some((status as u16, a.u64("percentage", 100)?.unwrap_or(100)))
        }
    };
    let headers = o
        .array("headers")?
        .into_iter()
        .map(|(p, v)| header_match(v, &p))
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(Fault {
        delay,
        abort,
        cluster: o
            .str("upstream_cluster")?
            .filter(|c| !c.is_empty())
            .map(str::to_string),
        headers,
    }))
}

impl StreamFilter for Fault {
    fn name(&self) -> &'static str {
        "fault"
    }

    fn on_request(&self, phase: Phase, head: &mut dyn Headers, cx: &mut FilterCx<'_>) -> Decision {
        if phase != Phase::AfterRoute {
            return Decision::Continue;
        }
        if self
            .cluster
            .as_deref()
            .is_some_and(|c| cx.cluster != Some(c))
        {
            return Decision::Continue;
        }
        if !self.headers.iter().all(|m| m.matches(head)) {
            return Decision::Continue;
        }
        if let Some((status, pct)) = self.abort {
            if roll(pct) {
                let mut r = LocalReply::new(status, "");
                r.flag = Some(ResponseFlag::FaultInjected);
                return Decision::Reply(r);
            }
        }
        match self.delay {
            Some((d, pct)) if roll(pct) => Decision::Delay(d),
            _ => Decision::Continue,
        }
    }
}
