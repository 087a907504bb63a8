//! The access-log writer: one thread per log file, fed chunks of lines over a bounded channel so a
//! worker never blocks on disk. Workers batch lines (see [`crate::access_log::LocalLogs`]); the
//! thread buffers, flushes when its buffer fills or every [`FLUSH_EVERY`], rotates by MOSN's
//! `global_log_roller` and reopens the file on request (SIGUSR1).
//!
//! Rotation follows [`Roller`] (MOSN's `global_log_roller`).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

pub use mosn_config::Roller;

/// Chunks (each up to [`crate::access_log::BATCH_BYTES`] of lines) that may wait for the writer
/// before new ones are dropped (and counted).
pub const QUEUE_CHUNKS: usize = 1024;

/// Longest time a written line waits in the writer's buffer before reaching the file.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);

enum Msg {
    Line(String),
    Reopen,
}

/// The sending side of one log file's writer thread.
#[derive(Clone)]
pub struct LogWriter {
    tx: SyncSender<Msg>,
    dropped: Arc<AtomicU64>,
}

impl LogWriter {
    /// Opens (creating, appending) `path` and starts its writer thread.
    ///
    /// Errors: the file cannot be opened, or the thread cannot start.
    pub fn start(path: &Path, roller: Roller) -> std::io::Result<LogWriter> {
        let file = open(path)?;
        let (tx, rx) = mpsc::sync_channel(QUEUE_CHUNKS);
        let path = path.to_path_buf();
        std::thread::Builder::new()
            .name("mosn-accesslog".into())
            .spawn(move || run(path, file, roller, rx))?;
        Ok(LogWriter {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Queues whole lines (each ending in `\n`). Never blocks: when the queue is full the chunk
    /// is dropped and counted.
    pub fn write(&self, lines: String) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(Msg::Line(lines)) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Asks the thread to close and reopen its file (after an external rotation).
    pub fn reopen(&self) {
        let _ = self.tx.try_send(Msg::Reopen);
    }

    /// Chunks of lines dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// `stdout` and `stderr` as a `log_path` mean the process's own streams, as in MOSN's logger; they
/// are never rotated.
fn standard_stream(path: &Path) -> Option<&'static Path> {
    match path.to_str() {
        Some("stdout") => Some(Path::new("/dev/stdout")),
        Some("stderr") => Some(Path::new("/dev/stderr")),
        _ => None,
    }
}

fn open(path: &Path) -> std::io::Result<BufWriter<File>> {
    let path = standard_stream(path).unwrap_or(path);
    let f = OpenOptions::new().create(true).append(true).open(path)?;
    Ok(BufWriter::with_capacity(64 * 1024, f))
}

struct State {
    path: PathBuf,
    out: BufWriter<File>,
    size: u64,
    opened: Instant,
    roller: Roller,
}

impl State {
    fn rotate(&mut self) {
        let _ = self.out.flush();
        if standard_stream(&self.path).is_some() {
            return;
        }
        let stamp = time::OffsetDateTime::from(SystemTime::now())
            .format(time::macros::format_description!(
                "[year][month][day]-[hour][minute][second].[subsecond digits:3]"
            ))
            .unwrap_or_else(|_| "rotated".into());
        let mut backup = PathBuf::from(format!("{}.{stamp}", self.path.display()));
        let mut n = 1;
        while backup.exists() {
            backup = PathBuf::from(format!("{}.{stamp}.{n}", self.path.display()));
            n += 1;
        }
        if let Err(e) = std::fs::rename(&self.path, &backup) {
            tracing::warn!(path = %self.path.display(), error = %e, "access log rotation failed");
        }
        self.reopen();
        self.prune();
    }

    fn reopen(&mut self) {
        let _ = self.out.flush();
        match open(&self.path) {
            Ok(o) => {
                self.size = o.get_ref().metadata().map_or(0, |m| m.len());
                self.out = o;
                self.opened = Instant::now();
            }
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot reopen access log")
            }
        }
    }

    /// Deletes backups beyond `keep` (oldest first) and older than `age`.
    fn prune(&self) {
        let (Some(dir), Some(name)) = (self.path.parent(), self.path.file_name()) else {
            return;
        };
        let prefix = format!("{}.", name.to_string_lossy());
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut backups: Vec<(SystemTime, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        backups.sort();
        let now = SystemTime::now();
        let excess = self
            .roller
            .keep
            .map_or(0, |k| backups.len().saturating_sub(k));
        for (i, (t, p)) in backups.iter().enumerate() {
            let too_old = self
                .roller
                .max_age
                .is_some_and(|a| now.duration_since(*t).unwrap_or_default() > a);
            if i < excess || too_old {
                let _ = std::fs::remove_file(p);
            }
        }
    }

    /// Writes a chunk of whole lines; with a size limit, line by line so rotation stays exact.
    fn write(&mut self, chunk: &str) {
        if self.roller.max_bytes.is_some() {
            for line in chunk.split_inclusive('\n') {
                self.write_line(line);
            }
        } else {
            self.write_line(chunk);
        }
    }

    fn write_line(&mut self, line: &str) {
        let due_size = self
            .roller
            .max_bytes
            .is_some_and(|m| self.size > 0 && self.size + line.len() as u64 > m);
        let due_time = self
            .roller
            .every
            .is_some_and(|e| self.opened.elapsed() >= e);
        if due_size || due_time {
            self.rotate();
        }
        if self.out.write_all(line.as_bytes()).is_ok() {
            self.size += line.len() as u64;
        }
    }
}

fn run(path: PathBuf, out: BufWriter<File>, roller: Roller, rx: Receiver<Msg>) {
    let size = out.get_ref().metadata().map_or(0, |m| m.len());
    let mut st = State {
        path,
        out,
        size,
        opened: Instant::now(),
        roller,
    };
    let mut dirty_since: Option<Instant> = None;
    loop {
        let wait = dirty_since.map_or(Duration::from_secs(1), |t| {
            FLUSH_EVERY.saturating_sub(t.elapsed())
        });
        match rx.recv_timeout(wait) {
            Ok(Msg::Line(l)) => {
                st.write(&l);
                dirty_since.get_or_insert_with(Instant::now);
            }
            Ok(Msg::Reopen) => {
                st.reopen();
                dirty_since = None;
            }
            Err(RecvTimeoutError::Timeout) => {
                if st.roller.every.is_some_and(|e| st.opened.elapsed() >= e) && st.size > 0 {
                    st.rotate();
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if dirty_since.is_some_and(|t| t.elapsed() >= FLUSH_EVERY) {
            let _ = st.out.flush();
            dirty_since = None;
        }
    }
    let _ = st.out.flush();
}
