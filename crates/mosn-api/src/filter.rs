//! Stream filters: MOSN's phases, the decisions a filter may take, and the registry that builds a
//! filter from its config by MOSN's `type` name.
//!
//! A stream passes the filters of its listener's `stream_filters`, in config order, at each phase:
//!
//! ```text
//! request head complete
//!   ─▶ BeforeRoute filters ─▶ route lookup ─▶ AfterRoute filters
//!   ─▶ load balancer picks a host ─▶ AfterChooseHost filters ─▶ pool ─▶ upstream
//!   (request body bytes: on_request_data, as they pass)
//! response head (the upstream's, or a local reply) ─▶ BeforeSend filters ─▶ downstream codec
//! ```
//!
//! Filters are synchronous decisions: they never sleep and never do I/O. A delay is asked for with
//! [`Decision::Delay`], and the core owns the timer, so a filter can never stall a worker.
//!
//! Source: MOSN `api.StreamFilterPhase` (`BeforeRoute`, `AfterRoute`, `AfterChooseHost`) and
//! `StreamSenderFilter` (the `BeforeSend` phase); `pkg/filter/stream/*` for the filters.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::{Headers, LocalReply, StreamInfo};

/// When a receive-side filter runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Once the request head is complete, before the route lookup. The filter sees the head as the
    /// client sent it and may change it, so a changed header or `:path` steers the route. No
    /// cluster is known yet ([`FilterCx::cluster`] is `None`).
    BeforeRoute,
    /// After a route matched (a stream without a route never gets here: it is answered 404) and
    /// before the load balancer runs. [`FilterCx::cluster`] names the chosen cluster; metadata set
    /// here ([`StreamInfo::metadata`]) narrows the host subset the balancer picks from.
    AfterRoute,
    /// After the load balancer chose a host and before a connection is taken from the pool. On a
    /// retry it runs again for the new host. [`FilterCx::host`] is the host's address.
    AfterChooseHost,
}

/// What a filter decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Go on with the next filter, then the next step of the stream.
    Continue,
    /// Stop and answer the client with this reply; nothing is sent upstream.
    Reply(LocalReply),
    /// Wait this long (on a timer the core owns), then go on with the next filter.
    Delay(Duration),
}

/// What a filter can see of its stream besides the head.
pub struct FilterCx<'a> {
    /// The client's address (`0.0.0.0:0` on a unix socket).
    pub peer: SocketAddr,
    /// The stream's record: metadata, flags.
    pub info: &'a mut StreamInfo,
    /// The route's cluster, from [`Phase::AfterRoute`] on.
    pub cluster: Option<&'a str>,
    /// The chosen host's address, in [`Phase::AfterChooseHost`].
    pub host: Option<&'a str>,
    /// The request body's declared length (`Content-Length`), when known.
    pub content_length: Option<u64>,
}

/// A stream filter. One instance serves every stream of a listener (or of a route, with
/// `per_filter_config`), so it holds config, not per-stream state; per-stream facts go in
/// [`StreamInfo`].
pub trait StreamFilter: Send + Sync + 'static {
    /// MOSN's `type` name of the filter (`ip_access`, `fault`, ...).
    fn name(&self) -> &'static str;

    /// True when the filter acts only at [`Phase::BeforeRoute`], so a route's
    /// `per_filter_config` for it could never apply (and is refused).
    fn before_route_only(&self) -> bool {
        false
    }

    /// Called at each receive [`Phase`] with the request head.
    fn on_request(
        &self,
        _phase: Phase,
        _head: &mut dyn Headers,
        _cx: &mut FilterCx<'_>,
    ) -> Decision {
        Decision::Continue
    }

    /// Called as request body bytes pass to the upstream: `total` is the count so far, in bytes.
    /// A [`Decision::Reply`] aborts the upstream request and answers the client if no response has
    /// started yet; otherwise the connection closes. [`Decision::Delay`] is treated as `Continue`.
    fn on_request_data(&self, _total: u64, _cx: &mut FilterCx<'_>) -> Decision {
        Decision::Continue
    }

    /// MOSN's `BeforeSend`: called with the response head (the upstream's, or a local reply's)
    /// before the downstream codec encodes it. A filter may change headers; a
    /// [`Decision::Reply`] replaces an upstream response that has not started yet.
    fn on_response(&self, _head: &mut dyn Headers, _cx: &mut FilterCx<'_>) -> Decision {
        Decision::Continue
    }

    /// Called once when a stream has ended, however it ended (answered, reset, client gone),
    /// with the request head as routed and the stream's final record ([`StreamInfo::status`],
    /// [`StreamInfo::flag`], [`StreamInfo::grpc_status`]). Only the listener's filters are
    /// called, never a route's `per_filter_config` copy. Envoy's `log` callback; MOSN's
    /// `OnDestroy`.
    fn on_stream_end(&self, _request: &dyn Headers, _info: &StreamInfo) {}

    /// The filter's own counters, read at scrape time by the admin API. Sets with the same type
    /// and labels from several listeners are summed, as MOSN's metrics registry merges them.
    fn metrics(&self) -> Vec<FilterMetrics> {
        Vec::new()
    }
}

/// Counters a filter exports: Prometheus `<typ>_<name>{labels}` and MOSN's stats key
/// `<typ>.<label>.<value>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterMetrics {
    /// The metric type, e.g. `grpc`.
    pub typ: &'static str,
    /// Sorted `(key, value)` labels, e.g. `[("service", "helloworld.Greeter")]`.
    pub labels: Vec<(&'static str, String)>,
    /// `(name, value)` counters, e.g. `("request_total", 3)`.
    pub counters: Vec<(&'static str, u64)>,
}

/// The filters a route configures with `per_filter_config`: each replaces, for that route's
/// streams, the listener's filter of the same [`StreamFilter::name`] from [`Phase::AfterRoute`]
/// on (and for request body and response callbacks). A type the listener does not have is not
/// added, as in MOSN, where the per-route config only changes an existing filter's config.
#[derive(Clone, Default)]
pub struct FilterOverrides(pub Vec<Arc<dyn StreamFilter>>);

impl FilterOverrides {
    /// The filter to run in place of the listener's `f` on this route.
    #[inline]
    pub fn pick<'a>(&'a self, f: &'a Arc<dyn StreamFilter>) -> &'a Arc<dyn StreamFilter> {
        if self.0.is_empty() {
            return f;
        }
        self.0.iter().find(|o| o.name() == f.name()).unwrap_or(f)
    }

    /// True when the route overrides nothing.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for FilterOverrides {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|x| x.name()))
            .finish()
    }
}

/// A filter config that cannot be used, with the JSON path of the offending value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct FilterConfigError {
    /// JSON path, e.g. `servers[0].listeners[0].stream_filters[1].config.ips[0].addrs[0]`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl FilterConfigError {
    /// An error at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        FilterConfigError {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Something built by name from a JSON config: a stream filter, a transcoder.
pub trait Registered: Send + Sync + 'static {
    /// What the name names, for errors: `stream filter`, `transcoder`.
    const KIND: &'static str;
}

impl Registered for dyn StreamFilter {
    const KIND: &'static str = "stream filter";
}

/// Builds a `T` from its `config` object, found at JSON path `path`. A closure, so a factory can
/// hold what it needs (the `transcoder` filter's holds a transcoder registry).
pub type Factory<T> =
    Arc<dyn Fn(&serde_json::Value, &str) -> Result<Arc<T>, FilterConfigError> + Send + Sync>;

/// Factories of `T` by name (MOSN's `type` names).
pub struct Registry<T: ?Sized> {
    factories: BTreeMap<&'static str, Factory<T>>,
}

/// Stream filter factories by MOSN `type` name.
pub type FilterRegistry = Registry<dyn StreamFilter>;

/// Builds a filter from its `config` object, found at JSON path `path`.
pub type FilterFactory = Factory<dyn StreamFilter>;

impl<T: ?Sized> Default for Registry<T> {
    fn default() -> Self {
        Registry {
            factories: BTreeMap::new(),
        }
    }
}

impl<T: ?Sized> Clone for Registry<T> {
    fn clone(&self) -> Self {
        Registry {
            factories: self.factories.clone(),
        }
    }
}

impl<T: ?Sized + Registered> Registry<T> {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    /// Registers `factory` under `name` (a later registration replaces an earlier one).
    pub fn register(
        &mut self,
        name: &'static str,
        factory: impl Fn(&serde_json::Value, &str) -> Result<Arc<T>, FilterConfigError>
            + Send
            + Sync
            + 'static,
    ) {
        self.factories.insert(name, Arc::new(factory));
    }

    /// True when `name` is registered.
    pub fn has(&self, name: &str) -> bool {
        self.factories.contains_key(name)
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        self.factories.keys().copied().collect()
    }

    /// Builds `name` from `config` at `path` (the path of the `config` value).
    ///
    /// Errors: an unknown name (reported at `name_path`), or the factory's own error.
    pub fn build(
        &self,
        name: &str,
        name_path: &str,
        config: &serde_json::Value,
        path: &str,
    ) -> Result<Arc<T>, FilterConfigError> {
        match self.factories.get(name) {
            Some(f) => f(config, path),
            None => Err(FilterConfigError::new(
                name_path,
                format!(
                    "{} {name:?} is not supported by mosn-rs (known: {})",
                    T::KIND,
                    self.names().join(", ")
                ),
            )),
        }
    }
}

impl<T: ?Sized> std::fmt::Debug for Registry<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.factories.keys()).finish()
    }
}
