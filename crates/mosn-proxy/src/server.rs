//! The server: binds every listener once per worker (SO_REUSEPORT), then runs the workers on their
//! own threads until shut down.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use mosn_config::Config;
use tokio::sync::watch;

use crate::access_log::{AccessLogError, AccessLogs};
use crate::snapshot::{Snapshot, SnapshotError};
use crate::stats::WorkerStats;
use crate::worker::{accept_loop, Accepting, Worker};
use mosn_config::ListenAddr;

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config did not compile into a snapshot.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// A listener address could not be bound.
    #[error("listener {name:?}: cannot bind {address}: {error}")]
    Bind {
        /// Listener name.
        name: String,
        /// Address asked for.
        address: ListenAddr,
        /// The OS error (shown in the message, not chained: it is the whole cause).
        error: std::io::Error,
    },
    /// A worker thread or runtime could not start.
    #[error("worker {0}: {1}")]
    Worker(usize, std::io::Error),
    /// An access log could not be opened.
    #[error(transparent)]
    AccessLog(#[from] AccessLogError),
}

/// Applies a new config's clusters and routes to a running server ([`Snapshot::rebuild`]): every
/// connection already open routes its next request (HTTP/1), stream (HTTP/2) or call (Bolt,
/// Dubbo) by them; streams in flight finish on the old ones. `tcp_proxy` connections keep their
/// upstream.
#[derive(Clone)]
pub struct Rerouter {
    config: Arc<ArcSwap<Snapshot>>,
    stats: Vec<Arc<WorkerStats>>,
    lock: Arc<std::sync::Mutex<()>>,
}

impl Rerouter {
    /// Compiles `cfg` against the running snapshot and publishes it.
    ///
    /// Errors: see [`Snapshot::rebuild`]; the running snapshot is then unchanged.
    pub fn apply(&self, cfg: &Config) -> Result<(), SnapshotError> {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let next = self.config.load().rebuild(cfg)?;
        // New clusters and hosts get counters before any stream can reach them.
        for w in &self.stats {
            w.upstream
                .grow(next.clusters.clusters.len(), next.clusters.host_count);
        }
        self.config.store(Arc::new(next));
        Ok(())
    }
}

/// A read-only, thread-safe view of a server's stats and config, for the admin API.
#[derive(Clone)]
pub struct StatsView {
    config: Arc<ArcSwap<Snapshot>>,
    /// Each worker's counters.
    pub workers: Vec<Arc<WorkerStats>>,
}

impl StatsView {
    /// The current config snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.config.load_full()
    }
}

/// A bound listening socket, before its worker takes it.
pub enum Bound {
    /// TCP, one socket per worker (SO_REUSEPORT).
    Tcp(std::net::TcpListener),
    /// A unix socket, shared by the workers (each holds a duplicate of the descriptor).
    Unix(std::os::unix::net::UnixListener),
    /// UDP, one socket per worker (SO_REUSEPORT).
    /// A UDP socket and the listener's open-session count, shared by all workers.
    Udp(std::net::UdpSocket, Arc<std::sync::atomic::AtomicUsize>),
}

/// A running server. Dropping it stops the workers at once.
pub struct Server {
    listeners: Vec<(String, ListenAddr)>,
    stats: Vec<Arc<WorkerStats>>,
    shutdown: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
    config: Arc<ArcSwap<Snapshot>>,
    logs: Arc<AccessLogs>,
}

impl Server {
    /// Starts `workers` workers (`None`: `servers[0].processor`, else one per available core) for a
    /// validated config. Every socket is bound before any worker starts, so a bind error leaves
    /// nothing running. A listener on port 0 gets a free port, shared by all workers; read it with
    /// [`Server::listener_addr`].
    ///
    /// Errors: [`StartError`].
    pub fn start(cfg: &Config, workers: Option<usize>) -> Result<Server, StartError> {
        let snapshot = Arc::new(Snapshot::build(cfg)?);
        let n = workers
            .or(cfg.server.processor)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1);
        let mut addrs = Vec::new();
        // Per worker: (listener index, socket). Virtual listeners (`bind_port: false`) have none.
        let mut sockets: Vec<Vec<(usize, Bound)>> = (0..n).map(|_| Vec::new()).collect();
        for (li, l) in cfg.server.listeners.iter().enumerate() {
            if !l.bind_port {
                addrs.push((l.name.clone(), l.address.clone()));
                continue;
            }
            let transparent = l.original_dst == Some(mosn_config::OriginalDst::Tproxy);
            let bind_err = |error| StartError::Bind {
                name: l.name.clone(),
                address: l.address.clone(),
                error,
            };
            match &l.address {
                ListenAddr::Tcp(a) => {
                    mosn_net::holder::ensure_free(*a, false).map_err(bind_err)?;
                    let first = mosn_net::bind_reuseport_with(*a, transparent).map_err(bind_err)?;
                    let actual = first.local_addr().map_err(bind_err)?;
                    sockets[0].push((li, Bound::Tcp(first)));
                    for s in sockets.iter_mut().skip(1) {
                        let b =
                            mosn_net::bind_reuseport_with(actual, transparent).map_err(bind_err)?;
                        s.push((li, Bound::Tcp(b)));
                    }
                    addrs.push((l.name.clone(), ListenAddr::Tcp(actual)));
                }
                ListenAddr::Udp(a) => {
                    mosn_net::holder::ensure_free(*a, true).map_err(bind_err)?;
                    let first = mosn_net::bind_udp_reuseport(*a).map_err(bind_err)?;
                    let actual = first.local_addr().map_err(bind_err)?;
                    let sessions = Arc::new(std::sync::atomic::AtomicUsize::new(0));
                    sockets[0].push((li, Bound::Udp(first, sessions.clone())));
                    for s in sockets.iter_mut().skip(1) {
                        let b = mosn_net::bind_udp_reuseport(actual).map_err(bind_err)?;
                        s.push((li, Bound::Udp(b, sessions.clone())));
                    }
                    addrs.push((l.name.clone(), ListenAddr::Udp(actual)));
                }
                ListenAddr::Unix(p) => {
                    let first = mosn_net::bind_unix(p).map_err(bind_err)?;
                    for s in sockets.iter_mut().skip(1) {
                        s.push((li, Bound::Unix(first.try_clone().map_err(bind_err)?)));
                    }
                    sockets[0].push((li, Bound::Unix(first)));
                    addrs.push((l.name.clone(), l.address.clone()));
                }
            }
        }
        let logs = Arc::new(AccessLogs::open(cfg, &cfg.server.global_log_roller)?);
        let config = Arc::new(ArcSwap::new(snapshot));
        let (tx, rx) = watch::channel(false);
        let mut stats = Vec::new();
        let mut threads = Vec::new();
        let sizes = {
            let s = config.load();
            (
                s.listeners.len(),
                s.clusters.clusters.len(),
                s.clusters.host_count,
            )
        };
        for (id, socks) in sockets.into_iter().enumerate() {
            let st = Arc::new(WorkerStats::new(sizes.0, sizes.1, sizes.2));
            let logs = logs.clone();
            stats.push(st.clone());
            let config = config.clone();
            let rx = rx.clone();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| StartError::Worker(id, e))?;
            let t = std::thread::Builder::new()
                .name(format!("mosn-worker-{id}"))
                .spawn(move || run_worker(id, rt, socks, config, st, logs, rx))
                .map_err(|e| StartError::Worker(id, e))?;
            threads.push(t);
        }
        Ok(Server {
            listeners: addrs,
            stats,
            shutdown: tx,
            threads,
            config,
            logs,
        })
    }

    /// Reopens every access-log file (SIGUSR1, after an external rotation).
    pub fn reopen_logs(&self) {
        self.logs.reopen();
    }

    /// The bound TCP or UDP address of a listener, by name (`None` for a unix listener).
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, a)| match a {
                ListenAddr::Tcp(a) | ListenAddr::Udp(a) => Some(*a),
                ListenAddr::Unix(_) => None,
            })
    }

    /// `(name, bound address)` of every listener, in config order.
    pub fn listeners(&self) -> &[(String, ListenAddr)] {
        &self.listeners
    }

    /// Each worker's counters.
    pub fn stats(&self) -> &[Arc<WorkerStats>] {
        &self.stats
    }

    /// A view of the stats for another thread.
    pub fn stats_view(&self) -> StatsView {
        StatsView {
            config: self.config.clone(),
            workers: self.stats.clone(),
        }
    }

    /// The current config snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.config.load_full()
    }

    /// A handle that applies new clusters and routes to the running server from any thread.
    pub fn rerouter(&self) -> Rerouter {
        Rerouter {
            config: self.config.clone(),
            stats: self.stats.clone(),
            lock: Arc::new(std::sync::Mutex::new(())),
        }
    }

    /// Drains: stops accepting, closes idle `proxy` connections, lets busy ones finish their
    /// request (answered with `Connection: close`), and waits up to `grace` for them; then stops
    /// the workers. Returns the number of requests and `proxy` connections still open when it gave
    /// up (0 when drained).
    pub fn shutdown(mut self, grace: Duration) -> u64 {
        let _ = self.shutdown.send(true);
        let until = Instant::now() + grace;
        let in_flight = |s: &Self| {
            s.stats
                .iter()
                .map(|w| {
                    w.active_requests.get().max(0) as u64 + w.active_connections.get().max(0) as u64
                })
                .sum::<u64>()
        };
        while in_flight(&self) > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        let left = in_flight(&self);
        self.stop();
        left
    }

    fn stop(&mut self) {
        let _ = self.shutdown.send(true);
        // Closing the channel ends every worker's run loop.
        let (tx, _) = watch::channel(true);
        drop(std::mem::replace(&mut self.shutdown, tx));
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run_worker(
    id: usize,
    rt: tokio::runtime::Runtime,
    sockets: Vec<(usize, Bound)>,
    config: Arc<ArcSwap<Snapshot>>,
    stats: Arc<WorkerStats>,
    logs: Arc<AccessLogs>,
    shutdown: watch::Receiver<bool>,
) {
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let worker = Rc::new(Worker::new(id, config.clone(), stats, logs));
        for (index, s) in sockets {
            let l = match s {
                Bound::Tcp(s) => tokio::net::TcpListener::from_std(s).map(Accepting::Tcp),
                Bound::Unix(s) => tokio::net::UnixListener::from_std(s).map(Accepting::Unix),
                Bound::Udp(s, sessions) => {
                    match tokio::net::UdpSocket::from_std(s) {
                        Ok(s) => {
                            tokio::task::spawn_local(crate::udp::serve(
                                worker.clone(),
                                std::rc::Rc::new(s),
                                index,
                                sessions,
                                config.clone(),
                                shutdown.clone(),
                            ));
                        }
                        Err(e) => tracing::error!(worker = id, error = %e, "udp socket unusable"),
                    }
                    continue;
                }
            };
            match l {
                Ok(l) => {
                    tokio::task::spawn_local(accept_loop(
                        worker.clone(),
                        l,
                        index,
                        config.clone(),
                        shutdown.clone(),
                    ));
                }
                Err(e) => tracing::error!(worker = id, error = %e, "listener socket unusable"),
            }
        }
        if !worker.local_logs.is_empty() {
            let w = worker.clone();
            tokio::task::spawn_local(async move {
                let mut tick = tokio::time::interval(crate::access_log::BATCH_EVERY);
                loop {
                    tick.tick().await;
                    w.local_logs.flush();
                }
            });
        }
        // Run until the server's sender is dropped (stop), serving in-flight requests meanwhile;
        // the first `true` starts the drain.
        let mut rx = shutdown;
        while rx.changed().await.is_ok() {
            if *rx.borrow() {
                worker.start_drain();
            }
        }
        worker.local_logs.flush();
    });
}
