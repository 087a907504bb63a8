//! What one worker owns: stats, pools, access-log batches, load-balancer state, and the drain flag.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use mosn_upstream::{ClusterManager, LbState, Pools, Target};

use crate::access_log::{AccessLogs, LocalLogs};
use crate::snapshot::Snapshot;
use crate::stats::WorkerStats;

/// A host subset chosen at request time: cluster index and sorted metadata pairs.
type SubsetKey = (usize, Vec<(String, String)>);

/// Load-balancer state and per-host active request counts, for one cluster manager.
struct LbCache {
    clusters: Arc<ClusterManager>,
    states: Vec<LbState>,
    active: Vec<Cell<u32>>,
    /// Host subsets chosen at request time (filter metadata): `(cluster, metadata)` → target and
    /// its balancer state.
    dynamic: HashMap<SubsetKey, (Target, LbState)>,
}

impl LbCache {
    fn new(clusters: &Arc<ClusterManager>) -> Self {
        LbCache {
            clusters: clusters.clone(),
            states: clusters.targets.iter().map(LbState::new).collect(),
            active: (0..clusters.host_count).map(|_| Cell::new(0)).collect(),
            dynamic: HashMap::new(),
        }
    }
}

/// Most request-time subsets a worker remembers per snapshot; past it they are computed per request.
const MAX_DYNAMIC_SUBSETS: usize = 1024;

/// One worker's state.
pub struct Worker {
    /// Worker number, from 0.
    pub id: usize,
    /// The server's current config snapshot (replaced at run time by a `Rerouter`).
    pub config: Arc<arc_swap::ArcSwap<Snapshot>>,
    /// This worker's counters.
    pub stats: Arc<WorkerStats>,
    /// Upstream connection pools.
    pub pools: Pools,
    /// Multiplexed upstream pools of the RPC protocols.
    pub xpools: crate::xprotocol::XPools,
    /// Access logs by listener.
    pub logs: Arc<AccessLogs>,
    /// This worker's batches of access-log lines.
    pub local_logs: LocalLogs,
    /// True once the server drains (SIGTERM): keep-alive connections close after their next
    /// response, idle ones at once.
    pub draining: Cell<bool>,
    /// Wakes idle connections when the drain starts.
    pub drain: tokio::sync::Notify,
    /// When the drain started (`None` before).
    pub drain_started: Cell<Option<tokio::time::Instant>>,
    /// Where idle connections move on a hot upgrade (set in the old process).
    pub transfer: Arc<crate::transfer::Target>,
    /// True once a config applied at run time removed a listener: connections then look up
    /// whether theirs is gone (see `ConnCtx::draining`); until then they need not.
    pub listener_removed: Cell<bool>,
    lb: RefCell<LbCache>,
    connections: Cell<u64>,
}

/// Counts a request in flight to a host for least-request balancing; released on drop.
pub struct Busy<'a>(&'a Worker, usize);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.0.lb.borrow().active.get(self.1) {
            c.set(c.get().saturating_sub(1));
        }
    }
}

impl Worker {
    /// A worker for the clusters of the snapshot in `config`; `stats` must be sized for it.
    pub fn new(
        id: usize,
        config: Arc<arc_swap::ArcSwap<Snapshot>>,
        stats: Arc<WorkerStats>,
        logs: Arc<AccessLogs>,
        transfer: Arc<crate::transfer::Target>,
    ) -> Self {
        let snapshot = config.load_full();
        Worker {
            id,
            config,
            pools: Pools::new(stats.upstream.clone()),
            xpools: Default::default(),
            stats,
            local_logs: LocalLogs::new(&logs),
            logs,
            draining: Cell::new(false),
            drain_started: Cell::new(None),
            listener_removed: Cell::new(false),
            transfer,
            drain: tokio::sync::Notify::new(),
            lb: RefCell::new(LbCache::new(&snapshot.clusters)),
            connections: Cell::new(0),
        }
    }

    /// Starts the drain: sets [`Worker::draining`] and wakes idle connections.
    pub fn start_drain(&self) {
        self.draining.set(true);
        self.drain_started.set(Some(tokio::time::Instant::now()));
        self.drain.notify_waiters();
    }

    /// A connection id unique within the process: the worker number in the top 16 bits, this
    /// worker's count below.
    pub fn next_connection_id(&self) -> u64 {
        let n = self.connections.get() + 1;
        self.connections.set(n);
        ((self.id as u64) << 48) | n
    }

    fn cache(&self, snapshot: &Snapshot) {
        let stale = !Arc::ptr_eq(&self.lb.borrow().clusters, &snapshot.clusters);
        if stale {
            *self.lb.borrow_mut() = LbCache::new(&snapshot.clusters);
        }
    }

    /// Picks a host of a target with this worker's load balancer: an index into the target
    /// cluster's `hosts`, or `None` when the target has no host. With `metadata` (set by stream
    /// filters), only hosts of the target's cluster whose metadata matches are candidates, with
    /// the cluster's `fall_back_policy`.
    pub fn pick_host(
        &self,
        snapshot: &Snapshot,
        target: usize,
        metadata: &[(String, String)],
    ) -> Option<usize> {
        self.cache(snapshot);
        let t = snapshot.clusters.targets.get(target)?;
        if !metadata.is_empty() {
            return self.pick_dynamic(t, metadata);
        }
        let cache = self.lb.borrow();
        let active = |id: usize| cache.active.get(id).map_or(0, Cell::get);
        cache.states.get(target)?.pick(t, &active)
    }

    fn pick_dynamic(&self, t: &Target, metadata: &[(String, String)]) -> Option<usize> {
        let mut cache = self.lb.borrow_mut();
        let mut meta = metadata.to_vec();
        meta.sort();
        meta.dedup_by(|a, b| a.0 == b.0);
        let key = (t.cluster.index, meta);
        if !cache.dynamic.contains_key(&key) {
            let hosts = ClusterManager::subset(&t.cluster, &key.1);
            let total_weight = hosts
                .iter()
                .map(|i| t.cluster.hosts[*i].weight as u64)
                .sum();
            let target = Target {
                cluster: t.cluster.clone(),
                hosts,
                total_weight,
            };
            let lb = LbState::new(&target);
            if cache.dynamic.len() >= MAX_DYNAMIC_SUBSETS {
                let active = |id: usize| cache.active.get(id).map_or(0, Cell::get);
                return lb.pick(&target, &active);
            }
            cache.dynamic.insert(key.clone(), (target, lb));
        }
        let cache = &*cache;
        let (target, lb) = cache.dynamic.get(&key)?;
        let active = |id: usize| cache.active.get(id).map_or(0, Cell::get);
        lb.pick(target, &active)
    }

    /// Marks one request in flight to host `host_id` until the guard drops.
    pub fn busy(&self, host_id: usize) -> Busy<'_> {
        if let Some(c) = self.lb.borrow().active.get(host_id) {
            c.set(c.get() + 1);
        }
        Busy(self, host_id)
    }
}

/// A unix connection has no IP address; `0.0.0.0:0` stands for its addresses in logs and routes.
pub const UNIX_PEER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);
