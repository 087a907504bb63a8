//! Error log set-up from `default_log_path` (`stdout`, `stderr` or a file) and the log level.

use std::fs::OpenOptions;
use std::sync::Mutex;

use anyhow::Context;
use tracing_subscriber::EnvFilter;

/// Maps MOSN's level names (`DEBUG`, `INFO`, `WARN`, `ERROR`, `FATAL`, `TRACE`) to tracing's.
fn level(name: &str) -> &'static str {
    match name.to_ascii_lowercase().as_str() {
        "trace" => "trace",
        "debug" => "debug",
        "warn" | "warning" => "warn",
        "error" | "fatal" | "critical" => "error",
        _ => "info",
    }
}

/// Installs the global logger. `RUST_LOG`, when set, overrides the level.
///
/// Errors: the log file cannot be opened for appending.
pub fn init(path: Option<&str>, lvl: Option<&str>) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(level(lvl.unwrap_or("info"))));
    use std::io::IsTerminal;
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
    match path {
        None | Some("") | Some("stderr") => b.with_writer(std::io::stderr).init(),
        Some("stdout") => b.with_writer(std::io::stdout).init(),
        Some(p) => {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("opening log file {p}"))?;
            b.with_ansi(false).with_writer(Mutex::new(f)).init()
        }
    }
    Ok(())
}
