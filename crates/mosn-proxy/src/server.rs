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
use crate::snapshot::{ListenerInfo, Snapshot, SnapshotError};
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

/// Applies a new config to a running server ([`Snapshot::rebuild`]): every connection already
/// open routes its next request (HTTP/1), stream (HTTP/2) or call (Bolt, Dubbo) by the new
/// clusters and routes; streams in flight finish on the old ones. `tcp_proxy` connections keep
/// their upstream. New listeners are bound and served by every worker; removed ones stop
/// accepting and drain (their connections close after the current request).
#[derive(Clone)]
pub struct Rerouter {
    config: Arc<ArcSwap<Snapshot>>,
    stats: Vec<Arc<WorkerStats>>,
    lock: Arc<std::sync::Mutex<()>>,
    workers: Vec<tokio::sync::mpsc::UnboundedSender<WorkerCmd>>,
    addrs: Arc<std::sync::Mutex<Vec<(String, ListenAddr)>>>,
}

/// Why a config could not be applied to a running server.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// It does not compile.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// A new listener could not be bound.
    #[error(transparent)]
    Start(#[from] StartError),
}

impl ApplyError {
    /// The listener at fault, when a bind failed.
    pub fn listener(&self) -> Option<&str> {
        match self {
            ApplyError::Start(StartError::Bind { name, .. }) => Some(name),
            _ => None,
        }
    }
}

impl Rerouter {
    /// Compiles `cfg` against the running snapshot, binds its new listeners, and publishes it.
    ///
    /// Errors: see [`Snapshot::rebuild`], or a bind error; the running server is then unchanged.
    pub fn apply(&self, cfg: &Config) -> Result<(), ApplyError> {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.config.load_full();
        let next = old.rebuild(cfg)?;
        let mut bound = Vec::new();
        for slot in old.listeners.len()..next.listeners.len() {
            let info = &next.listeners[slot];
            let (socks, actual) = bind(info, self.workers.len(), false)?;
            bound.push((slot, socks, info.name.clone(), actual));
        }
        // New clusters, hosts and listeners get counters before any stream can reach them.
        for w in &self.stats {
            w.upstream
                .grow(next.clusters.clusters.len(), next.clusters.host_count);
            w.listeners.grow(next.listeners.len());
        }
        let removed: Vec<usize> = next
            .listeners
            .iter()
            .zip(&old.listeners)
            .enumerate()
            .filter(|(_, (n, o))| n.removed_at.is_some() && o.removed_at.is_none())
            .map(|(i, _)| i)
            .collect();
        {
            let mut addrs = self.addrs.lock().unwrap_or_else(|e| e.into_inner());
            addrs.retain(|(n, _)| {
                next.listeners
                    .iter()
                    .any(|l| l.removed_at.is_none() && &l.name == n)
            });
            for (slot, _, name, actual) in &bound {
                tracing::info!(listener = %name, slot, address = %actual, "listener added");
                addrs.push((name.clone(), actual.clone()));
            }
        }
        self.config.store(Arc::new(next));
        for (slot, socks, _, _) in bound {
            for (w, sock) in self.workers.iter().zip(socks) {
                let _ = w.send(WorkerCmd::Listen(slot, sock));
            }
        }
        for slot in removed {
            tracing::info!(slot, "listener removed; draining");
            for w in &self.workers {
                let _ = w.send(WorkerCmd::Close(slot));
            }
        }
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
    listeners: Arc<std::sync::Mutex<Vec<(String, ListenAddr)>>>,
    cmds: Vec<tokio::sync::mpsc::UnboundedSender<WorkerCmd>>,
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
        for (li, info) in snapshot.listeners.iter().enumerate() {
            let (per_worker, actual) = bind(info, n, true)?;
            for (w, b) in per_worker.into_iter().enumerate() {
                sockets[w].push((li, b));
            }
            addrs.push((info.name.clone(), actual));
        }
        let logs = Arc::new(AccessLogs::open(cfg, &cfg.server.global_log_roller)?);
        let config = Arc::new(ArcSwap::new(snapshot));
        let (tx, rx) = watch::channel(false);
        let mut stats = Vec::new();
        let mut threads = Vec::new();
        let mut cmds = Vec::new();
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
            let (cmd_tx, cmd_rx) = tokio::sync::mpsc::unbounded_channel();
            cmds.push(cmd_tx);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| StartError::Worker(id, e))?;
            let t = std::thread::Builder::new()
                .name(format!("mosn-worker-{id}"))
                .spawn(move || run_worker(id, rt, socks, config, st, logs, rx, cmd_rx))
                .map_err(|e| StartError::Worker(id, e))?;
            threads.push(t);
        }
        Ok(Server {
            listeners: Arc::new(std::sync::Mutex::new(addrs)),
            cmds,
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
        self.listeners()
            .into_iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, a)| match a {
                ListenAddr::Tcp(a) | ListenAddr::Udp(a) => Some(a),
                ListenAddr::Unix(_) => None,
            })
    }

    /// `(name, bound address)` of every live listener: the config's in order, then those added
    /// at run time.
    pub fn listeners(&self) -> Vec<(String, ListenAddr)> {
        self.listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The live listeners' bound addresses, shared: kept up to date as listeners are added and
    /// removed at run time.
    pub fn listener_addrs(&self) -> Arc<std::sync::Mutex<Vec<(String, ListenAddr)>>> {
        self.listeners.clone()
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
            workers: self.cmds.clone(),
            addrs: self.listeners.clone(),
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

/// Binds a listener once per worker (`bind_port: false`: no socket). Returns the sockets, one per
/// worker (none for a virtual listener), and the bound address (the port the OS chose for port 0).
///
/// Errors: [`StartError::Bind`]. With `check_holder`, an address another process holds is
/// reported with that process (`mosn_net::holder`); at run time the server may hold it itself.
fn bind(
    l: &ListenerInfo,
    workers: usize,
    check_holder: bool,
) -> Result<(Vec<Bound>, ListenAddr), StartError> {
    if !l.bind_port {
        return Ok((Vec::new(), l.address.clone()));
    }
    let transparent = l.original_dst == Some(mosn_net::original_dst::Mode::Tproxy);
    let bind_err = |error| StartError::Bind {
        name: l.name.clone(),
        address: l.address.clone(),
        error,
    };
    let mut out = Vec::with_capacity(workers);
    let actual = match &l.address {
        ListenAddr::Tcp(a) => {
            if check_holder {
                mosn_net::holder::ensure_free(*a, false).map_err(bind_err)?;
            }
            let first = mosn_net::bind_reuseport_with(*a, transparent).map_err(bind_err)?;
            let actual = first.local_addr().map_err(bind_err)?;
            out.push(Bound::Tcp(first));
            for _ in 1..workers {
                out.push(Bound::Tcp(
                    mosn_net::bind_reuseport_with(actual, transparent).map_err(bind_err)?,
                ));
            }
            ListenAddr::Tcp(actual)
        }
        ListenAddr::Udp(a) => {
            if check_holder {
                mosn_net::holder::ensure_free(*a, true).map_err(bind_err)?;
            }
            let first = mosn_net::bind_udp_reuseport(*a).map_err(bind_err)?;
            let actual = first.local_addr().map_err(bind_err)?;
            let sessions = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            out.push(Bound::Udp(first, sessions.clone()));
            for _ in 1..workers {
                let b = mosn_net::bind_udp_reuseport(actual).map_err(bind_err)?;
                out.push(Bound::Udp(b, sessions.clone()));
            }
            ListenAddr::Udp(actual)
        }
        ListenAddr::Unix(p) => {
            let first = mosn_net::bind_unix(p).map_err(bind_err)?;
            for _ in 1..workers {
                out.push(Bound::Unix(first.try_clone().map_err(bind_err)?));
            }
            out.insert(0, Bound::Unix(first));
            l.address.clone()
        }
    };
    Ok((out, actual))
}

/// What the server asks of a running worker.
pub enum WorkerCmd {
    /// Serve a listener added at run time, at this slot, on this socket.
    Listen(usize, Bound),
    /// Stop accepting on the listener at this slot (removed at run time).
    Close(usize),
}

#[allow(clippy::too_many_arguments)]
fn run_worker(
    id: usize,
    rt: tokio::runtime::Runtime,
    sockets: Vec<(usize, Bound)>,
    config: Arc<ArcSwap<Snapshot>>,
    stats: Arc<WorkerStats>,
    logs: Arc<AccessLogs>,
    shutdown: watch::Receiver<bool>,
    mut cmds: tokio::sync::mpsc::UnboundedReceiver<WorkerCmd>,
) {
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let worker = Rc::new(Worker::new(id, config.clone(), stats, logs));
        // Each listener socket stops on its own signal: set by a `Close` or by the server's drain.
        let mut stops: std::collections::HashMap<usize, watch::Sender<bool>> = Default::default();
        let serve =
            |index: usize,
             s: Bound,
             stops: &mut std::collections::HashMap<usize, watch::Sender<bool>>| {
                let stop = stops
                    .entry(index)
                    .or_insert_with(|| watch::channel(false).0)
                    .subscribe();
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
                                    stop,
                                ));
                            }
                            Err(e) => {
                                tracing::error!(worker = id, error = %e, "udp socket unusable")
                            }
                        }
                        return;
                    }
                };
                match l {
                    Ok(l) => {
                        tokio::task::spawn_local(accept_loop(
                            worker.clone(),
                            l,
                            index,
                            config.clone(),
                            stop,
                        ));
                    }
                    Err(e) => tracing::error!(worker = id, error = %e, "listener socket unusable"),
                }
            };
        for (index, s) in sockets {
            serve(index, s, &mut stops);
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
        // the first `true` starts the drain. Listeners come and go by command meanwhile.
        let mut rx = shutdown;
        loop {
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    if *rx.borrow() {
                        for s in stops.values() {
                            let _ = s.send(true);
                        }
                        worker.start_drain();
                    }
                }
                Some(cmd) = cmds.recv() => match cmd {
                    WorkerCmd::Listen(index, s) => {
                        if worker.draining.get() {
                            continue;
                        }
                        serve(index, s, &mut stops);
                    }
                    WorkerCmd::Close(index) => {
                        worker.listener_removed.set(true);
                        if let Some(s) = stops.remove(&index) {
                            let _ = s.send(true);
                        }
                        // Idle connections of that listener look again and close.
                        worker.drain.notify_waiters();
                    }
                },
            }
        }
        worker.local_logs.flush();
    });
}
