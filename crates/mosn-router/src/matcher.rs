//! Route matchers: path (`prefix`, exact `path`, whole-path `regex`) and headers, read through the
//! protocol-agnostic [`Headers`] view. The header name `method` matches the HTTP method (MOSN's
//! convention; `:method`), or an RPC head's `method` where there is no HTTP method.

use mosn_api::Headers;
use mosn_config::{HeaderMatcher, PathMatch};
use regex::Regex;

/// A compiled path matcher.
#[derive(Debug, Clone)]
pub enum PathMatcher {
    /// Matches paths that start with the string.
    Prefix(String),
    /// Matches the exact path.
    Exact(String),
    /// Matches when the regex matches the whole path.
    Regex(Regex),
    /// Matches the prefix itself, or the prefix followed by `/` (Envoy's `path_separated_prefix`).
    SeparatedPrefix(String),
}

/// Anchors a config regex so it must match the whole input, as MOSN and Envoy do.
pub(crate) fn whole(re: &str) -> Option<Regex> {
    Regex::new(&format!("^(?:{re})$")).ok()
}

impl PathMatcher {
    /// Compiles a config matcher; `None` when the regex does not compile (mosn-config has checked it).
    pub fn new(p: &PathMatch) -> Option<Self> {
        Some(match p {
            PathMatch::Prefix(s) => PathMatcher::Prefix(s.clone()),
            PathMatch::Exact(s) => PathMatcher::Exact(s.clone()),
            PathMatch::Regex(r) => PathMatcher::Regex(whole(r)?),
            PathMatch::SeparatedPrefix(s) => PathMatcher::SeparatedPrefix(s.clone()),
        })
    }

    /// True when `path` (without the query) matches.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatcher::Prefix(p) => path.starts_with(p.as_str()),
            PathMatcher::Exact(p) => path == p,
            PathMatcher::Regex(r) => r.is_match(path),
            PathMatcher::SeparatedPrefix(p) => path
                .strip_prefix(p.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
        }
    }
}

/// A compiled header matcher.
#[derive(Debug, Clone)]
pub struct HeaderCheck {
    name: String,
    is_method: bool,
    value: ValueMatch,
    invert: bool,
}

#[derive(Debug, Clone)]
enum ValueMatch {
    Exact(String),
    Regex(Regex),
    /// MOSN's RPC fast match: `{"name": "service", "value": ".*"}` (not a regex) matches every
    /// request, with or without the field (`pkg/router/rpc_rule.go`); MOSN's RPC examples use it
    /// as the catch-all route.
    Any,
    /// Envoy's `present_match`: the field is there.
    Present,
}

impl HeaderCheck {
    /// Compiles a config header matcher; `None` on a bad name or regex.
    pub fn new(h: &HeaderMatcher) -> Option<Self> {
        Some(HeaderCheck {
            name: h.name.to_ascii_lowercase(),
            is_method: h.name == "method",
            invert: h.invert,
            value: if h.present {
                ValueMatch::Present
            } else if h.regex {
                ValueMatch::Regex(whole(&h.value)?)
            } else if h.name == "service" && h.value == ".*" {
                ValueMatch::Any
            } else {
                ValueMatch::Exact(h.value.clone())
            },
        })
    }

    /// True when the head's field (or method) matches; an absent field never matches.
    pub fn matches(&self, h: &dyn Headers) -> bool {
        let got = if self.is_method {
            h.get_str(":method").or_else(|| h.get_str("method"))
        } else {
            h.get_str(&self.name)
        };
        let hit = match (got, &self.value) {
            (_, ValueMatch::Any) => true,
            (None, _) => false,
            (Some(_), ValueMatch::Present) => true,
            (Some(g), ValueMatch::Exact(v)) => g == v,
            (Some(g), ValueMatch::Regex(r)) => r.is_match(g),
        };
        hit != self.invert
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mosn_api::HeaderVec;

    fn check(name: &str, value: &str, regex: bool) -> HeaderCheck {
        HeaderCheck::new(&HeaderMatcher {
            name: name.into(),
            value: value.into(),
            regex,
            present: false,
            invert: false,
        })
        .unwrap()
    }

    #[test]
    fn present_and_inverted_matchers() {
        let m = |present, invert, value: &str| {
            HeaderCheck::new(&HeaderMatcher {
                name: "x-v".into(),
                value: value.into(),
                regex: false,
                present,
                invert,
            })
            .unwrap()
        };
        let mut with = HeaderVec::default();
        with.set("x-v", b"2");
        let mut without = HeaderVec::default();
        without.set("other", b"1");
        assert!(m(true, false, "").matches(&with));
        assert!(!m(true, false, "").matches(&without));
        assert!(!m(true, true, "").matches(&with));
        assert!(m(true, true, "").matches(&without));
        assert!(m(false, true, "1").matches(&with));
        assert!(!m(false, true, "2").matches(&with));
        assert!(m(false, true, "2").matches(&without));
    }

    #[test]
    fn separated_prefix_stops_at_a_segment() {
        let p = PathMatcher::new(&PathMatch::SeparatedPrefix("/api".into())).unwrap();
        assert!(p.matches("/api"));
        assert!(p.matches("/api/v1"));
        assert!(!p.matches("/apiv1"));
        assert!(!p.matches("/ap"));
    }

    #[test]
    fn service_dot_star_is_mosn_s_rpc_catch_all() {
        let mut h = HeaderVec::default();
        h.set("service", b"com.example.Any");
        assert!(check("service", ".*", false).matches(&h));
        assert!(
            check("service", ".*", false).matches(&HeaderVec::default()),
            "even without the field"
        );
        // Only for `service`, and only the literal `.*`.
        assert!(!check("group", ".*", false).matches(&h));
        assert!(!check("service", ".+", false).matches(&h));
        assert!(check("service", "com.example.Any", false).matches(&h));
    }
}
