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
    held: Held,
    spare: Spare,
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
            let mut spare = self.spare.lock().unwrap_or_else(|e| e.into_inner());
            let (socks, actual) = bind(info, self.workers.len(), false, &mut spare)?;
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
        {
            let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            held.retain(|(slot, _)| !removed.contains(slot));
            for (slot, socks, _, _) in &bound {
                for b in socks.iter().flatten() {
                    if let Ok(fd) = b.dup() {
                        held.push((*slot, fd));
                    }
                }
            }
        }
        for (slot, socks, _, _) in bound {
            for (w, per_worker) in self.workers.iter().zip(socks) {
                for sock in per_worker {
                    let _ = w.send(WorkerCmd::Listen(slot, sock));
                }
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
    held: Held,
    spare: Spare,
    transfer: Arc<crate::transfer::Target>,
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
        Server::start_inheriting(cfg, workers, &mut Vec::new())
    }

    /// As [`Server::start`], adopting the sockets of `inherited` whose addresses are listeners'
    /// (a hot upgrade's handed-over sockets); those it does not use stay in `inherited`.
    ///
    /// Errors: [`StartError`].
    pub fn start_inheriting(
        cfg: &Config,
        workers: Option<usize>,
        inherited: &mut Vec<std::os::fd::OwnedFd>,
    ) -> Result<Server, StartError> {
        let snapshot = Arc::new(Snapshot::build(cfg)?);
        let n = workers
            .or(cfg.server.processor)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1);
        let mut addrs = Vec::new();
        // Per worker: (listener index, socket). Virtual listeners (`bind_port: false`) have none.
        let mut sockets: Vec<Vec<(usize, Bound)>> = (0..n).map(|_| Vec::new()).collect();
        let mut held = Vec::new();
        for (li, info) in snapshot.listeners.iter().enumerate() {
            let (per_worker, actual) = bind(info, n, true, inherited)?;
            for (w, socks) in per_worker.into_iter().enumerate() {
                for b in socks {
                    held.push((li, b.dup().map_err(|e| StartError::Worker(w, e))?));
                    sockets[w].push((li, b));
                }
            }
            addrs.push((info.name.clone(), actual));
        }
        let logs = Arc::new(AccessLogs::open(cfg, &cfg.server.global_log_roller)?);
        let config = Arc::new(ArcSwap::new(snapshot));
        let (tx, rx) = watch::channel(false);
        let mut stats = Vec::new();
        let mut threads = Vec::new();
        let mut cmds = Vec::new();
        let transfer = Arc::new(crate::transfer::Target::default());
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
                .spawn({
                    let transfer = transfer.clone();
                    move || run_worker(id, rt, socks, config, st, logs, rx, cmd_rx, transfer)
                })
                .map_err(|e| StartError::Worker(id, e))?;
            threads.push(t);
        }
        Ok(Server {
            listeners: Arc::new(std::sync::Mutex::new(addrs)),
            held: Arc::new(std::sync::Mutex::new(held)),
            spare: Arc::new(std::sync::Mutex::new(Vec::new())),
            transfer,
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

    /// Hot upgrade, old process: from now on, idle HTTP/1 keep-alive connections move to the new
    /// process's `conn.sock` at `path` instead of closing (call before [`Server::shutdown`]).
    pub fn transfer_connections_to(&self, path: std::path::PathBuf) {
        self.transfer.set(path);
    }

    /// Hot upgrade, new process: what takes connections the old process moves here.
    pub fn adopter(&self) -> crate::transfer::Adopter {
        crate::transfer::Adopter {
            config: self.config.clone(),
            workers: self.cmds.clone(),
            next: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            ids: Arc::new(std::sync::atomic::AtomicU32::new(1)),
            late: Default::default(),
        }
    }

    /// Keeps handed-over sockets that no listener took at start, for listeners a control plane
    /// or a reload adds later (their connections then queue on the same sockets).
    pub fn keep_spare_sockets(&self, fds: Vec<std::os::fd::OwnedFd>) {
        self.spare
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(fds);
    }

    /// A function closing the handed-over sockets no listener took (callable from any thread);
    /// it returns how many it closed.
    pub fn spare_closer(&self) -> impl Fn() -> usize + Send + 'static {
        let spare = self.spare.clone();
        move || {
            let mut s = spare.lock().unwrap_or_else(|e| e.into_inner());
            let n = s.len();
            s.clear();
            n
        }
    }

    /// Duplicates of every listening socket of the live listeners, in slot order: what a hot
    /// upgrade hands over to the new process (which then accepts on the same sockets).
    ///
    /// Errors: a descriptor could not be duplicated (descriptors exhausted).
    pub fn listener_sockets(&self) -> std::io::Result<Vec<std::os::fd::OwnedFd>> {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.iter().map(|(_, fd)| fd.try_clone()).collect()
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
            held: self.held.clone(),
            spare: self.spare.clone(),
        }
    }

    /// Drains: stops accepting, closes idle `proxy` connections, lets busy ones finish their
    /// request (answered with `Connection: close`), and waits up to `grace` for them; then stops
    /// the workers. Returns the number of requests and `proxy` connections still open when it gave
    /// up (0 when drained).
    pub fn shutdown(mut self, grace: Duration) -> u64 {
        self.spare.lock().unwrap_or_else(|e| e.into_inner()).clear();
        // The kept duplicates go first, so the sockets close when the workers stop accepting (a
        // listening socket that stays open queues connections nobody accepts).
        self.held.lock().unwrap_or_else(|e| e.into_inner()).clear();
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
        self.held.lock().unwrap_or_else(|e| e.into_inner()).clear();
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

/// Binds a listener once per worker (`bind_port: false`: no socket), or adopts the sockets a
/// previous process handed over for its address (hot upgrade: taken out of `inherited`; the same
/// sockets, so connections queued on them are not lost). Returns each worker's sockets (a worker
/// may get several when more were inherited than there are workers) and the bound address (the
/// port the OS chose for port 0).
///
/// Errors: [`StartError::Bind`]. With `check_holder`, an address another process holds is
/// reported with that process (`mosn_net::holder`); at run time the server may hold it itself.
fn bind(
    l: &ListenerInfo,
    workers: usize,
    check_holder: bool,
    inherited: &mut Vec<std::os::fd::OwnedFd>,
) -> Result<(Vec<Vec<Bound>>, ListenAddr), StartError> {
    use mosn_net::fdpass::{same_listen_addr, socket_kind, SocketKind};
    let mut out: Vec<Vec<Bound>> = (0..workers).map(|_| Vec::new()).collect();
    if !l.bind_port {
        return Ok((out, l.address.clone()));
    }
    let bind_err = |error| StartError::Bind {
        name: l.name.clone(),
        address: l.address.clone(),
        error,
    };
    // Sockets handed over for this address.
    let mut adopted = Vec::new();
    let mut i = 0;
    while i < inherited.len() {
        let hit = match (socket_kind(&inherited[i]), &l.address) {
            (Some(SocketKind::Tcp(a)), ListenAddr::Tcp(w))
            | (Some(SocketKind::Udp(a)), ListenAddr::Udp(w)) => same_listen_addr(a, *w),
            (Some(SocketKind::Unix(a)), ListenAddr::Unix(w)) => &a == w,
            _ => false,
        };
        if hit {
            adopted.push(inherited.swap_remove(i));
        } else {
            i += 1;
        }
    }
    if !adopted.is_empty() {
        let sessions = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let make = |fd: std::os::fd::OwnedFd| -> std::io::Result<Bound> {
            Ok(match &l.address {
                ListenAddr::Tcp(_) => {
                    let s = std::net::TcpListener::from(fd);
                    s.set_nonblocking(true)?;
                    Bound::Tcp(s)
                }
                ListenAddr::Udp(_) => {
                    let s = std::net::UdpSocket::from(fd);
                    s.set_nonblocking(true)?;
                    Bound::Udp(s, sessions.clone())
                }
                ListenAddr::Unix(_) => {
                    let s = std::os::unix::net::UnixListener::from(fd);
                    s.set_nonblocking(true)?;
                    Bound::Unix(s)
                }
            })
        };
        let actual = match &l.address {
            ListenAddr::Unix(_) => l.address.clone(),
            a => match (a, socket_kind(&adopted[0])) {
                (ListenAddr::Udp(_), Some(SocketKind::Udp(s))) => ListenAddr::Udp(s),
                (ListenAddr::Tcp(_), Some(SocketKind::Tcp(s))) => ListenAddr::Tcp(s),
                _ => a.clone(),
            },
        };
        let k = adopted.len();
        // Every adopted socket is served; workers beyond them share duplicates.
        let dups: Vec<std::os::fd::OwnedFd> = (k..workers)
            .map(|w| adopted[w % k].try_clone())
            .collect::<std::io::Result<_>>()
            .map_err(bind_err)?;
        for (j, fd) in adopted.into_iter().chain(dups).enumerate() {
            out[j % workers].push(make(fd).map_err(bind_err)?);
        }
        return Ok((out, actual));
    }
    let transparent = l.original_dst == Some(mosn_net::original_dst::Mode::Tproxy);
    let actual = match &l.address {
        ListenAddr::Tcp(a) => {
            if check_holder {
                mosn_net::holder::ensure_free(*a, false).map_err(bind_err)?;
            }
            let first = mosn_net::bind_reuseport_with(*a, transparent).map_err(bind_err)?;
            let actual = first.local_addr().map_err(bind_err)?;
            out[0].push(Bound::Tcp(first));
            for o in out.iter_mut().skip(1) {
                o.push(Bound::Tcp(
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
            out[0].push(Bound::Udp(first, sessions.clone()));
            for o in out.iter_mut().skip(1) {
                let b = mosn_net::bind_udp_reuseport(actual).map_err(bind_err)?;
                o.push(Bound::Udp(b, sessions.clone()));
            }
            ListenAddr::Udp(actual)
        }
        ListenAddr::Unix(p) => {
            let first = mosn_net::bind_unix(p).map_err(bind_err)?;
            for o in out.iter_mut().skip(1) {
                o.push(Bound::Unix(first.try_clone().map_err(bind_err)?));
            }
            out[0].push(Bound::Unix(first));
            l.address.clone()
        }
    };
    Ok((out, actual))
}

impl Bound {
    /// A duplicate of the socket's descriptor (for handing it over to a new process).
    fn dup(&self) -> std::io::Result<std::os::fd::OwnedFd> {
        use std::os::fd::AsFd;
        match self {
            Bound::Tcp(s) => s.as_fd().try_clone_to_owned(),
            Bound::Unix(s) => s.as_fd().try_clone_to_owned(),
            Bound::Udp(s, _) => s.as_fd().try_clone_to_owned(),
        }
    }
}

/// Duplicates of every listening socket, by listener slot, kept for a hot upgrade.
type Held = Arc<std::sync::Mutex<Vec<(usize, std::os::fd::OwnedFd)>>>;

/// Sockets a hot upgrade handed over that no listener had at start: listeners added later (by
/// xDS, or a reload) adopt them; [`Server::drop_spare_sockets`] closes the rest.
type Spare = Arc<std::sync::Mutex<Vec<std::os::fd::OwnedFd>>>;

/// What the server asks of a running worker.
pub enum WorkerCmd {
    /// Serve a listener added at run time, at this slot, on this socket.
    Listen(usize, Bound),
    /// Stop accepting on the listener at this slot (removed at run time).
    Close(usize),
    /// Serve a connection a previous process moved here (hot upgrade), on the listener at this
    /// slot, from these unread bytes.
    Adopt(
        usize,
        crate::transfer::Moved,
        bytes::BytesMut,
        Option<crate::transfer::LateAnswers>,
    ),
    /// Serve a `tcp_proxy` connection a previous process moved here with its upstream
    /// connection, on the listener at this slot.
    AdoptPair(usize, Box<crate::transfer::MovedPair<std::net::TcpStream>>),
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
    transfer: Arc<crate::transfer::Target>,
) {
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let worker = Rc::new(Worker::new(id, config.clone(), stats, logs, transfer));
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
                    WorkerCmd::Adopt(index, s, unread, late) => {
                        let snapshot = config.load_full();
                        tokio::task::spawn_local(crate::worker::accept::adopt(
                            worker.clone(),
                            snapshot,
                            index,
                            s,
                            unread,
                            late,
                        ));
                    }
                    WorkerCmd::AdoptPair(index, pair) => {
                        let snapshot = config.load_full();
                        tokio::task::spawn_local(crate::tcp::adopt_pair(
                            worker.clone(),
                            snapshot,
                            index,
                            *pair,
                        ));
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
