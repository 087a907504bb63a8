//! The stream state machine every protocol shares, up to the upstream exchange:
//!
//! ```text
//! BeforeRoute filters ─▶ route ─▶ AfterRoute filters ─▶ (per try) load balancer ─▶
//! AfterChooseHost filters ─▶ pool ─▶ upstream exchange (protocol codec) ─▶ BeforeSend filters ─▶
//! respond ─▶ finish (metrics, access log)
//! ```
//!
//! Heads are read and changed only through [`Headers`], so routing and filters work the same for
//! every protocol. A local answer (no route, a direct response, a filter's 403, an upstream
//! failure) is a [`LocalReply`] that the downstream codec renders in its own protocol.
//!
//! Failure mapping (ARCHITECTURE.md, "Errors"): no route 404 `NR`; no host 503 `UH`; circuit
//! breaker 503 `UO`; connect failure 502 `UF`; upstream reset 502 `UC`; timeout 504 `UT`.

pub mod finish;
pub mod upstream;

use std::sync::Arc;
use std::time::Duration;

use mosn_api::{
    Decision, FilterCx, FilterOverrides, Headers, LocalReply, Phase, ProxyError, ResponseFlag,
    StreamFilter, StreamInfo,
};
use mosn_router::{Action, CompiledMutation, Forward, RouteTable, VirtualHost};

use crate::conn::ConnCtx;

pub use finish::finish;

/// MOSN's global request timeout when a route sets none (`types.GlobalTimeout`): from the request
/// head to the upstream's response head.
pub const DEFAULT_GLOBAL_TIMEOUT: Duration = Duration::from_secs(60);

/// Request header that overrides the global timeout, in milliseconds (MOSN's
/// `x-mosn-global-timeout`).
pub const GLOBAL_TIMEOUT_HEADER: &str = "x-mosn-global-timeout";

/// Request header that sets the per-try timeout, in milliseconds (MOSN's `x-mosn-try-timeout`).
pub const TRY_TIMEOUT_HEADER: &str = "x-mosn-try-timeout";

/// A local answer with what the downstream codec adds to it.
pub struct Answer<'s> {
    /// Status, body, flag.
    pub reply: LocalReply,
    /// A `Location` for redirects.
    pub location: Option<String>,
    /// Response header mutations of the router and virtual host (direct responses, redirects).
    pub mutations: [Option<&'s CompiledMutation>; 2],
}

impl Answer<'_> {
    /// An answer with no extra header.
    pub fn plain(reply: LocalReply) -> Self {
        Answer {
            reply,
            location: None,
            mutations: [None, None],
        }
    }

    /// The answer for a data-path error.
    pub fn error(e: &ProxyError) -> Self {
        tracing::debug!(flag = %e.flag, detail = %e.detail, "local reply");
        Answer::plain(LocalReply::from_error(e))
    }
}

impl Answer<'_> {
    /// The response head of this answer in a protocol's own head type (`new` makes one for a
    /// status): `Location`, the router's header mutations, then the BeforeSend filters, whose
    /// reply replaces the answer. Records the reply's flag in `info`; returns the head and the
    /// reply whose body goes out.
    pub fn render<H: Headers>(
        self,
        ctx: &ConnCtx,
        info: &mut StreamInfo,
        new: impl Fn(u16) -> H,
    ) -> (H, LocalReply) {
        let Answer {
            mut reply,
            location,
            mutations,
        } = self;
        let mut head = new(reply.status);
        if let Some(l) = &location {
            head.set("location", l.as_bytes());
        }
        for m in mutations.iter().flatten() {
            m.apply_response(&mut head);
        }
        if let Some(r) = run_response_filters(ctx, &NO_OVERRIDES, &mut head, info) {
            reply = r;
            head = new(reply.status);
        }
        if info.flag.is_none() || reply.flag.is_some() {
            info.flag = reply.flag.or(info.flag);
        }
        (head, reply)
    }
}

/// Timeouts of one stream.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// From the request head until the upstream's response head, across tries.
    pub global: Duration,
    /// For one try, when shorter than `global`.
    pub per_try: Option<Duration>,
}

/// A stream the route sends upstream.
pub struct Forwarding<'s> {
    /// The route table.
    pub table: &'s RouteTable,
    /// The virtual host.
    pub vh: &'s VirtualHost,
    /// The route's forwarding action.
    pub fwd: &'s Forward,
    /// The target (cluster or host subset) picked for this stream.
    pub target: usize,
    /// The route's `per_filter_config` filters.
    pub filters: &'s FilterOverrides,
    /// Its timeouts.
    pub timeouts: Timeouts,
}

/// What routing decided.
pub enum Routed<'s> {
    /// Answer locally.
    Answer(Answer<'s>),
    /// Forward upstream.
    Forward(Forwarding<'s>),
}

/// No route overrides (before routing, and for local answers).
pub static NO_OVERRIDES: FilterOverrides = FilterOverrides(Vec::new());

/// Runs the listener's filters at a receive phase, each replaced by the route's of the same type
/// when `overrides` has one. A delay waits on a timer owned here.
#[allow(clippy::too_many_arguments)]
pub async fn run_filters(
    ctx: &ConnCtx,
    phase: Phase,
    overrides: &FilterOverrides,
    head: &mut dyn Headers,
    info: &mut StreamInfo,
    cluster: Option<&str>,
    host: Option<&str>,
    content_length: Option<u64>,
) -> Option<LocalReply> {
    let filters: &[Arc<dyn StreamFilter>] = &ctx.listener().filters;
    let info = &mut *info;
    for f in filters {
        let f = overrides.pick(f);
        let mut cx = FilterCx {
            peer: ctx.peer,
            info,
            cluster,
            host,
            content_length,
        };
        match f.on_request(phase, head, &mut cx) {
            Decision::Continue => {}
            Decision::Reply(r) => return Some(r),
            Decision::Delay(d) => {
                if info.flag.is_none() {
                    info.flag = Some(ResponseFlag::DelayInjected);
                }
                tokio::time::sleep(d).await;
            }
        }
    }
    None
}

/// Asks each listener filter in turn with `ask` (given a context with no cluster or host); the
/// first reply wins.
fn first_reply(
    ctx: &ConnCtx,
    overrides: &FilterOverrides,
    info: &mut StreamInfo,
    mut ask: impl FnMut(&dyn StreamFilter, &mut FilterCx<'_>) -> Decision,
) -> Option<LocalReply> {
    for f in ctx.listener().filters.iter() {
        let f = overrides.pick(f);
        let mut cx = FilterCx {
            peer: ctx.peer,
            info: &mut *info,
            cluster: None,
            host: None,
            content_length: None,
        };
        if let Decision::Reply(r) = ask(f.as_ref(), &mut cx) {
            return Some(r);
        }
    }
    None
}

/// Runs the listener's filters on a response head (MOSN's BeforeSend). A reply replaces it.
pub fn run_response_filters(
    ctx: &ConnCtx,
    overrides: &FilterOverrides,
    head: &mut dyn Headers,
    info: &mut StreamInfo,
) -> Option<LocalReply> {
    first_reply(ctx, overrides, info, |f, cx| f.on_response(head, cx))
}

/// Counts request body bytes through the filters; a reply aborts the stream.
pub fn run_data_filters(
    ctx: &ConnCtx,
    overrides: &FilterOverrides,
    total: u64,
    info: &mut StreamInfo,
) -> Option<LocalReply> {
    first_reply(ctx, overrides, info, |f, cx| f.on_request_data(total, cx))
}

fn millis(h: &dyn Headers, name: &str) -> Option<Duration> {
    h.get_str(name)
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis)
}

/// BeforeRoute filters, the route lookup and AfterRoute filters for a request head.
pub async fn route<'s>(
    ctx: &'s ConnCtx,
    head: &mut dyn Headers,
    info: &mut StreamInfo,
    content_length: Option<u64>,
) -> Routed<'s> {
    if let Some(r) = run_filters(
        ctx,
        Phase::BeforeRoute,
        &NO_OVERRIDES,
        head,
        info,
        None,
        None,
        content_length,
    )
    .await
    {
        return Routed::Answer(Answer::plain(r));
    }
    let snap = &ctx.snapshot;
    let Some(table) = snap.tables.get(ctx.listener().table()) else {
        return Routed::Answer(Answer::error(&ProxyError::new(
            ResponseFlag::NoRoute,
            "no route table",
        )));
    };
    let Some((vh, route)) = table.route(head) else {
        return Routed::Answer(Answer::error(&ProxyError::new(
            ResponseFlag::NoRoute,
            "no route",
        )));
    };
    let mutations = [Some(&table.headers), Some(&vh.headers)];
    match &route.action {
        Action::Direct { status, body } => Routed::Answer(Answer {
            reply: LocalReply::new(*status, bytes::Bytes::copy_from_slice(body.as_bytes())),
            location: None,
            mutations,
        }),
        Action::Redirect {
            code,
            path,
            host,
            scheme,
        } => {
            let scheme = scheme.as_deref().unwrap_or("http");
            let host = host
                .as_deref()
                .or_else(|| head.get_str(":authority"))
                .unwrap_or("");
            let pq = head.get_str(":path").unwrap_or("/");
            let path = path.as_deref().unwrap_or(pq);
            Routed::Answer(Answer {
                reply: LocalReply::new(*code, bytes::Bytes::new()),
                location: Some(format!("{scheme}://{host}{path}")),
                mutations,
            })
        }
        Action::Forward(fwd) => {
            let target = fwd.pick();
            let cluster = snap
                .clusters
                .targets
                .get(target)
                .map(|t| t.cluster.name.as_str());
            if let Some(r) = run_filters(
                ctx,
                Phase::AfterRoute,
                &route.filters,
                head,
                info,
                cluster,
                None,
                content_length,
            )
            .await
            {
                return Routed::Answer(Answer::plain(r));
            }
            let global = millis(head, GLOBAL_TIMEOUT_HEADER)
                .or(fwd.timeout)
                .unwrap_or(DEFAULT_GLOBAL_TIMEOUT);
            let per_try = millis(head, TRY_TIMEOUT_HEADER)
                .or_else(|| fwd.retry.as_ref().and_then(|r| r.retry_timeout))
                .filter(|t| *t < global);
            Routed::Forward(Forwarding {
                table,
                vh,
                fwd,
                target,
                filters: &route.filters,
                timeouts: Timeouts { global, per_try },
            })
        }
    }
}

/// True when a response status asks for a retry under the route's policy (default: every 5xx).
pub fn is_retry_status(f: &Forward, status: u16) -> bool {
    match &f.retry {
        None => false,
        Some(r) if r.status_codes.is_empty() => (500..600).contains(&status),
        Some(r) => r.status_codes.contains(&status),
    }
}
