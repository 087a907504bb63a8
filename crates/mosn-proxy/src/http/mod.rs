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
use hyper_util::rt::TokioIo;

use mosn_net::counting::{ByteSink, CountingIo};

use crate::snapshot::Snapshot;
use crate::stats::WorkerStats;
use crate::worker::Worker;
use stream::ConnCtx;

/// Counts a client connection's bytes into its listener's stats, and notes activity for the idle
/// timeout.
struct DownstreamBytes(Arc<WorkerStats>, usize, Rc<Activity>);

impl ByteSink for DownstreamBytes {
    fn read(&self, n: usize) {
        self.2.bytes.set(self.2.bytes.get().wrapping_add(1));
        if let Some(l) = self.0.listeners.get(self.1) {
            l.bytes_read_total.add(n as u64);
        }
    }
    fn written(&self, n: usize) {
        self.2.bytes.set(self.2.bytes.get().wrapping_add(1));
        if let Some(l) = self.0.listeners.get(self.1) {
            l.bytes_write_total.add(n as u64);
        }
    }
}

/// What the idle timeout watches on a connection: reads and writes, and requests in flight.
#[derive(Default)]
pub struct Activity {
    /// Bumped on every read and write.
    pub bytes: std::cell::Cell<u64>,
    /// Requests being served (a request waiting on a slow upstream is not idle).
    pub in_flight: std::cell::Cell<u32>,
}

/// Resolves once a whole `t` passed with no byte moved and no request in flight. Checked every
/// `t`, so an idle connection closes between `t` and `2t` after its last activity; it costs the
/// data path two `Cell` updates, no timer per request.
async fn idle(a: &Activity, t: std::time::Duration) {
    let mut seen = a.bytes.get();
    loop {
        tokio::time::sleep(t).await;
        let now = a.bytes.get();
        if now == seen && a.in_flight.get() == 0 {
            return;
        }
        seen = now;
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
    let idle_timeout = snapshot.listeners[listener].idle_timeout;
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
    let activity = Rc::new(Activity::default());
    let ctx = Rc::new(ConnCtx {
        worker,
        snapshot,
        listener,
        client_ip,
        peer,
        local,
        id,
        activity: activity.clone(),
    });
    let svc = service_fn(move |req| stream::handle(ctx.clone(), req));
    let mut b = http1::Builder::new();
    // No pipeline_flush: with it, hyper 1.x drops the automatic 400/431 it writes on a parse error.
    b.max_buf_size(MAX_HEADER_BYTES);
    let io = CountingIo::new(
        stream,
        DownstreamBytes(stats.clone(), listener, activity.clone()),
    );
    let conn = b.serve_connection(TokioIo::new(io), svc);
    let conn = async move {
        if let Err(e) = conn.await {
            tracing::debug!(%peer, error = %e, "downstream connection ended with an error");
        }
    };
    match idle_timeout {
        // The connection runs as its own task, so the watcher wakes once per timeout period
        // instead of with every poll of the connection; aborting the task closes the socket.
        Some(t) => {
            let mut task = tokio::task::spawn_local(conn);
            tokio::select! {
                _ = &mut task => {}
                _ = idle(&activity, t) => task.abort(),
            }
        }
        None => conn.await,
    }
    if let Some(l) = stats.listeners.get(listener) {
        l.connection_active.dec();
        l.connection_destroy.inc();
    }
}
