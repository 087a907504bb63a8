//! Helpers shared by the end-to-end tests of the `mosn` binary: run it, read its log, wait for
//! ports, call curl.
#![allow(dead_code)]

pub mod netns;
pub mod xds;

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub fn mosn() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mosn"))
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn corpus() -> PathBuf {
    let p = repo().join("tests/data/mosn-configs");
    assert!(
        p.is_dir(),
        "MOSN's config corpus is expected at {}",
        p.display()
    );
    p
}

/// A temporary folder, removed with everything in it when dropped. Derefs to its path.
pub struct TestDir(tempfile::TempDir);

impl std::ops::Deref for TestDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        self.0.path()
    }
}

impl AsRef<Path> for TestDir {
    fn as_ref(&self) -> &Path {
        self.0.path()
    }
}

impl AsRef<std::ffi::OsStr> for TestDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.path().as_os_str()
    }
}

/// A new temporary folder named `mosn-<name>-…` in the system's temporary directory.
pub fn temp_dir(name: &str) -> TestDir {
    TestDir(
        tempfile::Builder::new()
            .prefix(&format!("mosn-{name}-"))
            .tempdir()
            .unwrap(),
    )
}

/// A file written in a folder of its own, both removed when dropped. Derefs to the file's path.
pub struct TempFile {
    _dir: TestDir,
    path: PathBuf,
}

impl std::ops::Deref for TempFile {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for TempFile {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<std::ffi::OsStr> for TempFile {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.path.as_os_str()
    }
}

/// Writes `text` to a file `name` in a new temporary folder.
pub fn write_temp(name: &str, text: &str) -> TempFile {
    let dir = temp_dir("cli");
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    TempFile { _dir: dir, path }
}

pub fn fastrand_name() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// A running `mosn` process, killed on drop.
pub struct Proc {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    seen: std::cell::RefCell<Vec<String>>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failing test shows what the process logged.
        if std::thread::panicking() {
            let seen = self.seen.borrow();
            let rest: Vec<String> = self.lines.try_iter().collect();
            eprintln!(
                "--- log of mosn pid {} ---\n{}\n---",
                self.child.id(),
                seen.iter()
                    .chain(&rest)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
}

pub fn spawn(config: &Path) -> Proc {
    spawn_with(config, &[])
}

/// `mosn start -c config` with more arguments (`--watch`, ...).
pub fn spawn_with(config: &Path, extra: &[&str]) -> Proc {
    let mut child = mosn()
        .args(["start", "-c"])
        .arg(config)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    for r in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(r).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
    }
    Proc {
        child,
        lines: rx,
        seen: Default::default(),
    }
}

impl Proc {
    /// Waits (10 s at most) for a log line containing every one of `needles`; returns it.
    pub fn log_line(&self, needles: &[&str]) -> String {
        let hit = |l: &String| needles.iter().all(|n| l.contains(n));
        if let Some(l) = self.seen.borrow().iter().find(|l| hit(l)) {
            return l.clone();
        }
        let until = Instant::now() + Duration::from_secs(10);
        while let Ok(l) = self
            .lines
            .recv_timeout(until.saturating_duration_since(Instant::now()))
        {
            self.seen.borrow_mut().push(l.clone());
            if hit(&l) {
                return l;
            }
        }
        panic!(
            "no log line with {needles:?}; seen: {:#?}",
            self.seen.borrow()
        );
    }

    /// The `address=` of the first log line containing every one of `needles`.
    pub fn log_addr(&self, needles: &[&str]) -> SocketAddr {
        let l = self.log_line(needles);
        let a = l
            .split("address=")
            .nth(1)
            .and_then(|r| r.split_whitespace().next());
        a.and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {l:?}"))
    }

    /// Waits for the "listening" log line of a listener and returns its address.
    pub fn listener(&self, name: &str) -> SocketAddr {
        self.log_addr(&["listening", &format!("listener={name} ")])
    }

    /// Peak resident memory of the process, in KiB.
    pub fn rss_peak_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = s.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Sends a signal (`"-TERM"`, `"-USR1"`, ...) with kill(1).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} failed");
    }
}

pub fn wait_timeout(child: &mut Child, d: Duration) -> Option<i32> {
    let until = Instant::now() + d;
    while Instant::now() < until {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s.code().unwrap_or(-1));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

pub fn wait_port(addr: &str) {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if TcpStream::connect(addr).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on {addr}");
}

pub fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl is installed by .ci/install-test-deps.sh");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A response read by [`http`].
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// One HTTP/1.1 request on a new connection (`Connection: close`), read to the end.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    try_http(addr, method, path, headers, body)
        .unwrap_or_else(|| panic!("cannot connect to {addr}"))
}

/// Like [`http`], but `None` when nothing accepts the connection.
pub fn try_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Option<Reply> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    std::io::Write::write_all(&mut s, req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Some(Reply {
        status,
        head: head.to_string(),
        body: if chunked {
            dechunk(body)
        } else {
            body.to_string()
        },
    })
}

fn dechunk(mut b: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = b.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        b = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A keep-alive HTTP/1.1 upstream on 127.0.0.1:0 (std threads). Every response carries
/// `x-up: <path>` and the body `hello`; `/slow` answers after 1 s.
pub fn std_upstream() -> SocketAddr {
    text_upstream("hello")
}

/// A keep-alive HTTP/1.1 upstream answering `body` (with `x-up: <path>`) to every request; `/slow`
/// answers after 1 s. Request bodies are read by Content-Length.
pub fn text_upstream(body: &'static str) -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                let mut acc = Vec::new();
                loop {
                    let n = match s.read(&mut buf) {
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    acc.extend_from_slice(&buf[..n]);
                    while let Some(i) = acc.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&acc[..i]).to_string();
                        let len: usize = head
                            .lines()
                            .find_map(|l| {
                                let l = l.to_ascii_lowercase();
                                l.strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if acc.len() < i + 4 + len {
                            break;
                        }
                        acc.drain(..i + 4 + len);
                        let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                        if path == "/slow" {
                            std::thread::sleep(Duration::from_secs(1));
                        }
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\nx-up: {path}\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if std::io::Write::write_all(&mut s, resp.as_bytes()).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// An address where nothing listens.
pub fn closed_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Polls `f` every 10 ms until it is true or `d` passes.
pub fn eventually(d: Duration, mut f: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + d;
    while Instant::now() < until {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

/// The Python of the test venv (grpcio, h2) that scripts/install-test-deps.sh makes.
pub fn venv_python() -> PathBuf {
    let p = repo().join("target/peers/venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/install-test-deps.sh",
        p.display()
    );
    p
}

/// A child process killed (and reaped) on drop.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a peer that prints `PORT n` as its first line once it listens (the gRPC and SOFARPC
/// peer scripts); returns it and `127.0.0.1:n`.
pub fn peer_on_port(mut cmd: Command) -> (Killed, SocketAddr) {
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("peer process");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("peer output");
    let port: u16 = line
        .strip_prefix("PORT ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("peer {cmd:?} said {line:?}"));
    (Killed(child), SocketAddr::from(([127, 0, 0, 1], port)))
}

/// `node crates/mosn/tests/peers/sofa_peer.js` with npm's sofa-rpc-node and sofa-bolt-node
/// (installed by scripts/install-test-deps.sh into target/peers/sofa); the mode comes next.
pub fn sofa_node() -> Command {
    let modules = repo().join("target/peers/sofa/node_modules");
    assert!(
        modules.join("sofa-rpc-node").exists(),
        "{} is missing: run scripts/install-test-deps.sh",
        modules.display()
    );
    let mut c = Command::new("node");
    c.env("NODE_PATH", modules)
        .arg(repo().join("crates/mosn/tests/peers/sofa_peer.js"));
    c
}

/// A SOFARPC server (sofa_peer.js) answering `echo` with `name:`; `port` 0 takes one from the OS.
pub fn sofa_server(name: &str, port: u16) -> (Killed, SocketAddr) {
    let mut cmd = sofa_node();
    cmd.args(["server", name, &port.to_string()]);
    peer_on_port(cmd)
}
