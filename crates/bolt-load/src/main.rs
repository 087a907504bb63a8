//! `bolt-load`: a SOFA Bolt load generator and echo server, to measure mosn-rs's XProtocol path
//! against a direct connection (the Node SOFARPC server tops out far below the proxy).
//!
//! ```text
//! bolt-load server [--listen 127.0.0.1:0]
//!     answers every Bolt request with a response of the same id, version and content (heartbeats
//!     with acks); prints "listening ADDR".
//! bolt-load client --target ADDR [--connections 8] [--in-flight 16] [--duration 10]
//!                  [--size 128] [--service com.example.Echo:1.0] [--v2]
//!     keeps `in-flight` requests outstanding on each of `connections` connections for `duration`
//!     seconds (a new request as soon as an answer comes), then prints one line:
//!     "requests=N errors=E rps=R p50_us=A p99_us=B max_us=C".
//! ```
//!
//! Latency is measured per request from its write to its answer, in microseconds. Answers whose
//! status is not success, or whose content differs from the request's, count as errors.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::{Bytes, BytesMut};
use clap::{Parser, Subcommand};
use mosn_api::Headers;
use mosn_protocol::bolt::{decode, status, Frame, Kind, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Parser)]
#[command(about = "Bolt load generator and echo server")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Echo server.
    Server {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
    /// Load generator.
    Client {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long, default_value_t = 8)]
        connections: usize,
        #[arg(long, default_value_t = 16)]
        in_flight: usize,
        /// Seconds.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Content bytes per request.
        #[arg(long, default_value_t = 128)]
        size: usize,
        #[arg(long, default_value = "com.example.Echo:1.0")]
        service: String,
        /// Send Bolt v2 frames (with CRC32).
        #[arg(long)]
        v2: bool,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match cli.mode {
        Mode::Server { listen } => rt.block_on(server(listen)),
        Mode::Client {
            target,
            connections,
            in_flight,
            duration,
            size,
            service,
            v2,
        } => {
            if connections == 0 || in_flight == 0 {
                bail!("--connections and --in-flight must be at least 1");
            }
            let version = if v2 {
                Version::V2 { ver1: 2, switch: 1 }
            } else {
                Version::V1
            };
            let mut req = Frame::request(version, 0);
            req.class = Bytes::from_static(b"com.alipay.sofa.rpc.core.request.SofaRequest");
            req.set("service", service.as_bytes());
            req.content = Bytes::from(vec![b'x'; size]);
            req.timeout_ms = 3000;
            let until = Instant::now() + Duration::from_secs(duration);
            let r = rt.block_on(async move {
                let mut tasks = Vec::new();
                for _ in 0..connections {
                    tasks.push(tokio::spawn(client(target, req.clone(), in_flight, until)));
                }
                let mut all = Stats::default();
                for t in tasks {
                    all.merge(t.await??);
                }
                Ok::<_, anyhow::Error>(all)
            })?;
            r.print(duration);
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

    fn print(mut self, secs: u64) {
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
            n as f64 / secs.max(1) as f64,
            at(0.50),
            at(0.99),
            self.latencies.last().copied().unwrap_or(0)
        );
    }
}

/// One connection kept at `in_flight` outstanding requests until `until`; then it waits for the
/// answers still owed (at most 5 s).
async fn client(
    target: SocketAddr,
    template: Frame,
    in_flight: usize,
    until: Instant,
) -> Result<Stats> {
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
        f.request_id = id;
        f.encode(wbuf);
    };
    for _ in 0..in_flight {
        sent[next_id as usize % in_flight] = Instant::now();
        send(next_id, &mut wbuf);
        next_id = next_id.wrapping_add(1);
        outstanding += 1;
    }
    let drain_until = until + Duration::from_secs(5);
    while outstanding > 0 {
        if !wbuf.is_empty() {
            s.write_all(&wbuf).await?;
            wbuf.clear();
        }
        let now = Instant::now();
        if now >= drain_until {
            stats.errors += outstanding as u64;
            break;
        }
        let n = tokio::time::timeout(drain_until - now, s.read_buf(&mut rbuf)).await;
        match n {
            Ok(Ok(0)) | Err(_) => {
                stats.errors += outstanding as u64;
                break;
            }
            Ok(Err(e)) => return Err(e.into()),
            Ok(Ok(_)) => {}
        }
        let now = Instant::now();
        while let Some(f) = decode(&mut rbuf).context("a Bolt answer")? {
            if f.kind != Kind::Response || f.is_heartbeat() {
                continue;
            }
            outstanding -= 1;
            let slot = f.request_id as usize % in_flight;
            let us = now
                .duration_since(sent[slot])
                .as_micros()
                .min(u32::MAX as u128) as u32;
            if f.status == status::SUCCESS && f.content == template.content {
                stats.latencies.push(us);
            } else {
                stats.errors += 1;
            }
            if now < until {
                sent[next_id as usize % in_flight] = now;
                send(next_id, &mut wbuf);
                next_id = next_id.wrapping_add(1);
                outstanding += 1;
            }
        }
    }
    Ok(stats)
}

/// The echo server: one task per connection, answers written in batches.
async fn server(listen: SocketAddr) -> Result<()> {
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
                    match decode(&mut rbuf) {
                        Ok(Some(f)) if f.is_heartbeat() => f.heartbeat_ack().encode(&mut wbuf),
                        Ok(Some(f)) if f.kind == Kind::Request => {
                            let mut r = f.hijack(status::SUCCESS);
                            r.class = Bytes::from_static(
                                b"com.alipay.sofa.rpc.core.response.SofaResponse",
                            );
                            r.content = f.content.clone();
                            r.encode(&mut wbuf);
                        }
                        Ok(Some(_)) => {}
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
