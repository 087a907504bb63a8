//! The control plane side of a running mosn-rs: MOSN's admin HTTP API, the Prometheus metrics
//! sinks and the config dump, served on one control thread so a scrape never adds latency to a
//! request on a worker.
//!
//! Source: MOSN `pkg/admin/server` and `pkg/metrics/sink/prometheus`.

pub mod api;
pub mod carried;
pub mod metrics;
pub mod prometheus;
pub mod stats_json;

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

pub use api::{AdminState, Extension};

/// Largest admin request body read, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What the control thread serves.
enum Site {
    Admin,
    Metrics(String),
}

/// The running control thread; dropping it stops the servers.
pub struct ControlServer {
    /// Bound admin address, if any.
    pub admin: Option<SocketAddr>,
    /// Bound Prometheus sink addresses.
    pub metrics: Vec<SocketAddr>,
    /// Duplicates of the admin and sink sockets, for handing them over on a hot upgrade.
    sockets: Vec<std::os::fd::OwnedFd>,
    stop: watch::Sender<bool>,
    open: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Binds `addr`, or adopts the inherited TCP socket on its port (a hot upgrade's; MOSN matches
/// admin sockets by port only).
fn bind(
    addr: SocketAddr,
    inherited: &mut Vec<std::os::fd::OwnedFd>,
) -> std::io::Result<TcpListener> {
    use mosn_net::fdpass::{socket_kind, SocketKind};
    let hit = inherited.iter().position(|fd| {
        matches!(socket_kind(fd), Some(SocketKind::Tcp(a)) if a.port() == addr.port() && addr.port() != 0)
    });
    let l = match hit {
        Some(i) => TcpListener::from(inherited.swap_remove(i)),
        None => TcpListener::bind(addr)?,
    };
    l.set_nonblocking(true)?;
    Ok(l)
}

impl ControlServer {
    /// Starts answering, when started closed ([`start_inheriting`]'s `open: false`).
    pub fn open(&self) {
        let _ = self.open.send(true);
    }

    /// Duplicates of the admin and Prometheus sink sockets (for a hot upgrade).
    ///
    /// Errors: a descriptor could not be duplicated.
    pub fn sockets(&self) -> std::io::Result<Vec<std::os::fd::OwnedFd>> {
        self.sockets.iter().map(|s| s.try_clone()).collect()
    }
}

/// Binds the admin address and each Prometheus sink (`0.0.0.0:port`, as MOSN does), then serves
/// them on a control thread.
///
/// Errors: an address cannot be bound (the message names it), or the thread cannot start.
pub fn start(
    admin: Option<SocketAddr>,
    sinks: &[mosn_config::PrometheusSink],
    state: Arc<AdminState>,
) -> Result<ControlServer, std::io::Error> {
    start_inheriting(admin, sinks, state, &mut Vec::new(), true)
}

/// As [`start`], adopting inherited sockets on the same ports (a hot upgrade's); those not used
/// stay in `inherited`. With `open: false` the sockets are bound (errors come now) but nothing is
/// accepted until [`ControlServer::open`]: a new process of a hot upgrade answers once the old
/// one stopped and handed its counters over (connections wait in the sockets' queues meanwhile).
///
/// Errors: as [`start`].
pub fn start_inheriting(
    admin: Option<SocketAddr>,
    sinks: &[mosn_config::PrometheusSink],
    state: Arc<AdminState>,
    inherited: &mut Vec<std::os::fd::OwnedFd>,
    open: bool,
) -> Result<ControlServer, std::io::Error> {
    let named = |what: String| {
        move |e: std::io::Error| std::io::Error::new(e.kind(), format!("{what}: {e}"))
    };
    let mut sockets = Vec::new();
    let mut admin_addr = None;
    if let Some(a) = admin {
        let l = bind(a, inherited).map_err(named(format!("admin address {a}")))?;
        admin_addr = Some(l.local_addr()?);
        sockets.push((l, Site::Admin));
    }
    let mut metrics = Vec::new();
    for s in sinks {
        let a = SocketAddr::from(([0, 0, 0, 0], s.port));
        let l = bind(a, inherited).map_err(named(format!("prometheus sink {a}")))?;
        metrics.push(l.local_addr()?);
        sockets.push((l, Site::Metrics(s.endpoint.clone())));
    }
    let held = sockets
        .iter()
        .map(|(l, _)| std::os::fd::AsFd::as_fd(l).try_clone_to_owned())
        .collect::<std::io::Result<Vec<_>>>()?;
    let (stop, rx) = watch::channel(false);
    let (open, opened) = watch::channel(open);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let thread = std::thread::Builder::new()
        .name("mosn-control".into())
        .spawn(move || {
            rt.block_on(async move {
                for (l, site) in sockets {
                    match tokio::net::TcpListener::from_std(l) {
                        Ok(l) => {
                            tokio::spawn(serve(
                                l,
                                Arc::new(site),
                                state.clone(),
                                rx.clone(),
                                opened.clone(),
                            ));
                        }
                        Err(e) => tracing::error!(error = %e, "control socket unusable"),
                    }
                }
                let mut rx = rx;
                let _ = rx.wait_for(|s| *s).await;
            })
        })?;
    Ok(ControlServer {
        admin: admin_addr,
        metrics,
        sockets: held,
        stop,
        open,
        thread: Some(thread),
    })
}

async fn serve(
    l: tokio::net::TcpListener,
    site: Arc<Site>,
    state: Arc<AdminState>,
    mut stop: watch::Receiver<bool>,
    mut open: watch::Receiver<bool>,
) {
    tokio::select! {
        _ = open.wait_for(|o| *o) => {}
        _ = stop.wait_for(|s| *s) => return,
    }
    loop {
        let s = tokio::select! {
            r = l.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
            _ = stop.wait_for(|s| *s) => return,
        };
        let (site, state) = (site.clone(), state.clone());
        tokio::spawn(async move {
            let svc =
                hyper::service::service_fn(move |req| handle(req, site.clone(), state.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(s), svc)
                .await;
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    site: Arc<Site>,
    state: Arc<AdminState>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Ok(reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                "text/plain",
                format!("body over {MAX_BODY_BYTES} bytes\n"),
            ));
        }
    };
    let path = parts.uri.path();
    let a = match &*site {
        Site::Metrics(endpoint) if path == endpoint => {
            let sets = state.metric_sets();
            api::Answer {
                status: StatusCode::OK,
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                body: prometheus::render(&sets, &state.matcher),
            }
        }
        Site::Metrics(endpoint) => api::Answer {
            status: StatusCode::NOT_FOUND,
            content_type: "text/plain",
            body: format!("metrics are at {endpoint}\n"),
        },
        Site::Admin => api::answer(&state, &parts.method, path, parts.uri.query(), &body),
    };
    Ok(reply(a.status, a.content_type, a.body))
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r
}
