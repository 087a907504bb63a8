//! The validated MOSN v2 config model: what the proxy runs on.
//!
//! Source: MOSN `pkg/config/v2` (`server.go`, `route.go`, `upstream.go`). Field names follow MOSN's
//! JSON keys; durations are [`Duration`]s, addresses [`SocketAddr`]s.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// The whole config file: one server, the cluster manager, admin and process keys.
#[derive(Debug, Clone)]
pub struct Config {
    /// `servers[0]`: MOSN runs exactly one server.
    pub server: Server,
    /// `cluster_manager.clusters`.
    pub clusters: Vec<Cluster>,
    /// `admin`: parsed only; the admin API is served in a later release.
    pub admin: Option<Admin>,
    /// `disable_upgrade` (or MOSN's deprecated `close_graceful`): no hot upgrade, neither as the
    /// old process nor as the new one.
    pub disable_upgrade: bool,
    /// `uds_dir`: where the hot-upgrade sockets live (`reconfig.sock`, `listen.sock`, ...);
    /// `None`: the config file's folder, as in MOSN.
    pub uds_dir: Option<String>,
    /// `inherit_old_mosnconfig`: on a hot upgrade, take the old process's effective config.
    pub inherit_old_mosnconfig: bool,
    /// `pid`: the pid file path; a relative path is taken from the config file's folder.
    pub pid: Option<String>,
    /// `metrics`.
    pub metrics: Metrics,
    /// `extends[{"type": "dubbo_registry"}]` with `enable: true`.
    pub dubbo_registry: Option<DubboRegistry>,
    /// `dynamic_resources` (with `static_resources` and `node`): listeners, routes, clusters and
    /// secrets from an xDS control plane, beside `servers` (MOSN's mixed mode) or alone.
    pub xds: Option<crate::xds::Xds>,
}

/// The `dubbo_registry` extension's `config` (MOSN's keys, plus mosn-rs's marked so).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DubboRegistry {
    /// `api_port`: the HTTP API's port on all interfaces. MOSN's default 22222 for a missing or
    /// out-of-range value; 0 lets the OS choose (mosn-rs; the address is logged).
    pub api_port: u16,
    /// `server_port`: the port `/pub` publishes, the proxy's ingress listener. Required unless
    /// `server_listener` names the listener.
    pub server_port: Option<u16>,
    /// `server_listener` (mosn-rs): publish the bound port of this listener.
    pub server_listener: Option<String>,
    /// `publish_ip` (mosn-rs): the IP `/pub` publishes; default MOSN's, the first non-loopback
    /// IPv4 address of the host.
    pub publish_ip: Option<std::net::IpAddr>,
    /// `sub_any_version` (mosn-rs): `/sub` takes providers of every version.
    pub sub_any_version: bool,
    /// `log_path`: MOSN's dubbo-go log folder; mosn-rs logs to its error log, so unused.
    pub log_path: Option<String>,
}

/// The router the `dubbo_registry` extension adds routes to, created when the config has none of
/// that name (MOSN's `Init` creates it).
pub const DUBBO_ROUTER: &str = "dubbo";

/// `metrics`: sinks and the stats matcher.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// `sinks[]` of `type: "prometheus"`.
    pub prometheus: Vec<PrometheusSink>,
    /// `stats_matcher.reject_all`: export nothing.
    pub reject_all: bool,
    /// `stats_matcher.exclusion_labels`: metric sets carrying one of these label keys are not
    /// exported.
    pub exclusion_labels: Vec<String>,
    /// `stats_matcher.exclusion_keys`: metric names (without the type prefix) not exported.
    pub exclusion_keys: Vec<String>,
}

/// A `prometheus` metrics sink.
#[derive(Debug, Clone)]
pub struct PrometheusSink {
    /// `config.port`: served on all interfaces, as MOSN does (`0.0.0.0:port`); 0 picks a free port.
    pub port: u16,
    /// `config.endpoint` (default `/metrics`).
    pub endpoint: String,
}

/// `admin.address.socket_address`.
#[derive(Debug, Clone)]
pub struct Admin {
    /// Address the admin API would bind.
    pub address: SocketAddr,
}

/// `servers[0]`.
#[derive(Debug, Clone, Default)]
pub struct Server {
    /// `default_log_path`: `stdout`, `stderr` or a file path; `None` means stderr.
    pub default_log_path: Option<String>,
    /// `default_log_level`: `DEBUG`, `INFO`, `WARN`, `ERROR`, ... as written.
    pub default_log_level: Option<String>,
    /// `processor`: worker count; `None` means one per available core.
    pub processor: Option<usize>,
    /// `graceful_timeout`: how long a draining shutdown waits.
    pub graceful_timeout: Option<Duration>,
    /// `global_log_roller`: rotation of the access logs.
    pub global_log_roller: crate::Roller,
    /// `listeners`.
    pub listeners: Vec<Listener>,
    /// `routers`, by `router_config_name`.
    pub routers: Vec<RouterConfig>,
}

/// The protocols a `proxy` network filter speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `Http1`.
    Http1,
    /// `Http2`: h2c with prior knowledge on plaintext, h2 by ALPN on TLS.
    Http2,
    /// `Auto`: detect the protocol from the first bytes (HTTP/1.x, HTTP/2, Bolt v1 or v2, Dubbo). As an
    /// `upstream_protocol`: the protocol the downstream connection speaks.
    Auto,
    /// `bolt` (or `X` with `extend_config.sub_protocol: "bolt"`): SOFA Bolt, v1 and v2 frames read.
    Bolt,
    /// `boltv2` (or `X` with `sub_protocol: "boltv2"`): SOFA Bolt v2; heartbeats made as v2.
    BoltV2,
    /// `dubbo` (or `X` with `sub_protocol: "dubbo"`): Dubbo 2 with hessian2 calls.
    Dubbo,
}

impl Protocol {
    /// True for the multiplexed RPC protocols served by the XProtocol driver.
    pub fn is_rpc(self) -> bool {
        matches!(self, Protocol::Bolt | Protocol::BoltV2 | Protocol::Dubbo)
    }
}

/// Where a listener listens: `address` with `network` `tcp` (default) or `unix`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ListenAddr {
    /// A TCP `host:port`.
    Tcp(SocketAddr),
    /// A unix stream socket path.
    Unix(std::path::PathBuf),
    /// A UDP `host:port` (`network: "udp"`).
    Udp(SocketAddr),
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "{a}"),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
            ListenAddr::Udp(a) => write!(f, "udp:{a}"),
        }
    }
}

/// A host address: `host:port`, or `unix:/path` for a unix stream socket.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostAddr {
    /// TCP.
    Tcp(SocketAddr),
    /// A unix stream socket path.
    Unix(std::path::PathBuf),
}

impl std::fmt::Display for HostAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostAddr::Tcp(a) => write!(f, "{a}"),
            HostAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// One listener with its network filter.
#[derive(Debug, Clone)]
pub struct Listener {
    /// `name` (defaults to the address).
    pub name: String,
    /// `address` (with `network`).
    pub address: ListenAddr,
    /// `filter_chains[0].filters[0]`: the network filter.
    pub filter: NetworkFilter,
    /// `connection_idle_timeout`: close a downstream connection idle this long (also while a
    /// request head is incomplete). MOSN's default, 90 s, when absent; `None` (an explicit 0): never.
    pub connection_idle_timeout: Option<Duration>,
    /// `access_logs[]`.
    pub access_logs: Vec<AccessLog>,
    /// `bind_port`: false makes a virtual listener, reached only through an original_dst listener.
    pub bind_port: bool,
    /// `use_original_dst` / the `original_dst` listener filter: hand each connection to the
    /// listener of its original destination.
    pub original_dst: Option<OriginalDst>,
    /// `filter_chains[0].tls_context` or `.tls_context_set` with `status: true`: TLS on this
    /// listener; several contexts are chosen by SNI.
    pub tls: Vec<TlsContext>,
    /// `inspector`: accept TLS and plaintext on the same port, told apart by the first byte.
    pub inspector: bool,
    /// `stream_filters`, in order; built by the filter registry (mosn-filters), which checks each
    /// filter's own config.
    pub stream_filters: Vec<StreamFilterConfig>,
    /// `client_header_timeout`: how long a request head may take from its first byte (default
    /// 60 s, nginx's).
    pub client_header_timeout: Option<Duration>,
    /// `original_dst` listener filter with `hand_off: false` (mosn-rs): the original destination
    /// only becomes the connection's local address (for `filter_chain_match`), and the connection
    /// is not handed to the listener of that address (Envoy's `original_dst` listener filter,
    /// as opposed to `use_original_dst`). MOSN hands off in both cases (the default).
    pub original_dst_hand_off: bool,
    /// `parent_listener` (mosn-rs): this listener is one filter chain of the named listener, taking
    /// the connections its `filter_chain_match` selects (Envoy's filter-chain matching). It must
    /// have `bind_port: false`.
    pub parent: Option<String>,
    /// `filter_chain_match` (mosn-rs, Envoy's `FilterChainMatch`), with `parent_listener`.
    pub chain_match: Option<ChainMatch>,
}

/// Which connections of a parent listener a child listener takes (Envoy's `FilterChainMatch`):
/// every set field must match; empty fields match all. Among children, the most specific match
/// wins, field by field in this order, as in Envoy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainMatch {
    /// `destination_port`: the connection's (original) destination port.
    pub destination_port: Option<u16>,
    /// `prefix_ranges`: the (original) destination address is in one of them.
    pub prefix_ranges: Vec<Cidr>,
    /// `server_names`: the TLS SNI is one of them (`*.example.com` covers subdomains).
    pub server_names: Vec<String>,
    /// `transport_protocol`: `tls` (a TLS ClientHello arrived) or `raw_buffer`.
    pub transport_protocol: Option<String>,
    /// `application_protocols`: the TLS ALPN offer, or for plaintext what the first bytes show
    /// (`http/1.1`, `h2c`), holds one of them.
    pub application_protocols: Vec<String>,
    /// `source_prefix_ranges`: the client's address is in one of them.
    pub source_prefix_ranges: Vec<Cidr>,
    /// `source_ports`: the client's port is one of them.
    pub source_ports: Vec<u16>,
}

/// One `stream_filters[]` entry, kept as JSON for the filter registry.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamFilterConfig {
    /// `type`: MOSN's filter name (`ip_access`, `fault`, ...).
    pub kind: String,
    /// JSON path of `type`.
    pub type_path: String,
    /// `config` (null when absent).
    pub config: serde_json::Value,
    /// JSON path of `config`.
    pub path: String,
}

/// A `tls_context` (MOSN `pkg/config/v2/tls.go`). Certificate and key fields hold a file path or
/// inline PEM; files are read (and checked) when the server starts or `mosn check` runs.
#[derive(Debug, Clone, Default)]
pub struct TlsContext {
    /// JSON path of this context, for error messages.
    pub path: String,
    /// `server_name`: the SNI name this certificate serves (listener), or sent (cluster).
    pub server_name: Option<String>,
    /// `cert_chain`.
    pub cert_chain: Option<String>,
    /// `private_key`.
    pub private_key: Option<String>,
    /// `ca_cert`: trust anchors for verifying the peer.
    pub ca_cert: Option<String>,
    /// `verify_client`: verify client certificates against `ca_cert`.
    pub verify_client: bool,
    /// `require_client_cert`: reject clients without a certificate.
    pub require_client_cert: bool,
    /// `insecure_skip`: (cluster) do not verify the upstream's certificate.
    pub insecure_skip: bool,
    /// `min_version`: `TLSv1_2`, `TLSv1_3` or `TLS_AUTO`.
    pub min_version: Option<String>,
    /// `max_version`.
    pub max_version: Option<String>,
    /// `cipher_suites`, split on `:` (OpenSSL names).
    pub cipher_suites: Vec<String>,
    /// `ecdh_curves`, split on `,`.
    pub ecdh_curves: Vec<String>,
    /// `alpn`, split on `,` (`h2`, `http/1.1`).
    pub alpn: Vec<String>,
    /// `subject_alt_names` (a mosn-rs key; Envoy's `match_subject_alt_names` with `exact`): a
    /// cluster's upstream certificate must carry one of these URI or DNS names (Istio's SPIFFE
    /// identities), checked instead of the host name. Empty: the usual `server_name` check. On a
    /// listener: a client certificate must carry one of them (or match a prefix below).
    pub subject_alt_names: Vec<String>,
    /// `subject_alt_name_prefixes` (a mosn-rs key; Envoy's `match_subject_alt_names` with
    /// `prefix`, as Istio's inbound contexts use for the trust domain `spiffe://cluster.local/`):
    /// a name starting with one of them also passes.
    pub subject_alt_name_prefixes: Vec<String>,
}

/// How a transparent-proxy listener learns a connection's original destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginalDst {
    /// `"redirect"`: iptables REDIRECT, read with `SO_ORIGINAL_DST`.
    Redirect,
    /// `"tproxy"`: iptables TPROXY, the connection's local address (needs `IP_TRANSPARENT`).
    Tproxy,
}

/// `access_logs[]` of a listener.
#[derive(Debug, Clone)]
pub struct AccessLog {
    /// `log_path`.
    pub path: String,
    /// `log_format`; `None` means MOSN's default format.
    pub format: Option<String>,
}

/// A listener's network filter.
#[derive(Debug, Clone)]
pub enum NetworkFilter {
    /// `proxy`: HTTP (and later RPC) streams, routed by `routers`.
    Proxy(ProxyFilter),
    /// `tcp_proxy`: raw TCP to a cluster.
    TcpProxy(TcpProxy),
    /// `udp_proxy`: datagrams to a cluster, in sessions keyed by the client's address.
    UdpProxy(TcpProxy),
}

impl NetworkFilter {
    /// The `proxy` filter's config, if this is one.
    pub fn proxy(&self) -> Option<&ProxyFilter> {
        match self {
            NetworkFilter::Proxy(p) => Some(p),
            NetworkFilter::TcpProxy(_) | NetworkFilter::UdpProxy(_) => None,
        }
    }
}

/// An IP range (`{"address": "10.0.0.0", "length": 8}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// Network address.
    pub address: std::net::IpAddr,
    /// Prefix length in bits.
    pub length: u8,
}

impl Cidr {
    /// True when `ip` is inside the range (an IPv4 range never holds an IPv6 address).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr::*;
        match (self.address, ip) {
            (V4(n), V4(a)) => {
                let bits = u32::from(self.length.min(32));
                let mask = if bits == 0 {
                    0
                } else {
                    u32::MAX << (32 - bits)
                };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (V6(n), V6(a)) => {
                let bits = u32::from(self.length.min(128));
                let mask = if bits == 0 {
                    0
                } else {
                    u128::MAX << (128 - bits)
                };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// One `tcp_proxy` route: a cluster for connections whose addresses and ports match. Empty lists
/// match everything.
#[derive(Debug, Clone)]
pub struct TcpRoute {
    /// `cluster`.
    pub cluster: String,
    /// `source_addrs` (MOSN also writes `SourceAddrs`).
    pub source_addrs: Vec<Cidr>,
    /// `destination_addrs`.
    pub destination_addrs: Vec<Cidr>,
    /// `source_port`: `"8080"`, `"8000-9000"`, comma-separated, as inclusive ranges.
    pub source_port: Vec<(u16, u16)>,
    /// `destination_port`.
    pub destination_port: Vec<(u16, u16)>,
}

/// The `tcp_proxy` and `udp_proxy` network filters' config (MOSN `StreamProxy`).
#[derive(Debug, Clone)]
pub struct TcpProxy {
    /// `stat_prefix`.
    pub stat_prefix: String,
    /// `cluster`: when set it takes every connection and `routes` are not consulted (as in MOSN).
    pub cluster: Option<String>,
    /// `routes`, tried in order.
    pub routes: Vec<TcpRoute>,
    /// `max_connect_attempts`: hosts tried before the client connection is closed (at least 1).
    pub max_connect_attempts: u32,
    /// `idle_timeout`: close both sides (or end a UDP session) after this long without bytes.
    /// MOSN's defaults when absent: 90 s for TCP, 5 s for UDP.
    pub idle_timeout: Duration,
    /// `max_sessions` (`udp_proxy` only, a mosn-rs key): UDP sessions open at once on the
    /// listener, over all workers. A datagram from a new client beyond it is dropped and counted
    /// in `udp_session_overflow`. Default [`DEFAULT_UDP_MAX_SESSIONS`].
    pub max_sessions: usize,
}

/// Default `max_sessions` of a `udp_proxy` listener.
pub const DEFAULT_UDP_MAX_SESSIONS: usize = 10_000;

/// The `proxy` network filter's config.
#[derive(Debug, Clone)]
pub struct ProxyFilter {
    /// `downstream_protocol`.
    pub downstream_protocol: Protocol,
    /// `upstream_protocol` (defaults to HTTP/1).
    pub upstream_protocol: Protocol,
    /// `router_config_name`: the route table this listener uses.
    pub router_config_name: String,
    /// `extend_config.enable_bolt_goaway` (or `extend_config.bolt.enable_bolt_goaway`), MOSN's
    /// Bolt option: on graceful shutdown a Bolt listener sends a GoAway frame (command code 100)
    /// on each client connection before it drains. Off by default, as in MOSN, because SOFABolt
    /// clients other than MOSN do not know the command.
    pub bolt_goaway: bool,
    /// The JSON path of `upstream_protocol` when an HTTP downstream meets an RPC upstream: every
    /// request must then be converted by the listener's `transcoder` stream filter, and a request
    /// no transcoder takes is answered 502 with flag `TF`.
    pub transcoded: Option<String>,
    /// `fallback_for_unknown_protocol` with the `tcp_proxy` filter that follows `proxy` in the
    /// chain: with `downstream_protocol: "Auto"`, a connection whose first bytes are no protocol
    /// the proxy speaks goes to this `tcp_proxy` (MOSN's fallback) instead of being closed.
    pub fallback: Option<TcpProxy>,
}

/// `request_headers_to_add/remove` and `response_headers_to_add/remove`, at any of the three levels.
#[derive(Debug, Clone, Default)]
pub struct HeaderMutation {
    /// Headers added to the request sent upstream.
    pub request_add: Vec<HeaderValueOption>,
    /// Header names removed from the request sent upstream.
    pub request_remove: Vec<String>,
    /// Headers added to the response sent downstream.
    pub response_add: Vec<HeaderValueOption>,
    /// Header names removed from the response sent downstream.
    pub response_remove: Vec<String>,
}

impl HeaderMutation {
    /// True when nothing is added or removed.
    pub fn is_empty(&self) -> bool {
        self.request_add.is_empty()
            && self.request_remove.is_empty()
            && self.response_add.is_empty()
            && self.response_remove.is_empty()
    }
}

/// `{"header": {"key": K, "value": V}, "append": B}`.
#[derive(Debug, Clone)]
pub struct HeaderValueOption {
    /// Header name.
    pub key: String,
    /// Header value.
    pub value: String,
    /// `append`: true adds beside existing values; false (MOSN's default) replaces them.
    pub append: bool,
}

/// `routers[]`: one named route table.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// `router_config_name`.
    pub name: String,
    /// `virtual_hosts`.
    pub virtual_hosts: Vec<VirtualHost>,
    /// Header mutation at router level.
    pub headers: HeaderMutation,
}

/// `virtual_hosts[]`.
#[derive(Debug, Clone)]
pub struct VirtualHost {
    /// `name`.
    pub name: String,
    /// `domains`: `host:port`, `host`, `*.suffix`, `*`.
    pub domains: Vec<String>,
    /// `routers`.
    pub routes: Vec<Route>,
    /// Header mutation at virtual host level.
    pub headers: HeaderMutation,
    /// `per_filter_config`: `{"<filter type>": config}` for every route of this virtual host that
    /// does not set its own (a route's own wins, as in Envoy; MOSN reads only the route's).
    pub per_filter_config: Vec<StreamFilterConfig>,
}

/// How a route matches the path.
#[derive(Debug, Clone)]
pub enum PathMatch {
    /// `prefix`.
    Prefix(String),
    /// `path`: exact.
    Exact(String),
    /// `regex`: the whole path must match.
    Regex(String),
    /// `path_separated_prefix` (Envoy's, a mosn-rs key): the path is this prefix, or starts with it
    /// followed by `/` (the prefix has no trailing `/`).
    SeparatedPrefix(String),
}

/// `match.headers[]`.
#[derive(Debug, Clone)]
pub struct HeaderMatcher {
    /// Header name; `method` matches the HTTP method.
    pub name: String,
    /// Expected value, or a regex when `regex` is true (whole value).
    pub value: String,
    /// `regex`.
    pub regex: bool,
    /// `present_match` (Envoy's, a mosn-rs key): matches when the header is present, whatever its
    /// value; `value` and `regex` are then unused.
    pub present: bool,
    /// `invert_match` (Envoy's, a mosn-rs key): the result is negated, so an absent header then
    /// matches.
    pub invert: bool,
}

/// `routers[]` in a virtual host.
#[derive(Debug, Clone)]
pub struct Route {
    /// `match.prefix | path | regex`; `None` matches every path.
    pub path: Option<PathMatch>,
    /// `match.headers`.
    pub headers: Vec<HeaderMatcher>,
    /// What the route does.
    pub action: RouteAction,
    /// `per_filter_config`: `{"<filter type>": config}`. For this route, the listener's stream
    /// filter of that type runs with this config instead (MOSN's `ReadPerRouteConfig`).
    pub per_filter_config: Vec<StreamFilterConfig>,
}

/// What a matched route does.
#[derive(Debug, Clone)]
pub enum RouteAction {
    /// `route`: forward to a cluster.
    Forward(Box<ForwardAction>),
    /// `direct_response`.
    DirectResponse {
        /// `status`.
        status: u16,
        /// `body`.
        body: String,
    },
    /// `redirect`.
    Redirect {
        /// `response_code` (default 301).
        response_code: u16,
        /// `path_redirect`.
        path: Option<String>,
        /// `host_redirect`.
        host: Option<String>,
        /// `scheme_redirect`.
        scheme: Option<String>,
    },
}

/// `route`: forward to a cluster.
#[derive(Debug, Clone)]
pub struct ForwardAction {
    /// `cluster_name`, or `weighted_clusters[].cluster {name, weight}`.
    pub clusters: Vec<(String, u32)>,
    /// `metadata_match.filter_metadata["mosn.lb"]`: only hosts whose metadata has all these pairs.
    pub metadata_match: BTreeMap<String, String>,
    /// `timeout`: time to the response head. `None`: no route timeout.
    pub timeout: Option<Duration>,
    /// `retry_policy`.
    pub retry: Option<RetryPolicy>,
    /// `prefix_rewrite`.
    pub prefix_rewrite: Option<String>,
    /// `regex_rewrite {pattern.regex, substitution}`.
    pub regex_rewrite: Option<(String, String)>,
    /// `host_rewrite`.
    pub host_rewrite: Option<String>,
    /// Header mutation at route level (`route.request_headers_to_add`, ...).
    pub headers: HeaderMutation,
}

/// `retry_policy`.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// `retry_on`: retries are off unless true.
    pub retry_on: bool,
    /// `retry_timeout`: per-try timeout. `None`: the route timeout alone.
    pub retry_timeout: Option<Duration>,
    /// `num_retries`: exactly this many retries (MOSN adds a hidden minimum of 3; we do not).
    pub num_retries: u32,
    /// `status_codes`: upstream statuses that are retried; empty means every 5xx.
    pub status_codes: Vec<u16>,
}

/// `lb_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbType {
    /// `LB_ROUNDROBIN`.
    RoundRobin,
    /// `LB_RANDOM`.
    Random,
    /// `LB_WEIGHTED_ROUNDROBIN`.
    WeightedRoundRobin,
    /// `LB_LEAST_REQUEST`, as "least connection" in MOSN: power of two choices over active requests.
    LeastRequest,
}

/// `circuit_breakers[0]`; `None` fields are unlimited.
#[derive(Debug, Clone, Default)]
pub struct CircuitBreakers {
    /// `max_connections` per cluster, across workers.
    pub max_connections: Option<u32>,
    /// `max_pending_requests`: requests waiting for an upstream connection.
    pub max_pending_requests: Option<u32>,
    /// `max_requests`: requests in flight.
    pub max_requests: Option<u32>,
    /// `max_retries`: retries in flight.
    pub max_retries: Option<u32>,
}

/// `cluster_manager.clusters[]`.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// `name`.
    pub name: String,
    /// `lb_type` (default `LB_ROUNDROBIN`).
    pub lb: LbType,
    /// `hosts`.
    pub hosts: Vec<Host>,
    /// `connect_timeout` (default 3 s, as MOSN).
    pub connect_timeout: Duration,
    /// `idle_timeout`: close idle upstream connections after this long. `None`: keep them.
    pub idle_timeout: Option<Duration>,
    /// `circuit_breakers[0]`.
    pub circuit_breakers: CircuitBreakers,
    /// `max_request_per_conn`: close an upstream connection after this many requests. `None`: no limit.
    pub max_request_per_conn: Option<u32>,
    /// `type: "ORIGINAL_DST"` (with `lb_type: "LB_ORIGINAL_DST"`): the host is each connection's
    /// original destination; `hosts` is unused.
    pub original_dst: bool,
    /// `tls_context` with `status: true`: TLS to the hosts.
    pub tls: Option<TlsContext>,
    /// `lb_subset_config.fall_back_policy` (with `default_subset`): where a route's
    /// `metadata_match` goes when no host matches.
    pub subset_fallback: SubsetFallback,
    /// `keepalive` {`interval`, `timeout`}: heartbeats on upstream connections (HTTP/2 PING,
    /// XProtocol heartbeat). `None` when absent or when `interval` is 0, as in MOSN, which then
    /// schedules none.
    pub keepalive: Option<Keepalive>,
}

/// A cluster's `keepalive` (MOSN `v2.KeepAlive`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// `interval`: time between heartbeats on a connection.
    pub interval: Duration,
    /// `timeout` (default 1 s, as MOSN): how long a heartbeat may go unanswered before the
    /// connection is closed.
    pub timeout: Duration,
}

/// MOSN's subset fallback policies (`pkg/upstream/cluster/subset_loadbalancer.go`).
#[derive(Debug, Clone, Default, PartialEq)]
pub enum SubsetFallback {
    /// `0` (default): no host, so 503.
    #[default]
    NoFallback,
    /// `1`: every host of the cluster.
    AnyEndpoint,
    /// `2`: the hosts matching `default_subset`.
    DefaultSubset(BTreeMap<String, String>),
}

/// `hosts[]`.
#[derive(Debug, Clone)]
pub struct Host {
    /// `address`.
    pub address: HostAddr,
    /// `weight` (default 1, MOSN's range 1..=128).
    pub weight: u32,
    /// `metadata.filter_metadata["mosn.lb"]` as strings.
    pub metadata: BTreeMap<String, String>,
    /// `tls_disable`: plaintext to this host even when the cluster has TLS.
    pub tls_disable: bool,
}
