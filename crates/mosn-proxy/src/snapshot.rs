//! The immutable runtime view of a config: compiled route tables, the cluster manager and the
//! listeners. Workers read it through an `ArcSwap`, so a later config change publishes a new one
//! without locks on the data path.

use std::sync::Arc;
use std::time::Duration;

use std::collections::BTreeMap;

use mosn_config::{Config, NetworkFilter};
use mosn_router::{BuildError, RouteTable};
use mosn_upstream::ClusterManager;

/// A compiled `tcp_proxy` route: a target for connections whose addresses and ports match.
#[derive(Debug, Clone)]
pub struct TcpRoute {
    /// Target id in the cluster manager.
    pub target: usize,
    /// The route's matchers.
    pub matcher: mosn_config::TcpRoute,
}

impl TcpRoute {
    /// True when a connection from `peer` to `local` matches (empty lists match all).
    pub fn matches(&self, peer: std::net::SocketAddr, local: std::net::SocketAddr) -> bool {
        let m = &self.matcher;
        let ports = |list: &[(u16, u16)], p: u16| {
            list.is_empty() || list.iter().any(|(a, b)| (*a..=*b).contains(&p))
        };
        let ips =
            |list: &[mosn_config::Cidr], ip| list.is_empty() || list.iter().any(|c| c.contains(ip));
        ips(&m.source_addrs, peer.ip())
            && ports(&m.source_port, peer.port())
            && ips(&m.destination_addrs, local.ip())
            && ports(&m.destination_port, local.port())
    }
}

/// A compiled `tcp_proxy` filter.
#[derive(Debug, Clone)]
pub struct TcpProxy {
    /// The `cluster` target, which takes every connection when set.
    pub cluster: Option<usize>,
    /// `routes`, in order.
    pub routes: Vec<TcpRoute>,
    /// `max_connect_attempts` (at least 1).
    pub max_connect_attempts: u32,
    /// `idle_timeout`.
    pub idle_timeout: Duration,
    /// `max_sessions` (UDP only): sessions open at once on the listener, over all workers.
    pub max_sessions: usize,
}

impl TcpProxy {
    /// The target for a connection, or `None` when no route matches.
    pub fn target(&self, peer: std::net::SocketAddr, local: std::net::SocketAddr) -> Option<usize> {
        self.cluster.or_else(|| {
            self.routes
                .iter()
                .find(|r| r.matches(peer, local))
                .map(|r| r.target)
        })
    }
}

/// What a listener does with a connection.
#[derive(Debug, Clone)]
pub enum ListenerKind {
    /// The `proxy` network filter: streams routed through the route table at this index of
    /// [`Snapshot::tables`].
    Proxy {
        /// Route table index.
        table: usize,
        /// `downstream_protocol`: `Http1`, `Http2`, or `Auto` (detected from the first bytes).
        downstream: mosn_config::Protocol,
        /// `upstream_protocol`: `Http1`, `Http2`, or `Auto` (the client's).
        upstream: mosn_config::Protocol,
        /// `extend_config.enable_bolt_goaway`: Bolt GoAway on graceful shutdown.
        bolt_goaway: bool,
        /// With `Auto`: the `tcp_proxy` that takes connections of no known protocol
        /// (`fallback_for_unknown_protocol`); `None` closes them.
        fallback: Option<Box<TcpProxy>>,
    },
    /// Raw TCP to a cluster.
    Tcp(TcpProxy),
    /// UDP datagrams to a cluster.
    Udp(TcpProxy),
}

/// What a listener needs at run time.
#[derive(Debug, Clone)]
pub struct ListenerInfo {
    /// `name`.
    pub name: String,
    /// What it does with a connection.
    pub kind: ListenerKind,
    /// `connection_idle_timeout`.
    pub idle_timeout: Option<Duration>,
    /// The configured address.
    pub address: mosn_config::ListenAddr,
    /// Set on a transparent-proxy listener.
    pub original_dst: Option<mosn_net::original_dst::Mode>,
    /// TLS on this listener.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The same TLS config without ALPN, for a client whose ALPN offer shares nothing with the
    /// listener's (Envoy then selects no protocol rather than failing the handshake, which
    /// Istio's `istio-peer-exchange` offers rely on); `None` when the listener has no ALPN.
    pub tls_no_alpn: Option<Arc<rustls::ServerConfig>>,
    /// `inspector`: TLS and plaintext on one port.
    pub inspector: bool,
    /// `stream_filters`, built, in config order.
    pub filters: FilterChain,
    /// How long a request head may take from its first byte (`client_header_timeout`).
    pub header_timeout: Duration,
    /// The `stream_filters` config as written, to tell whether a new config changes them.
    pub filters_config: String,
    /// `bind_port`: false for a virtual listener, reached only by an original-destination hand-off.
    pub bind_port: bool,
    /// `original_dst_hand_off`: with `original_dst`, hand the connection to the listener of its
    /// original destination (else only take that address as its local one).
    pub original_dst_hand_off: bool,
    /// `parent_listener`: this listener is a filter chain of that one.
    pub parent: Option<String>,
    /// `filter_chain_match`, on a child listener.
    pub chain_match: Option<mosn_config::ChainMatch>,
    /// The slots of this listener's live children (filter chains), in config order.
    pub children: Vec<usize>,
    /// When a config applied at run time removed this listener: it accepts no more connections,
    /// and the open ones close after their current request (a tombstone keeps its slot so they
    /// can finish). `None` while it is live.
    pub removed_at: Option<std::time::Instant>,
}

/// Fills each live listener's `children` with the slots of the live listeners naming it as parent.
fn link_children(listeners: &mut [ListenerInfo]) {
    for l in listeners.iter_mut() {
        l.children.clear();
    }
    for i in 0..listeners.len() {
        let Some(parent) = listeners[i].parent.clone() else {
            continue;
        };
        if listeners[i].removed_at.is_some() {
            continue;
        }
        if let Some(p) = listeners
            .iter()
            .position(|p| p.removed_at.is_none() && p.parent.is_none() && p.name == parent)
        {
            listeners[p].children.push(i);
        }
    }
}

/// A listener's stream filters, in config order.
#[derive(Clone, Default)]
pub struct FilterChain(pub Vec<Arc<dyn mosn_api::StreamFilter>>);

impl std::ops::Deref for FilterChain {
    type Target = [Arc<dyn mosn_api::StreamFilter>];
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::fmt::Debug for FilterChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|x| x.name()))
            .finish()
    }
}

impl ListenerInfo {
    /// The route table of an HTTP listener (0 for a TCP one, which never routes HTTP).
    pub fn table(&self) -> usize {
        match self.kind {
            ListenerKind::Proxy { table, .. } => table,
            ListenerKind::Tcp(_) | ListenerKind::Udp(_) => 0,
        }
    }
}

/// One immutable config snapshot.
#[derive(Debug)]
pub struct Snapshot {
    /// Route tables in `servers[0].routers` order.
    pub tables: Vec<RouteTable>,
    /// Clusters, hosts and the targets routes resolved to.
    pub clusters: Arc<ClusterManager>,
    /// Listeners in config order.
    pub listeners: Vec<ListenerInfo>,
}

/// A snapshot that could not be built: a TLS context that cannot be used (a file missing, a key
/// that does not match its certificate, ...), or a route table that does not compile.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A route table (mosn-config validated the config, so this means a bug).
    #[error(transparent)]
    Route(#[from] mosn_router::BuildError),
    /// A TLS context, with its JSON path.
    #[error(transparent)]
    Tls(#[from] mosn_net::tls::TlsError),
    /// A stream filter of unknown type or with a bad config, with its JSON path.
    #[error(transparent)]
    Filter(#[from] mosn_api::FilterConfigError),
}

impl Snapshot {
    /// The listener for a connection's original destination: the one configured on exactly that
    /// address, else one on `0.0.0.0` (or `::`) with that port. TCP listeners only.
    pub fn listener_for(&self, dst: std::net::SocketAddr) -> Option<usize> {
        use mosn_config::ListenAddr::Tcp;
        let tcp = |l: &ListenerInfo| match l.address {
            Tcp(a) => Some(a),
            _ => None,
        };
        self.listeners
            .iter()
            .position(|l| l.removed_at.is_none() && l.parent.is_none() && tcp(l) == Some(dst))
            .or_else(|| {
                self.listeners.iter().position(|l| {
                    l.removed_at.is_none()
                        && l.parent.is_none()
                        && tcp(l).is_some_and(|a| a.ip().is_unspecified() && a.port() == dst.port())
                })
            })
    }

    /// The slot of the unix listener on `path` (a moved unix connection's).
    pub fn listener_for_path(&self, path: &std::path::Path) -> Option<usize> {
        self.listeners.iter().position(|l| {
            l.removed_at.is_none()
                && matches!(&l.address, mosn_config::ListenAddr::Unix(p) if p == path)
        })
    }

    /// Compiles a validated config.
    ///
    /// Errors: a route table that does not compile (unknown cluster, bad regex).
    pub fn build(cfg: &Config) -> Result<Snapshot, SnapshotError> {
        Snapshot::build_from(cfg, None)
    }

    /// Compiles a new config to replace `self` while the server runs. Listeners are kept in their
    /// slots (indices stay valid for open connections): one with the same name, address and
    /// `bind_port` keeps its slot, and its filter instances when its `stream_filters` config did
    /// not change (so their counters go on); a new one takes a new slot at the end; a listener
    /// the config no longer has stays as a tombstone ([`ListenerInfo::removed_at`]). Clusters,
    /// hosts (whose ids are stable, see `mosn_upstream::cluster::host_id`) and routes are the new
    /// config's.
    ///
    /// Errors: as [`Snapshot::build`].
    pub fn rebuild(&self, cfg: &Config) -> Result<Snapshot, SnapshotError> {
        let mut next = Snapshot::build_from(cfg, Some(self))?;
        let fresh = std::mem::take(&mut next.listeners);
        let mut slots: Vec<Option<ListenerInfo>> = self.listeners.iter().map(|_| None).collect();
        let mut added = Vec::new();
        for info in fresh {
            let same = self.listeners.iter().enumerate().position(|(i, o)| {
                o.removed_at.is_none()
                    && slots[i].is_none()
                    && o.name == info.name
                    && o.address == info.address
                    && o.bind_port == info.bind_port
            });
            match same {
                Some(i) => slots[i] = Some(info),
                None => added.push(info),
            }
        }
        let now = std::time::Instant::now();
        next.listeners = slots
            .into_iter()
            .zip(&self.listeners)
            .map(|(s, old)| {
                s.unwrap_or_else(|| {
                    let mut t = old.clone();
                    t.removed_at.get_or_insert(now);
                    t
                })
            })
            .chain(added)
            .collect();
        link_children(&mut next.listeners);
        Ok(next)
    }

    fn build_from(cfg: &Config, old: Option<&Snapshot>) -> Result<Snapshot, SnapshotError> {
        let mut cm = ClusterManager::new(&cfg.clusters)?;
        let registry = mosn_filters::registry();
        let tables = cfg
            .server
            .routers
            .iter()
            .map(|r| RouteTable::new(r, &registry, &mut |name, meta| cm.resolve(name, meta)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut listeners = Vec::new();
        for l in &cfg.server.listeners {
            let filters_config = l
                .stream_filters
                .iter()
                .map(|f| format!("{}={}", f.kind, f.config))
                .collect::<Vec<_>>()
                .join(";");
            let kept = old
                .and_then(|o| {
                    o.listeners
                        .iter()
                        .find(|o| o.removed_at.is_none() && o.name == l.name)
                })
                .filter(|o| o.filters_config == filters_config)
                .map(|o| o.filters.0.clone());
            let filters = match kept {
                Some(f) => f,
                None => {
                    let mut filters = Vec::new();
                    for f in &l.stream_filters {
                        filters.push(registry.build(&f.kind, &f.type_path, &f.config, &f.path)?);
                    }
                    filters
                }
            };
            let mut compile_tcp = |t: &mosn_config::TcpProxy| -> Result<TcpProxy, SnapshotError> {
                let none = BTreeMap::new();
                let mut resolve = |name: &str| {
                    cm.resolve(name, &none).ok_or_else(|| {
                        SnapshotError::Route(BuildError {
                            table: l.name.clone(),
                            what: format!("unknown cluster {name:?}"),
                        })
                    })
                };
                let cluster = match &t.cluster {
                    Some(c) => Some(resolve(c)?),
                    None => None,
                };
                let mut routes = Vec::new();
                for r in &t.routes {
                    routes.push(TcpRoute {
                        target: resolve(&r.cluster)?,
                        matcher: r.clone(),
                    });
                }
                Ok(TcpProxy {
                    cluster,
                    routes,
                    max_connect_attempts: t.max_connect_attempts,
                    idle_timeout: t.idle_timeout,
                    max_sessions: t.max_sessions,
                })
            };
            let kind = match &l.filter {
                NetworkFilter::Proxy(p) => ListenerKind::Proxy {
                    table: tables
                        .iter()
                        .position(|t| t.name == p.router_config_name)
                        .unwrap_or(0),
                    downstream: p.downstream_protocol,
                    upstream: p.upstream_protocol,
                    bolt_goaway: p.bolt_goaway,
                    fallback: match &p.fallback {
                        Some(t) => Some(Box::new(compile_tcp(t)?)),
                        None => None,
                    },
                },
                NetworkFilter::TcpProxy(t) => ListenerKind::Tcp(compile_tcp(t)?),
                NetworkFilter::UdpProxy(t) => ListenerKind::Udp(compile_tcp(t)?),
            };
            let tls = if l.tls.is_empty() {
                None
            } else {
                Some(mosn_net::tls::server_config(&l.tls)?)
            };
            let tls_no_alpn = tls
                .as_ref()
                .filter(|t| !t.alpn_protocols.is_empty())
                .map(|t| {
                    let mut c = (**t).clone();
                    c.alpn_protocols.clear();
                    Arc::new(c)
                });
            listeners.push(ListenerInfo {
                tls_no_alpn,
                filters: FilterChain(filters),
                filters_config,
                header_timeout: l
                    .client_header_timeout
                    .unwrap_or(crate::http1::DEFAULT_HEADER_TIMEOUT),
                tls,
                inspector: l.inspector,
                bind_port: l.bind_port,
                removed_at: None,
                original_dst_hand_off: l.original_dst_hand_off,
                parent: l.parent.clone(),
                chain_match: l.chain_match.clone(),
                children: Vec::new(),
                name: l.name.clone(),
                kind,
                idle_timeout: l.connection_idle_timeout,
                address: l.address.clone(),
                original_dst: l.original_dst.map(|m| match m {
                    mosn_config::OriginalDst::Redirect => mosn_net::original_dst::Mode::Redirect,
                    mosn_config::OriginalDst::Tproxy => mosn_net::original_dst::Mode::Tproxy,
                }),
            });
        }
        link_children(&mut listeners);
        Ok(Snapshot {
            tables,
            clusters: Arc::new(cm),
            listeners,
        })
    }
}
