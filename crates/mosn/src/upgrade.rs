//! Hot upgrade, MOSN's protocol (MOSN `pkg/server/reconfigure.go`, `pkg/server/handler.go`; the
//! team's notes §2): the running process listens on `reconfig.sock`; a new process (started by
//! SIGHUP's fork-exec, or by a second container on the same `uds_dir`, OpenKruise's way) dials it
//! and, on the 1-byte answer, takes the old process's listening sockets over `listen.sock`
//! (one `sendmsg`: the byte `0x00` with every socket as `SCM_RIGHTS`), starts on them, says it is
//! ready (`0x00`), and waits for the old process's acknowledgement (`0x00`). The old one then
//! stops accepting and drains (`graceful_timeout`), and exits; both processes accept on the same
//! sockets meanwhile, so no connection waiting in a queue is lost.
//!
//! While the old process drains, its idle HTTP/1 keep-alive connections (MOSN closes them) and
//! its Bolt and Dubbo connections between frames move to the new one over `conn.sock` (MOSN's
//! "transfer read" message), so their clients keep their connections; the answers the old
//! process still owes a moved RPC connection follow it ("transfer write"). With
//! `inherit_old_mosnconfig`, the old process also sends its effective config (the file's, with
//! what the Dubbo registry added) on `mosnconfig.sock`, and the new one runs its `servers`,
//! `cluster_manager` and `extends`.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;

/// MOSN's timeouts (notes §2.5).
const DIAL_RECONFIG: Duration = Duration::from_secs(1);
const ACCEPT_LISTEN: Duration = Duration::from_secs(10);
const DIAL_TRIES: u32 = 10;
const WAIT_READY: Duration = Duration::from_secs(600);
const WAIT_ACK: Duration = Duration::from_secs(3);

/// The upgrade sockets: in `uds_dir`, else the config file's folder (MOSN `InitDefaultPath`).
#[derive(Debug, Clone)]
pub struct Paths {
    /// `reconfig.sock`: owned by the running process.
    pub reconfig: PathBuf,
    /// `listen.sock`: owned by the new process while it takes the sockets.
    pub listen: PathBuf,
    /// `conn.sock`: owned by the new process while the old one moves connections to it.
    pub conn: PathBuf,
    /// `mosnconfig.sock`: owned by the new process while the old one sends its effective config
    /// (`inherit_old_mosnconfig`).
    pub mosnconfig: PathBuf,
}

impl Paths {
    /// The paths for a config read from `file`.
    pub fn new(cfg: &mosn_config::Config, file: Option<&Path>) -> Paths {
        let dir = match &cfg.uds_dir {
            Some(d) => PathBuf::from(d),
            None => file
                .and_then(|f| std::fs::canonicalize(f).ok())
                .and_then(|f| f.parent().map(Path::to_path_buf))
                .unwrap_or_else(|| PathBuf::from(".")),
        };
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        Paths {
            reconfig: dir.join("reconfig.sock"),
            listen: dir.join("listen.sock"),
            conn: dir.join("conn.sock"),
            mosnconfig: dir.join("mosnconfig.sock"),
        }
    }
}

/// A socket file this process made, removed on drop only if the path is still the same file (a
/// newer process may have replaced it: MOSN's old process removed the new one's socket).
pub struct OwnedPath {
    path: PathBuf,
    ino: u64,
}

impl OwnedPath {
    fn bind(path: &Path) -> std::io::Result<(UnixListener, OwnedPath)> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        let _ = std::fs::remove_file(path);
        let l = UnixListener::bind(path)?;
        let ino = std::fs::metadata(path)?.ino();
        Ok((
            l,
            OwnedPath {
                path: path.to_path_buf(),
                ino,
            },
        ))
    }
}

impl Drop for OwnedPath {
    fn drop(&mut self) {
        if std::fs::metadata(&self.path).is_ok_and(|m| m.ino() == self.ino) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// New process: true when a running process answers on `reconfig.sock` (1 byte): an upgrade.
pub fn detect(paths: &Paths) -> bool {
    let Ok(mut s) = UnixStream::connect(&paths.reconfig) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(DIAL_RECONFIG));
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(1))
}

/// New process: the old process's connection on the non-blocking listener `l`, within MOSN's
/// 10 s, made blocking with a read timeout of as much.
///
/// Errors: nothing came in time, or the socket calls failed.
fn accept_old(l: &UnixListener) -> std::io::Result<UnixStream> {
    let until = Instant::now() + ACCEPT_LISTEN;
    let s = loop {
        match l.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => return Err(e),
        }
    };
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(ACCEPT_LISTEN))?;
    Ok(s)
}

/// New process: takes the sockets the old process sends on `listen.sock`; returns them with the
/// control connection, on which [`ready`] is said later.
///
/// Errors: nothing came within 10 s, or the message is not MOSN's (one byte and the sockets).
pub fn receive(paths: &Paths) -> anyhow::Result<(UnixStream, Vec<OwnedFd>, OwnedPath)> {
    let (l, owned) = OwnedPath::bind(&paths.listen)
        .with_context(|| format!("listening on {}", paths.listen.display()))?;
    l.set_nonblocking(true)?;
    let s = accept_old(&l).context("waiting for the old process on listen.sock")?;
    let (data, fds) =
        mosn_net::fdpass::recv_fds(&s, 1).context("receiving the listening sockets")?;
    anyhow::ensure!(data == [0], "listen.sock: unexpected data {data:?}");
    Ok((s, fds, owned))
}

/// New process (`inherit_old_mosnconfig`): receives the old process's effective config on
/// `mosnconfig.sock` (accepted within 10 s, read to the end), as MOSN's `GetInheritConfig`.
///
/// Errors: nothing came, or it is not JSON.
pub fn receive_config(paths: &Paths) -> anyhow::Result<serde_json::Value> {
    let (l, _owned) = OwnedPath::bind(&paths.mosnconfig)
        .with_context(|| format!("listening on {}", paths.mosnconfig.display()))?;
    l.set_nonblocking(true)?;
    let mut s = accept_old(&l).context("waiting for the old process on mosnconfig.sock")?;
    let mut data = Vec::new();
    s.read_to_end(&mut data)?;
    serde_json::from_slice(&data).context("the inherited config is not JSON")
}

/// The config a new process runs with `inherit_old_mosnconfig`: its own file's, with `servers`,
/// `cluster_manager` and `extends` taken from the old process's effective config (MOSN keeps
/// only those three).
pub fn merge_inherited(own: &serde_json::Value, old: &serde_json::Value) -> serde_json::Value {
    let mut v = own.clone();
    for key in ["servers", "cluster_manager", "extends"] {
        match old.get(key) {
            Some(x) => v[key] = x.clone(),
            None => {
                if let Some(o) = v.as_object_mut() {
                    o.remove(key);
                }
            }
        }
    }
    v
}

/// New process: the servers run; tell the old process (`0x00`) and wait for its ack (3 s).
/// Returns the control connection, on which a mosn-rs old process goes on with its counters
/// ([`carried_metrics`]).
///
/// Errors: the old process did not answer.
pub fn ready(mut control: UnixStream) -> anyhow::Result<UnixStream> {
    control.write_all(&[0])?;
    control.set_read_timeout(Some(WAIT_ACK))?;
    let mut b = [0u8; 1];
    let n = control.read(&mut b)?;
    anyhow::ensure!(n == 1, "the old process closed before acknowledging");
    Ok(control)
}

/// What an old mosn-rs process sends on the `listen.sock` control connection after the ack
/// (mosn-rs's addition to MOSN's protocol; MOSN's new process reads the ack and closes): messages
/// of a tag byte, a `u32 BE` length and JSON.
#[derive(Debug)]
pub enum AfterAck {
    /// `M`: the counters it exported ([`mosn_admin::carried::Carried::export`]), at the ack and
    /// again, final, once drained.
    Metrics(serde_json::Value),
    /// `R`: the Dubbo registry's registrations, for the new process to make again
    /// ([`mosn_discovery::dubbo::Registry::hand_over`]).
    Registry(serde_json::Value),
}

const METRICS_TAG: u8 = b'M';
const REGISTRY_TAG: u8 = b'R';
/// Largest message after the ack, in bytes.
const MAX_METRICS: usize = 64 << 20;
/// How long a new process waits after the ack for the old one's counters (a mosn-rs old process
/// writes them with the ack; MOSN writes none).
const WAIT_METRICS: Duration = Duration::from_secs(1);

fn write_message(s: &mut UnixStream, tag: u8, v: &serde_json::Value) -> std::io::Result<()> {
    let body = v.to_string().into_bytes();
    let mut head = [tag, 0, 0, 0, 0];
    head[1..].copy_from_slice(&(body.len() as u32).to_be_bytes());
    s.write_all(&head)?;
    s.write_all(&body)
}

fn read_message(s: &mut UnixStream) -> anyhow::Result<Option<AfterAck>> {
    let mut head = [0u8; 5];
    match s.read_exact(&mut head) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    anyhow::ensure!(len <= MAX_METRICS, "a message of {len} bytes");
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    let v = serde_json::from_slice(&body)?;
    match head[0] {
        METRICS_TAG => Ok(Some(AfterAck::Metrics(v))),
        REGISTRY_TAG => Ok(Some(AfterAck::Registry(v))),
        t => anyhow::bail!("unknown message {t:#04x}"),
    }
}

/// New process, after [`ready`]: takes what the old process sends after the ack. The first
/// message (its counters, sent with the ack) is taken before returning, so the admin API answers
/// with them from its first scrape; the rest (the registry's registrations, the final counters
/// once the old process drained) on a thread, each given to `apply`.
pub fn after_ack(mut control: UnixStream, apply: impl Fn(AfterAck) + Send + 'static) {
    let _ = control.set_read_timeout(Some(WAIT_METRICS));
    match read_message(&mut control) {
        Ok(Some(m)) => apply(m),
        Ok(None) => return,
        Err(e) => {
            tracing::info!(error = %e, "hot upgrade: nothing from the old process after the ack (not mosn-rs?); metrics start at 0");
            return;
        }
    }
    let _ = control.set_read_timeout(None);
    let _ = std::thread::Builder::new()
        .name("mosn-after-ack".into())
        .spawn(move || loop {
            match read_message(&mut control) {
                Ok(Some(m)) => apply(m),
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "hot upgrade: a message from the old process was refused");
                    return;
                }
            }
        });
}

/// Old process: the new one is ready. [`Handover::acknowledge`] lets it go on.
pub struct Handover(UnixStream);

impl Handover {
    /// Acknowledges (`0x00`): the new process goes on.
    ///
    /// Errors: the new process is gone (the upgrade failed).
    pub fn acknowledge(&mut self) -> std::io::Result<()> {
        self.0.write_all(&[0])
    }

    /// This process's counters as exported, sent once it stopped answering the admin API (the
    /// new process answers it with them from then on).
    pub fn metrics(&mut self, metrics: &serde_json::Value) {
        if let Err(e) = write_message(&mut self.0, METRICS_TAG, metrics) {
            tracing::info!(error = %e, "hot upgrade: the counters did not reach the new process");
        }
    }

    /// The Dubbo registry's registrations, sent once this process stopped answering its API.
    pub fn registry(&mut self, registrations: &serde_json::Value) {
        if let Err(e) = write_message(&mut self.0, REGISTRY_TAG, registrations) {
            tracing::warn!(error = %e, "hot upgrade: the registry's registrations did not reach the new process");
        }
    }

    /// Drained: the final counters, then the control connection closes.
    pub fn finish(mut self, metrics: &serde_json::Value) {
        if let Err(e) = write_message(&mut self.0, METRICS_TAG, metrics) {
            tracing::info!(error = %e, "hot upgrade: the final counters did not reach the new process");
        }
    }
}

/// Running process: listens on `reconfig.sock` (after 1 s, as MOSN) and reports each new process
/// that asks for an upgrade (after answering it `0x00`) on `tx`. Stops when `tx` is closed.
pub fn serve_reconfig(
    paths: Paths,
    tx: tokio::sync::mpsc::UnboundedSender<()>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("mosn-reconfig".into())
        .spawn(move || {
            std::thread::sleep(Duration::from_secs(1));
            let (l, _owned) = match OwnedPath::bind(&paths.reconfig) {
                Ok(x) => x,
                Err(e) => {
                    tracing::error!(path = %paths.reconfig.display(), error = %e, "hot upgrade: cannot listen; upgrades are off");
                    return;
                }
            };
            let _ = l.set_nonblocking(true);
            tracing::info!(path = %paths.reconfig.display(), "hot upgrade: listening");
            while !tx.is_closed() {
                match l.accept() {
                    Ok((mut s, _)) => {
                        let _ = s.write_all(&[0]);
                        drop(s);
                        if tx.send(()).is_err() {
                            return;
                        }
                        // One upgrade at a time: the old process does not come back from it.
                        return;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        })
}

/// Old process: sends every listening socket to the new process on `listen.sock` (dialled 10
/// times) and waits for it to be ready (up to 10 min); [`Handover::acknowledge`] follows.
///
/// Errors: the new process could not be reached, or did not get ready.
pub fn hand_over(
    paths: &Paths,
    fds: &[OwnedFd],
    config: Option<&serde_json::Value>,
) -> anyhow::Result<Handover> {
    let mut tries = 0;
    let s = loop {
        match UnixStream::connect(&paths.listen) {
            Ok(s) => break s,
            Err(e) if tries + 1 < DIAL_TRIES => {
                tracing::debug!(error = %e, "hot upgrade: listen.sock not there yet");
                tries += 1;
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => return Err(e).context("dialling listen.sock"),
        }
    };
    let raw: Vec<_> = fds.iter().map(|f| f.as_raw_fd()).collect();
    mosn_net::fdpass::send_fds(&s, &[0], &raw).context("sending the listening sockets")?;
    // `inherit_old_mosnconfig`: the effective config on mosnconfig.sock (MOSN's
    // `SendInheritConfig`: dialled 10 times, written, closed).
    if let Some(cfg) = config {
        let mut tries = 0;
        let mut c = loop {
            match UnixStream::connect(&paths.mosnconfig) {
                Ok(c) => break c,
                Err(_) if tries + 1 < DIAL_TRIES => {
                    tries += 1;
                    std::thread::sleep(Duration::from_secs(1));
                }
                Err(e) => return Err(e).context("dialling mosnconfig.sock"),
            }
        };
        c.write_all(serde_json::to_string_pretty(cfg)?.as_bytes())?;
    }
    let mut s = s;
    s.set_read_timeout(Some(WAIT_READY))?;
    let mut b = [0u8; 1];
    let n = s.read(&mut b)?;
    anyhow::ensure!(n == 1, "the new process closed before it was ready");
    Ok(Handover(s))
}

/// New process: listens on `conn.sock` (before saying it is ready, so the old process finds it)
/// and, for `lifetime`, serves the connections the old process moves here (MOSN's
/// `TransferServer`: one unix connection per moved connection).
///
/// Errors: the socket cannot be made.
pub fn serve_moved_connections(
    paths: &Paths,
    adopter: mosn_proxy::transfer::Adopter,
    lifetime: Duration,
) -> std::io::Result<()> {
    let (l, owned) = OwnedPath::bind(&paths.conn)?;
    l.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name("mosn-conn-sock".into())
        .spawn(move || {
            let _owned = owned;
            let until = Instant::now() + lifetime;
            let mut moved = 0u64;
            while Instant::now() < until {
                match l.accept() {
                    Ok((s, _)) => {
                        let _ = s.set_nonblocking(false);
                        match adopter.serve(s) {
                            Ok(mosn_proxy::transfer::Message::Moved(_)) => moved += 1,
                            Ok(mosn_proxy::transfer::Message::Late { .. }) => {}
                            Err(e) => tracing::warn!(error = %e, "hot upgrade: a moved connection was refused"),
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
            tracing::info!(moved, "hot upgrade: conn.sock closed");
        })?;
    Ok(())
}

/// SIGHUP: starts this program again with the same arguments, environment and standard streams
/// (MOSN's fork-exec); the child then asks for the upgrade on `reconfig.sock`.
///
/// Errors: the program could not be started.
pub fn fork_exec() -> anyhow::Result<std::process::Child> {
    let exe = std::env::current_exe().context("finding this program")?;
    let child = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .spawn()
        .context("starting the new process")?;
    Ok(child)
}
