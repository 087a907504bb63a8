//! Header mutation (`request_headers_to_add/remove`, `response_headers_to_add/remove`), compiled
//! once per config and applied through the protocol-agnostic [`Headers`] view.

use mosn_api::Headers;
use mosn_config::HeaderMutation;

/// One header to add: lower-case name, value, and whether to append rather than replace.
type Add = (String, Vec<u8>, bool);

/// A [`HeaderMutation`] ready to apply.
#[derive(Debug, Clone, Default)]
pub struct CompiledMutation {
    request_add: Vec<Add>,
    request_remove: Vec<String>,
    response_add: Vec<Add>,
    response_remove: Vec<String>,
}

fn compile_add(list: &[mosn_config::HeaderValueOption]) -> Vec<Add> {
    list.iter()
        .map(|h| {
            (
                h.key.to_ascii_lowercase(),
                h.value.as_bytes().to_vec(),
                h.append,
            )
        })
        .collect()
}

fn apply(h: &mut dyn Headers, remove: &[String], add: &[Add]) {
    for n in remove {
        h.remove(n);
    }
    for (n, v, append) in add {
        if *append {
            h.append(n, v);
        } else {
            h.set(n, v);
        }
    }
}

impl CompiledMutation {
    /// Compiles a config-level mutation (names and values were validated by mosn-config).
    pub fn new(m: &HeaderMutation) -> Self {
        CompiledMutation {
            request_add: compile_add(&m.request_add),
            request_remove: m
                .request_remove
                .iter()
                .map(|n| n.to_ascii_lowercase())
                .collect(),
            response_add: compile_add(&m.response_add),
            response_remove: m
                .response_remove
                .iter()
                .map(|n| n.to_ascii_lowercase())
                .collect(),
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
    pub fn apply_request(&self, h: &mut dyn Headers) {
        if !self.request_add.is_empty() || !self.request_remove.is_empty() {
            apply(h, &self.request_remove, &self.request_add);
        }
    }

    /// Removes, then adds (replacing unless `append`), response headers.
    pub fn apply_response(&self, h: &mut dyn Headers) {
        if !self.response_add.is_empty() || !self.response_remove.is_empty() {
            apply(h, &self.response_remove, &self.response_add);
        }
    }
}
