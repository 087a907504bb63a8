//! Access logs: MOSN's `access_logs[]` {`log_path`, `log_format`} on a listener, formatted when a
//! response ends and written by a writer thread per file, off the data path.

pub mod format;
pub mod writer;

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use format::{Entry, Format, DEFAULT_FORMAT};
pub use writer::{LogWriter, Roller};

/// A worker hands its rendered lines to a file's writer in chunks of about this many bytes (or
/// every [`BATCH_EVERY`]), so the data path pays for a channel send once per chunk, not per line.
pub const BATCH_BYTES: usize = 16 * 1024;

/// Longest time a line waits in a worker's batch.
pub const BATCH_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// One access log of a listener: its compiled format and its file's writer.
#[derive(Clone)]
pub struct ListenerLog {
    /// The compiled format.
    pub format: Arc<Format>,
    /// Index of its file's writer in [`AccessLogs::writers`].
    pub writer: usize,
}

/// A worker's line batches, one per log file.
pub struct LocalLogs {
    writers: Vec<LogWriter>,
    batches: Vec<RefCell<String>>,
}

impl LocalLogs {
    /// Empty batches for every writer of `logs`.
    pub fn new(logs: &AccessLogs) -> Self {
        LocalLogs {
            writers: logs.writers.clone(),
            batches: logs
                .writers
                .iter()
                .map(|_| RefCell::new(String::new()))
                .collect(),
        }
    }

    /// Appends a line for writer `w` with `render`, handing the batch over once it is large.
    pub fn write(&self, w: usize, render: impl FnOnce(&mut String)) {
        let Some(b) = self.batches.get(w) else {
            return;
        };
        let mut b = b.borrow_mut();
        if b.capacity() == 0 {
            b.reserve(BATCH_BYTES + 1024);
        }
        render(&mut b);
        if b.len() >= BATCH_BYTES {
            let full = std::mem::replace(&mut *b, String::with_capacity(BATCH_BYTES + 1024));
            self.writers[w].write(full);
        }
    }

    /// Hands every non-empty batch to its writer.
    pub fn flush(&self) {
        for (b, w) in self.batches.iter().zip(&self.writers) {
            let mut b = b.borrow_mut();
            if !b.is_empty() {
                w.write(std::mem::take(&mut *b));
            }
        }
    }

    /// True when no log file is configured.
    pub fn is_empty(&self) -> bool {
        self.writers.is_empty()
    }
}

/// Every access-log writer of the process, one per file path, shared by the listeners that log
/// to the same file.
#[derive(Default, Clone)]
pub struct AccessLogs {
    paths: HashMap<PathBuf, usize>,
    /// One writer per file.
    pub writers: Vec<LogWriter>,
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

    fn writer(&mut self, path: &Path, roller: &Roller) -> Result<usize, AccessLogError> {
        if let Some(w) = self.paths.get(path) {
            return Ok(*w);
        }
        let w = LogWriter::start(path, roller.clone()).map_err(|source| AccessLogError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        self.writers.push(w);
        self.paths
            .insert(path.to_path_buf(), self.writers.len() - 1);
        Ok(self.writers.len() - 1)
    }

    /// Reopens every file (after an external rotation; SIGUSR1).
    pub fn reopen(&self) {
        for w in &self.writers {
            w.reopen();
        }
    }
}
