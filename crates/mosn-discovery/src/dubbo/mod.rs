//! MOSN's `dubbo_registry` extension: Dubbo service discovery in ZooKeeper without Kubernetes.
//!
//! An application drives it through an HTTP API ([`api`]): `/pub` registers this proxy as a
//! provider of an interface (an ephemeral node under `/dubbo/<interface>/providers`, the proxy's
//! ingress address), `/sub` registers a consumer (under `/consumers`) and watches the interface's
//! providers. Only subscribed interfaces are watched, so a sidecar holds the providers of the
//! services its application uses and nothing else. Each subscribed interface becomes a cluster
//! named after it whose hosts follow its providers live, and a route `service == <interface>`
//! on the `dubbo` router ([`Routing::apply`] does that on the proxy's side).
//!
//! ZooKeeper: one session per registry address (MOSN opens one per interface and role; what
//! ZooKeeper holds is the same). Nodes and URLs are MOSN's byte for byte ([`url`]). When
//! ZooKeeper is unreachable the known hosts keep serving; the session reconnects with back-off
//! (200 ms × attempts, at most 3 s), every node is registered again and every watch set again.
//! [`Registry::status`] and [`Registry::metrics`] show the outage. [`Registry::shutdown`] removes
//! every node before the proxy drains, so consumers stop sending first.
//!
//! The version rule: MOSN keeps a provider only when its dubbo-go `ServiceKey`
//! (`[group/]interface[:version]`, version `""`/`0.0.0` left out) equals the subscription's, and
//! `/sub` has no version, so a provider with a version is never picked up. mosn-rs keeps the API:
//! a `/sub` without version behaves as in MOSN, a `/sub` with `service.version` takes the
//! providers of that version, and the config key `sub_any_version: true` takes providers of every
//! version (and of the requested group).
//!
//! Source: MOSN `pkg/upstream/servicediscovery/dubbod/*`, `mosn/pkg` `registry/dubbo/**`.

pub mod api;
pub mod url;
pub mod zk;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use tokio::sync::Notify;
use zookeeper_client as zkc;

use api::{Op, Reply, Request};
use url::Provider;

/// How the registry runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the HTTP API listens (MOSN: all interfaces, `api_port`, default 22222).
    pub api: SocketAddr,
    /// The IP written in `/pub`'s provider URL (MOSN: the first non-loopback IPv4 address).
    pub publish_ip: String,
    /// The port written in `/pub`'s provider URL: the proxy's ingress listener.
    pub server_port: u16,
    /// Take providers of every version on `/sub` (see the module doc).
    pub any_version: bool,
}

/// The proxy side: turns subscribed interfaces and their providers into clusters and routes.
pub trait Routing: Send + Sync + 'static {
    /// Called with every interface subscribed so far (also after `/unsub`: MOSN keeps the route
    /// and the cluster) and the addresses of its providers, sorted; after every change.
    fn apply(&self, services: &BTreeMap<String, Vec<SocketAddr>>);
}

/// One ZooKeeper session's state.
#[derive(Default)]
struct Session {
    client: Option<zkc::Client>,
    connected: bool,
    disconnects: u64,
    /// Full paths of the ephemeral nodes this proxy keeps in this ZooKeeper.
    nodes: BTreeSet<String>,
    /// Wakes the supervisor: a node to create, or the registry closing.
    wake: Arc<Notify>,
}

/// One subscription.
struct Sub {
    addr: String,
    interface: String,
    group: String,
    version: Option<String>,
    cancel: Arc<Notify>,
    /// Provider node name → address.
    providers: BTreeMap<String, SocketAddr>,
}

#[derive(Default)]
struct State {
    sessions: BTreeMap<String, Session>,
    /// Registered URLs (MOSN's `URL.Key()`): `<role>|<addr>|<interface>|<group>|<version>` →
    /// node path, and the request that registered it (a hot upgrade's new process runs them
    /// again).
    registered: BTreeMap<String, (String, Op, Request)>,
    subs: BTreeMap<String, Sub>,
    /// Interfaces ever subscribed → their providers (kept after `/unsub`, as MOSN does).
    services: BTreeMap<String, Vec<SocketAddr>>,
    closing: bool,
}

struct Inner {
    settings: Settings,
    routing: Arc<dyn Routing>,
    state: Mutex<State>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The running registry: its HTTP API and ZooKeeper sessions, on a thread of its own.
pub struct Registry {
    inner: Arc<Inner>,
    api: SocketAddr,
    handle: tokio::runtime::Handle,
    /// A duplicate of the API socket, for handing it over on a hot upgrade.
    api_socket: std::os::fd::OwnedFd,
    /// Stops the API (a hot upgrade's old process, once the new one serves it).
    api_stop: tokio::sync::watch::Sender<bool>,
}

impl Registry {
    /// Binds the API and starts the registry on a thread of its own.
    ///
    /// Errors: the API address cannot be bound, or the thread cannot start.
    pub fn start(settings: Settings, routing: Arc<dyn Routing>) -> std::io::Result<Registry> {
        let listener = std::net::TcpListener::bind(settings.api)?;
        Registry::start_on(settings, listener, routing)
    }

    /// As [`Registry::start`], on a socket already bound (a hot upgrade hands the old
    /// process's over).
    ///
    /// Errors: the thread cannot start.
    pub fn start_on(
        settings: Settings,
        listener: std::net::TcpListener,
        routing: Arc<dyn Routing>,
    ) -> std::io::Result<Registry> {
        listener.set_nonblocking(true)?;
        let api_socket = std::os::fd::AsFd::as_fd(&listener).try_clone_to_owned()?;
        let (api_stop, mut stopped) = tokio::sync::watch::channel(false);
        let api = listener.local_addr()?;
        let inner = Arc::new(Inner {
            settings,
            routing,
            state: Mutex::new(State::default()),
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        let i2 = inner.clone();
        std::thread::Builder::new()
            .name("dubbo-registry".into())
            .spawn(move || {
                rt.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => {
                            tokio::select! {
                                () = serve_api(i2, l) => {}
                                _ = stopped.wait_for(|s| *s) => {}
                            }
                            // The sessions go on (their nodes stay until this process exits).
                            std::future::pending::<()>().await
                        }
                        Err(e) => tracing::error!(error = %e, "dubbo_registry: API socket"),
                    }
                })
            })?;
        Ok(Registry {
            inner,
            api,
            handle,
            api_socket,
            api_stop,
        })
    }

    /// A duplicate of the API socket (for a hot upgrade).
    ///
    /// Errors: the descriptor could not be duplicated.
    pub fn api_socket(&self) -> std::io::Result<std::os::fd::OwnedFd> {
        self.api_socket.try_clone()
    }

    /// Hot upgrade, old process: stops answering the API (the new process answers on the same
    /// socket) and returns what the new process must register again, in order: one
    /// `{"op": "pub"|"sub", "addr", "interface", "group", "version", "methods"}` per registration.
    /// This process's own nodes stay in ZooKeeper until it exits (its sessions close then), so
    /// consumers always find a provider node of this proxy.
    pub fn hand_over(&self) -> Value {
        let _ = self.api_stop.send(true);
        let st = self.inner.lock();
        Value::Array(
            st.registered
                .values()
                .map(|(_, op, r)| {
                    json!({"op": if *op == Op::Sub { "sub" } else { "pub" }, "addr": r.addr,
                        "interface": r.interface, "group": r.group, "version": r.version,
                        "methods": r.methods})
                })
                .collect(),
        )
    }

    /// Hot upgrade, new process: registers again what the old process had ([`Registry::hand_over`]),
    /// in this process's sessions (its nodes carry this process's pid). A registration that fails
    /// is logged; the others go on.
    pub fn take_over(&self, v: &Value) {
        let items: Vec<(Op, Request)> = v
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| {
                let op = match x["op"].as_str()? {
                    "sub" => Op::Sub,
                    "pub" => Op::Pub,
                    _ => return None,
                };
                let s = |k: &str| x[k].as_str().map(str::to_string);
                Some((
                    op,
                    Request {
                        addr: s("addr")?,
                        interface: s("interface")?,
                        group: s("group").unwrap_or_default(),
                        version: s("version").unwrap_or_default(),
                        methods: x["methods"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|m| m.as_str().map(str::to_string))
                            .collect(),
                    },
                ))
            })
            .collect();
        let inner = self.inner.clone();
        self.handle.spawn(async move {
            for (op, r) in items {
                match run(&inner, op, &r).await {
                    Ok(()) => tracing::info!(interface = %r.interface, ?op, "dubbo_registry: registered again after a hot upgrade"),
                    Err(e) => tracing::warn!(interface = %r.interface, ?op, error = %e, "dubbo_registry: registering again after a hot upgrade failed"),
                }
            }
        });
    }

    /// The address the API listens on.
    pub fn api_addr(&self) -> SocketAddr {
        self.api
    }

    /// The registry's state for the admin API: per ZooKeeper, whether it is connected, how many
    /// times it was lost and the nodes kept; per subscription, its providers.
    pub fn status(&self) -> Value {
        let s = self.inner.lock();
        let registries: Vec<Value> = s
            .sessions
            .iter()
            .map(|(addr, x)| {
                json!({"addr": addr, "connected": x.connected, "disconnects": x.disconnects,
                    "nodes": x.nodes.iter().collect::<Vec<_>>()})
            })
            .collect();
        let subs: Vec<Value> = s
            .subs
            .values()
            .map(|x| {
                json!({"registry": x.addr, "interface": x.interface, "group": x.group,
                    "providers": x.providers.values().map(|a| a.to_string()).collect::<Vec<_>>()})
            })
            .collect();
        json!({"api": self.api.to_string(), "registries": registries, "subscriptions": subs})
    }

    /// Gauges and counters per ZooKeeper address: `(addr, connected 0|1, disconnects, nodes)`.
    pub fn metrics(&self) -> Vec<(String, bool, u64, usize)> {
        self.inner
            .lock()
            .sessions
            .iter()
            .map(|(a, s)| (a.clone(), s.connected, s.disconnects, s.nodes.len()))
            .collect()
    }

    /// Removes every node this proxy registered and closes the sessions, waiting at most
    /// `timeout`. Called on a clean stop, before the drain.
    pub fn shutdown(&self, timeout: Duration) {
        let inner = self.inner.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        self.handle.spawn(async move {
            let work: Vec<(Option<zkc::Client>, Vec<String>)> = {
                let mut s = inner.lock();
                s.closing = true;
                for sub in s.subs.values() {
                    sub.cancel.notify_one();
                }
                s.sessions
                    .values_mut()
                    .map(|x| {
                        x.wake.notify_one();
                        (
                            x.client.take(),
                            std::mem::take(&mut x.nodes).into_iter().collect(),
                        )
                    })
                    .collect()
            };
            for (client, nodes) in work {
                if let Some(c) = client {
                    for n in nodes {
                        let _ = zk::remove(&c, &n).await;
                    }
                    drop(c);
                }
            }
            let _ = tx.send(());
        });
        let _ = rx.recv_timeout(timeout);
    }
}

/// Serves the HTTP API until the process ends.
async fn serve_api(inner: Arc<Inner>, l: tokio::net::TcpListener) {
    loop {
        let Ok((s, _)) = l.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let inner = inner.clone();
        tokio::spawn(async move {
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let inner = inner.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let ct = parts
                            .headers
                            .get(http::header::CONTENT_TYPE)
                            .and_then(|v| v.to_str().ok());
                        let reply =
                            handle(&inner, &parts.method, parts.uri.path(), ct, &body).await;
                        let mut resp = hyper::Response::new(Full::new(Bytes::from(reply.body)));
                        *resp.status_mut() = http::StatusCode::from_u16(reply.status)
                            .unwrap_or(http::StatusCode::OK);
                        if reply.status == 200 {
                            resp.headers_mut().insert(
                                http::header::CONTENT_TYPE,
                                http::HeaderValue::from_static("text/plain; charset=utf-8"),
                            );
                        }
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                .await;
        });
    }
}

/// Answers one API request.
async fn handle(
    inner: &Arc<Inner>,
    method: &http::Method,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Reply {
    let op = match api::route(method, path) {
        Ok(op) => op,
        Err(r) => return r,
    };
    let req = match api::bind(content_type, body) {
        Ok(r) => r,
        Err(e) => return Reply::result(false, &op.bind_failure(&e)),
    };
    match run(inner, op, &req).await {
        Ok(()) => Reply::result(true, op.success()),
        Err(e) => Reply::result(false, &op.failure(&e)),
    }
}

/// How long an API call waits for a ZooKeeper session that is not up.
const CONNECT_WAIT: Duration = Duration::from_secs(5);

async fn run(inner: &Arc<Inner>, op: Op, r: &Request) -> Result<(), String> {
    let pid = std::process::id();
    let s = &inner.settings;
    let (role, category, url) = match op {
        Op::Sub | Op::Unsub => (
            0,
            "consumers",
            url::consumer_url(&s.publish_ip, &r.interface, &r.group, pid),
        ),
        Op::Pub | Op::Unpub => (
            3,
            "providers",
            url::provider_url(
                &s.publish_ip,
                s.server_port,
                &r.interface,
                &r.group,
                &r.version,
                &r.methods,
                pid,
            ),
        ),
    };
    let version = if role == 0 { "" } else { r.version.as_str() };
    let key = format!("{role}|{}|{}|{}|{version}", r.addr, r.interface, r.group);
    let node = format!(
        "{}/{}",
        url::category_path(&r.interface, category),
        url::query_escape(&url)
    );
    match op {
        Op::Sub | Op::Pub => {
            if inner.lock().registered.contains_key(&key) {
                return Err(format!("registry for {url} already registered"));
            }
            let client = session(inner, &r.addr).await?;
            if op == Op::Sub {
                // MOSN's consumer registration creates the providers folder too.
                zk::ensure_folder(&client, &url::category_path(&r.interface, "providers"))
                    .await
                    .map_err(|e| format!("zookeeper {}: {e}", r.addr))?;
            }
            zk::put_ephemeral(&client, &node)
                .await
                .map_err(|e| format!("zookeeper {}: {e}", r.addr))?;
            let mut st = inner.lock();
            st.registered
                .insert(key.clone(), (node.clone(), op, r.clone()));
            if let Some(x) = st.sessions.get_mut(&r.addr) {
                x.nodes.insert(node.clone());
            }
            if op == Op::Sub {
                let cancel = Arc::new(Notify::new());
                let version = (!r.version.is_empty()).then(|| r.version.clone());
                st.subs.insert(
                    key.clone(),
                    Sub {
                        addr: r.addr.clone(),
                        interface: r.interface.clone(),
                        group: r.group.clone(),
                        version,
                        cancel,
                        providers: BTreeMap::new(),
                    },
                );
                st.services.entry(r.interface.clone()).or_default();
                drop(st);
                tokio::spawn(watch(inner.clone(), key));
                publish(inner);
            }
            Ok(())
        }
        Op::Unsub | Op::Unpub => {
            let Some(node) = inner.lock().registered.get(&key).map(|(n, ..)| n.clone()) else {
                return Err(format!("Path{{{url}}} has not registered"));
            };
            let client = session(inner, &r.addr).await?;
            zk::remove(&client, &node)
                .await
                .map_err(|e| format!("zookeeper {}: {e}", r.addr))?;
            let mut st = inner.lock();
            st.registered.remove(&key);
            if let Some(x) = st.sessions.get_mut(&r.addr) {
                x.nodes.remove(&node);
            }
            if let Some(sub) = st.subs.remove(&key) {
                sub.cancel.notify_one();
            }
            Ok(())
        }
    }
}

/// The connected client of the session to `addr`, starting its supervisor on first use and
/// waiting up to [`CONNECT_WAIT`] for it.
async fn session(inner: &Arc<Inner>, addr: &str) -> Result<zkc::Client, String> {
    let started = {
        let mut st = inner.lock();
        let new = !st.sessions.contains_key(addr);
        st.sessions.entry(addr.to_string()).or_default();
        new
    };
    if started {
        tokio::spawn(supervise(inner.clone(), addr.to_string()));
    }
    let deadline = tokio::time::Instant::now() + CONNECT_WAIT;
    loop {
        if let Some(c) = inner
            .lock()
            .sessions
            .get(addr)
            .filter(|s| s.connected)
            .and_then(|s| s.client.clone())
        {
            return Ok(c);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("zookeeper {addr} unreachable"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Back-off before attempt `n` (from 1): 200 ms × n, at most 3 s (MOSN's subscription retry).
fn backoff(n: u32) -> Duration {
    Duration::from_millis(200 * u64::from(n)).min(Duration::from_secs(3))
}

/// Keeps the session to `addr` up: connects (with back-off), registers every node again on each
/// new session, follows the session's state, and starts over when it expires.
async fn supervise(inner: Arc<Inner>, addr: String) {
    let mut attempt = 0;
    loop {
        if inner.lock().closing {
            return;
        }
        let client = match zk::connect(&addr).await {
            Ok(c) => c,
            Err(e) => {
                attempt += 1;
                tracing::warn!(%addr, error = %e, "dubbo_registry: zookeeper unreachable; retrying");
                tokio::time::sleep(backoff(attempt)).await;
                continue;
            }
        };
        attempt = 0;
        let mut states = client.state_watcher();
        let nodes: Vec<String> = {
            let mut st = inner.lock();
            let Some(s) = st.sessions.get_mut(&addr) else {
                return;
            };
            s.client = Some(client.clone());
            s.nodes.iter().cloned().collect()
        };
        // Every node again: a new session does not own the old one's ephemerals.
        let mut ok = true;
        for n in &nodes {
            if let Err(e) = zk::put_ephemeral(&client, n).await {
                tracing::warn!(%addr, node = %n, error = %e, "dubbo_registry: re-registering failed");
                ok = false;
                break;
            }
        }
        if !ok {
            continue;
        }
        set_connected(&inner, &addr, true);
        tracing::info!(%addr, nodes = nodes.len(), "dubbo_registry: zookeeper session up");
        loop {
            match states.changed().await {
                zkc::SessionState::Disconnected => {
                    tracing::warn!(%addr, "dubbo_registry: zookeeper disconnected");
                    set_connected(&inner, &addr, false);
                }
                zkc::SessionState::SyncConnected | zkc::SessionState::ConnectedReadOnly => {
                    tracing::info!(%addr, "dubbo_registry: zookeeper reconnected");
                    set_connected(&inner, &addr, true);
                }
                other => {
                    tracing::warn!(%addr, state = ?other, "dubbo_registry: zookeeper session ended; starting a new one");
                    set_connected(&inner, &addr, false);
                    break;
                }
            }
        }
    }
}

fn set_connected(inner: &Inner, addr: &str, up: bool) {
    if let Some(s) = inner.lock().sessions.get_mut(addr) {
        if s.connected && !up {
            s.disconnects += 1;
        }
        s.connected = up;
    }
}

/// Follows the providers of subscription `key` until it is cancelled: lists them with a watch,
/// keeps those whose service key matches, and lists again on every change (and after a session
/// ends).
async fn watch(inner: Arc<Inner>, key: String) {
    let mut attempt = 0;
    loop {
        let (addr, path, cancel) = {
            let st = inner.lock();
            let Some(sub) = st.subs.get(&key) else {
                return;
            };
            (
                sub.addr.clone(),
                url::category_path(&sub.interface, "providers"),
                sub.cancel.clone(),
            )
        };
        let client = inner
            .lock()
            .sessions
            .get(&addr)
            .filter(|s| s.connected)
            .and_then(|s| s.client.clone());
        let Some(client) = client else {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                _ = cancel.notified() => return,
            }
        };
        match client.get_and_watch_children(&path).await {
            Ok((children, _, watcher)) => {
                attempt = 0;
                update(&inner, &key, &children);
                tokio::select! {
                    _ = watcher.changed() => {}
                    _ = cancel.notified() => return,
                }
            }
            Err(zkc::Error::NoNode) => {
                let _ = zk::ensure_folder(&client, &path).await;
            }
            Err(e) => {
                attempt += 1;
                tracing::debug!(%path, error = %e, "dubbo_registry: listing providers failed");
                tokio::select! {
                    _ = tokio::time::sleep(backoff(attempt)) => {}
                    _ = cancel.notified() => return,
                }
            }
        }
    }
}

/// Takes a new list of provider nodes for subscription `key`.
fn update(inner: &Arc<Inner>, key: &str, children: &[String]) {
    let any_version = inner.settings.any_version;
    {
        let mut st = inner.lock();
        let Some(sub) = st.subs.get_mut(key) else {
            return;
        };
        let want = url::service_key(
            &sub.interface,
            &sub.group,
            sub.version.as_deref().unwrap_or(""),
        );
        sub.providers = children
            .iter()
            .filter_map(|c| {
                let p = Provider::parse(&url::query_unescape(c)?)?;
                let keep = if any_version {
                    p.service == sub.interface && p.group == sub.group
                } else {
                    p.service_key() == want
                };
                keep.then(|| (c.clone(), p.address))
            })
            .collect();
        let interface = sub.interface.clone();
        let mut hosts: Vec<SocketAddr> = st
            .subs
            .values()
            .filter(|s| s.interface == interface)
            .flat_map(|s| s.providers.values().copied())
            .collect();
        hosts.sort();
        hosts.dedup();
        if st.services.get(&interface) == Some(&hosts) {
            return;
        }
        tracing::info!(%interface, providers = hosts.len(), "dubbo_registry: providers changed");
        st.services.insert(interface, hosts);
    }
    publish(inner);
}

/// Hands the current services to the proxy.
fn publish(inner: &Arc<Inner>) {
    let services = inner.lock().services.clone();
    inner.routing.apply(&services);
}

/// MOSN's `trace.GetIp()`: the first non-loopback IPv4 address over the interfaces, in order;
/// `None` when there is none.
pub fn first_non_loopback_ipv4() -> Option<std::net::Ipv4Addr> {
    nix::ifaddrs::getifaddrs().ok()?.find_map(|i| {
        let a = i.address?;
        let ip = a.as_sockaddr_in()?.ip();
        (!ip.is_loopback()).then_some(ip)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_mosn_s() {
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(5), Duration::from_secs(1));
        assert_eq!(backoff(100), Duration::from_secs(3));
    }
}
