//! Error log set-up from `default_log_path` (`stdout`, `stderr` or a file) and the log level, with
//! a handle to change the level at run time (`/api/v1/update_loglevel`).

use std::fs::OpenOptions;
use std::io::IsTerminal;
use std::sync::Mutex;

use anyhow::Context;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// Maps MOSN's level names (`TRACE`, `DEBUG`, `INFO`, `WARN`, `ERROR`, `FATAL`, any case) to
/// tracing's; `None` for an unknown name.
pub fn level(name: &str) -> Option<&'static str> {
    Some(match name.to_ascii_lowercase().as_str() {
        "trace" => "trace",
        "debug" => "debug",
        "info" => "info",
        "warn" | "warning" => "warn",
        "error" | "fatal" | "critical" | "alert" => "error",
        _ => return None,
    })
}

/// Changes the level of the installed logger.
pub type LevelHandle = reload::Handle<EnvFilter, Registry>;

/// Installs the global logger. `RUST_LOG`, when set, overrides the level.
///
/// Errors: the log file cannot be opened for appending, or the level is unknown.
pub fn init(path: Option<&str>, lvl: Option<&str>) -> anyhow::Result<LevelHandle> {
    let name = lvl.unwrap_or("info");
    let lvl = level(name).with_context(|| format!("unknown log level {name:?}"))?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(lvl));
    let (filter, handle) = reload::Layer::new(filter);
    let (writer, ansi) = match path {
        None | Some("") | Some("stderr") => (
            BoxMakeWriter::new(std::io::stderr),
            std::io::stderr().is_terminal(),
        ),
        Some("stdout") => (
            BoxMakeWriter::new(std::io::stdout),
            std::io::stdout().is_terminal(),
        ),
        Some(p) => {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("opening log file {p}"))?;
            (BoxMakeWriter::new(Mutex::new(f)), false)
        }
    };
    let fmt = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_ansi(ansi)
        .with_writer(writer);
    tracing_subscriber::registry().with(filter).with(fmt).init();
    Ok(handle)
}
