//! Header mutation (`request_headers_to_add/remove`, `response_headers_to_add/remove`), compiled
//! once per config so a request only copies prepared names and values.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use mosn_config::HeaderMutation;

/// A [`HeaderMutation`] with names and values parsed ahead of time.
#[derive(Debug, Clone, Default)]
pub struct CompiledMutation {
    request_add: Vec<(HeaderName, HeaderValue, bool)>,
    request_remove: Vec<HeaderName>,
    response_add: Vec<(HeaderName, HeaderValue, bool)>,
    response_remove: Vec<HeaderName>,
}

fn compile_add(list: &[mosn_config::HeaderValueOption]) -> Vec<(HeaderName, HeaderValue, bool)> {
    // Names and values were checked by mosn-config; anything unparsable is skipped, not a panic.
    list.iter()
        .filter_map(|h| {
            Some((
                HeaderName::from_bytes(h.key.as_bytes()).ok()?,
                HeaderValue::from_str(&h.value).ok()?,
                h.append,
            ))
        })
        .collect()
}

fn compile_remove(list: &[String]) -> Vec<HeaderName> {
    list.iter()
        .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
        .collect()
}

fn apply(map: &mut HeaderMap, remove: &[HeaderName], add: &[(HeaderName, HeaderValue, bool)]) {
    for n in remove {
        map.remove(n);
    }
    for (n, v, append) in add {
        if *append {
            map.append(n.clone(), v.clone());
        } else {
            map.insert(n.clone(), v.clone());
        }
    }
}

impl CompiledMutation {
    /// Compiles a config-level mutation.
    pub fn new(m: &HeaderMutation) -> Self {
        CompiledMutation {
            request_add: compile_add(&m.request_add),
            request_remove: compile_remove(&m.request_remove),
            response_add: compile_add(&m.response_add),
            response_remove: compile_remove(&m.response_remove),
        }
    }

    /// True when the mutation changes nothing.
    pub fn is_empty(&self) -> bool {
        self.request_add.is_empty()
            && self.request_remove.is_empty()
            && self.response_add.is_empty()
            && self.response_remove.is_empty()
    }

    /// Removes, then adds (replacing unless `append`), request headers.
    pub fn apply_request(&self, map: &mut HeaderMap) {
        apply(map, &self.request_remove, &self.request_add);
    }

    /// Removes, then adds (replacing unless `append`), response headers.
    pub fn apply_response(&self, map: &mut HeaderMap) {
        apply(map, &self.response_remove, &self.response_add);
    }
}
