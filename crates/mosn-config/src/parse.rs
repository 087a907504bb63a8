//! Reads a MOSN v2 JSON document into the [`crate::model`] types, checking types as it goes.
//! Cross-references (routes to clusters, listeners to route tables) are checked in
//! [`crate::validate`].

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde_json::Value;

use crate::error::{ConfigError, Result};
use crate::model::*;
use crate::walk::{is_set, show, Ctx, Obj};

const OBSERVABILITY_LATER: &str = "recognised, not implemented yet; ignored (no effect on traffic)";

pub(crate) fn config(root: &Value, ctx: &Ctx) -> Result<Config> {
    let o = Obj::new(root, "")?;
    let (xds, static_clusters) = if crate::xds::is_bootstrap(&o) {
        crate::xds::bootstrap(&o, ctx)?
    } else {
        (None, Vec::new())
    };
    o.unsupported(
        &[
            "third_part_codec",
            "wasm_global_plugins",
            "stream_filters",
            "cluster_manager_tls",
        ],
        "plugins, codecs and global filter chains arrive in later releases",
    )?;
    if xds.is_none() {
        o.unsupported(
            &["layered_runtime"],
            "plugins, codecs and global filter chains arrive in later releases",
        )?;
    }
    for key in ["tracing", "pprof", "plugin"] {
        if o.get(key).is_some_and(is_set) {
            ctx.warn(&o.key_path(key), OBSERVABILITY_LATER);
        }
    }
    let dubbo_registry = extends(&o, ctx)?;
    let servers = o.opt_array("servers")?;
    let server = match servers.as_slice() {
        // An xDS bootstrap alone: the control plane sends the listeners.
        [] if xds.is_some() => Server::default(),
        [] => {
            return Err(ConfigError::new(
                o.key_path("servers"),
                "is required (one server)",
            ))
        }
        [(p, v)] => self::server(v, p, ctx)?,
        _ => {
            return Err(ConfigError::new(
                o.key_path("servers"),
                format!("has {} servers; MOSN runs exactly one", servers.len()),
            ))
        }
    };
    let mut clusters = match o.opt_obj("cluster_manager")? {
        None => Vec::new(),
        Some(cm) => {
            cm.unsupported(&["clusters_configs"], "clusters from a folder")?;
            cm.unsupported(&["tls_context"], "a cluster-manager-wide TLS context")?;
            cm.ignored(&["cluster_pool_enable"]);
            let cs = cm
                .opt_array("clusters")?
                .into_iter()
                .map(|(p, v)| cluster(v, &p, ctx))
                .collect::<Result<Vec<_>>>()?;
            cm.finish(ctx);
            cs
        }
    };
    let admin = match o.opt_obj("admin")? {
        None => None,
        Some(a) => {
            let addr = a.req("address")?;
            let ao = Obj::new(addr, &a.key_path("address"))?;
            let sa = ao
                .opt_obj("socket_address")?
                .ok_or_else(|| ConfigError::new(ao.key_path("socket_address"), "is required"))?;
            let host = sa.req_str("address")?;
            let port = sa.opt_u64("port_value", 65535)?.unwrap_or(0);
            let ip: std::net::IpAddr = host.parse().map_err(|_| {
                ConfigError::new(
                    sa.key_path("address"),
                    format!("{host:?} is not an IP address"),
                )
            })?;
            sa.finish(ctx);
            ao.finish(ctx);
            a.ignored(&["access_log_path"]);
            a.finish(ctx);
            Some(Admin {
                address: SocketAddr::new(ip, port as u16),
            })
        }
    };
    let metrics = match o.opt_obj("metrics")? {
        None => Metrics::default(),
        Some(m) => metrics(m, ctx)?,
    };
    clusters.extend(static_clusters);
    let disable_upgrade = o.opt_bool("disable_upgrade")?.unwrap_or(false)
        || o.opt_bool("close_graceful")?.unwrap_or(false);
    let uds_dir = o
        .opt_str("uds_dir")?
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let inherit_old_mosnconfig = o.opt_bool("inherit_old_mosnconfig")?.unwrap_or(false);
    let pid = o.opt_str("pid")?.map(str::to_string);
    o.finish(ctx);
    Ok(Config {
        server,
        clusters,
        admin,
        disable_upgrade,
        pid,
        metrics,
        dubbo_registry,
        xds,
        uds_dir,
        inherit_old_mosnconfig,
    })
}

/// `extends`: a list of `{"type", "config"}`. `dubbo_registry` is read (when `enable` is true);
/// other types are ignored with a warning (MOSN ignores them silently).
fn extends(o: &Obj<'_>, ctx: &Ctx) -> Result<Option<DubboRegistry>> {
    let mut out = None;
    for (p, v) in o.opt_array("extends")? {
        let e = Obj::new(v, &p)?;
        let typ = e.req_str("type")?;
        if typ != "dubbo_registry" {
            ctx.warn(
                &e.key_path("type"),
                format!("extension {typ:?} is not known to mosn-rs; ignored"),
            );
            e.ignored(&["config"]);
            e.finish(ctx);
            continue;
        }
        let Some(c) = e.opt_obj("config")? else {
            e.finish(ctx);
            continue;
        };
        e.finish(ctx);
        if c.opt_bool("enable")? != Some(true) {
            c.ignored(&[
                "server_port",
                "api_port",
                "log_path",
                "server_listener",
                "publish_ip",
                "sub_any_version",
            ]);
            c.finish(ctx);
            continue;
        }
        if out.is_some() {
            return Err(ConfigError::new(
                p,
                "a second dubbo_registry extension; MOSN runs one",
            ));
        }
        let api_port = match c.get("api_port").and_then(Value::as_u64) {
            Some(0) => 0,
            Some(n) if n < 65535 => n as u16,
            _ => {
                if c.get("api_port").is_some() {
                    ctx.warn(
                        &c.key_path("api_port"),
                        "not a port from 1 to 65534; MOSN's default 22222 is used",
                    );
                }
                22222
            }
        };
        let server_listener = c.opt_str("server_listener")?.map(str::to_string);
        let server_port = match c.get("server_port") {
            None if server_listener.is_some() => None,
            v => match v.and_then(Value::as_u64) {
                Some(n) if n > 0 && n < 65535 => Some(n as u16),
                _ => {
                    return Err(ConfigError::new(
                        c.key_path("server_port"),
                        "must be the ingress listener's port, from 1 to 65534 (MOSN exits on any other value); or name the listener with \"server_listener\"",
                    ))
                }
            },
        };
        let publish_ip = match c.opt_str("publish_ip")? {
            None => None,
            Some(ip) => Some(ip.parse().map_err(|_| {
                ConfigError::new(
                    c.key_path("publish_ip"),
                    format!("{ip:?} is not an IP address"),
                )
            })?),
        };
        let sub_any_version = c.opt_bool("sub_any_version")?.unwrap_or(false);
        let log_path = c.opt_str("log_path")?.map(str::to_string);
        c.finish(ctx);
        out = Some(DubboRegistry {
            api_port,
            server_port,
            server_listener,
            publish_ip,
            sub_any_version,
            log_path,
        });
    }
    Ok(out)
}

fn metrics(m: Obj<'_>, ctx: &Ctx) -> Result<Metrics> {
    m.ignored(&["shm_zone", "shm_size", "flush_interval"]);
    let mut out = Metrics::default();
    for (sp, sv) in m.opt_array("sinks")? {
        let s = Obj::new(sv, &sp)?;
        let ty = s.req_str("type")?;
        if ty != "prometheus" {
            return Err(ConfigError::new(
                s.key_path("type"),
                format!("metrics sink {ty:?} is not supported by mosn-rs yet (supported: \"prometheus\")"),
            ));
        }
        let c = s
            .opt_obj("config")?
            .ok_or_else(|| ConfigError::new(format!("{sp}.config"), "is required"))?;
        c.ignored(&[
            "percentiles",
            "disable_collect_go",
            "disable_collect_process",
        ]);
        c.unsupported(&["export_url"], "the Pushgateway mode")?;
        let port = c
            .opt_u64("port", 65535)?
            .ok_or_else(|| ConfigError::new(c.key_path("port"), "is required"))?
            as u16;
        let endpoint = c.opt_str("endpoint")?.unwrap_or("/metrics");
        if !endpoint.starts_with('/') {
            return Err(ConfigError::new(
                c.key_path("endpoint"),
                format!("{endpoint:?} must start with /"),
            ));
        }
        out.prometheus.push(PrometheusSink {
            port,
            endpoint: endpoint.to_string(),
        });
        c.finish(ctx);
        s.finish(ctx);
    }
    if let Some(sm) = m.opt_obj("stats_matcher")? {
        out.reject_all = sm.opt_bool("reject_all")?.unwrap_or(false);
        out.exclusion_labels = sm.opt_str_array("exclusion_labels")?;
        out.exclusion_keys = sm.opt_str_array("exclusion_keys")?;
        sm.finish(ctx);
    }
    m.finish(ctx);
    Ok(out)
}

fn server(v: &Value, path: &str, ctx: &Ctx) -> Result<Server> {
    let o = Obj::new(v, path)?;
    o.ignored(&[
        "mosn_server_name",
        "use_netpoll_mode",
        "optimize_local_write",
    ]);
    let global_log_roller = match o.opt_str("global_log_roller")? {
        None => crate::Roller::default(),
        Some(r) => crate::Roller::parse(r).map_err(|e| {
            ConfigError::new(o.key_path("global_log_roller"), format!("{r:?}: {e}"))
        })?,
    };
    let processor = match o.get("processor") {
        None => None,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("auto") || s.is_empty() => None,
        Some(Value::String(s)) => Some(s.parse::<usize>().map_err(|_| {
            ConfigError::new(
                o.key_path("processor"),
                format!("{s:?} is not a worker count"),
            )
        })?),
        Some(v) => match v.as_u64() {
            Some(n) => Some(n as usize),
            None => {
                return Err(ConfigError::new(
                    o.key_path("processor"),
                    format!("{} is not a worker count", show(v)),
                ))
            }
        },
    }
    .filter(|n| *n > 0);
    let listeners = o
        .opt_array("listeners")?
        .into_iter()
        .map(|(p, v)| listener(v, &p, ctx))
        .collect::<Result<Vec<_>>>()?;
    let routers = o
        .opt_array("routers")?
        .into_iter()
        .map(|(p, v)| router_config(v, &p, ctx))
        .collect::<Result<Vec<_>>>()?;
    let s = Server {
        default_log_path: o.opt_str("default_log_path")?.map(str::to_string),
        default_log_level: o.opt_str("default_log_level")?.map(str::to_string),
        processor,
        graceful_timeout: o.opt_duration("graceful_timeout")?,
        global_log_roller,
        listeners,
        routers,
    };
    o.finish(ctx);
    Ok(s)
}

/// Parses `host:port` into a socket address, with MOSN's error wording.
pub(crate) fn socket_addr(o: &Obj<'_>, key: &str) -> Result<SocketAddr> {
    let s = o.req_str(key)?;
    s.parse()
        .map_err(|_| ConfigError::new(o.key_path(key), format!("{s:?} is not a socket address")))
}

fn listener(v: &Value, path: &str, ctx: &Ctx) -> Result<Listener> {
    let o = Obj::new(v, path)?;
    let inspector = o.opt_bool("inspector")?.unwrap_or(false);
    let mut original_dst = match o.get("use_original_dst") {
        None | Some(Value::Bool(false)) => None,
        Some(Value::Bool(true)) => Some(OriginalDst::Redirect),
        Some(Value::String(m)) => original_dst_mode(m, &o.key_path("use_original_dst"))?,
        Some(v) => {
            return Err(ConfigError::new(
                o.key_path("use_original_dst"),
                format!("{} is not \"redirect\" or \"tproxy\"", show(v)),
            ))
        }
    };
    let explicit_hand_off = original_dst.is_some();
    let mut original_dst_hand_off = true;
    for (fp, fv) in o.opt_array("listener_filters")? {
        let f = Obj::new(fv, &fp)?;
        let ty = f.req_str("type")?;
        if ty != "original_dst" {
            return Err(ConfigError::new(
                f.key_path("type"),
                format!("listener filter {ty:?} is not supported by mosn-rs yet (supported: \"original_dst\")"),
            ));
        }
        let mode = match f.opt_obj("config")? {
            Some(c) => {
                let m = c.opt_str("type")?.unwrap_or("redirect");
                let r = original_dst_mode(m, &c.key_path("type"))?;
                if c.opt_bool("hand_off")? == Some(false) && !explicit_hand_off {
                    original_dst_hand_off = false;
                }
                c.finish(ctx);
                r
            }
            None => Some(OriginalDst::Redirect),
        };
        if original_dst.is_none() {
            original_dst = mode;
        }
        f.finish(ctx);
    }
    o.ignored(&[
        "type",
        "reuseport",
        "default_read_buffer_size",
        "log_path",
        "log_level",
    ]);
    let mut access_logs = Vec::new();
    for (ap, av) in o.opt_array("access_logs")? {
        let a = Obj::new(av, &ap)?;
        access_logs.push(AccessLog {
            path: a.req_str("log_path")?.to_string(),
            format: a
                .opt_str("log_format")?
                .filter(|f| !f.is_empty())
                .map(str::to_string),
        });
        a.finish(ctx);
    }
    let network = match o.opt_str("network")? {
        None | Some("") => "tcp",
        Some(n) if n.eq_ignore_ascii_case("tcp") => "tcp",
        Some(n) if n.eq_ignore_ascii_case("unix") => "unix",
        Some(n) if n.eq_ignore_ascii_case("udp") => "udp",
        Some(net) => {
            return Err(ConfigError::new(
                o.key_path("network"),
                format!("{net:?} is not a network (\"tcp\", \"unix\" or \"udp\")"),
            ))
        }
    };
    let unix = network == "unix";
    let bind_port = o.opt_bool("bind_port")?.unwrap_or(true);
    let parent = o.opt_str("parent_listener")?.map(str::to_string);
    let chain_match = match o.opt_obj("filter_chain_match")? {
        None => None,
        Some(m) => Some(chain_match(m, ctx)?),
    };
    if parent.is_some() && bind_port {
        return Err(ConfigError::new(
            o.key_path("bind_port"),
            "must be false on a listener with \"parent_listener\" (it takes its parent's connections)",
        ));
    }
    let address = if unix {
        let p = o.req_str("address")?;
        let p = p.strip_prefix("unix:").unwrap_or(p);
        if !p.starts_with('/') && !p.starts_with('.') {
            return Err(ConfigError::new(
                o.key_path("address"),
                format!("{p:?} is not a unix socket path"),
            ));
        }
        ListenAddr::Unix(p.into())
    } else if network == "udp" {
        ListenAddr::Udp(socket_addr(&o, "address")?)
    } else {
        ListenAddr::Tcp(socket_addr(&o, "address")?)
    };
    let name = o
        .opt_str("name")?
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| address.to_string());
    let chains = o.opt_array("filter_chains")?;
    let (cp, cv) = match chains.as_slice() {
        [] => return Err(ConfigError::new(o.key_path("filter_chains"), "is required")),
        [one] => one,
        _ => return Err(ConfigError::new(
            o.key_path("filter_chains"),
            "has more than one filter chain; MOSN uses only the first, mosn-rs wants exactly one",
        )),
    };
    let chain = Obj::new(cv, cp)?;
    let mut tls = Vec::new();
    if let Some(t) = chain.opt_obj("tls_context")? {
        tls.extend(tls_context(t, ctx)?);
    }
    for (tp, tv) in chain.opt_array("tls_context_set")? {
        tls.extend(tls_context(Obj::new(tv, &tp)?, ctx)?);
    }
    for t in &tls {
        if t.cert_chain.is_none() || t.private_key.is_none() {
            return Err(ConfigError::new(
                t.path.clone(),
                "a listener TLS context needs \"cert_chain\" and \"private_key\"",
            ));
        }
    }
    chain.ignored(&["match"]);
    let filters = chain.opt_array("filters")?;
    let mut proxy = None;
    // `proxy` with `fallback_for_unknown_protocol` takes the `tcp_proxy` that follows it.
    let mut wants_fallback: Option<String> = None;
    for (fp, fv) in &filters {
        let f = Obj::new(fv, fp)?;
        let ty = f.req_str("type")?;
        if let (Some(NetworkFilter::Proxy(p)), Some(_), "tcp_proxy") =
            (proxy.as_mut(), wants_fallback.as_ref(), ty)
        {
            let c = f.req("config")?;
            let d = std::time::Duration::from_secs(90);
            p.fallback = Some(tcp_proxy(c, &f.key_path("config"), d, false, ctx)?);
            wants_fallback = None;
            f.finish(ctx);
            continue;
        }
        if proxy.is_some() {
            return Err(ConfigError::new(
                f.key_path("type"),
                format!("a second network filter ({ty:?}) is not supported by mosn-rs (it runs one terminal filter per chain, or a \"proxy\" with fallback_for_unknown_protocol and then one \"tcp_proxy\")"),
            ));
        }
        match ty {
            "proxy" => {
                let c = f.req("config")?;
                let (p, fallback) = proxy_filter(c, &f.key_path("config"), ctx)?;
                if fallback && p.downstream_protocol == Protocol::Auto {
                    wants_fallback = Some(format!("{}.fallback_for_unknown_protocol", f.key_path("config")));
                }
                proxy = Some(NetworkFilter::Proxy(p));
            }
            "tcp_proxy" => {
                let c = f.req("config")?;
                let d = std::time::Duration::from_secs(90);
                proxy = Some(NetworkFilter::TcpProxy(tcp_proxy(c, &f.key_path("config"), d, false, ctx)?));
            }
            "udp_proxy" => {
                let c = f.req("config")?;
                let d = std::time::Duration::from_secs(5);
                proxy = Some(NetworkFilter::UdpProxy(tcp_proxy(c, &f.key_path("config"), d, true, ctx)?));
            }
            other => {
                return Err(ConfigError::new(
                    f.key_path("type"),
                    format!("network filter {other:?} is not supported by mosn-rs yet (supported: \"proxy\", \"tcp_proxy\", \"udp_proxy\")"),
                ))
            }
        }
        f.finish(ctx);
    }
    if let Some(path) = wants_fallback {
        return Err(ConfigError::new(
            path,
            "needs a \"tcp_proxy\" filter after \"proxy\" in the same chain, to take the unknown traffic",
        ));
    }
    chain.finish(ctx);
    let filter = proxy.ok_or_else(|| {
        ConfigError::new(
            format!("{cp}.filters"),
            "needs a \"proxy\", \"tcp_proxy\" or \"udp_proxy\" network filter",
        )
    })?;
    if let (
        false,
        NetworkFilter::Proxy(ProxyFilter {
            fallback: Some(_), ..
        }),
    ) = (tls.is_empty(), &filter)
    {
        return Err(ConfigError::new(
            tls[0].path.clone(),
            "fallback_for_unknown_protocol on a TLS listener is not supported by mosn-rs yet",
        ));
    }
    if !tls.is_empty() && matches!(filter, NetworkFilter::UdpProxy(_)) {
        return Err(ConfigError::new(
            tls[0].path.clone(),
            "TLS on a udp_proxy listener is not supported (DTLS)",
        ));
    }
    let udp_filter = matches!(filter, NetworkFilter::UdpProxy(_));
    if udp_filter != (network == "udp") {
        return Err(ConfigError::new(
            format!("{cp}.filters[0].type"),
            if udp_filter {
                "\"udp_proxy\" needs a listener with \"network\": \"udp\""
            } else {
                "a \"network\": \"udp\" listener takes only the \"udp_proxy\" filter"
            },
        ));
    }
    let mut stream_filters = Vec::new();
    for (sp, sv) in o.opt_array("stream_filters")? {
        let f = Obj::new(sv, &sp)?;
        f.ignored(&["go_plugin_config"]);
        stream_filters.push(StreamFilterConfig {
            kind: f.req_str("type")?.to_string(),
            type_path: f.key_path("type"),
            config: f.get("config").cloned().unwrap_or(Value::Null),
            path: f.key_path("config"),
        });
        f.ignored(&["config"]);
        f.finish(ctx);
    }
    if let NetworkFilter::Proxy(ProxyFilter {
        transcoded: Some(at),
        upstream_protocol,
        downstream_protocol,
        ..
    }) = &filter
    {
        if !stream_filters.iter().any(|f| f.kind == "transcoder") {
            return Err(ConfigError::new(
                at.clone(),
                format!(
                    "{upstream_protocol:?} upstream of a {downstream_protocol:?} downstream needs the \"transcoder\" stream filter on the listener (e.g. {{\"type\": \"transcoder\", \"config\": {{\"type\": \"http2bolt_simple\"}}}})"
                ),
            ));
        }
    }
    if !stream_filters.is_empty() && !matches!(filter, NetworkFilter::Proxy(_)) {
        return Err(ConfigError::new(
            o.key_path("stream_filters"),
            "stream filters need a \"proxy\" network filter",
        ));
    }
    let l = Listener {
        name,
        address,
        filter,
        // MOSN's default when absent is 90 s (types.DefaultIdleTimeout); an explicit 0 turns it off.
        connection_idle_timeout: match o.get("connection_idle_timeout") {
            None => Some(std::time::Duration::from_secs(90)),
            Some(_) => o
                .opt_duration("connection_idle_timeout")?
                .filter(|d| !d.is_zero()),
        },
        access_logs,
        bind_port,
        original_dst,
        tls,
        inspector,
        stream_filters,
        client_header_timeout: o
            .opt_duration("client_header_timeout")?
            .filter(|d| !d.is_zero()),
        original_dst_hand_off,
        parent,
        chain_match,
    };
    o.finish(ctx);
    Ok(l)
}

/// `filter_chain_match` (Envoy's `FilterChainMatch` keys).
fn chain_match(m: Obj<'_>, ctx: &Ctx) -> Result<ChainMatch> {
    let port = |k: &str| -> Result<Option<u16>> { Ok(m.opt_u64(k, 65535)?.map(|p| p as u16)) };
    let out = ChainMatch {
        destination_port: port("destination_port")?,
        prefix_ranges: cidrs(&m, &["prefix_ranges"], ctx)?,
        server_names: m.opt_str_array("server_names")?,
        transport_protocol: m
            .opt_str("transport_protocol")?
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        application_protocols: m.opt_str_array("application_protocols")?,
        source_prefix_ranges: cidrs(&m, &["source_prefix_ranges"], ctx)?,
        source_ports: m
            .opt_array("source_ports")?
            .into_iter()
            .map(|(p, v)| {
                v.as_u64()
                    .filter(|n| *n <= 65535)
                    .map(|n| n as u16)
                    .ok_or_else(|| ConfigError::new(p, "expected a port number"))
            })
            .collect::<Result<Vec<_>>>()?,
    };
    if let Some(t) = &out.transport_protocol {
        if t != "tls" && t != "raw_buffer" {
            return Err(ConfigError::new(
                m.key_path("transport_protocol"),
                format!("{t:?} is not \"tls\" or \"raw_buffer\""),
            ));
        }
    }
    m.finish(ctx);
    Ok(out)
}

/// Reads a `tls_context`; `None` when `status` is false or absent (TLS off).
fn tls_context(tls: Obj<'_>, ctx: &Ctx) -> Result<Option<TlsContext>> {
    tls.ignored(&["fall_back", "ticket"]);
    tls.unsupported(
        &["type", "sds_source", "extend_verify", "callbacks"],
        "TLS provider plugins (type), SDS and verify extensions",
    )?;
    let on = tls.opt_bool("status")?.unwrap_or(false);
    let s = |k: &str| -> Result<Option<String>> {
        Ok(tls
            .opt_str(k)?
            .filter(|v| !v.is_empty())
            .map(str::to_string))
    };
    // A `sep`-separated string (MOSN's form) or an array of strings (`["h2", "http/1.1"]`).
    let list = |k: &str, sep: char| -> Result<Vec<String>> {
        if let Some(Value::Array(items)) = tls.get(k) {
            return items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_str().map(|s| s.trim().to_string()).ok_or_else(|| {
                        ConfigError::new(format!("{}[{i}]", tls.key_path(k)), "must be a string")
                    })
                })
                .collect();
        }
        Ok(tls
            .opt_str(k)?
            .unwrap_or("")
            .split(sep)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .collect())
    };
    let t = TlsContext {
        path: tls.path().to_string(),
        server_name: s("server_name")?,
        cert_chain: s("cert_chain")?,
        private_key: s("private_key")?,
        ca_cert: s("ca_cert")?,
        verify_client: tls.opt_bool("verify_client")?.unwrap_or(false),
        require_client_cert: tls.opt_bool("require_client_cert")?.unwrap_or(false),
        insecure_skip: tls.opt_bool("insecure_skip")?.unwrap_or(false),
        min_version: s("min_version")?,
        max_version: s("max_version")?,
        cipher_suites: list("cipher_suites", ':')?,
        ecdh_curves: list("ecdh_curves", ',')?,
        alpn: list("alpn", ',')?,
        subject_alt_names: list("subject_alt_names", ',')?,
        subject_alt_name_prefixes: list("subject_alt_name_prefixes", ',')?,
    };
    tls.finish(ctx);
    Ok(on.then_some(t))
}

fn original_dst_mode(m: &str, path: &str) -> Result<Option<OriginalDst>> {
    match m.to_ascii_lowercase().as_str() {
        "" => Ok(None),
        "redirect" => Ok(Some(OriginalDst::Redirect)),
        "tproxy" => Ok(Some(OriginalDst::Tproxy)),
        _ => Err(ConfigError::new(
            path,
            format!("{m:?} is not \"redirect\" or \"tproxy\""),
        )),
    }
}

/// A protocol name as MOSN writes it; `X` takes the `sub_protocol` of `extend_config` (at
/// `sub_path`).
fn protocol(o: &Obj<'_>, key: &str, sub: Option<(&str, &str)>) -> Result<Option<Protocol>> {
    let named = |name: &str, path: String| {
        match name {
        "Http1" | "HTTP1" | "http1" => Ok(Protocol::Http1),
        "Http2" | "HTTP2" | "http2" => Ok(Protocol::Http2),
        "Auto" | "auto" => Ok(Protocol::Auto),
        "bolt" | "Bolt" | "SofaRpc" => Ok(Protocol::Bolt),
        "boltv2" | "BoltV2" => Ok(Protocol::BoltV2),
        "dubbo" | "Dubbo" => Ok(Protocol::Dubbo),
        other => Err(ConfigError::new(
            path,
            format!(
                "protocol {other:?} is not supported by mosn-rs yet (supported: \"Http1\", \"Http2\", \"Auto\", \"bolt\", \"boltv2\", \"dubbo\", and \"X\" with one of the last three as extend_config.sub_protocol)"
            ),
        )),
    }
    };
    match o.opt_str(key)? {
        None | Some("") => Ok(None),
        Some("X") | Some("x") => match sub {
            Some((name, path)) if !name.contains(',') => named(name, path.to_string())
                .and_then(|p| {
                    if p.is_rpc() {
                        Ok(Some(p))
                    } else {
                        Err(ConfigError::new(
                            path,
                            format!("{name:?} is not an XProtocol sub-protocol (\"bolt\", \"boltv2\", \"dubbo\")"),
                        ))
                    }
                }),
            Some((name, path)) => Err(ConfigError::new(
                path,
                format!("{name:?}: several sub-protocols on one listener are not supported yet; use \"Auto\" to detect Bolt and Dubbo beside HTTP"),
            )),
            None => Err(ConfigError::new(
                o.key_path(key),
                "\"X\" needs extend_config.sub_protocol (\"bolt\", \"boltv2\" or \"dubbo\")",
            )),
        },
        Some(name) => named(name, o.key_path(key)).map(Some),
    }
}

/// Parses `"8080"`, `"8000-9000"` and comma-separated lists of them into inclusive ranges.
fn port_ranges(o: &Obj<'_>, keys: &[&str]) -> Result<Vec<(u16, u16)>> {
    for key in keys {
        let Some(text) = o.opt_str(key)? else {
            continue;
        };
        let bad = || {
            ConfigError::new(
                o.key_path(key),
                format!("{text:?} is not a port list (\"8080\", \"8000-9000\", comma-separated)"),
            )
        };
        let mut out = Vec::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (lo, hi) = match item.split_once('-') {
                Some((a, b)) => (a.trim(), b.trim()),
                None => (item, item),
            };
            let lo: u16 = lo.parse().map_err(|_| bad())?;
            let hi: u16 = hi.parse().map_err(|_| bad())?;
            if lo > hi {
                return Err(bad());
            }
            out.push((lo, hi));
        }
        return Ok(out);
    }
    Ok(Vec::new())
}

/// Parses `[{"address": "10.0.0.0", "length": 8}, ...]`.
fn cidrs(o: &Obj<'_>, keys: &[&str], ctx: &Ctx) -> Result<Vec<Cidr>> {
    for key in keys {
        let items = o.opt_array(key)?;
        if items.is_empty() {
            continue;
        }
        return items
            .into_iter()
            .map(|(p, v)| {
                let c = Obj::new(v, &p)?;
                let a = c.req_str("address")?;
                let address: std::net::IpAddr = a.parse().map_err(|_| {
                    ConfigError::new(c.key_path("address"), format!("{a:?} is not an IP address"))
                })?;
                let max = if address.is_ipv4() { 32 } else { 128 };
                let length = c.opt_u64("length", max)?.unwrap_or(max) as u8;
                c.finish(ctx);
                Ok(Cidr { address, length })
            })
            .collect();
    }
    Ok(Vec::new())
}

fn tcp_proxy(
    v: &Value,
    path: &str,
    default_idle: std::time::Duration,
    udp: bool,
    ctx: &Ctx,
) -> Result<TcpProxy> {
    let o = Obj::new(v, path)?;
    let mut routes = Vec::new();
    for (rp, rv) in o.opt_array("routes")? {
        let r = Obj::new(rv, &rp)?;
        routes.push(TcpRoute {
            cluster: r.req_str("cluster")?.to_string(),
            source_addrs: cidrs(&r, &["source_addrs", "sourceaddrs"], ctx)?,
            destination_addrs: cidrs(&r, &["destination_addrs", "destinationaddrs"], ctx)?,
            source_port: port_ranges(&r, &["source_port", "sourceport"])?,
            destination_port: port_ranges(&r, &["destination_port", "destinationport"])?,
        });
        r.finish(ctx);
    }
    let cluster = o
        .opt_str("cluster")?
        .filter(|c| !c.is_empty())
        .map(str::to_string);
    if cluster.is_none() && routes.is_empty() {
        return Err(ConfigError::new(path, "needs \"cluster\" or \"routes\""));
    }
    if cluster.is_some() && routes.iter().any(|r| Some(&r.cluster) != cluster.as_ref()) {
        ctx.warn(
            &o.key_path("routes"),
            "ignored: \"cluster\" is set and takes every connection (as in MOSN)",
        );
    }
    let t = TcpProxy {
        stat_prefix: o.opt_str("stat_prefix")?.unwrap_or("").to_string(),
        cluster,
        routes,
        max_connect_attempts: o.opt_u64("max_connect_attempts", 100)?.unwrap_or(1).max(1) as u32,
        idle_timeout: o
            .opt_duration("idle_timeout")?
            .filter(|d| !d.is_zero())
            .unwrap_or(default_idle),
        max_sessions: if udp {
            match o.opt_u64("max_sessions", u64::from(u32::MAX))? {
                Some(0) => {
                    return Err(ConfigError::new(
                        o.key_path("max_sessions"),
                        "must be at least 1",
                    ))
                }
                Some(n) => n as usize,
                None => crate::model::DEFAULT_UDP_MAX_SESSIONS,
            }
        } else {
            0
        },
    };
    o.finish(ctx);
    Ok(t)
}

/// The `proxy` filter, and whether it asks for `fallback_for_unknown_protocol` (the `tcp_proxy`
/// that must follow it is read by the filter chain).
fn proxy_filter(v: &Value, path: &str, ctx: &Ctx) -> Result<(ProxyFilter, bool)> {
    let o = Obj::new(v, path)?;
    let mut sub = None;
    let mut bolt_goaway = false;
    if let Some(ext) = o.opt_obj("extend_config")? {
        // MOSN's `http2_use_stream` switches its HTTP/2 to streaming; mosn-rs always streams.
        ext.opt_bool("http2_use_stream")?;
        sub = ext
            .opt_str("sub_protocol")?
            .map(|s| (s.to_string(), ext.key_path("sub_protocol")));
        // MOSN's bolt `ConfigHandler` reads `extend_config.bolt`, else `extend_config` itself.
        bolt_goaway = ext.opt_bool("enable_bolt_goaway")?.unwrap_or(false);
        if let Some(b) = ext.opt_obj("bolt")? {
            bolt_goaway = b.opt_bool("enable_bolt_goaway")?.unwrap_or(bolt_goaway);
            b.finish(ctx);
        }
        ext.finish(ctx);
    }
    let sub = sub.as_ref().map(|(s, p)| (s.as_str(), p.as_str()));
    o.ignored(&["name"]);
    let downstream = protocol(&o, "downstream_protocol", sub)?.unwrap_or(Protocol::Http1);
    // An RPC listener without `upstream_protocol` speaks its own protocol upstream.
    let upstream = protocol(&o, "upstream_protocol", sub)?.unwrap_or(if downstream.is_rpc() {
        downstream
    } else {
        Protocol::Http1
    });
    // From an RPC downstream to HTTP no transcoder exists yet; from HTTP to an RPC upstream the
    // listener's `transcoder` stream filter converts (checked with the listener's filters).
    let bolt = |p: Protocol| matches!(p, Protocol::Bolt | Protocol::BoltV2);
    let same_rpc = upstream == downstream || (bolt(upstream) && bolt(downstream));
    if downstream.is_rpc() && !(same_rpc || upstream == Protocol::Auto) {
        return Err(ConfigError::new(
            o.key_path("upstream_protocol"),
            format!(
                "{upstream:?} upstream of a {downstream:?} downstream needs a transcoder from {downstream:?}, which is not supported by mosn-rs yet; use the same protocol on both sides (or \"Auto\" upstream)"
            ),
        ));
    }
    let transcoded =
        (!downstream.is_rpc() && upstream.is_rpc()).then(|| o.key_path("upstream_protocol"));
    let fallback = o
        .opt_bool("fallback_for_unknown_protocol")?
        .unwrap_or(false);
    if fallback && downstream != Protocol::Auto {
        ctx.warn(
            &o.key_path("fallback_for_unknown_protocol"),
            "has no effect unless \"downstream_protocol\" is \"Auto\" (as in MOSN)",
        );
    }
    let p = ProxyFilter {
        downstream_protocol: downstream,
        upstream_protocol: upstream,
        router_config_name: o.req_str("router_config_name")?.to_string(),
        bolt_goaway,
        transcoded,
        fallback: None,
    };
    o.finish(ctx);
    Ok((p, fallback))
}

fn headers_to_add(o: &Obj<'_>, key: &str, ctx: &Ctx) -> Result<Vec<HeaderValueOption>> {
    o.opt_array(key)?
        .into_iter()
        .map(|(p, v)| {
            let h = Obj::new(v, &p)?;
            let header = h
                .opt_obj("header")?
                .ok_or_else(|| ConfigError::new(format!("{p}.header"), "is required"))?;
            let key = header.req_str("key")?;
            http_header_name(key, &header.key_path("key"))?;
            let value = header.opt_str("value")?.unwrap_or("");
            http_header_value(value, &header.key_path("value"))?;
            let out = HeaderValueOption {
                key: key.to_ascii_lowercase(),
                value: value.to_string(),
                append: h.opt_bool("append")?.unwrap_or(false),
            };
            header.finish(ctx);
            h.finish(ctx);
            Ok(out)
        })
        .collect()
}

fn http_header_name(name: &str, path: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            path,
            format!("{name:?} is not a valid HTTP header name"),
        ))
    }
}

fn http_header_value(value: &str, path: &str) -> Result<()> {
    if value
        .bytes()
        .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
    {
        Ok(())
    } else {
        Err(ConfigError::new(
            path,
            format!("{value:?} is not a valid HTTP header value"),
        ))
    }
}

fn header_mutation(o: &Obj<'_>, ctx: &Ctx) -> Result<HeaderMutation> {
    let remove = |key: &str| -> Result<Vec<String>> {
        let names = o.opt_str_array(key)?;
        for (i, n) in names.iter().enumerate() {
            http_header_name(n, &format!("{}[{i}]", o.key_path(key)))?;
        }
        Ok(names.into_iter().map(|n| n.to_ascii_lowercase()).collect())
    };
    Ok(HeaderMutation {
        request_add: headers_to_add(o, "request_headers_to_add", ctx)?,
        request_remove: remove("request_headers_to_remove")?,
        response_add: headers_to_add(o, "response_headers_to_add", ctx)?,
        response_remove: remove("response_headers_to_remove")?,
    })
}

fn router_config(v: &Value, path: &str, ctx: &Ctx) -> Result<RouterConfig> {
    let o = Obj::new(v, path)?;
    o.unsupported(&["router_configs"], "route tables from a folder")?;
    let r = RouterConfig {
        name: o.req_str("router_config_name")?.to_string(),
        virtual_hosts: o
            .opt_array("virtual_hosts")?
            .into_iter()
            .map(|(p, v)| virtual_host(v, &p, ctx))
            .collect::<Result<Vec<_>>>()?,
        headers: header_mutation(&o, ctx)?,
    };
    o.finish(ctx);
    Ok(r)
}

fn virtual_host(v: &Value, path: &str, ctx: &Ctx) -> Result<VirtualHost> {
    let o = Obj::new(v, path)?;
    o.ignored(&["require_tls"]);
    let domains = o.opt_str_array("domains")?;
    for (i, d) in domains.iter().enumerate() {
        if d.is_empty()
            || (d.contains('*') && d != "*" && !d.starts_with("*.") && !d.starts_with("*-"))
        {
            return Err(ConfigError::new(
                format!("{}[{i}]", o.key_path("domains")),
                format!(
                    "{d:?} is not a domain (use \"host\", \"host:port\", \"*.suffix\" or \"*\")"
                ),
            ));
        }
    }
    let vh = VirtualHost {
        name: o.opt_str("name")?.unwrap_or("").to_string(),
        domains,
        routes: o
            .opt_array("routers")?
            .into_iter()
            .map(|(p, v)| route(v, &p, ctx))
            .collect::<Result<Vec<_>>>()?,
        headers: header_mutation(&o, ctx)?,
        per_filter_config: per_filter_config(&o)?,
    };
    o.finish(ctx);
    Ok(vh)
}

fn compile_regex(re: &str, path: &str) -> Result<()> {
    regex::Regex::new(re)
        .map(|_| ())
        .map_err(|e| ConfigError::new(path, format!("{re:?} is not a valid regex: {e}")))
}

fn route(v: &Value, path: &str, ctx: &Ctx) -> Result<Route> {
    let o = Obj::new(v, path)?;
    o.unsupported(&["request_mirror_policies"], "request mirroring")?;
    if o.get("metadata").is_some_and(is_set) {
        ctx.warn(
            &o.key_path("metadata"),
            "route metadata is kept for filters; none reads it yet",
        );
    }
    // No `match`, or one with no path condition, matches every request (MOSN's RPC rule with
    // no headers), as MOSN's tproxy sample relies on.
    let empty = Value::Object(Default::default());
    let m = match o.opt_obj("match")? {
        Some(m) => m,
        None => Obj::new(&empty, &format!("{path}.match"))?,
    };
    m.unsupported(
        &["variables", "dsl_expressions"],
        "variable and DSL matchers",
    )?;
    let mut path_match = None;
    for key in ["prefix", "path", "regex", "path_separated_prefix"] {
        if let Some(s) = m.opt_str(key)? {
            if path_match.is_some() {
                return Err(ConfigError::new(
                    m.key_path(key),
                    "only one of prefix, path, regex and path_separated_prefix may be set",
                ));
            }
            path_match = Some(match key {
                "prefix" => PathMatch::Prefix(s.to_string()),
                "path" => PathMatch::Exact(s.to_string()),
                "path_separated_prefix" => {
                    if !s.starts_with('/') || (s.len() > 1 && s.ends_with('/')) {
                        return Err(ConfigError::new(
                            m.key_path(key),
                            format!("{s:?} must start with '/' and not end with '/'"),
                        ));
                    }
                    PathMatch::SeparatedPrefix(s.to_string())
                }
                _ => {
                    compile_regex(s, &m.key_path(key))?;
                    PathMatch::Regex(s.to_string())
                }
            });
        }
    }
    let mut headers = Vec::new();
    for (hp, hv) in m.opt_array("headers")? {
        let h = Obj::new(hv, &hp)?;
        let hm = HeaderMatcher {
            name: h.req_str("name")?.to_ascii_lowercase(),
            value: h.opt_str("value")?.unwrap_or("").to_string(),
            regex: h.opt_bool("regex")?.unwrap_or(false),
            present: h.opt_bool("present_match")?.unwrap_or(false),
            invert: h.opt_bool("invert_match")?.unwrap_or(false),
        };
        if hm.regex {
            compile_regex(&hm.value, &h.key_path("value"))?;
        }
        h.finish(ctx);
        headers.push(hm);
    }
    m.finish(ctx);

    let direct = o.opt_obj("direct_response")?;
    let redirect = o.opt_obj("redirect")?;
    let forward = o.opt_obj("route")?.filter(|r| {
        r.get("cluster_name").is_some_and(is_set) || r.get("weighted_clusters").is_some_and(is_set)
    });
    let set = [direct.is_some(), redirect.is_some(), forward.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    if set != 1 {
        return Err(ConfigError::new(
            path,
            "needs exactly one of \"route\" (with cluster_name or weighted_clusters), \"direct_response\" and \"redirect\"",
        ));
    }
    let action = if let Some(d) = direct {
        let status = d.opt_u64("status", 999)?.unwrap_or(200) as u16;
        if !(100..=999).contains(&status) {
            return Err(ConfigError::new(
                d.key_path("status"),
                format!("{status} is not an HTTP status"),
            ));
        }
        let body = d.opt_str("body")?.unwrap_or("").to_string();
        d.finish(ctx);
        RouteAction::DirectResponse { status, body }
    } else if let Some(r) = redirect {
        let code = r.opt_u64("response_code", 999)?.unwrap_or(301) as u16;
        if ![301, 302, 303, 307, 308].contains(&code) {
            return Err(ConfigError::new(
                r.key_path("response_code"),
                format!("{code} is not a redirect status (301, 302, 303, 307, 308)"),
            ));
        }
        let s = |k: &str| -> Result<Option<String>> {
            Ok(r.opt_str(k)?.filter(|s| !s.is_empty()).map(str::to_string))
        };
        let a = RouteAction::Redirect {
            response_code: code,
            path: s("path_redirect")?,
            host: s("host_redirect")?,
            scheme: s("scheme_redirect")?,
        };
        r.finish(ctx);
        a
    } else if let Some(r) = forward {
        let a = forward_action(&r, ctx)?;
        r.finish(ctx);
        RouteAction::Forward(Box::new(a))
    } else {
        // Counted above: exactly one action is set. Kept as an error, not a panic, on config input.
        return Err(ConfigError::new(path, "has no action"));
    };
    let per_filter_config = per_filter_config(&o)?;
    o.finish(ctx);
    Ok(Route {
        path: path_match,
        headers,
        action,
        per_filter_config,
    })
}

/// `per_filter_config`: an object from filter type to that filter's config. The configs are
/// checked when the filters are built (with these paths).
fn per_filter_config(o: &Obj<'_>) -> Result<Vec<StreamFilterConfig>> {
    let Some(m) = o.opt_obj("per_filter_config")? else {
        return Ok(Vec::new());
    };
    let map = match o.get("per_filter_config") {
        Some(Value::Object(map)) => map,
        _ => return Ok(Vec::new()),
    };
    let mut out = Vec::new();
    for (kind, config) in map {
        let path = m.key_path(kind);
        out.push(StreamFilterConfig {
            kind: kind.clone(),
            type_path: path.clone(),
            config: config.clone(),
            path,
        });
    }
    Ok(out)
}

fn metadata_map(v: &Value, path: &str) -> Result<BTreeMap<String, String>> {
    let o = Obj::new(v, path)?;
    let fm = match o.opt_obj("filter_metadata")? {
        None => return Ok(BTreeMap::new()),
        Some(fm) => fm,
    };
    let lb = match fm.get("mosn.lb") {
        None => return Ok(BTreeMap::new()),
        Some(v) => v,
    };
    let lb_path = fm.key_path("mosn.lb");
    let map = lb
        .as_object()
        .ok_or_else(|| ConfigError::new(&lb_path, "expected an object"))?;
    map.iter()
        .map(|(k, v)| {
            let s = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => {
                    return Err(ConfigError::new(
                        format!("{lb_path}.{k}"),
                        format!("expected a string, found {}", show(other)),
                    ))
                }
            };
            Ok((k.clone(), s))
        })
        .collect()
}

fn forward_action(r: &Obj<'_>, ctx: &Ctx) -> Result<ForwardAction> {
    r.unsupported(
        &[
            "cluster_header",
            "cluster_variable",
            "hash_policy",
            "auto_host_rewrite",
            "auto_host_rewrite_header",
        ],
        "header-selected clusters, hash policies and auto host rewrite",
    )?;
    if let Some(p) = r.opt_str("upstream_protocol")? {
        if !p.is_empty() && p != "Http1" {
            return Err(ConfigError::new(
                r.key_path("upstream_protocol"),
                format!("{p:?} is not supported by mosn-rs yet (supported: \"Http1\")"),
            ));
        }
    }
    let mut clusters = Vec::new();
    if let Some(name) = r.opt_str("cluster_name")?.filter(|s| !s.is_empty()) {
        clusters.push((name.to_string(), 1));
    }
    let weighted = r.opt_array("weighted_clusters")?;
    if !weighted.is_empty() && !clusters.is_empty() {
        return Err(ConfigError::new(
            r.key_path("weighted_clusters"),
            "cannot be set together with cluster_name",
        ));
    }
    for (wp, wv) in weighted {
        let w = Obj::new(wv, &wp)?;
        let c = w
            .opt_obj("cluster")?
            .ok_or_else(|| ConfigError::new(format!("{wp}.cluster"), "is required"))?;
        c.ignored(&["metadata_match"]);
        let name = c.req_str("name")?.to_string();
        let weight = c.opt_u64("weight", u32::MAX as u64)?.unwrap_or(0) as u32;
        c.finish(ctx);
        w.finish(ctx);
        clusters.push((name, weight));
    }
    if clusters.len() > 1 && clusters.iter().all(|(_, w)| *w == 0) {
        return Err(ConfigError::new(
            r.key_path("weighted_clusters"),
            "every weight is 0",
        ));
    }
    let metadata_match = match r.get("metadata_match") {
        None => BTreeMap::new(),
        Some(v) => metadata_map(v, &r.key_path("metadata_match"))?,
    };
    let retry = match r.opt_obj("retry_policy")? {
        None => None,
        Some(p) => {
            let codes = p
                .opt_array("status_codes")?
                .into_iter()
                .map(|(cp, cv)| match cv.as_u64() {
                    Some(c) if (100..=999).contains(&c) => Ok(c as u16),
                    _ => Err(ConfigError::new(
                        cp,
                        format!("{} is not an HTTP status", show(cv)),
                    )),
                })
                .collect::<Result<Vec<_>>>()?;
            let rp = RetryPolicy {
                retry_on: p.opt_bool("retry_on")?.unwrap_or(false),
                retry_timeout: p.opt_duration("retry_timeout")?.filter(|d| !d.is_zero()),
                num_retries: p.opt_u64("num_retries", 100)?.unwrap_or(0) as u32,
                status_codes: codes,
            };
            p.finish(ctx);
            Some(rp)
        }
    };
    let regex_rewrite = match r.opt_obj("regex_rewrite")? {
        None => None,
        Some(rr) => {
            let pat = rr
                .opt_obj("pattern")?
                .ok_or_else(|| ConfigError::new(format!("{}.pattern", rr.path()), "is required"))?;
            pat.ignored(&["google_re2"]);
            let re = pat.req_str("regex")?.to_string();
            compile_regex(&re, &pat.key_path("regex"))?;
            pat.finish(ctx);
            let sub = rr.opt_str("substitution")?.unwrap_or("").to_string();
            rr.finish(ctx);
            Some((re, sub))
        }
    };
    let nonempty = |k: &str| -> Result<Option<String>> {
        Ok(r.opt_str(k)?.filter(|s| !s.is_empty()).map(str::to_string))
    };
    Ok(ForwardAction {
        clusters,
        metadata_match,
        timeout: r.opt_duration("timeout")?.filter(|d| !d.is_zero()),
        retry,
        prefix_rewrite: nonempty("prefix_rewrite")?,
        regex_rewrite,
        host_rewrite: nonempty("host_rewrite")?,
        headers: header_mutation(r, ctx)?,
    })
}

fn cluster(v: &Value, path: &str, ctx: &Ctx) -> Result<Cluster> {
    let o = Obj::new(v, path)?;
    o.unsupported(
        &[
            "health_check",
            "slow_start",
            "lbconfig",
            "original_dst_lb_config",
            "dns_resolvers",
            "cluster_manager_tls",
            "mark",
        ],
        "health checks, slow start, DNS and these cluster options arrive in later releases",
    )?;
    let tls = match o.opt_obj("tls_context")? {
        Some(t) => tls_context(t, ctx)?,
        None => None,
    };
    o.ignored(&[
        "sub_type",
        "conn_buffer_limit_bytes",
        "spec",
        "cluster_pool_enable",
    ]);
    let subset_fallback = match o.opt_obj("lb_subset_config")? {
        None => SubsetFallback::NoFallback,
        Some(sc) => {
            sc.ignored(&["subset_selectors"]);
            let default: BTreeMap<String, String> = match sc.get("default_subset") {
                None => BTreeMap::new(),
                Some(v) => v
                    .as_object()
                    .ok_or_else(|| {
                        ConfigError::new(sc.key_path("default_subset"), "expected an object")
                    })?
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.as_str().map_or_else(|| v.to_string(), str::to_string),
                        )
                    })
                    .collect(),
            };
            let f = match sc.opt_u64("fall_back_policy", 2)?.unwrap_or(0) {
                0 => SubsetFallback::NoFallback,
                1 => SubsetFallback::AnyEndpoint,
                _ => SubsetFallback::DefaultSubset(default),
            };
            sc.finish(ctx);
            f
        }
    };
    let name = o.req_str("name")?.to_string();
    let original_dst = match o.opt_str("type")? {
        None | Some("") | Some("SIMPLE") => false,
        Some("ORIGINAL_DST") => true,
        Some(t) => {
            return Err(ConfigError::new(
                o.key_path("type"),
                format!("cluster type {t:?} is not supported by mosn-rs yet (supported: \"SIMPLE\", \"ORIGINAL_DST\")"),
            ))
        }
    };
    let lb = match o.opt_str("lb_type")? {
        None | Some("") | Some("LB_ROUNDROBIN") => LbType::RoundRobin,
        Some("LB_RANDOM") => LbType::Random,
        Some("LB_WEIGHTED_ROUNDROBIN") => LbType::WeightedRoundRobin,
        Some("LB_LEAST_REQUEST") | Some("LB_LEAST_CONNECTION") => LbType::LeastRequest,
        Some("LB_ORIGINAL_DST") if original_dst => LbType::RoundRobin,
        Some("LB_ORIGINAL_DST") => {
            return Err(ConfigError::new(
                o.key_path("lb_type"),
                "\"LB_ORIGINAL_DST\" needs \"type\": \"ORIGINAL_DST\"",
            ))
        }
        Some(t) => {
            return Err(ConfigError::new(
                o.key_path("lb_type"),
                format!("{t:?} is not supported (supported: LB_ROUNDROBIN, LB_RANDOM, LB_WEIGHTED_ROUNDROBIN, LB_LEAST_REQUEST)"),
            ))
        }
    };
    let mut hosts = Vec::new();
    for (hp, hv) in o.opt_array("hosts")? {
        let h = Obj::new(hv, &hp)?;
        h.ignored(&["hostname"]);
        let tls_disable = h.opt_bool("tls_disable")?.unwrap_or(false);
        let raw = h.req_str("address")?;
        let address = match raw.strip_prefix("unix:") {
            Some(p) if !p.is_empty() => HostAddr::Unix(p.into()),
            _ => HostAddr::Tcp(socket_addr(&h, "address")?),
        };
        let weight = h.opt_u64("weight", 128)?.unwrap_or(1).max(1) as u32;
        let metadata = match h.get("metadata") {
            None => BTreeMap::new(),
            Some(v) => metadata_map(v, &h.key_path("metadata"))?,
        };
        h.finish(ctx);
        hosts.push(Host {
            address,
            weight,
            metadata,
            tls_disable,
        });
    }
    let cbs = o.opt_array("circuit_breakers")?;
    let circuit_breakers = match cbs.first() {
        None => CircuitBreakers::default(),
        Some((cp, cv)) => {
            let c = Obj::new(cv, cp)?;
            c.ignored(&["priority"]);
            let lim = |k: &str| -> Result<Option<u32>> {
                Ok(c.opt_u64(k, u32::MAX as u64)?
                    .map(|n| n as u32)
                    .filter(|n| *n > 0))
            };
            let cb = CircuitBreakers {
                max_connections: lim("max_connections")?,
                max_pending_requests: lim("max_pending_requests")?,
                max_requests: lim("max_requests")?,
                max_retries: lim("max_retries")?,
            };
            c.finish(ctx);
            cb
        }
    };
    let c = Cluster {
        name,
        lb,
        hosts,
        connect_timeout: o
            .opt_duration("connect_timeout")?
            .filter(|d| !d.is_zero())
            .unwrap_or(std::time::Duration::from_secs(3)),
        idle_timeout: o.opt_duration("idle_timeout")?.filter(|d| !d.is_zero()),
        circuit_breakers,
        max_request_per_conn: o
            .opt_u64("max_request_per_conn", u32::MAX as u64)?
            .map(|n| n as u32)
            .filter(|n| *n > 0),
        original_dst,
        tls,
        subset_fallback,
        keepalive: match o.opt_obj("keepalive")? {
            None => None,
            Some(k) => {
                let interval = k.opt_duration("interval")?.filter(|d| !d.is_zero());
                let timeout = k
                    .opt_duration("timeout")?
                    .filter(|d| !d.is_zero())
                    .unwrap_or(std::time::Duration::from_secs(1));
                k.finish(ctx);
                interval.map(|interval| Keepalive { interval, timeout })
            }
        },
    };
    o.finish(ctx);
    Ok(c)
}
