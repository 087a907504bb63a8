//! Access logs: MOSN's `access_logs[]` {`log_path`, `log_format`} on a listener, formatted when a
//! response ends and written by a writer thread per file, off the data path.

pub mod format;
pub mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use format::{Entry, Format, DEFAULT_FORMAT};
pub use writer::{LogWriter, Roller};

/// One access log of a listener: its compiled format and its file's writer.
#[derive(Clone)]
pub struct ListenerLog {
    /// The compiled format.
    pub format: Arc<Format>,
    /// The writer of its file.
    pub writer: LogWriter,
}

/// Every access-log writer of the process, one per file path, shared by the listeners that log
/// to the same file.
#[derive(Default, Clone)]
pub struct AccessLogs {
    writers: HashMap<PathBuf, LogWriter>,
    /// Logs by listener index.
    pub by_listener: Vec<Vec<ListenerLog>>,
}

/// Why the access logs could not start.
#[derive(Debug, thiserror::Error)]
pub enum AccessLogError {
    /// A format did not compile.
    #[error("listener {listener:?}: access log format: {message}")]
    Format {
        /// Listener name.
        listener: String,
        /// What is wrong.
        message: String,
    },
    /// A log file could not be opened.
    #[error("access log {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl AccessLogs {
    /// Opens the access logs of every listener. `roller` applies to every file.
    ///
    /// Errors: [`AccessLogError`].
    pub fn open(cfg: &mosn_config::Config, roller: &Roller) -> Result<AccessLogs, AccessLogError> {
        let mut logs = AccessLogs::default();
        for l in &cfg.server.listeners {
            let mut list = Vec::new();
            for a in &l.access_logs {
                let format = Format::parse(a.format.as_deref().unwrap_or(DEFAULT_FORMAT)).map_err(
                    |message| AccessLogError::Format {
                        listener: l.name.clone(),
                        message,
                    },
                )?;
                let writer = logs.writer(Path::new(&a.path), roller)?;
                list.push(ListenerLog {
                    format: Arc::new(format),
                    writer,
                });
            }
            logs.by_listener.push(list);
        }
        Ok(logs)
    }

    fn writer(&mut self, path: &Path, roller: &Roller) -> Result<LogWriter, AccessLogError> {
        if let Some(w) = self.writers.get(path) {
            return Ok(w.clone());
        }
        let w = LogWriter::start(path, roller.clone()).map_err(|source| AccessLogError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        self.writers.insert(path.to_path_buf(), w.clone());
        Ok(w)
    }

    /// Reopens every file (after an external rotation; SIGUSR1).
    pub fn reopen(&self) {
        for w in self.writers.values() {
            w.reopen();
        }
    }
}
