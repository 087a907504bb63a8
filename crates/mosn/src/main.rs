//! `mosn`: the mosn-rs command line.
//!
//! `mosn start -c FILE` (also `mosn -c FILE`, or `MOSN_CONFIG=FILE mosn`) runs the proxy;
//! `mosn check -c FILE` validates a config and prints a summary; `mosn version` prints the version.
//! A bad config exits 1 before anything is bound, with the JSON path of the problem.

mod logging;
mod summary;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

/// MOSN-compatible cloud-native network proxy.
#[derive(Parser)]
#[command(name = "mosn", version, about, args_conflicts_with_subcommands = true)]
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
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Start(RunArgs),
    /// Validate a config and print its listeners, routes and clusters.
    Check(RunArgs),
    /// Print the version.
    Version,
}

fn load(args: &RunArgs) -> Result<mosn_config::Loaded, ExitCode> {
    let Some(path) = &args.config else {
        eprintln!("mosn: no config file: pass -c FILE or set MOSN_CONFIG");
        return Err(ExitCode::from(2));
    };
    match mosn_config::from_file(path) {
        Ok(l) => {
            for w in &l.warnings {
                eprintln!("mosn: warning: {}: {w}", path.display());
            }
            Ok(l)
        }
        Err(e) => {
            eprintln!("mosn: config error in {}: {e}", path.display());
            Err(ExitCode::from(1))
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Version) => {
            println!("mosn-rs {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some(Command::Check(args)) => match load(&args) {
            Ok(l) => {
                print!("{}", summary::summary(&l.config));
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Some(Command::Start(args)) => start(&args),
        None => start(&cli.run),
    }
}

fn start(args: &RunArgs) -> ExitCode {
    let loaded = match load(args) {
        Ok(l) => l,
        Err(code) => return code,
    };
    match run(&loaded.config, args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mosn: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cfg: &mosn_config::Config, args: &RunArgs) -> anyhow::Result<()> {
    logging::init(
        cfg.server.default_log_path.as_deref(),
        args.log_level
            .as_deref()
            .or(cfg.server.default_log_level.as_deref()),
    )?;
    // Signal handlers go in before anything is bound, so a signal sent as soon as a listener
    // answers is already handled.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("control runtime")?;
    let signals = {
        let _enter = rt.enter();
        Signals::new()?
    };
    let server = mosn_proxy::Server::start(cfg, None)?;
    for (name, addr) in server.listeners() {
        tracing::info!(listener = %name, address = %addr, "listening");
    }
    if let Some(pid) = &cfg.pid {
        std::fs::write(pid, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing pid file {pid}"))?;
    }
    let graceful = rt.block_on(signals.wait());
    if graceful {
        let grace = cfg
            .server
            .graceful_timeout
            .unwrap_or(Duration::from_secs(30));
        tracing::info!(?grace, "SIGTERM: draining");
        let left = server.shutdown(grace);
        if left > 0 {
            tracing::warn!(
                requests = left,
                "graceful timeout reached with requests in flight"
            );
        }
    } else {
        drop(server);
    }
    if let Some(pid) = &cfg.pid {
        let _ = std::fs::remove_file(pid);
    }
    Ok(())
}

/// The signals the process reacts to.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers (inside a tokio runtime context).
    fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("SIGINT handler")?,
            quit: signal(SignalKind::quit()).context("SIGQUIT handler")?,
        })
    }

    /// Waits for SIGTERM (returns true: drain) or SIGINT/SIGQUIT (returns false: stop now).
    async fn wait(mut self) -> bool {
        tokio::select! {
            _ = self.term.recv() => true,
            _ = self.int.recv() => false,
            _ = self.quit.recv() => false,
        }
    }
}
