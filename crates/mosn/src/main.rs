//! `mosn`: the mosn-rs command line.
//!
//! `mosn start -c FILE` (also `mosn -c FILE`, or `MOSN_CONFIG=FILE mosn`) runs the proxy;
//! `mosn check -c FILE` validates a config and prints a summary; `mosn reload -c FILE` validates it
//! and has the running mosn apply it (SIGUSR2); `mosn stop -c FILE` stops it; `mosn version` prints
//! the version.
//! A bad config exits 1 before anything is bound, with the JSON path of the problem.

mod dubbo_registry;
mod live;
mod logging;
mod summary;
mod upgrade;
mod xds;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

/// MOSN-compatible cloud-native network proxy.
#[derive(Parser)]
#[command(
    name = "mosn",
    version = concat!(env!("CARGO_PKG_VERSION"), " (mosn-rs)"),
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args, Clone)]
struct RunArgs {
    /// MOSN v2 JSON config file.
    #[arg(short = 'c', long = "config", env = "MOSN_CONFIG")]
    config: Option<PathBuf>,
    /// Log level (trace, debug, info, warn, error); overrides `default_log_level`.
    #[arg(short = 'l', long = "log-level")]
    log_level: Option<String>,
    /// Unknown config keys are errors, not warnings (for CI pipelines).
    #[arg(long)]
    strict: bool,
    /// Reload the config file when it changes on disk (checked every second), as SIGUSR2 does.
    #[arg(long)]
    watch: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Start(RunArgs),
    /// Validate a config and print its listeners, routes and clusters.
    Check(RunArgs),
    /// Stop the mosn started with this config: SIGTERM to the pid in its `pid` file, then wait.
    Stop(RunArgs),
    /// Validate the config, then have the mosn started with it (by its `pid` file) apply it
    /// without a restart (SIGUSR2): clusters, routes and listener settings; not new listeners.
    Reload(RunArgs),
    /// Print the version.
    Version,
}

fn load(args: &RunArgs) -> Result<mosn_config::Loaded, ExitCode> {
    let Some(path) = &args.config else {
        eprintln!("mosn: no config file: pass -c FILE or set MOSN_CONFIG");
        return Err(ExitCode::from(2));
    };
    let file = path.display();
    let warn = |w: &mosn_config::ConfigWarning| {
        let level = if args.strict && w.unknown_key {
            "error"
        } else {
            "warning"
        };
        eprintln!("mosn: {level}: {file}: {w}");
    };
    match mosn_config::from_file(path) {
        Ok(l) => {
            l.warnings.iter().for_each(warn);
            let unknown = l.warnings.iter().filter(|w| w.unknown_key).count();
            if args.strict && unknown > 0 {
                eprintln!("mosn: config error in {file}: {unknown} unknown key(s) (--strict)");
                return Err(ExitCode::from(1));
            }
            Ok(l)
        }
        Err(e) => {
            // The warnings first: an unknown key (`adress`) often explains the error.
            e.warnings.iter().for_each(warn);
            eprintln!("mosn: config error in {file}: {e}");
            Err(ExitCode::from(1))
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Version) => {
            // The same string as `mosn --version`.
            print!(
                "{}",
                <Cli as clap::CommandFactory>::command().render_version()
            );
            ExitCode::SUCCESS
        }
        Some(Command::Check(args)) => match load(&args) {
            // Building the runtime snapshot also reads and checks every TLS file.
            Ok(l) => match mosn_proxy::Snapshot::build(&l.config) {
                Ok(_) => {
                    print!("{}", summary::summary(&l.config));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    let file = args.config.as_deref().unwrap_or(std::path::Path::new("-"));
                    eprintln!("mosn: config error in {}: {e}", file.display());
                    ExitCode::from(1)
                }
            },
            Err(code) => code,
        },
        Some(Command::Start(args)) => start(&args),
        Some(Command::Reload(args)) => match load(&args) {
            Ok(l) => match mosn_proxy::Snapshot::build(&l.config)
                .map_err(anyhow::Error::from)
                .and_then(|_| reload_remote(&l.config))
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("mosn reload: {e:#}");
                    ExitCode::from(1)
                }
            },
            Err(code) => code,
        },
        Some(Command::Stop(args)) => match load(&args) {
            Ok(l) => match stop(&l.config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("mosn stop: {e:#}");
                    ExitCode::from(1)
                }
            },
            Err(code) => code,
        },
        None => start(&cli.run),
    }
}

fn start(args: &RunArgs) -> ExitCode {
    let loaded = match load(args) {
        Ok(l) => l,
        Err(code) => return code,
    };
    match run(&loaded, args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mosn: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(loaded: &mosn_config::Loaded, args: &RunArgs) -> anyhow::Result<()> {
    let cfg = &loaded.config;
    let level_name = args
        .log_level
        .as_deref()
        .or(cfg.server.default_log_level.as_deref())
        .unwrap_or("INFO")
        .to_ascii_uppercase();
    let level = logging::init(cfg.server.default_log_path.as_deref(), Some(&level_name))?;
    // Signal handlers go in before anything is bound, so a signal sent as soon as a listener
    // answers is already handled.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("control runtime")?;
    let mut signals = {
        let _enter = rt.enter();
        Signals::new()?
    };
    // Hot upgrade: a running mosn on the same upgrade sockets hands its listening sockets over.
    let paths = upgrade::Paths::new(cfg, args.config.as_deref());
    let mut inherited = Vec::new();
    let mut taking_over = None;
    let mut from_old = None;
    if !cfg.disable_upgrade && upgrade::detect(&paths) {
        tracing::info!(path = %paths.reconfig.display(), "hot upgrade: a running mosn answered; taking its sockets");
        let (control, fds, owned) = upgrade::receive(&paths).context("hot upgrade")?;
        tracing::info!(sockets = fds.len(), "hot upgrade: sockets received");
        if cfg.inherit_old_mosnconfig {
            let old = upgrade::receive_config(&paths).context("hot upgrade: mosnconfig.sock")?;
            let merged = upgrade::merge_inherited(&loaded.raw, &old);
            let mut l = mosn_config::from_value(&merged)
                .map_err(|e| anyhow::anyhow!("the inherited config: {e}"))?;
            if let Some(d) = args.config.as_deref().and_then(std::path::Path::parent) {
                mosn_config::resolve_paths(&mut l.config, d);
            }
            tracing::info!(
                "hot upgrade: running the old process's effective config (inherit_old_mosnconfig)"
            );
            from_old = Some(l);
        }
        inherited = fds;
        taking_over = Some((control, owned));
    }
    let loaded = from_old.as_ref().unwrap_or(loaded);
    let cfg = &loaded.config;
    let server = mosn_proxy::Server::start_inheriting(cfg, None, &mut inherited)?;
    for (name, addr) in server.listeners() {
        tracing::info!(listener = %name, address = %addr, "listening");
    }
    let mut raw = loaded.raw.clone();
    mosn_admin::api::redact(&mut raw);
    let dump = Arc::new(Mutex::new(raw));
    let live = Arc::new(live::Live::new(
        loaded,
        args.config.as_deref(),
        server.rerouter(),
        dump.clone(),
    ));
    let registry = dubbo_registry::start(loaded, live.clone(), &server, &mut inherited)?;
    let xds = xds::start(loaded, live.clone())?;
    let state = Arc::new(mosn_admin::AdminState {
        config: dump,
        stats: server.stats_view(),
        matcher: mosn_admin::prometheus::Matcher::new(&cfg.metrics),
        log_path: cfg
            .server
            .default_log_path
            .clone()
            .unwrap_or_else(|| "stderr".into()),
        log_level: Mutex::new(level_name),
        set_level: Box::new(move |l| {
            let lvl = logging::level(l).ok_or_else(|| format!("unknown log level {l:?}"))?;
            level
                .reload(tracing_subscriber::EnvFilter::new(lvl))
                .map_err(|e| e.to_string())
        }),
        stage: AtomicU8::new(mosn_admin::api::STAGE_RUNNING),
        extensions: registry
            .iter()
            .map(dubbo_registry::extension)
            .chain(xds.iter().map(|(_, s)| xds::extension(s)))
            .collect(),
        carried: Default::default(),
    });
    let mut control = if cfg.admin.is_some() || !cfg.metrics.prometheus.is_empty() {
        let c = mosn_admin::start_inheriting(
            cfg.admin.as_ref().map(|a| a.address),
            &cfg.metrics.prometheus,
            state.clone(),
            &mut inherited,
            // A new process answers once the old one has handed its counters over.
            taking_over.is_none(),
        )?;
        if let Some(a) = c.admin {
            tracing::info!(address = %a, "admin listening");
        }
        for a in &c.metrics {
            tracing::info!(address = %a, "prometheus listening");
        }
        Some(c)
    } else {
        None
    };
    // Sockets handed over that no listener of this config has yet: kept a while for listeners
    // the control plane sends (xDS), then closed.
    let spare = inherited.len();
    server.keep_spare_sockets(inherited);
    if let Some((control, _listen_sock)) = taking_over {
        // MOSN's TransferServer lifetime: 2 x graceful_timeout + 40 s.
        let grace = cfg
            .server
            .graceful_timeout
            .unwrap_or(Duration::from_secs(30));
        upgrade::serve_moved_connections(
            &paths,
            server.adopter(),
            grace * 2 + Duration::from_secs(40),
        )
        .context("hot upgrade: conn.sock")?;
        let control_conn =
            upgrade::ready(control).context("hot upgrade: the old process did not acknowledge")?;
        let (carried, reg) = (state.clone(), registry.clone());
        upgrade::after_ack(control_conn, move |m| {
            match m {
            upgrade::AfterAck::Metrics(m) => {
                if let Err(e) = carried.carried.replace(&m) {
                    tracing::warn!(error = %e, "hot upgrade: the old process's counters were refused");
                }
            }
            upgrade::AfterAck::Registry(r) => match &reg {
                Some(reg) => reg.take_over(&r),
                None => tracing::warn!("hot upgrade: the old process had a Dubbo registry, this one has none; its registrations are dropped"),
            },
        }
        });
        tracing::info!("hot upgrade: this process serves; the old one drains");
    }
    if let Some(c) = &control {
        c.open();
    }
    if let Some(pid) = &cfg.pid {
        std::fs::write(pid, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing pid file {pid}"))?;
    }
    if spare > 0 {
        let s = server.spare_closer();
        std::thread::spawn(move || {
            std::thread::sleep(SPARE_SOCKETS_FOR);
            let n = s();
            if n > 0 {
                tracing::info!(
                    sockets = n,
                    "hot upgrade: closed the sockets no listener took"
                );
            }
        });
    }
    let (upgrade_tx, mut upgrade_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut reconfig = Vec::new();
    if !cfg.disable_upgrade {
        reconfig.push(upgrade::serve_reconfig(paths.clone(), upgrade_tx.clone())?);
    }
    let mut stamp = args
        .config
        .as_deref()
        .filter(|_| args.watch)
        .map(|p| (p.to_path_buf(), file_stamp(p)));
    let mut upgraded = false;
    let mut handover = None;
    let graceful = loop {
        let next = rt.block_on(async {
            tokio::select! {
                s = signals.next() => s,
                _ = changed(&mut stamp) => Signal::Reload,
                Some(()) = upgrade_rx.recv() => Signal::Upgrade,
            }
        });
        match next {
            Signal::Reopen => {
                tracing::info!("SIGUSR1: reopening access logs");
                server.reopen_logs();
            }
            Signal::Reload => reload(args, &live),
            Signal::Drain => break true,
            Signal::Stop => break false,
            Signal::Hup if cfg.disable_upgrade => {
                tracing::warn!("SIGHUP: hot upgrade is disabled (disable_upgrade)")
            }
            Signal::Hup => match upgrade::fork_exec() {
                Ok(mut child) => {
                    tracing::info!(pid = child.id(), "SIGHUP: started the new process");
                    // Reap it whenever it ends (at once, if its upgrade fails).
                    std::thread::spawn(move || child.wait());
                }
                Err(e) => tracing::error!(error = %e, "SIGHUP: cannot start the new process"),
            },
            Signal::Upgrade => {
                let mut fds = match server.listener_sockets() {
                    Ok(f) => f,
                    Err(e) => {
                        tracing::error!(error = %e, "hot upgrade: cannot duplicate the sockets");
                        continue;
                    }
                };
                if let Some(c) = &control {
                    fds.extend(c.sockets().unwrap_or_default());
                }
                if let Some(r) = &registry {
                    fds.extend(r.api_socket());
                }
                tracing::info!(sockets = fds.len(), "hot upgrade: handing the sockets over");
                let effective = cfg.inherit_old_mosnconfig.then(|| live.effective());
                match upgrade::hand_over(&paths, &fds, effective.as_ref())
                    .and_then(|mut h| h.acknowledge().map(|()| h).map_err(Into::into))
                {
                    Ok(mut h) => {
                        upgraded = true;
                        // The new process serves the admin API from the counters this one
                        // showed last: this one stops answering it first.
                        drop(control.take());
                        h.metrics(&mosn_admin::carried::Carried::export(&state.metric_sets()));
                        // Likewise the registry's API, whose registrations the new one makes
                        // again.
                        if let Some(r) = &registry {
                            h.registry(&r.hand_over());
                        }
                        handover = Some(h);
                        server.transfer_connections_to(paths.conn.clone());
                        break true;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "hot upgrade failed; this process goes on serving");
                        reconfig.extend(upgrade::serve_reconfig(paths.clone(), upgrade_tx.clone()));
                    }
                }
            }
        }
    };
    drop(upgrade_tx);
    if upgraded {
        tracing::info!("hot upgrade: handed over; draining");
    }
    if graceful {
        state
            .stage
            .store(mosn_admin::api::STAGE_GRACEFUL_STOPPING, Ordering::Relaxed);
        let grace = cfg
            .server
            .graceful_timeout
            .unwrap_or(Duration::from_secs(30));
        // Consumers stop choosing this proxy before it stops taking calls (not on an upgrade:
        // the new process serves them).
        if let (Some(r), false) = (&registry, upgraded) {
            dubbo_registry::stop(r);
        }
        if upgraded {
            tracing::info!(?grace, "hot upgrade: draining");
        } else {
            tracing::info!(?grace, "SIGTERM: draining");
        }
        let left = server.shutdown(grace);
        if left > 0 {
            tracing::warn!(
                requests = left,
                "graceful timeout reached with requests in flight"
            );
        }
        // Drained: what this process counted meanwhile joins the new one's counters.
        if let Some(h) = handover.take() {
            h.finish(&mosn_admin::carried::Carried::export(&state.metric_sets()));
        }
    } else {
        drop(server);
    }
    drop(control);
    drop(xds);
    // The reconfig.sock thread sees the channel closed, and removes the socket if it is still
    // this process's.
    drop(upgrade_rx);
    for t in reconfig {
        let _ = t.join();
    }
    // The pid file goes only while it is still this process's (after an upgrade it is the new
    // one's: MOSN removed it, a bug the notes record).
    if let Some(pid) = &cfg.pid {
        let mine =
            std::fs::read_to_string(pid).is_ok_and(|t| t.trim() == std::process::id().to_string());
        if mine {
            let _ = std::fs::remove_file(pid);
        }
    }
    Ok(())
}

/// How long handed-over sockets no listener took wait for one (an xDS listener arriving late).
const SPARE_SOCKETS_FOR: Duration = Duration::from_secs(60);

/// SIGUSR2: reads the config file again; a valid one is applied, a bad one changes nothing and its
/// error (with the JSON path) is logged.
fn reload(args: &RunArgs, live: &live::Live) {
    let Some(path) = &args.config else {
        tracing::warn!("SIGUSR2: no config file to reload");
        return;
    };
    match mosn_config::from_file(path) {
        Ok(l) => match live.reload(&l) {
            Ok(()) => tracing::info!(file = %path.display(), "SIGUSR2: config reloaded"),
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "SIGUSR2: config not applied; the running one stays")
            }
        },
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "SIGUSR2: config error; the running one stays")
        }
    }
}

/// What tells a file's versions apart: its modification time and length.
fn file_stamp(p: &std::path::Path) -> Option<(std::time::SystemTime, u64)> {
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// With `--watch`: returns once the watched file's stamp changed (checked every second); never
/// returns without it.
async fn changed(watched: &mut Option<(PathBuf, Option<(std::time::SystemTime, u64)>)>) {
    let Some((path, last)) = watched else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = file_stamp(path);
        if now != *last {
            *last = now;
            tracing::info!(file = %path.display(), "config file changed");
            return;
        }
    }
}

/// The pid in the config's `pid` file.
fn pid_of(cfg: &mosn_config::Config) -> anyhow::Result<nix::unistd::Pid> {
    let path = cfg
        .pid
        .as_deref()
        .context("the config has no \"pid\" file to find the process by")?;
    let text = std::fs::read_to_string(path).with_context(|| format!("reading pid file {path}"))?;
    let pid: i32 = text
        .trim()
        .parse()
        .with_context(|| format!("pid file {path} holds {:?}, not a pid", text.trim()))?;
    Ok(nix::unistd::Pid::from_raw(pid))
}

/// `mosn reload`: the config was validated (a bad one exits 1 before this); SIGUSR2 to the pid in
/// its `pid` file, which makes that process read its config file again.
fn reload_remote(cfg: &mosn_config::Config) -> anyhow::Result<()> {
    let pid = pid_of(cfg)?;
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGUSR2)
        .with_context(|| format!("signalling pid {pid}"))?;
    println!("mosn (pid {pid}) asked to reload its config; the result is in its log");
    Ok(())
}

/// `mosn stop`: SIGTERM to the pid in the config's `pid` file, then waits for the process to end
/// (its graceful timeout plus 5 s).
fn stop(cfg: &mosn_config::Config) -> anyhow::Result<()> {
    let pid = pid_of(cfg)?;
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)
        .with_context(|| format!("signalling pid {pid}"))?;
    let wait = cfg
        .server
        .graceful_timeout
        .unwrap_or(Duration::from_secs(30))
        + Duration::from_secs(5);
    let until = std::time::Instant::now() + wait;
    // Gone, or a zombie waiting for its parent to reap it: either way it has stopped.
    let gone = || {
        nix::sys::signal::kill(pid, None).is_err()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| s.rsplit_once(") ").map(|(_, r)| r.starts_with('Z')))
                .unwrap_or(true)
    };
    while std::time::Instant::now() < until {
        if gone() {
            println!("mosn (pid {pid}) stopped");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    anyhow::bail!("pid {pid} still runs after {wait:?}")
}

/// What a signal asks for.
enum Signal {
    /// SIGUSR1: reopen the access logs.
    Reopen,
    /// SIGUSR2: read the config file again and apply it (see `live`).
    Reload,
    /// SIGTERM: drain, then exit.
    Drain,
    /// SIGINT or SIGQUIT: exit now.
    Stop,
    /// SIGHUP: start the new process of a hot upgrade (fork-exec).
    Hup,
    /// A new process asked for the sockets on `reconfig.sock`.
    Upgrade,
}

/// The signals the process reacts to.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
    usr2: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers (inside a tokio runtime context).
    fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("SIGINT handler")?,
            quit: signal(SignalKind::quit()).context("SIGQUIT handler")?,
            usr1: signal(SignalKind::user_defined1()).context("SIGUSR1 handler")?,
            usr2: signal(SignalKind::user_defined2()).context("SIGUSR2 handler")?,
            hup: signal(SignalKind::hangup()).context("SIGHUP handler")?,
        })
    }

    /// Waits for the next signal.
    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.usr1.recv() => Signal::Reopen,
            _ = self.usr2.recv() => Signal::Reload,
            _ = self.term.recv() => Signal::Drain,
            _ = self.int.recv() => Signal::Stop,
            _ = self.quit.recv() => Signal::Stop,
            _ = self.hup.recv() => Signal::Hup,
        }
    }
}
