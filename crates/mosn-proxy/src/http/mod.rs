//! The `proxy` network filter for HTTP/1.1 (downstream `Http1` or `Auto`, upstream `Http1`).
//!
//! hyper is the HTTP/1 codec: keep-alive, chunked and `Content-Length` bodies streamed both ways,
//! `Expect: 100-continue`, HEAD/204/304 without bodies, pipelined requests answered in order, 400
//! and close on a malformed request, 431 past the header size limit.

pub mod body;
pub mod headers;
pub mod info;
pub mod stream;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use http::HeaderValue;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};

use mosn_net::counting::{ByteSink, CountingIo};

use crate::snapshot::Snapshot;
use crate::stats::WorkerStats;
use crate::worker::Worker;
use stream::ConnCtx;

/// Counts a client connection's bytes into its listener's stats.
struct DownstreamBytes(Arc<WorkerStats>, usize);

impl ByteSink for DownstreamBytes {
    fn read(&self, n: usize) {
        if let Some(l) = self.0.listeners.get(self.1) {
            l.bytes_read_total.add(n as u64);
        }
    }
    fn written(&self, n: usize) {
        if let Some(l) = self.0.listeners.get(self.1) {
            l.bytes_write_total.add(n as u64);
        }
    }
}

/// Largest request head accepted, in bytes (target plus header lines); a larger one gets 431 and
/// the connection closes. Envoy's default is 60 KiB.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Serves one downstream HTTP/1 connection until it closes. `peer` and `local` are the TCP
/// addresses ([`crate::worker::UNIX_PEER`] for a unix socket).
pub async fn serve_connection<T>(
    worker: Rc<Worker>,
    snapshot: Arc<Snapshot>,
    listener: usize,
    stream: T,
    peer: SocketAddr,
    local: SocketAddr,
) where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
{
    let idle = snapshot.listeners[listener].idle_timeout;
    let client_ip = if peer == crate::worker::UNIX_PEER {
        HeaderValue::from_static("unix")
    } else {
        HeaderValue::from_str(&peer.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
    };
    let stats = worker.stats.clone();
    if let Some(l) = stats.listeners.get(listener) {
        l.connection_total.inc();
        l.connection_active.inc();
    }
    let id = worker.next_connection_id();
    let ctx = Rc::new(ConnCtx {
        worker,
        snapshot,
        listener,
        client_ip,
        peer,
        local,
        id,
    });
    let svc = service_fn(move |req| stream::handle(ctx.clone(), req));
    let mut b = http1::Builder::new();
    // No pipeline_flush: with it, hyper 1.x drops the automatic 400/431 it writes on a parse error.
    b.max_buf_size(MAX_HEADER_BYTES);
    if let Some(t) = idle {
        // hyper's header read timeout also runs while a keep-alive connection waits for its next
        // request: that is the listener's connection_idle_timeout.
        b.timer(TokioTimer::new()).header_read_timeout(t);
    }
    let io = CountingIo::new(stream, DownstreamBytes(stats.clone(), listener));
    if let Err(e) = b.serve_connection(TokioIo::new(io), svc).await {
        tracing::debug!(%peer, error = %e, "downstream connection ended with an error");
    }
    if let Some(l) = stats.listeners.get(listener) {
        l.connection_active.dec();
        l.connection_destroy.inc();
    }
}
