//! `transcoder`: picks, per request, a [`Transcoder`] that sends the request upstream in another
//! protocol and converts the response back (MOSN 0.26's `transcoder` stream filter). It runs at
//! AfterRoute (MOSN's default phase), so a route's `per_filter_config` `transcoder` replaces the
//! listener's for that route.
//!
//! Config, as MOSN reads it:
//! - `{"type": "http2bolt_simple", "config": {...}}`: every request the transcoder accepts;
//! - `{"rules": [{"matcher_config": {"matcher_type": "simpleMatcher", "config": {"name": H,
//!   "value": V}}, "rule_info": {"upstream_protocol": "bolt", "config": {...}}}]}`: the first rule
//!   whose matcher matches (header `H` equal to `V`; no `config`: every request) picks the
//!   transcoder registered as `<downstream>_<upstream_protocol>` (e.g. `Http1_bolt`) for the
//!   request's downstream protocol. A `type` beside `rules` is a last rule that matches every
//!   request.
//!
//! Built-in transcoders ([`builtins`]): `http2bolt_simple` ([`http2bolt`]), `httpTohttp2` and
//! `http2Tohttp` ([`httpconv`]).
//!
//! Source: MOSN `pkg/filter/stream/transcoder` (`filter.go`, `config.go`, `matcher`,
//! `simplematcher`).

pub mod http2bolt;
pub mod httpconv;

use std::sync::Arc;

use mosn_api::transcode::{Transcoder, TranscoderRegistry};
use mosn_api::{Decision, FilterConfigError, FilterCx, Headers, Phase, Protocol, StreamFilter};
use serde_json::Value;

use crate::conf::{Obj, Result};

/// Every protocol a request can come in, for `<downstream>_<upstream>` names.
const DOWNSTREAMS: [Protocol; 5] = [
    Protocol::Http1,
    Protocol::Http2,
    Protocol::Bolt,
    Protocol::BoltV2,
    Protocol::Dubbo,
];

/// The built-in transcoders by MOSN's names.
pub fn builtins() -> TranscoderRegistry {
    let mut r = TranscoderRegistry::new();
    r.register("http2bolt_simple", http2bolt::build);
    r.register("httpTohttp2", httpconv::build_http_to_http2);
    r.register("http2Tohttp", httpconv::build_http2_to_http);
    r
}

/// One rule: a header to match (none: every request) and the transcoder per downstream protocol.
struct Rule {
    header: Option<(String, String)>,
    by_downstream: Vec<(Protocol, Arc<dyn Transcoder>)>,
}

/// The built filter.
pub struct TranscoderFilter {
    rules: Vec<Rule>,
}

/// Builds the filter from `config` at `path`, with transcoders from `registry`.
///
/// Errors: neither `type` nor `rules`; an unknown transcoder name or matcher type; a rule whose
/// `<downstream>_<upstream_protocol>` transcoder exists for no downstream protocol; the
/// transcoder's own config error.
pub fn build(
    registry: &TranscoderRegistry,
    config: &Value,
    path: &str,
) -> Result<Arc<dyn StreamFilter>> {
    let o = Obj::new(config, path)?;
    let mut rules = Vec::new();
    for (rp, rv) in o.array("rules")? {
        let r = Obj::new(rv, &rp)?;
        let header = match r.obj("matcher_config")? {
            None => None,
            Some(m) => {
                match m.str("matcher_type")? {
                    Some("simpleMatcher") => {}
                    other => {
                        return Err(FilterConfigError::new(
                            m.key_path("matcher_type"),
                            format!(
                                "matcher {other:?} is not supported by mosn-rs (known: \"simpleMatcher\")"
                            ),
                        ))
                    }
                }
                match m.obj("config")? {
                    None => None,
                    Some(c) => {
                        let name = c.str("name")?.ok_or_else(|| {
                            FilterConfigError::new(c.key_path("name"), "is required")
                        })?;
                        let value = c.str("value")?.unwrap_or("");
                        Some((name.to_ascii_lowercase(), value.to_string()))
                    }
                }
            }
        };
        let info = r
            .obj("rule_info")?
            .ok_or_else(|| FilterConfigError::new(r.key_path("rule_info"), "is required"))?;
        let up = info.str("upstream_protocol")?.ok_or_else(|| {
            FilterConfigError::new(info.key_path("upstream_protocol"), "is required")
        })?;
        let cfg = info.get("config").cloned().unwrap_or(Value::Null);
        let mut by_downstream = Vec::new();
        for d in DOWNSTREAMS {
            let name = format!("{}_{up}", d.mosn_name());
            if registry.has(&name) {
                let t = registry.build(
                    &name,
                    &info.key_path("upstream_protocol"),
                    &cfg,
                    &info.key_path("config"),
                )?;
                by_downstream.push((d, t));
            }
        }
        if by_downstream.is_empty() {
            return Err(FilterConfigError::new(
                info.key_path("upstream_protocol"),
                format!(
                    "no transcoder is registered as \"<downstream>_{up}\" (known: {})",
                    registry.names().join(", ")
                ),
            ));
        }
        rules.push(Rule {
            header,
            by_downstream,
        });
    }
    if let Some(name) = o.str("type")? {
        let cfg = o.get("config").cloned().unwrap_or(Value::Null);
        let t = registry.build(name, &o.key_path("type"), &cfg, &o.key_path("config"))?;
        rules.push(Rule {
            header: None,
            by_downstream: DOWNSTREAMS.iter().map(|d| (*d, t.clone())).collect(),
        });
    }
    if rules.is_empty() {
        return Err(FilterConfigError::new(
            path,
            "needs \"type\" (a transcoder name, e.g. \"http2bolt_simple\") or \"rules\"",
        ));
    }
    Ok(Arc::new(TranscoderFilter { rules }))
}

impl StreamFilter for TranscoderFilter {
    fn name(&self) -> &'static str {
        "transcoder"
    }

    /// At AfterRoute: the first matching rule's transcoder for the request's protocol, if it
    /// accepts the request, is recorded in [`mosn_api::StreamInfo::transcoder`].
    fn on_request(&self, phase: Phase, head: &mut dyn Headers, cx: &mut FilterCx<'_>) -> Decision {
        if phase != Phase::AfterRoute {
            return Decision::Continue;
        }
        let rule = self.rules.iter().find(|r| match &r.header {
            None => true,
            Some((k, v)) => head.get(k) == Some(v.as_bytes()),
        });
        let downstream = cx.info.protocol;
        let t = rule.and_then(|r| {
            r.by_downstream
                .iter()
                .find(|(d, _)| *d == downstream)
                .map(|(_, t)| t)
        });
        cx.info.transcoder = t.filter(|t| t.accept(downstream, head)).cloned();
        Decision::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mosn_api::{HeaderVec, StreamInfo};
    use serde_json::json;

    fn chosen(
        f: &Arc<dyn StreamFilter>,
        protocol: Protocol,
        head: &[(&str, &str)],
    ) -> Option<&'static str> {
        let mut info = StreamInfo::new(protocol, std::time::Instant::now());
        let mut h = HeaderVec(
            head.iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
        );
        let mut cx = FilterCx {
            peer: "127.0.0.1:1".parse().unwrap(),
            info: &mut info,
            cluster: Some("c"),
            host: None,
            content_length: None,
        };
        assert_eq!(
            f.on_request(Phase::AfterRoute, &mut h, &mut cx),
            Decision::Continue
        );
        info.transcoder.as_ref().map(|t| t.name())
    }

    #[test]
    fn type_picks_one_transcoder_for_the_protocols_it_accepts() {
        let r = builtins();
        let f = build(&r, &json!({"type": "http2bolt_simple"}), "f").unwrap();
        assert_eq!(chosen(&f, Protocol::Http1, &[]), Some("http2bolt_simple"));
        assert_eq!(chosen(&f, Protocol::Http2, &[]), Some("http2bolt_simple"));
        assert_eq!(
            chosen(&f, Protocol::Bolt, &[]),
            None,
            "a Bolt request is not HTTP"
        );
        let f = build(&r, &json!({"type": "httpTohttp2"}), "f").unwrap();
        assert_eq!(chosen(&f, Protocol::Http1, &[]), Some("httpTohttp2"));
        assert_eq!(chosen(&f, Protocol::Http2, &[]), None);
    }

    #[test]
    fn rules_match_a_header_and_name_the_transcoder_by_protocols() {
        let mut r = builtins();
        r.register("Http1_bolt", http2bolt::build);
        let f = build(
            &r,
            &json!({"rules": [{"matcher_config": {"matcher_type": "simpleMatcher",
                "config": {"name": "x-rpc", "value": "yes"}}, "rule_info": {"upstream_protocol": "bolt"}}]}),
            "f",
        )
        .unwrap();
        assert_eq!(
            chosen(&f, Protocol::Http1, &[("x-rpc", "yes")]),
            Some("http2bolt_simple")
        );
        assert_eq!(chosen(&f, Protocol::Http1, &[("x-rpc", "no")]), None);
        assert_eq!(
            chosen(&f, Protocol::Http2, &[("x-rpc", "yes")]),
            None,
            "no Http2_bolt"
        );
    }

    #[test]
    fn bad_configs_name_their_path() {
        let r = builtins();
        let e = |v: Value| build(&r, &v, "f").err().unwrap();
        assert_eq!(e(json!({})).path, "f");
        let x = e(json!({"type": "nope"}));
        assert!(
            x.path == "f.type" && x.message.contains("http2bolt_simple"),
            "{x}"
        );
        let x = e(json!({"rules": [{"rule_info": {"upstream_protocol": "dubbo"}}]}));
        assert_eq!(x.path, "f.rules[0].rule_info.upstream_protocol");
        let x = e(
            json!({"rules": [{"matcher_config": {"matcher_type": "regex"}, "rule_info": {"upstream_protocol": "bolt"}}]}),
        );
        assert_eq!(x.path, "f.rules[0].matcher_config.matcher_type");
    }
}
