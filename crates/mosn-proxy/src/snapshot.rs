//! The immutable runtime view of a config: compiled route tables, the cluster manager and the
//! listeners. Workers read it through an `ArcSwap`, so a later config change publishes a new one
//! without locks on the data path.

use std::sync::Arc;
use std::time::Duration;

use mosn_config::Config;
use mosn_router::RouteTable;
use mosn_upstream::ClusterManager;

/// What a listener needs at run time.
#[derive(Debug, Clone)]
pub struct ListenerInfo {
    /// `name`.
    pub name: String,
    /// Index into [`Snapshot::tables`].
    pub table: usize,
    /// `connection_idle_timeout`.
    pub idle_timeout: Option<Duration>,
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

/// A snapshot that could not be built (mosn-config validated the config, so this means a bug).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct SnapshotError(#[from] mosn_router::BuildError);

impl Snapshot {
    /// Compiles a validated config.
    ///
    /// Errors: a route table that does not compile (unknown cluster, bad regex).
    pub fn build(cfg: &Config) -> Result<Snapshot, SnapshotError> {
        let mut cm = ClusterManager::new(&cfg.clusters);
        let tables = cfg
            .server
            .routers
            .iter()
            .map(|r| RouteTable::new(r, &mut |name, meta| cm.resolve(name, meta)))
            .collect::<Result<Vec<_>, _>>()?;
        let listeners = cfg
            .server
            .listeners
            .iter()
            .map(|l| ListenerInfo {
                name: l.name.clone(),
                table: tables
                    .iter()
                    .position(|t| t.name == l.proxy.router_config_name)
                    .unwrap_or(0),
                idle_timeout: l.connection_idle_timeout,
            })
            .collect();
        Ok(Snapshot {
            tables,
            clusters: Arc::new(cm),
            listeners,
        })
    }
}
