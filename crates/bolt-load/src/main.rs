//! `bolt-load`: a load generator and echo server for the XProtocol RPC protocols (SOFA Bolt v1
//! and v2, Dubbo), to measure mosn-rs's XProtocol path against a direct connection (the Node
//! SOFARPC and Dubbo servers top out far below the proxy).
//!
//! ```text
//! bolt-load server [--listen 127.0.0.1:0] [--protocol bolt|dubbo]
//!     answers every request with a response of the same id (Bolt: same version and content;
//!     Dubbo: the call's String argument as the value), heartbeats with their replies; prints
//!     "listening ADDR".
//! bolt-load client --target ADDR [--protocol bolt|boltv2|dubbo] [--connections 8]
//!                  [--in-flight 16] [--duration 10] [--size 128] [--service NAME] [--v2]
//!                  [--progress]
//!     keeps `in-flight` requests outstanding on each of `connections` connections for `duration`
//!     seconds or until SIGINT/SIGTERM (a new request as soon as an answer comes), collects the
//!     answers still owed, then prints one line:
//!     "requests=N errors=E rps=R p50_us=A p99_us=B max_us=C".
//!     With `--progress`, also "progress requests=N errors=E" every 100 ms while it runs.
//!     A connection that closes with requests owed counts them as errors; it is not reopened.
//! ```
//!
//! Bolt requests carry `size` bytes of content and the `service` header. Dubbo requests are
//! hessian2 calls of `service` (default `org.apache.dubbo.demo.EchoService`), method `echo`, one
//! String argument of `size` characters, with `path` and `interface` attachments, as a Java
//! consumer sends them.
//!
//! Latency is measured per request from its write to its answer, in microseconds. Answers whose
//! status is not success, or whose content differs from the expected echo, count as errors.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::{Bytes, BytesMut};
use clap::{Parser, Subcommand, ValueEnum};
use mosn_api::Headers;
use mosn_protocol::bolt::{self, Bolt, Version};
use mosn_protocol::dubbo::{self, hessian, Dubbo};
use mosn_protocol::xprotocol::{FrameKind, XProtocol};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Parser)]
#[command(about = "XProtocol (Bolt, Dubbo) load generator and echo server")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

/// The protocol spoken.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Proto {
    Bolt,
    Boltv2,
    Dubbo,
}

#[derive(Subcommand)]
enum Mode {
    /// Echo server.
    Server {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// `bolt` serves v1 and v2 frames alike.
        #[arg(long, value_enum, default_value = "bolt")]
        protocol: Proto,
    },
    /// Load generator.
    Client {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long, value_enum, default_value = "bolt")]
        protocol: Proto,
        #[arg(long, default_value_t = 8)]
        connections: usize,
        #[arg(long, default_value_t = 16)]
        in_flight: usize,
        /// Seconds.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Content bytes (Bolt) or argument characters (Dubbo) per request.
        #[arg(long, default_value_t = 128)]
        size: usize,
        /// The Bolt `service` header or the Dubbo interface.
        #[arg(long)]
        service: Option<String>,
        /// Bolt v2 frames (with CRC32); the same as `--protocol boltv2`.
        #[arg(long)]
        v2: bool,
        /// Print the running totals every 100 ms.
        #[arg(long)]
        progress: bool,
    },
}

/// What the load generator needs of a protocol beyond [`XProtocol`].
trait Load: XProtocol + Copy {
    /// The request template (id 0) and the answer body expected for it.
    fn template(&self, size: usize, service: &str) -> (Self::Frame, Bytes);
    /// The answer body of a response.
    fn answer_body(&self, f: &Self::Frame) -> Bytes;
    /// The echo server's answer to a request.
    fn echo(&self, req: &Self::Frame) -> Self::Frame;
}

impl Load for Bolt {
    fn template(&self, size: usize, service: &str) -> (bolt::Frame, Bytes) {
        let version = if self.v2 {
            Version::V2 { ver1: 2, switch: 1 }
        } else {
            Version::V1
        };
        let mut req = bolt::Frame::request(version, 0);
        req.class = Bytes::from_static(b"com.alipay.sofa.rpc.core.request.SofaRequest");
        req.set("service", service.as_bytes());
        req.content = Bytes::from(vec![b'x'; size]);
        req.timeout_ms = 3000;
        let want = req.content.clone();
        (req, want)
    }
    fn answer_body(&self, f: &bolt::Frame) -> Bytes {
        f.content.clone()
    }
    fn echo(&self, req: &bolt::Frame) -> bolt::Frame {
        let mut r = req.hijack(bolt::status::SUCCESS);
        r.class = Bytes::from_static(b"com.alipay.sofa.rpc.core.response.SofaResponse");
        r.content = req.content.clone();
        r
    }
}

/// Dubbo's `RESPONSE_VALUE` flag, the hessian2 int 1.
const RESPONSE_VALUE: u8 = 0x91;

impl Load for Dubbo {
    fn template(&self, size: usize, service: &str) -> (dubbo::Frame, Bytes) {
        let arg = "x".repeat(size);
        let mut body = BytesMut::new();
        for s in ["2.0.2", service, "", "echo", "Ljava/lang/String;", &arg] {
            hessian::write_string(&mut body, s);
        }
        body.extend_from_slice(b"H");
        for s in ["path", service, "interface", service, "timeout", "3000"] {
            hessian::write_string(&mut body, s);
        }
        body.extend_from_slice(b"Z");
        let flags = dubbo::FLAG_REQUEST | dubbo::FLAG_TWO_WAY | dubbo::HESSIAN2;
        let req = dubbo::Frame::new(flags, 0, 0, body.freeze());
        let mut want = BytesMut::from(&[RESPONSE_VALUE][..]);
        hessian::write_string(&mut want, &arg);
        (req, want.freeze())
    }
    fn answer_body(&self, f: &dubbo::Frame) -> Bytes {
        f.body.clone()
    }
    /// The value is the call's first argument, cut out of the request as it was written.
    fn echo(&self, req: &dubbo::Frame) -> dubbo::Frame {
        let mut r = hessian::Reader::new(&req.body);
        let mut arg = None;
        if (0..5).all(|_| r.string().is_ok()) {
            let start = r.position();
            if r.skip().is_ok() {
                arg = Some(&req.body[start..r.position()]);
            }
        }
        let Some(arg) = arg else {
            return req.error_response(dubbo::status::BAD_REQUEST, "not an echo call");
        };
        let mut body = BytesMut::with_capacity(arg.len() + 1);
        body.extend_from_slice(&[RESPONSE_VALUE]);
        body.extend_from_slice(arg);
        dubbo::Frame::new(
            req.serialization(),
            dubbo::STATUS_OK,
            req.request_id,
            body.freeze(),
        )
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match cli.mode {
        Mode::Server { listen, protocol } => match protocol {
            Proto::Dubbo => rt.block_on(server(listen, Dubbo::default())),
            _ => rt.block_on(server(listen, Bolt::default())),
        },
        Mode::Client {
            target,
            protocol,
            connections,
            in_flight,
            duration,
            size,
            service,
            v2,
            progress,
        } => {
            if connections == 0 || in_flight == 0 {
                bail!("--connections and --in-flight must be at least 1");
            }
            let started = Instant::now();
            let run = Run {
                target,
                connections,
                in_flight,
                until: started + Duration::from_secs(duration),
                live: Arc::new(Live::default()),
            };
            rt.block_on(async {
                let live = run.live.clone();
                tokio::spawn(async move {
                    use tokio::signal::unix::{signal, SignalKind};
                    let (Ok(mut int), Ok(mut term)) = (
                        signal(SignalKind::interrupt()),
                        signal(SignalKind::terminate()),
                    ) else {
                        return;
                    };
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                    live.stop.store(true, Ordering::Relaxed);
                });
                if progress {
                    let live = run.live.clone();
                    tokio::spawn(async move {
                        let mut tick = tokio::time::interval(Duration::from_millis(100));
                        loop {
                            tick.tick().await;
                            println!(
                                "progress requests={} errors={}",
                                live.answered.load(Ordering::Relaxed),
                                live.errors.load(Ordering::Relaxed)
                            );
                        }
                    });
                }
            });
            let stats = match protocol {
                Proto::Dubbo => {
                    let svc = service.unwrap_or("org.apache.dubbo.demo.EchoService".into());
                    rt.block_on(run.all(Dubbo::default(), size, &svc))?
                }
                p => {
                    let bolt = Bolt {
                        v2: v2 || p == Proto::Boltv2,
                        goaway: false,
                    };
                    let svc = service.unwrap_or("com.example.Echo:1.0".into());
                    rt.block_on(run.all(bolt, size, &svc))?
                }
            };
            stats.print(started.elapsed());
            Ok(())
        }
    }
}

/// Latencies (µs) and error count of a run.
#[derive(Default)]
struct Stats {
    latencies: Vec<u32>,
    errors: u64,
}

impl Stats {
    fn merge(&mut self, o: Stats) {
        self.latencies.extend(o.latencies);
        self.errors += o.errors;
    }

    fn print(mut self, took: Duration) {
        self.latencies.sort_unstable();
        let n = self.latencies.len();
        let at = |q: f64| {
            self.latencies
                .get(((n as f64 * q) as usize).min(n.saturating_sub(1)))
                .copied()
                .unwrap_or(0)
        };
        println!(
            "requests={n} errors={} rps={:.0} p50_us={} p99_us={} max_us={}",
            self.errors,
            n as f64 / took.as_secs_f64().max(0.001),
            at(0.50),
            at(0.99),
            self.latencies.last().copied().unwrap_or(0)
        );
    }
}

/// Totals shared by a run's connections while it runs, and its stop signal.
#[derive(Default)]
struct Live {
    answered: AtomicU64,
    errors: AtomicU64,
    stop: AtomicBool,
}

/// One load run's shape.
#[derive(Clone)]
struct Run {
    target: SocketAddr,
    connections: usize,
    in_flight: usize,
    until: Instant,
    live: Arc<Live>,
}

impl Run {
    /// Every connection's client, merged.
    async fn all<P: Load>(self, proto: P, size: usize, service: &str) -> Result<Stats>
    where
        P::Frame: Clone + Sync,
    {
        let (req, want) = proto.template(size, service);
        let mut tasks = Vec::new();
        for _ in 0..self.connections {
            tasks.push(tokio::spawn(self.clone().client(
                proto,
                req.clone(),
                want.clone(),
            )));
        }
        let mut all = Stats::default();
        for t in tasks {
            all.merge(t.await??);
        }
        Ok(all)
    }

    /// One connection kept at `in_flight` outstanding requests until `until`; then it waits for
    /// the answers still owed (at most 5 s).
    async fn client<P: Load>(self, proto: P, template: P::Frame, want: Bytes) -> Result<Stats>
    where
        P::Frame: Clone + Sync,
    {
        let Run {
            target,
            in_flight,
            until,
            live,
            ..
        } = self;
        let mut s = TcpStream::connect(target)
            .await
            .with_context(|| format!("connecting to {target}"))?;
        s.set_nodelay(true)?;
        let mut stats = Stats::default();
        // Send times by slot: request id = generation * in_flight + slot.
        let mut sent = vec![Instant::now(); in_flight];
        let mut next_id: u32 = 0;
        let mut wbuf = BytesMut::new();
        let mut rbuf = BytesMut::with_capacity(64 * 1024);
        let mut outstanding = 0usize;
        let send = |id: u32, wbuf: &mut BytesMut| {
            let mut f = template.clone();
            proto.set_request_id(&mut f, u64::from(id));
            proto.encode(&f, wbuf);
        };
        for _ in 0..in_flight {
            sent[next_id as usize % in_flight] = Instant::now();
            send(next_id, &mut wbuf);
            next_id = next_id.wrapping_add(1);
            outstanding += 1;
        }
        let mut drain_until = until + Duration::from_secs(5);
        let mut stopped = false;
        while outstanding > 0 {
            if !wbuf.is_empty() {
                if s.write_all(&wbuf).await.is_err() {
                    stats.errors += outstanding as u64;
                    live.errors.fetch_add(outstanding as u64, Ordering::Relaxed);
                    break;
                }
                wbuf.clear();
            }
            let now = Instant::now();
            if !stopped && live.stop.load(Ordering::Relaxed) {
                stopped = true;
                drain_until = drain_until.min(now + Duration::from_secs(5));
            }
            if now >= drain_until {
                stats.errors += outstanding as u64;
                break;
            }
            let n = tokio::time::timeout(drain_until - now, s.read_buf(&mut rbuf)).await;
            match n {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => {
                    stats.errors += outstanding as u64;
                    live.errors.fetch_add(outstanding as u64, Ordering::Relaxed);
                    break;
                }
                Ok(Ok(_)) => {}
            }
            let now = Instant::now();
            while let Some(f) = proto.decode(&mut rbuf).context("an answer")? {
                if proto.kind(&f) != FrameKind::Response {
                    continue;
                }
                outstanding -= 1;
                let slot = proto.request_id(&f) as usize % in_flight;
                let us = now
                    .duration_since(sent[slot])
                    .as_micros()
                    .min(u32::MAX as u128) as u32;
                if proto.http_status(&f) == 200 && proto.answer_body(&f) == want {
                    stats.latencies.push(us);
                    live.answered.fetch_add(1, Ordering::Relaxed);
                } else {
                    stats.errors += 1;
                    live.errors.fetch_add(1, Ordering::Relaxed);
                }
                if now < until && !stopped {
                    sent[next_id as usize % in_flight] = now;
                    send(next_id, &mut wbuf);
                    next_id = next_id.wrapping_add(1);
                    outstanding += 1;
                }
            }
        }
        Ok(stats)
    }
}

/// The echo server: one task per connection, answers written in batches.
async fn server<P: Load>(listen: SocketAddr, proto: P) -> Result<()> {
    let l = TcpListener::bind(listen).await?;
    println!("listening {}", l.local_addr()?);
    loop {
        let (mut s, _) = l.accept().await?;
        let _ = s.set_nodelay(true);
        tokio::spawn(async move {
            let mut rbuf = BytesMut::with_capacity(64 * 1024);
            let mut wbuf = BytesMut::new();
            loop {
                match s.read_buf(&mut rbuf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                loop {
                    match proto.decode(&mut rbuf) {
                        Ok(Some(f)) => match proto.kind(&f) {
                            FrameKind::Heartbeat => {
                                proto.encode(&proto.heartbeat_reply(&f), &mut wbuf)
                            }
                            FrameKind::Request => proto.encode(&proto.echo(&f), &mut wbuf),
                            _ => {}
                        },
                        Ok(None) => break,
                        Err(_) => return,
                    }
                }
                if !wbuf.is_empty() {
                    if s.write_all(&wbuf).await.is_err() {
                        return;
                    }
                    wbuf.clear();
                }
            }
        });
    }
}
