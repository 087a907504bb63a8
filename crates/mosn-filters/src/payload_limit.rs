//! `payload_limit`: requests whose body is larger than `max_entity_size` bytes get `http_status`
//! (default 413). A declared `Content-Length` is refused once the route is known (AfterRoute, so a
//! route's `per_filter_config` applies) and before anything is sent upstream; a chunked body is
//! counted as it passes and the stream is aborted at the limit.
//!
//! Config: `{"max_entity_size": 1024, "http_status": 413}`. MOSN's own key is spelled
//! `"max_entity_size "` (with a trailing space); both spellings are read.

use std::sync::Arc;

use mosn_api::{Decision, FilterConfigError, FilterCx, Headers, LocalReply, Phase, StreamFilter};

use crate::conf::{Obj, Result};

/// The built filter.
pub struct PayloadLimit {
    max: u64,
    status: u16,
}

/// Builds the filter (see the module doc for the config).
pub fn build(config: &serde_json::Value, path: &str) -> Result<Arc<dyn StreamFilter>> {
    let o = Obj::new(config, path)?;
    let max = o.u64("max_entity_size", u64::MAX)?.ok_or_else(|| {
        FilterConfigError::new(o.key_path("max_entity_size"), "is required (bytes)")
    })?;
    let status = o.u64("http_status", 599)?.unwrap_or(413);
    if status < 200 {
        return Err(FilterConfigError::new(
            o.key_path("http_status"),
            "must be an HTTP status from 200 to 599",
        ));
    }
    Ok(Arc::new(PayloadLimit {
        max,
        status: status as u16,
    }))
}

impl PayloadLimit {
    fn refuse(&self) -> Decision {
        Decision::Reply(LocalReply::new(self.status, ""))
    }
}

impl StreamFilter for PayloadLimit {
    fn name(&self) -> &'static str {
        "payload_limit"
    }

    fn on_request(&self, phase: Phase, _h: &mut dyn Headers, cx: &mut FilterCx<'_>) -> Decision {
        match cx.content_length {
            Some(n) if phase == Phase::AfterRoute && n > self.max => self.refuse(),
            _ => Decision::Continue,
        }
    }

    fn on_request_data(&self, total: u64, _cx: &mut FilterCx<'_>) -> Decision {
        if total > self.max {
            self.refuse()
        } else {
            Decision::Continue
        }
    }
}
