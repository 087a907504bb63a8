//! A compiled route table: virtual hosts found by domain in MOSN's order, then the first route
//! whose path and header matchers all match.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use mosn_api::{FilterOverrides, FilterRegistry, Headers};
use mosn_config::{RetryPolicy, RouteAction, RouterConfig};
use regex::Regex;

use crate::headers::CompiledMutation;
use crate::matcher::{HeaderCheck, PathMatcher};

/// What a matched route does, compiled.
#[derive(Debug, Clone)]
pub enum Action {
    /// Forward upstream.
    Forward(Box<Forward>),
    /// Answer with `status` and `body`.
    Direct {
        /// HTTP status.
        status: u16,
        /// Response body.
        body: bytes_body::Body,
    },
    /// Answer with a redirect.
    Redirect {
        /// 301, 302, 303, 307 or 308.
        code: u16,
        /// Replacement path (and query), if any.
        path: Option<String>,
        /// Replacement host, if any.
        host: Option<String>,
        /// Replacement scheme, if any.
        scheme: Option<String>,
    },
}

/// Static body bytes shared by every request a direct response answers.
pub mod bytes_body {
    /// A shared, immutable response body.
    pub type Body = std::sync::Arc<str>;
}

/// Maps `(cluster name, metadata match)` to a target id, `None` for an unknown cluster.
pub type Resolver<'a> = dyn FnMut(&str, &BTreeMap<String, String>) -> Option<usize> + 'a;

/// A forwarding route.
#[derive(Debug, Clone)]
pub struct Forward {
    /// `(target id, weight)`: target ids come from the resolver given to [`RouteTable::new`]
    /// (a cluster, or a host subset of one). One entry for `cluster_name`.
    pub targets: Vec<(usize, u32)>,
    total_weight: u64,
    /// Route timeout: time allowed until the upstream response head arrives.
    pub timeout: Option<Duration>,
    /// Retry policy, when retries are on and `num_retries > 0`.
    pub retry: Option<RetryPolicy>,
    prefix_rewrite: Option<(Option<String>, String)>,
    regex_rewrite: Option<(Regex, String)>,
    /// `host_rewrite`: the Host (`:authority`) sent upstream.
    pub host_rewrite: Option<String>,
    /// Route-level header mutation.
    pub headers: CompiledMutation,
}

impl Forward {
    /// Picks a target: the only one, or one at random by weight.
    pub fn pick(&self) -> usize {
        if self.targets.len() == 1 || self.total_weight == 0 {
            return self.targets[0].0;
        }
        let mut n = fastrand::u64(0..self.total_weight);
        for (t, w) in &self.targets {
            if n < *w as u64 {
                return *t;
            }
            n -= *w as u64;
        }
        self.targets[self.targets.len() - 1].0
    }

    /// Rewrites a path-and-query by `prefix_rewrite` or `regex_rewrite` (the query is kept as is).
    /// `None` when nothing is rewritten.
    pub fn rewrite_path(&self, path_and_query: &str) -> Option<String> {
        let (path, query) = match path_and_query.find('?') {
            Some(i) => path_and_query.split_at(i),
            None => (path_and_query, ""),
        };
        if let Some((prefix, with)) = &self.prefix_rewrite {
            let rest = match prefix {
                Some(p) => path.strip_prefix(p.as_str())?,
                None => "",
            };
            return Some(format!("{with}{rest}{query}"));
        }
        if let Some((re, sub)) = &self.regex_rewrite {
            let new = re.replace_all(path, sub.as_str());
            return Some(format!("{new}{query}"));
        }
        None
    }
}

/// One compiled route.
#[derive(Debug, Clone)]
pub struct Route {
    path: Option<PathMatcher>,
    headers: Vec<HeaderCheck>,
    /// What it does.
    pub action: Action,
    /// `per_filter_config` of the route, else of its virtual host, built into filters.
    pub filters: FilterOverrides,
}

/// One compiled virtual host.
#[derive(Debug, Clone)]
pub struct VirtualHost {
    /// `name`.
    pub name: String,
    routes: Vec<Route>,
    /// Virtual-host-level header mutation.
    pub headers: CompiledMutation,
}

/// A compiled route table (`routers[]` entry).
#[derive(Debug, Clone)]
pub struct RouteTable {
    /// `router_config_name`.
    pub name: String,
    vhosts: Vec<VirtualHost>,
    exact: HashMap<String, usize>,
    /// `(suffix, vhost)`, longest suffix first; the suffix keeps its leading `.` (from `*.a.com`).
    suffixes: Vec<(String, usize)>,
    default: Option<usize>,
    /// Router-level header mutation.
    pub headers: CompiledMutation,
}

/// What [`RouteTable::new`] could not compile (mosn-config validates first, so this is rare).
#[derive(Debug, thiserror::Error)]
#[error("route table {table:?}: {what}")]
pub struct BuildError {
    /// The table's name.
    pub table: String,
    /// What failed.
    pub what: String,
}

/// Converts Envoy/RE2 style `\1` back-references in a substitution into the `${1}` form of the
/// `regex` crate.
fn substitution(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                chars.next();
                out.push_str(&format!("${{{d}}}"));
                continue;
            }
        }
        if c == '$' {
            out.push_str("$$");
            continue;
        }
        out.push(c);
    }
    out
}

impl RouteTable {
    /// Compiles a route table. `resolve(cluster_name, metadata_match)` gives the target id of a
    /// cluster (or of its host subset); it returns `None` for an unknown cluster.
    ///
    /// Filters of `per_filter_config` are built with `filters`.
    ///
    /// Errors: an unknown cluster, a regex that does not compile, or a `per_filter_config` the
    /// registry refuses (its message names the JSON path).
    pub fn new(
        cfg: &RouterConfig,
        filters: &FilterRegistry,
        resolve: &mut Resolver<'_>,
    ) -> Result<Self, BuildError> {
        let err = |what: String| BuildError {
            table: cfg.name.clone(),
            what,
        };
        let mut vhosts = Vec::new();
        let mut exact = HashMap::new();
        let mut suffixes = Vec::new();
        let mut default = None;
        for (vi, vh) in cfg.virtual_hosts.iter().enumerate() {
            for d in &vh.domains {
                let d = d.to_ascii_lowercase();
                if d == "*" {
                    default.get_or_insert(vi);
                } else if let Some(s) = d.strip_prefix('*') {
                    suffixes.push((s.to_string(), vi));
                } else {
                    exact.entry(d).or_insert(vi);
                }
            }
            let mut routes = Vec::new();
            for r in &vh.routes {
                let mut overrides = Vec::new();
                for f in r.per_filter_config.iter().chain(
                    vh.per_filter_config
                        .iter()
                        .filter(|v| r.per_filter_config.iter().all(|o| o.kind != v.kind)),
                ) {
                    let built = filters
                        .build(&f.kind, &f.type_path, &f.config, &f.path)
                        .map_err(|e| err(e.to_string()))?;
                    if built.before_route_only() {
                        return Err(err(format!(
                            "{}: {} runs before the route is chosen, so a per-route config \
                             cannot apply; configure it in the listener's stream_filters",
                            f.type_path, f.kind
                        )));
                    }
                    overrides.push(built);
                }
                let path = match &r.path {
                    None => None,
                    Some(p) => Some(
                        PathMatcher::new(p)
                            .ok_or_else(|| err(format!("bad path matcher {p:?}")))?,
                    ),
                };
                let headers = r
                    .headers
                    .iter()
                    .map(|h| {
                        HeaderCheck::new(h).ok_or_else(|| err(format!("bad header matcher {h:?}")))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let action = match &r.action {
                    RouteAction::DirectResponse { status, body } => Action::Direct {
                        status: *status,
                        body: body.as_str().into(),
                    },
                    RouteAction::Redirect {
                        response_code,
                        path,
                        host,
                        scheme,
                    } => Action::Redirect {
                        code: *response_code,
                        path: path.clone(),
                        host: host.clone(),
                        scheme: scheme.clone(),
                    },
                    RouteAction::Forward(f) => {
                        let mut targets = Vec::new();
                        for (name, w) in &f.clusters {
                            let t = resolve(name, &f.metadata_match)
                                .ok_or_else(|| err(format!("unknown cluster {name:?}")))?;
                            targets.push((t, *w));
                        }
                        // A prefix match swaps the matched prefix; an exact or regex match
                        // swaps the whole path (Envoy's `prefix_rewrite`).
                        let prefix_rewrite = f.prefix_rewrite.as_ref().map(|with| {
                            let matched = match &r.path {
                                Some(
                                    mosn_config::PathMatch::Prefix(p)
                                    | mosn_config::PathMatch::SeparatedPrefix(p),
                                ) => Some(p.clone()),
                                _ => None,
                            };
                            (matched, with.clone())
                        });
                        let regex_rewrite = match &f.regex_rewrite {
                            None => None,
                            Some((re, sub)) => Some((
                                Regex::new(re)
                                    .map_err(|e| err(format!("bad regex_rewrite: {e}")))?,
                                substitution(sub),
                            )),
                        };
                        Action::Forward(Box::new(Forward {
                            total_weight: targets.iter().map(|(_, w)| *w as u64).sum(),
                            targets,
                            timeout: f.timeout,
                            retry: f.retry.clone().filter(|r| r.retry_on && r.num_retries > 0),
                            prefix_rewrite,
                            regex_rewrite,
                            host_rewrite: f.host_rewrite.clone(),
                            headers: CompiledMutation::new(&f.headers),
                        }))
                    }
                };
                routes.push(Route {
                    path,
                    headers,
                    action,
                    filters: FilterOverrides(overrides),
                });
            }
            vhosts.push(VirtualHost {
                name: vh.name.clone(),
                routes,
                headers: CompiledMutation::new(&vh.headers),
            });
        }
        suffixes.sort_by_key(|s| std::cmp::Reverse(s.0.len()));
        Ok(RouteTable {
            name: cfg.name.clone(),
            vhosts,
            exact,
            suffixes,
            default,
            headers: CompiledMutation::new(&cfg.headers),
        })
    }

    /// Finds the virtual host for a Host header value: exact `host:port`, exact host without the
    /// port, `*.suffix` longest first, then `*`.
    pub fn virtual_host(&self, host: &str) -> Option<&VirtualHost> {
        let lower;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = host.to_ascii_lowercase();
            lower.as_str()
        } else {
            host
        };
        if !self.exact.is_empty() {
            if let Some(i) = self.exact.get(host) {
                return Some(&self.vhosts[*i]);
            }
        }
        let bare = strip_port(host);
        if bare.len() != host.len() {
            if let Some(i) = self.exact.get(bare) {
                return Some(&self.vhosts[*i]);
            }
        }
        for (s, i) in &self.suffixes {
            if bare.len() > s.len() && bare.ends_with(s.as_str()) {
                return Some(&self.vhosts[*i]);
            }
        }
        self.default.map(|i| &self.vhosts[i])
    }

    /// Finds the virtual host (by `:authority`) and the first route whose path matcher (on
    /// `:path` without the query) and header matchers all match the head.
    pub fn route(&self, h: &dyn Headers) -> Option<(&VirtualHost, &Route)> {
        let vh = self.virtual_host(h.get_str(":authority").unwrap_or(""))?;
        let path = h.get(":path").unwrap_or(b"/");
        let path = match path.iter().position(|b| *b == b'?') {
            Some(i) => &path[..i],
            None => path,
        };
        let path = std::str::from_utf8(path).unwrap_or("");
        let r = vh.routes.iter().find(|r| {
            r.path.as_ref().is_none_or(|p| p.matches(path))
                && r.headers.iter().all(|m| m.matches(h))
        })?;
        Some((vh, r))
    }
}

/// Strips `:port` from `host:port` and `[v6]:port`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(i) => &host[..=i],
            None => host,
        };
    }
    match host.rfind(':') {
        Some(i) if host[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &host[..i],
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(json: &str) -> RouteTable {
        let full = format!(
            r#"{{"servers":[{{"routers":[{json}],"listeners":[{{"address":"127.0.0.1:0","filter_chains":[{{"filters":[{{"type":"tcp_proxy","config":{{"cluster":"a"}}}}]}}]}}]}}],
               "cluster_manager":{{"clusters":[{{"name":"a","hosts":[]}},{{"name":"b","hosts":[]}}]}}}}"#
        );
        let cfg = mosn_config::from_str(&full).unwrap().config;
        RouteTable::new(
            &cfg.server.routers[0],
            &FilterRegistry::new(),
            &mut |n, _| Some(if n == "a" { 0 } else { 1 }),
        )
        .unwrap()
    }

    fn head(host: &str, method: &str, path: &str) -> mosn_api::HeaderVec {
        mosn_api::HeaderVec(vec![
            (":authority".into(), host.as_bytes().to_vec()),
            (":method".into(), method.as_bytes().to_vec()),
            (":path".into(), path.as_bytes().to_vec()),
        ])
    }

    #[test]
    fn virtual_host_order_is_mosns() {
        let t = table(
            r#"{"router_config_name":"r","virtual_hosts":[
                {"name":"any","domains":["*"],"routers":[]},
                {"name":"short","domains":["*.com"],"routers":[]},
                {"name":"long","domains":["*.example.com"],"routers":[]},
                {"name":"host","domains":["www.example.com"],"routers":[]},
                {"name":"hostport","domains":["www.example.com:8080"],"routers":[]}]}"#,
        );
        let vh = |h: &str| t.virtual_host(h).unwrap().name.clone();
        assert_eq!(vh("www.example.com:8080"), "hostport");
        assert_eq!(vh("www.example.com:9090"), "host");
        assert_eq!(vh("WWW.EXAMPLE.COM"), "host");
        assert_eq!(vh("api.example.com"), "long");
        assert_eq!(vh("foo.com:1"), "short");
        assert_eq!(vh("localhost"), "any");
    }

    #[test]
    fn rewrites() {
        let t = table(
            r#"{"router_config_name":"r","virtual_hosts":[{"name":"v","domains":["*"],"routers":[
                {"match":{"prefix":"/old/"},"route":{"cluster_name":"a","prefix_rewrite":"/new/"}},
                {"match":{"prefix":"/re/"},"route":{"cluster_name":"a",
                    "regex_rewrite":{"pattern":{"regex":"^/re/(\\w+)/x$"},"substitution":"/y/\\1"}}}]}]}"#,
        );
        let fwd = |p: &str| match &t.route(&head("h", "GET", p)).unwrap().1.action {
            Action::Forward(f) => f.rewrite_path(p),
            _ => panic!(),
        };
        assert_eq!(fwd("/old/a?q=1").as_deref(), Some("/new/a?q=1"));
        assert_eq!(fwd("/re/abc/x").as_deref(), Some("/y/abc"));
    }
}
