//! `RouteConfiguration` → a MOSN `routers[]` entry.

use std::collections::BTreeSet;

use envoy_types::pb::envoy::config::route::v3::{
    header_matcher::HeaderMatchSpecifier, redirect_action, route::Action,
    route_action::ClusterSpecifier, route_action::HostRewriteSpecifier, route_match::PathSpecifier,
    HeaderMatcher, Route, RouteAction, RouteConfiguration, VirtualHost,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher::MatchPattern, StringMatcher};
use serde_json::{json, Map, Value};

use super::{duration, header_mutation};

/// Translates one route configuration.
///
/// Errors: the first route that uses what mosn-rs cannot do (query-parameter matchers, a
/// cluster chosen by header, ...), named by its path (`virtual_hosts[0].routes[2].match...`).
pub(crate) fn translate(rc: &RouteConfiguration) -> Result<Value, String> {
    let mut vhs = Vec::new();
    for (vi, vh) in rc.virtual_hosts.iter().enumerate() {
        vhs.push(virtual_host(vh).map_err(|e| format!("virtual_hosts[{vi}].{e}"))?);
    }
    let mut out = Map::new();
    out.insert("router_config_name".into(), json!(rc.name));
    out.insert("virtual_hosts".into(), Value::Array(vhs));
    header_mutation(
        &mut out,
        &rc.request_headers_to_add,
        &rc.request_headers_to_remove,
        &rc.response_headers_to_add,
        &rc.response_headers_to_remove,
    );
    Ok(Value::Object(out))
}

/// The clusters a translated router refers to.
pub(crate) fn references(r: &Value, clusters: &mut BTreeSet<String>) {
    for vh in r["virtual_hosts"].as_array().into_iter().flatten() {
        for rt in vh["routers"].as_array().into_iter().flatten() {
            if let Some(c) = rt["route"]["cluster_name"].as_str() {
                clusters.insert(c.to_string());
            }
            for w in rt["route"]["weighted_clusters"]
                .as_array()
                .into_iter()
                .flatten()
            {
                if let Some(c) = w["cluster"]["name"].as_str() {
                    clusters.insert(c.to_string());
                }
            }
        }
    }
}

fn virtual_host(vh: &VirtualHost) -> Result<Value, String> {
    let mut routes = Vec::new();
    for (ri, r) in vh.routes.iter().enumerate() {
        routes.push(route(r).map_err(|e| format!("routes[{ri}].{e}"))?);
    }
    let mut out = Map::new();
    out.insert("name".into(), json!(vh.name));
    out.insert("domains".into(), json!(vh.domains));
    out.insert("routers".into(), Value::Array(routes));
    header_mutation(
        &mut out,
        &vh.request_headers_to_add,
        &vh.request_headers_to_remove,
        &vh.response_headers_to_add,
        &vh.response_headers_to_remove,
    );
    Ok(Value::Object(out))
}

fn route(r: &Route) -> Result<Value, String> {
    let m = r.r#match.as_ref().ok_or("match: is required")?;
    if !m.query_parameters.is_empty() {
        return Err(
            "match.query_parameters: query-parameter matching is not supported by mosn-rs yet"
                .into(),
        );
    }
    if m.grpc.is_some() || m.tls_context.is_some() || !m.cookies.is_empty() {
        return Err(
            "match: grpc, tls_context and cookie matchers are not supported by mosn-rs yet".into(),
        );
    }
    let case_insensitive = m.case_sensitive.as_ref().is_some_and(|b| !b.value);
    let mut mo = Map::new();
    match &m.path_specifier {
        Some(PathSpecifier::Prefix(p)) if case_insensitive => {
            mo.insert("regex".into(), json!(format!("(?i){}.*", regex::escape(p))));
        }
        Some(PathSpecifier::Prefix(p)) => {
            mo.insert("prefix".into(), json!(p));
        }
        Some(PathSpecifier::Path(p)) if case_insensitive => {
            mo.insert("regex".into(), json!(format!("(?i){}", regex::escape(p))));
        }
        Some(PathSpecifier::Path(p)) => {
            mo.insert("path".into(), json!(p));
        }
        Some(PathSpecifier::SafeRegex(re)) => {
            mo.insert("regex".into(), json!(re.regex));
        }
        Some(PathSpecifier::PathSeparatedPrefix(p)) => {
            mo.insert("path_separated_prefix".into(), json!(p));
        }
        Some(_) => {
            return Err(
                "match: CONNECT and path-template matchers are not supported by mosn-rs yet".into(),
            )
        }
        None => return Err("match: a path specifier is required".into()),
    }
    let mut headers = Vec::new();
    for (hi, h) in m.headers.iter().enumerate() {
        headers.push(header(h).map_err(|e| format!("match.headers[{hi}]: {e}"))?);
    }
    if !headers.is_empty() {
        mo.insert("headers".into(), Value::Array(headers));
    }
    let mut out = Map::new();
    out.insert("match".into(), Value::Object(mo));
    if let Some(any) = r.typed_per_filter_config.get("envoy.filters.http.fault") {
        if let Some(cfg) =
            super::filters::fault(any).map_err(|e| format!("typed_per_filter_config.fault.{e}"))?
        {
            out.insert("per_filter_config".into(), json!({"fault": cfg}));
        }
    }
    match &r.action {
        Some(Action::Route(a)) => {
            let mut ro = forward(a).map_err(|e| format!("route.{e}"))?;
            header_mutation(
                &mut ro,
                &r.request_headers_to_add,
                &r.request_headers_to_remove,
                &r.response_headers_to_add,
                &r.response_headers_to_remove,
            );
            out.insert("route".into(), Value::Object(ro));
        }
        Some(Action::DirectResponse(d)) => {
            use envoy_types::pb::envoy::config::core::v3::data_source::Specifier;
            let body = match d.body.as_ref().and_then(|b| b.specifier.as_ref()) {
                Some(Specifier::InlineString(s)) => s.clone(),
                Some(Specifier::InlineBytes(b)) => String::from_utf8_lossy(b).into_owned(),
                Some(_) => {
                    return Err(
                        "direct_response.body: only inline bodies are supported by mosn-rs".into(),
                    )
                }
                None => String::new(),
            };
            out.insert(
                "direct_response".into(),
                json!({"status": d.status, "body": body}),
            );
        }
        Some(Action::Redirect(rd)) => {
            let mut ro = Map::new();
            // Envoy's codes: 0 MOVED_PERMANENTLY, 1 FOUND, 2 SEE_OTHER, 3 TEMPORARY, 4 PERMANENT.
            let code = [301, 302, 303, 307, 308]
                .get(rd.response_code.max(0) as usize)
                .copied()
                .unwrap_or(301);
            ro.insert("response_code".into(), json!(code));
            if !rd.host_redirect.is_empty() {
                ro.insert("host_redirect".into(), json!(rd.host_redirect));
            }
            match &rd.scheme_rewrite_specifier {
                Some(redirect_action::SchemeRewriteSpecifier::HttpsRedirect(true)) => {
                    ro.insert("scheme_redirect".into(), json!("https"));
                }
                Some(redirect_action::SchemeRewriteSpecifier::SchemeRedirect(s)) => {
                    ro.insert("scheme_redirect".into(), json!(s));
                }
                _ => {}
            }
            match &rd.path_rewrite_specifier {
                Some(redirect_action::PathRewriteSpecifier::PathRedirect(p)) => {
                    ro.insert("path_redirect".into(), json!(p));
                }
                None => {}
                Some(_) => {
                    return Err(
                        "redirect: prefix and regex rewrites are not supported by mosn-rs yet"
                            .into(),
                    )
                }
            }
            if rd.port_redirect != 0 {
                return Err("redirect.port_redirect: not supported by mosn-rs yet".into());
            }
            out.insert("redirect".into(), Value::Object(ro));
        }
        Some(_) => {
            return Err(
                "action: filter and non-forwarding actions are not supported by mosn-rs".into(),
            )
        }
        None => return Err("action: is required".into()),
    }
    Ok(Value::Object(out))
}

fn forward(a: &RouteAction) -> Result<Map<String, Value>, String> {
    let mut ro = Map::new();
    match &a.cluster_specifier {
        Some(ClusterSpecifier::Cluster(c)) => {
            ro.insert("cluster_name".into(), json!(c));
        }
        Some(ClusterSpecifier::WeightedClusters(w)) => {
            let mut list = Vec::new();
            for (ci, c) in w.clusters.iter().enumerate() {
                if c.name.is_empty() {
                    return Err(format!(
                        "weighted_clusters.clusters[{ci}]: a cluster chosen by header is not supported by mosn-rs yet"
                    ));
                }
                let weight = c.weight.as_ref().map_or(0, |w| w.value);
                if weight > 0 {
                    list.push(json!({"cluster": {"name": c.name, "weight": weight}}));
                }
            }
            if list.is_empty() {
                return Err("weighted_clusters: no cluster has a weight".into());
            }
            ro.insert("weighted_clusters".into(), Value::Array(list));
        }
        Some(_) => {
            return Err(
                "cluster_header and cluster specifier plugins are not supported by mosn-rs yet"
                    .into(),
            )
        }
        None => return Err("cluster: is required".into()),
    }
    if let Some(t) = duration(&a.timeout) {
        ro.insert("timeout".into(), json!(t));
    }
    if !a.prefix_rewrite.is_empty() {
        ro.insert("prefix_rewrite".into(), json!(a.prefix_rewrite));
    }
    if let Some(rr) = &a.regex_rewrite {
        let pattern = rr
            .pattern
            .as_ref()
            .map(|p| p.regex.clone())
            .unwrap_or_default();
        ro.insert(
            "regex_rewrite".into(),
            json!({"pattern": {"regex": pattern}, "substitution": rr.substitution}),
        );
    }
    if let Some(HostRewriteSpecifier::HostRewriteLiteral(h)) = &a.host_rewrite_specifier {
        ro.insert("host_rewrite".into(), json!(h));
    }
    if let Some(p) = &a.retry_policy {
        if !p.retry_on.is_empty() {
            let on: BTreeSet<&str> = p.retry_on.split(',').map(str::trim).collect();
            // Every 5xx when Envoy's `5xx` is set (mosn-rs's empty list), else the listed codes.
            let mut codes: Vec<u32> = Vec::new();
            if !on.contains("5xx") {
                if on.contains("gateway-error") {
                    codes.extend([502, 503, 504]);
                }
                if on.contains("retriable-status-codes") {
                    codes.extend(p.retriable_status_codes.iter().copied());
                }
                if codes.is_empty() {
                    // Only connection-level conditions: retry those, no status.
                    codes.push(0);
                }
            }
            codes.sort_unstable();
            codes.dedup();
            let mut rp = Map::new();
            rp.insert("retry_on".into(), json!(true));
            rp.insert(
                "num_retries".into(),
                json!(p.num_retries.as_ref().map_or(1, |n| n.value)),
            );
            rp.insert("status_codes".into(), json!(codes));
            if let Some(t) = duration(&p.per_try_timeout) {
                rp.insert("retry_timeout".into(), json!(t));
            }
            ro.insert("retry_policy".into(), Value::Object(rp));
        }
    }
    if !a.request_mirror_policies.is_empty() {
        return Err("request_mirror_policies: not supported by mosn-rs yet".into());
    }
    Ok(ro)
}

/// Istio still sends the deprecated `exact_match`/`safe_regex_match`/... forms beside
/// `string_match`, so both are read.
#[allow(deprecated)]
/// An Envoy header matcher as MOSN's `{name, value, regex}` with mosn-rs's `present_match` and
/// `invert_match`.
fn header(h: &HeaderMatcher) -> Result<Value, String> {
    // Envoy's pseudo-header `:method` is MOSN's `method`.
    let name = if h.name == ":method" {
        "method"
    } else {
        h.name.as_str()
    };
    let (value, regex, present) = match &h.header_match_specifier {
        Some(HeaderMatchSpecifier::ExactMatch(v)) => (v.clone(), false, false),
        Some(HeaderMatchSpecifier::SafeRegexMatch(r)) => (r.regex.clone(), true, false),
        Some(HeaderMatchSpecifier::PresentMatch(true)) => (String::new(), false, true),
        Some(HeaderMatchSpecifier::PresentMatch(false)) => {
            // present_match: false matches when the header is absent.
            return Ok(
                json!({"name": name, "present_match": true, "invert_match": !h.invert_match}),
            );
        }
        Some(HeaderMatchSpecifier::PrefixMatch(p)) => {
            (format!("{}.*", regex::escape(p)), true, false)
        }
        Some(HeaderMatchSpecifier::SuffixMatch(p)) => {
            (format!(".*{}", regex::escape(p)), true, false)
        }
        Some(HeaderMatchSpecifier::ContainsMatch(p)) => {
            (format!(".*{}.*", regex::escape(p)), true, false)
        }
        Some(HeaderMatchSpecifier::StringMatch(s)) => string_match(s)?,
        Some(HeaderMatchSpecifier::RangeMatch(_)) => {
            return Err("range_match is not supported by mosn-rs yet".into())
        }
        // No specifier: the header must be present (Envoy's default).
        None => (String::new(), false, true),
    };
    let mut o = Map::new();
    o.insert("name".into(), json!(name));
    if present {
        o.insert("present_match".into(), json!(true));
    } else {
        o.insert("value".into(), json!(value));
        o.insert("regex".into(), json!(regex));
    }
    if h.invert_match {
        o.insert("invert_match".into(), json!(true));
    }
    Ok(Value::Object(o))
}

/// A `StringMatcher` as `(value, is_regex, present)`.
fn string_match(s: &StringMatcher) -> Result<(String, bool, bool), String> {
    let ci = if s.ignore_case { "(?i)" } else { "" };
    Ok(match &s.match_pattern {
        Some(MatchPattern::Exact(v)) if !s.ignore_case => (v.clone(), false, false),
        Some(MatchPattern::Exact(v)) => (format!("{ci}{}", regex::escape(v)), true, false),
        Some(MatchPattern::Prefix(v)) => (format!("{ci}{}.*", regex::escape(v)), true, false),
        Some(MatchPattern::Suffix(v)) => (format!("{ci}.*{}", regex::escape(v)), true, false),
        Some(MatchPattern::Contains(v)) => (format!("{ci}.*{}.*", regex::escape(v)), true, false),
        Some(MatchPattern::SafeRegex(r)) => (r.regex.clone(), true, false),
        Some(MatchPattern::Custom(_)) | None => {
            return Err("string_match: a custom or empty matcher is not supported".into())
        }
    })
}
