//! The cluster manager: clusters, their hosts, host subsets chosen by route metadata, and the
//! cluster-wide circuit-breaker counters shared by every worker.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use mosn_config::{CircuitBreakers, LbType};

/// One upstream host.
#[derive(Debug)]
pub struct Host {
    /// Stable id of the host ([`host_id`]): the same cluster name and address get the same id in
    /// every config this process loads, so pools, LB state and stats keyed by it survive a reload
    /// and can never send a request to another host.
    pub id: usize,
    /// `address`: TCP or a unix socket path.
    pub address: mosn_config::HostAddr,
    /// `weight` (1..=128).
    pub weight: u32,
    /// `metadata.filter_metadata["mosn.lb"]`.
    pub metadata: BTreeMap<String, String>,
    /// `tls_disable`: plaintext even when the cluster has TLS.
    pub tls_disable: bool,
}

/// The stable id of the host `address` of cluster `cluster`: the first call for a pair assigns the
/// next free id, later calls (from any thread, any config) return the same one. Ids are dense from
/// 0, so per-worker state can be a vector indexed by id.
pub fn host_id(cluster: &str, address: &str) -> usize {
    static IDS: OnceLock<Mutex<HashMap<(String, String), usize>>> = OnceLock::new();
    let mut ids = IDS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let next = ids.len();
    *ids.entry((cluster.to_string(), address.to_string()))
        .or_insert(next)
}

/// Cluster-wide gauges checked against the circuit breakers (all workers share them).
#[derive(Debug, Default)]
pub struct Gauges {
    /// Open upstream connections.
    pub connections: AtomicU32,
    /// Requests waiting for an upstream connection.
    pub pending: AtomicU32,
    /// Requests in flight.
    pub requests: AtomicU32,
    /// Retries in flight.
    pub retries: AtomicU32,
}

/// A slot taken in one of the [`Gauges`]; released on drop.
#[derive(Debug)]
pub struct Slot(Arc<Cluster>, fn(&Gauges) -> &AtomicU32);

impl Drop for Slot {
    fn drop(&mut self) {
        (self.1)(&self.0.gauges).fetch_sub(1, Ordering::Relaxed);
    }
}

/// One cluster.
#[derive(Debug)]
pub struct Cluster {
    /// Index in [`ClusterManager::clusters`].
    pub index: usize,
    /// `name`.
    pub name: String,
    /// `lb_type`.
    pub lb: LbType,
    /// `hosts`.
    pub hosts: Vec<Arc<Host>>,
    /// `connect_timeout`.
    pub connect_timeout: Duration,
    /// `idle_timeout` of pooled upstream connections.
    pub idle_timeout: Option<Duration>,
    /// `max_request_per_conn`.
    pub max_request_per_conn: Option<u32>,
    /// `circuit_breakers[0]`.
    pub limits: CircuitBreakers,
    /// `type: "ORIGINAL_DST"`: connect to each connection's original destination.
    pub original_dst: bool,
    /// TLS to the hosts: the client config and the SNI name (`server_name`).
    pub tls: Option<(Arc<rustls::ClientConfig>, Option<String>)>,
    /// Where a `metadata_match` that selects no host goes.
    pub subset_fallback: mosn_config::SubsetFallback,
    /// Live counters for the circuit breakers.
    pub gauges: Gauges,
    /// `keepalive`: heartbeats on upstream connections (HTTP/2 PING).
    pub keepalive: Option<mosn_config::Keepalive>,
}

impl Cluster {
    /// Takes a slot in the gauge `which` unless `limit` is reached.
    /// `None` means the circuit breaker is open (the caller answers 503 with flag `UO`).
    pub fn try_take(
        self: &Arc<Self>,
        which: fn(&Gauges) -> &AtomicU32,
        limit: Option<u32>,
    ) -> Option<Slot> {
        let g = which(&self.gauges);
        let before = g.fetch_add(1, Ordering::Relaxed);
        if limit.is_some_and(|l| before >= l) {
            g.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Slot(self.clone(), which))
    }
}

/// Hosts of one cluster that a route may use: all of them, or those whose metadata matches the
/// route's `metadata_match`.
#[derive(Debug)]
pub struct Target {
    /// The cluster.
    pub cluster: Arc<Cluster>,
    /// Indexes into `cluster.hosts`.
    pub hosts: Vec<usize>,
    /// Sum of the weights of `hosts`.
    pub total_weight: u64,
}

/// All clusters and the targets routes resolved to.
#[derive(Debug, Default)]
pub struct ClusterManager {
    /// Clusters in config order.
    pub clusters: Vec<Arc<Cluster>>,
    /// Targets by id (see [`ClusterManager::resolve`]).
    pub targets: Vec<Target>,
    /// One more than the largest host id in use: per-host vectors sized by it hold every host.
    pub host_count: usize,
}

impl ClusterManager {
    /// Builds clusters from config, with their TLS client configs.
    ///
    /// Errors: a cluster `tls_context` that cannot be used (names its JSON path).
    pub fn new(cfg: &[mosn_config::Cluster]) -> Result<Self, mosn_net::tls::TlsError> {
        let mut host_count = 0;
        let mut tls = Vec::new();
        for c in cfg {
            tls.push(match &c.tls {
                Some(t) => Some((mosn_net::tls::client_config(t)?, t.server_name.clone())),
                None => None,
            });
        }
        let clusters = cfg
            .iter()
            .zip(tls)
            .enumerate()
            .map(|(index, (c, tls))| {
                let hosts = c
                    .hosts
                    .iter()
                    .map(|h| {
                        let id = host_id(&c.name, &h.address.to_string());
                        host_count = host_count.max(id + 1);
                        Arc::new(Host {
                            id,
                            address: h.address.clone(),
                            weight: h.weight.max(1),
                            metadata: h.metadata.clone(),
                            tls_disable: h.tls_disable,
                        })
                    })
                    .collect();
                Arc::new(Cluster {
                    index,
                    name: c.name.clone(),
                    lb: c.lb,
                    hosts,
                    connect_timeout: c.connect_timeout,
                    idle_timeout: c.idle_timeout,
                    keepalive: c.keepalive,
                    max_request_per_conn: c.max_request_per_conn,
                    limits: c.circuit_breakers.clone(),
                    original_dst: c.original_dst,
                    tls,
                    subset_fallback: c.subset_fallback.clone(),
                    gauges: Gauges::default(),
                })
            })
            .collect();
        Ok(ClusterManager {
            clusters,
            targets: Vec::new(),
            host_count,
        })
    }

    /// Indexes into `cluster.hosts` of the hosts whose metadata has every pair of `meta`, with
    /// the cluster's `fall_back_policy` applied when none has. Computed per call: for subsets known
    /// only at request time (`header_to_metadata`).
    pub fn subset(cluster: &Cluster, meta: &[(String, String)]) -> Vec<usize> {
        let matching = |m: &mut dyn Iterator<Item = (&str, &str)>| -> Vec<usize> {
            let pairs: Vec<(&str, &str)> = m.collect();
            cluster
                .hosts
                .iter()
                .enumerate()
                .filter(|(_, h)| {
                    pairs
                        .iter()
                        .all(|(k, v)| h.metadata.get(*k).map(String::as_str) == Some(*v))
                })
                .map(|(i, _)| i)
                .collect()
        };
        let hosts = matching(&mut meta.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        if !hosts.is_empty() || meta.is_empty() {
            return hosts;
        }
        match &cluster.subset_fallback {
            mosn_config::SubsetFallback::NoFallback => Vec::new(),
            mosn_config::SubsetFallback::AnyEndpoint => (0..cluster.hosts.len()).collect(),
            mosn_config::SubsetFallback::DefaultSubset(d) => {
                matching(&mut d.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            }
        }
    }

    /// The target id for a cluster name and a metadata match (empty: every host), creating it on
    /// first use. `None` for an unknown cluster.
    pub fn resolve(&mut self, name: &str, meta: &BTreeMap<String, String>) -> Option<usize> {
        let cluster = self.clusters.iter().find(|c| c.name == name)?.clone();
        let matching = |m: &BTreeMap<String, String>| -> Vec<usize> {
            cluster
                .hosts
                .iter()
                .enumerate()
                .filter(|(_, h)| m.iter().all(|(k, v)| h.metadata.get(k) == Some(v)))
                .map(|(i, _)| i)
                .collect()
        };
        let mut hosts = matching(meta);
        if hosts.is_empty() && !meta.is_empty() {
            // MOSN's fall_back_policy for a subset with no host.
            hosts = match &cluster.subset_fallback {
                mosn_config::SubsetFallback::NoFallback => Vec::new(),
                mosn_config::SubsetFallback::AnyEndpoint => (0..cluster.hosts.len()).collect(),
                mosn_config::SubsetFallback::DefaultSubset(d) => matching(d),
            };
        }
        if let Some(i) = self
            .targets
            .iter()
            .position(|t| Arc::ptr_eq(&t.cluster, &cluster) && t.hosts == hosts)
        {
            return Some(i);
        }
        let total_weight = hosts.iter().map(|i| cluster.hosts[*i].weight as u64).sum();
        self.targets.push(Target {
            cluster,
            hosts,
            total_weight,
        });
        Some(self.targets.len() - 1)
    }
}
