//! Test harness: real hyper upstream servers on 127.0.0.1:0, the proxy started in-process from a
//! JSON config, and a small hyper HTTP/1.1 client. Every socket is real; nothing is mocked.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// A body fed from a channel, so a test controls when each chunk leaves.
pub struct ChanBody(pub mpsc::Receiver<Bytes>);

impl Body for ChanBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// Response body of test upstreams.
pub enum UBody {
    Full(Option<Bytes>),
    Chan(ChanBody),
}

impl Body for UBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            UBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            UBody::Chan(c) => Pin::new(c).poll_frame(cx),
        }
    }
    fn is_end_stream(&self) -> bool {
        matches!(self, UBody::Full(None))
    }
    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            UBody::Full(b) => {
                http_body::SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64))
            }
            UBody::Chan(_) => http_body::SizeHint::default(),
        }
    }
}

pub fn text(status: u16, body: impl Into<Bytes>) -> Response<UBody> {
    let mut r = Response::new(UBody::Full(Some(body.into())));
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
    r
}

type Handler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<UBody>> + Send>>
        + Send
        + Sync,
>;

/// A running upstream: its address, and counts of accepted connections and requests.
pub struct Upstream {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
    pub requests: Arc<AtomicUsize>,
}

impl Upstream {
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Starts a hyper HTTP/1.1 upstream with an async handler.
pub async fn upstream<F, Fut>(f: F) -> Upstream
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<UBody>> + Send + 'static,
{
    let handler: Handler = Arc::new(move |r| Box::pin(f(r)));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let (c2, r2) = (connections.clone(), requests.clone());
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            c2.fetch_add(1, Ordering::SeqCst);
            let h = handler.clone();
            let r3 = r2.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    r3.fetch_add(1, Ordering::SeqCst);
                    let h = h.clone();
                    async move { Ok::<_, Infallible>(h(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    Upstream {
        addr,
        connections,
        requests,
    }
}

/// A raw TCP server on 127.0.0.1:0 that runs `serve` on each accepted connection (its own task).
pub async fn tcp_server<F, Fut>(serve: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(serve(s));
        }
    });
    addr
}

/// An upstream that answers `200 name` to everything.
pub async fn named(name: &'static str) -> Upstream {
    upstream(move |_| async move { text(200, name) }).await
}

/// An address where nothing listens (bound, read back, closed).
pub fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A config with one HTTP/1 listener on port 0 named "l", route table `routers` (the virtual hosts
/// array) and `clusters`.
pub fn config(virtual_hosts: Value, clusters: Value) -> Value {
    json!({
        "servers": [{
            "default_log_path": "stderr",
            "routers": [{"router_config_name": "r", "virtual_hosts": virtual_hosts}],
            "listeners": [{
                "name": "l", "address": "127.0.0.1:0", "bind_port": true,
                "filter_chains": [{"filters": [{"type": "proxy", "config": {
                    "downstream_protocol": "Http1", "upstream_protocol": "Http1", "router_config_name": "r"}}]}]
            }]
        }],
        "cluster_manager": {"clusters": clusters}
    })
}

/// One cluster with these hosts.
pub fn cluster(name: &str, hosts: &[SocketAddr]) -> Value {
    let hosts: Vec<Value> = hosts
        .iter()
        .map(|a| json!({"address": a.to_string()}))
        .collect();
    json!({"name": name, "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN", "hosts": hosts})
}

/// A running in-process proxy.
pub struct Proxy {
    pub server: mosn_proxy::Server,
    pub addr: SocketAddr,
}

/// Starts the proxy on a config with one worker.
pub fn proxy(cfg: Value) -> Proxy {
    proxy_workers(cfg, 1)
}

pub fn proxy_workers(cfg: Value, workers: usize) -> Proxy {
    let loaded = mosn_config::from_value(&cfg).unwrap_or_else(|e| panic!("config: {e}"));
    let server = mosn_proxy::Server::start(&loaded.config, Some(workers)).unwrap();
    let name = server.listeners()[0].0.clone();
    let addr = server.listener_addr(&name).expect("a TCP listener");
    Proxy { server, addr }
}

impl Proxy {
    /// Count of local replies with a response flag, summed over workers.
    pub fn flag_count(&self, flag: mosn_api::ResponseFlag) -> u64 {
        let i = mosn_proxy::stats::FLAGS
            .iter()
            .position(|f| *f == flag)
            .unwrap();
        mosn_proxy::stats::sum(self.server.stats(), |s| s.flags[i].get())
    }
}

/// A keep-alive HTTP/1.1 client connection (hyper).
pub struct Client {
    sender: hyper::client::conn::http1::SendRequest<http_body_util::Full<Bytes>>,
}

/// A collected response.
pub struct Resp {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, n: &str) -> Option<&str> {
        self.headers.get(n).and_then(|v| v.to_str().ok())
    }
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
            .await
            .unwrap();
        tokio::spawn(conn);
        Client { sender }
    }

    /// Sends a request; `host` defaults to "test".
    pub async fn send(&mut self, req: Request<http_body_util::Full<Bytes>>) -> Resp {
        self.try_send(req).await.expect("request failed")
    }

    pub async fn try_send(
        &mut self,
        mut req: Request<http_body_util::Full<Bytes>>,
    ) -> Result<Resp, hyper::Error> {
        if !req.headers().contains_key("host") {
            req.headers_mut().insert("host", "test".parse().unwrap());
        }
        self.sender.ready().await?;
        let r = self.sender.send_request(req).await?;
        let (p, b) = r.into_parts();
        let body = b.collect().await?.to_bytes();
        Ok(Resp {
            status: p.status.as_u16(),
            headers: p.headers,
            body,
        })
    }

    pub async fn get(&mut self, path: &str) -> Resp {
        self.send(req("GET", path, &[])).await
    }
}

/// Builds a request with headers and an empty body.
pub fn req(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Request<http_body_util::Full<Bytes>> {
    let mut b = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(http_body_util::Full::new(Bytes::new())).unwrap()
}

/// One request on a fresh connection.
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Resp {
    Client::connect(addr)
        .await
        .send(req("GET", path, headers))
        .await
}

/// Writes raw bytes on a new connection and reads until the peer closes or `deadline` passes.
/// Returns what was read and whether the peer closed.
pub async fn raw(addr: SocketAddr, bytes: &[u8], deadline: Duration) -> (String, bool) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let until = Instant::now() + deadline;
    let mut buf = [0u8; 4096];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) => return (String::from_utf8_lossy(&out).into_owned(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Ok(Err(_)) => return (String::from_utf8_lossy(&out).into_owned(), true),
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), false),
        }
    }
}

/// Polls `f` until it is true or `deadline` passes.
pub async fn eventually(deadline: Duration, mut f: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + deadline;
    while Instant::now() < until {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    f()
}

/// An HTTP/2 client connection made with the `h2` crate (its connection driven by a task).
pub async fn h2_client(addr: SocketAddr) -> h2::client::SendRequest<Bytes> {
    let s = TcpStream::connect(addr).await.unwrap();
    let (send, conn) = h2::client::handshake(s).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

/// A GET request for `path` on `addr`, for an HTTP/2 client.
pub fn h2_request(addr: SocketAddr, path: &str) -> Request<()> {
    Request::builder()
        .uri(format!("http://{addr}{path}"))
        .body(())
        .unwrap()
}

/// One HTTP/2 GET on a new connection; the status and the whole body.
pub async fn h2_get(addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    let mut send = h2_client(addr).await;
    let (resp, _) = send.send_request(h2_request(addr, path), true).unwrap();
    let resp = resp.await.unwrap();
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut out = Vec::new();
    while let Some(d) = body.data().await {
        out.extend_from_slice(&d.unwrap());
    }
    (status, out)
}

/// An HTTP/2 upstream (the `h2` crate) that answers each request with `handle`.
pub async fn h2_upstream<F, Fut>(handle: F) -> SocketAddr
where
    F: Fn(http::Request<h2::RecvStream>, h2::server::SendResponse<bytes::Bytes>) -> Fut
        + Send
        + Sync
        + Clone
        + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    tcp_server(move |s| {
        let handle = handle.clone();
        async move {
            let Ok(mut conn) = h2::server::handshake(s).await else {
                return;
            };
            while let Some(Ok((req, respond))) = conn.accept().await {
                tokio::spawn(handle(req, respond));
            }
        }
    })
    .await
}

/// A client connection of an XProtocol (Bolt, Dubbo) speaking the project's own codec.
pub struct RpcClient<P: mosn_protocol::xprotocol::XProtocol> {
    proto: P,
    pub s: tokio::net::TcpStream,
    buf: bytes::BytesMut,
}

impl<P: mosn_protocol::xprotocol::XProtocol + Default> RpcClient<P> {
    pub async fn connect(addr: SocketAddr) -> Self {
        RpcClient {
            proto: P::default(),
            s: tokio::net::TcpStream::connect(addr).await.unwrap(),
            buf: bytes::BytesMut::new(),
        }
    }

    pub async fn send(&mut self, f: &P::Frame) {
        use tokio::io::AsyncWriteExt;
        let mut out = bytes::BytesMut::new();
        self.proto.encode(f, &mut out);
        self.s.write_all(&out).await.unwrap();
    }

    /// The next frame, within 10 s; `None` when the proxy closed.
    pub async fn recv(&mut self) -> Option<P::Frame> {
        use tokio::io::AsyncReadExt;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(f) = self
                .proto
                .decode(&mut self.buf)
                .expect("a frame from the proxy")
            {
                return Some(f);
            }
            let n = tokio::time::timeout_at(deadline, self.s.read_buf(&mut self.buf))
                .await
                .expect("the proxy answered within 10 s")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
        }
    }

    pub async fn call(&mut self, f: &P::Frame) -> P::Frame {
        self.send(f).await;
        self.recv().await.expect("an answer")
    }
}

/// An RPC server (Bolt, Dubbo) on the project's own codec: answers heartbeats, counts one-way
/// calls and heartbeats, and answers each call with `answer(call)` after the call's `x-delay-ms`
/// field (so answers come out of order); `None` from `answer` leaves the call unanswered.
pub struct RpcServer {
    pub addr: SocketAddr,
    pub oneways: Arc<AtomicUsize>,
    pub heartbeats: Arc<AtomicUsize>,
}

pub async fn rpc_server<P, F>(answer: F) -> RpcServer
where
    P: mosn_protocol::xprotocol::XProtocol + Default,
    F: Fn(&P::Frame) -> Option<P::Frame> + Send + Sync + 'static,
{
    use mosn_api::Headers;
    use mosn_protocol::xprotocol::FrameKind;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let oneways = Arc::new(AtomicUsize::new(0));
    let heartbeats = Arc::new(AtomicUsize::new(0));
    let (o2, h2) = (oneways.clone(), heartbeats.clone());
    let answer = Arc::new(answer);
    let addr = tcp_server(move |s| {
        let (oneways, heartbeats, answer) = (o2.clone(), h2.clone(), answer.clone());
        async move {
            let proto = P::default();
            let (mut r, w) = s.into_split();
            let w = Arc::new(tokio::sync::Mutex::new(w));
            let mut buf = bytes::BytesMut::new();
            loop {
                while let Ok(Some(f)) = proto.decode(&mut buf) {
                    match proto.kind(&f) {
                        FrameKind::Heartbeat => {
                            heartbeats.fetch_add(1, Ordering::SeqCst);
                            let mut out = bytes::BytesMut::new();
                            proto.encode(&proto.heartbeat_reply(&f), &mut out);
                            let _ = w.lock().await.write_all(&out).await;
                            continue;
                        }
                        FrameKind::Oneway => {
                            oneways.fetch_add(1, Ordering::SeqCst);
                            continue;
                        }
                        FrameKind::Request => {}
                        _ => continue,
                    }
                    let delay = f
                        .get_str("x-delay-ms")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    let Some(resp) = answer(&f) else { continue };
                    let mut out = bytes::BytesMut::new();
                    proto.encode(&resp, &mut out);
                    let w = w.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                        let _ = w.lock().await.write_all(&out).await;
                    });
                }
                if r.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                    return;
                }
            }
        }
    })
    .await;
    RpcServer {
        addr,
        oneways,
        heartbeats,
    }
}

/// A config with one listener "l" of `protocol` on both sides (Bolt, Dubbo), a route table `r`
/// with one virtual host of `routes`, and `clusters`.
pub fn rpc_config(protocol: &str, routes: Value, clusters: Value) -> Value {
    json!({
        "servers": [{"default_log_path": "stderr",
            "routers": [{"router_config_name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"],
                "routers": routes}]}],
            "listeners": [{"name": "l", "address": "127.0.0.1:0", "bind_port": true,
                "filter_chains": [{"filters": [{"type": "proxy", "config": {
                    "downstream_protocol": protocol, "upstream_protocol": protocol,
                    "router_config_name": "r"}}]}]}]}],
        "cluster_manager": {"clusters": clusters}
    })
}
