//! The ADS client: one gRPC stream to the control plane, state of the world
//! (`StreamAggregatedResources`) or delta (`DeltaAggregatedResources`), on its own thread (the
//! control thread; never a worker's); and, when the bootstrap has an `sds-grpc` cluster, a
//! second, state-of-the-world stream to that SDS server (`SecretDiscoveryService.StreamSecrets`,
//! istio-agent's) for the secrets the listeners and clusters name (`default`, `ROOTCA`). Without
//! one, secrets are asked for on the ADS stream.
//!
//! Per response: the new resources are merged into a copy of the accepted ones, translated, and
//! handed to [`Apply`]. Resources that do not translate or apply are left out (their previous
//! version stays) and named in a NACK's `error_detail`; the rest take effect. LDS and CDS are
//! wildcard subscriptions; RDS and EDS follow the names the accepted listeners and clusters use,
//! and resources no longer used are dropped. The node is sent on the first request of a stream
//! only when the bootstrap's `set_node_on_first_message_only` says so (Istio's), else on every
//! request, as Envoy does. When the stream fails, the client reconnects with a jittered backoff
//! (200 ms doubling to 10 s) and the proxy keeps serving the last accepted config meanwhile.
//!
//! Source: <https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol>.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{
    aggregated_discovery_service_client::AggregatedDiscoveryServiceClient, DeltaDiscoveryRequest,
    DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use mosn_config::{HostAddr, Xds, XdsApi};
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};

use crate::status::Status;
use crate::store::{Entry, Store};
use crate::translate::{translate, wanted, Translated};
use crate::types;

/// Largest response accepted, in bytes (a bigger one ends the stream, which is then retried).
pub const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// Where the translated config goes: the running proxy.
pub trait Apply: Send + Sync + 'static {
    /// Makes `t` the running xDS config.
    ///
    /// Errors: the config does not parse, validate or compile; with the resource at fault when
    /// it can be told (its type URL and name), which is then left out and NACKed.
    fn apply(&self, t: &Translated) -> Result<(), ApplyError>;
}

/// Why a translated config was not applied.
#[derive(Debug, Clone)]
pub struct ApplyError {
    /// The resource at fault, when known.
    pub culprit: Option<(&'static str, String)>,
    /// What is wrong (a JSON path and message from the config parser, or a compile error).
    pub message: String,
}

/// A running client; dropping it stops the client thread.
pub struct Handle {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the client on its own thread.
///
/// Errors: the thread or its runtime could not start.
pub fn spawn(cfg: Xds, sink: Arc<dyn Apply>, status: Arc<Status>) -> std::io::Result<Handle> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("mosn-xds".into())
        .spawn(move || {
            rt.block_on(async move {
                tokio::select! {
                    _ = run(cfg, sink, status) => {}
                    _ = rx => {}
                }
            })
        })?;
    Ok(Handle {
        stop: Some(tx),
        thread: Some(thread),
    })
}

async fn channel(server: &HostAddr) -> Result<Channel, tonic::transport::Error> {
    match server {
        HostAddr::Tcp(a) => {
            Endpoint::from_shared(format!("http://{a}"))?
                .connect_timeout(Duration::from_secs(5))
                .connect()
                .await
        }
        HostAddr::Unix(p) => {
            let p = p.clone();
            Endpoint::from_static("http://localhost")
                .connect_timeout(Duration::from_secs(5))
                .connect_with_connector(tower::service_fn(move |_: http::Uri| {
                    let p = p.clone();
                    async move {
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                            tokio::net::UnixStream::connect(p).await?,
                        ))
                    }
                }))
                .await
        }
    }
}

fn node(cfg: &Xds) -> Node {
    let metadata = match &cfg.node.metadata {
        serde_json::Value::Object(m) => Some(envoy_types::pb::google::protobuf::Struct {
            fields: m.iter().map(|(k, v)| (k.clone(), pb_value(v))).collect(),
        }),
        _ => None,
    };
    Node {
        id: cfg.node.id.clone(),
        cluster: cfg.node.cluster.clone(),
        metadata,
        user_agent_name: "mosn-rs".into(),
        ..Default::default()
    }
}

fn pb_value(v: &serde_json::Value) -> envoy_types::pb::google::protobuf::Value {
    use envoy_types::pb::google::protobuf::{value::Kind, ListValue, Struct, Value};
    let kind = match v {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(*b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        serde_json::Value::String(s) => Kind::StringValue(s.clone()),
        serde_json::Value::Array(a) => Kind::ListValue(ListValue {
            values: a.iter().map(pb_value).collect(),
        }),
        serde_json::Value::Object(m) => Kind::StructValue(Struct {
            fields: m.iter().map(|(k, v)| (k.clone(), pb_value(v))).collect(),
        }),
    };
    Value { kind: Some(kind) }
}

/// What the client has accepted, kept across reconnects and shared by the ADS and SDS streams.
struct State {
    accepted: Store,
    /// Last accepted `version_info` per type (state of the world).
    versions: BTreeMap<&'static str, String>,
    /// Names subscribed per non-wildcard type (RDS, EDS, SDS).
    subscribed: BTreeMap<&'static str, BTreeSet<String>>,
}

impl State {
    /// The names subscribed for a non-wildcard type, in order; empty when none.
    fn names(&self, type_url: &str) -> Vec<String> {
        self.subscribed
            .get(type_url)
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }
}

struct Shared {
    cfg: Xds,
    sink: Arc<dyn Apply>,
    status: Arc<Status>,
    state: std::sync::Mutex<State>,
    /// The SDS secret names wanted, for the SDS stream (when the bootstrap has an SDS server).
    secrets: tokio::sync::watch::Sender<BTreeSet<String>>,
}

/// The types the ADS stream asks for, with whether the subscription is a wildcard. Secrets go on
/// ADS too when the bootstrap names no SDS server (`sds-grpc`).
fn ads_types(cfg: &Xds) -> Vec<(&'static str, bool)> {
    let mut t = vec![
        (types::CLUSTER, true),
        (types::ENDPOINT, false),
        (types::LISTENER, true),
        (types::ROUTE, false),
    ];
    if cfg.sds.is_none() {
        t.push((types::SECRET, false));
    }
    t
}

fn static_type(t: &str) -> Option<&'static str> {
    [
        types::CLUSTER,
        types::ENDPOINT,
        types::LISTENER,
        types::ROUTE,
        types::SECRET,
    ]
    .into_iter()
    .find(|x| *x == t)
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Merges a response into a copy of the accepted store, translates and applies it. Returns
    /// the NACK message when something was left out.
    fn consider(
        &self,
        type_url: &'static str,
        incoming: &BTreeSet<String>,
        merge: impl FnOnce(&mut Store),
    ) -> Option<String> {
        let mut st = self.lock();
        let mut cand = st.accepted.clone();
        merge(&mut cand);
        if type_url != types::LISTENER && type_url != types::CLUSTER {
            if let Some(s) = st.subscribed.get(type_url) {
                cand.retain(type_url, s);
            }
        }
        let mut problems: Vec<String> = Vec::new();
        let revert = |cand: &mut Store, accepted: &Store, name: &str| {
            let keep: Vec<(String, Entry)> = accepted
                .get(type_url, name)
                .map(|e| (name.to_string(), e.clone()))
                .into_iter()
                .collect();
            cand.update(type_url, keep, &[name.to_string()]);
        };
        // Each round leaves out at least one resource, so this ends.
        for _ in 0..=incoming.len() {
            let t = translate(&cand);
            let bad: Vec<_> = t
                .rejected
                .iter()
                .filter(|r| r.type_url == type_url && incoming.contains(&r.name))
                .cloned()
                .collect();
            // Accepted resources that do not translate with this response (a secret that made
            // a waiting listener complete, say) are left out and logged; only this response's
            // own resources can be NACKed.
            for r in t.rejected.iter().filter(|r| r.type_url != type_url) {
                tracing::warn!(resource = %r, "xds: an accepted resource cannot be served");
            }
            if !bad.is_empty() {
                for r in bad {
                    revert(&mut cand, &st.accepted, &r.name);
                    problems.push(r.to_string());
                }
                continue;
            }
            match self.sink.apply(&t) {
                Ok(()) => {
                    self.status.set_ignored_filters(t.ignored_filters.clone());
                    st.accepted = cand;
                    return (!problems.is_empty()).then(|| problems.join("; "));
                }
                Err(e) => match e.culprit {
                    Some((ty, name)) if ty == type_url && incoming.contains(&name) => {
                        revert(&mut cand, &st.accepted, &name);
                        problems.push(format!("{} {name:?}: {}", types::short(ty), e.message));
                    }
                    _ => {
                        problems.push(e.message);
                        break;
                    }
                },
            }
        }
        // Nothing of this response could be applied.
        Some(problems.join("; "))
    }

    /// The RDS/EDS/SDS names the accepted resources use, where they differ from the
    /// subscription: `(type, old names, new names)`. The store drops resources no longer wanted;
    /// the SDS stream is told its new names.
    fn resubscribe(&self) -> Vec<(&'static str, BTreeSet<String>, BTreeSet<String>)> {
        let mut st = self.lock();
        let w = wanted(&st.accepted);
        let mut out = Vec::new();
        for (t, names) in [
            (types::ROUTE, w.routes),
            (types::ENDPOINT, w.endpoints),
            (types::SECRET, w.secrets),
        ] {
            let old = st.subscribed.get(t).cloned().unwrap_or_default();
            if old != names {
                st.accepted.retain(t, &names);
                st.subscribed.insert(t, names.clone());
                if t == types::SECRET {
                    let _ = self.secrets.send(names.clone());
                }
                out.push((t, old, names));
            }
        }
        out
    }

    /// Handles a state-of-the-world response (ADS or SDS): the ACK or NACK to send.
    fn sotw_response(&self, resp: &DiscoveryResponse, t: &'static str) -> DiscoveryRequest {
        let items: Vec<(String, Entry)> = resp
            .resources
            .iter()
            .map(|a| {
                (
                    resource_name(a),
                    Entry {
                        version: resp.version_info.clone(),
                        body: a.clone(),
                    },
                )
            })
            .collect();
        let incoming: BTreeSet<String> = items.iter().map(|(n, _)| n.clone()).collect();
        // LDS and CDS responses hold every resource: what is missing is deleted. RDS, EDS and
        // SDS ones hold what was asked for; a resource goes when nothing refers to it.
        let wildcard = t == types::LISTENER || t == types::CLUSTER;
        let nack = self.consider(t, &incoming, |c| {
            if wildcard {
                c.replace(t, items);
            } else {
                c.update(t, items, &[]);
            }
        });
        let mut st = self.lock();
        let names: Vec<String> = st.names(t);
        match nack {
            None => {
                st.versions.insert(t, resp.version_info.clone());
                self.status.acked(
                    types::short(t),
                    &resp.version_info,
                    st.accepted.of(t).count(),
                );
                tracing::info!(
                    r#type = types::short(t),
                    version = resp.version_info,
                    "xds: ACK"
                );
                DiscoveryRequest {
                    type_url: t.into(),
                    version_info: resp.version_info.clone(),
                    response_nonce: resp.nonce.clone(),
                    resource_names: names,
                    ..Default::default()
                }
            }
            Some(msg) => {
                self.status.nacked(types::short(t), &msg);
                tracing::warn!(
                    r#type = types::short(t),
                    version = resp.version_info,
                    error = msg,
                    "xds: NACK"
                );
                DiscoveryRequest {
                    type_url: t.into(),
                    version_info: st.versions.get(t).cloned().unwrap_or_default(),
                    response_nonce: resp.nonce.clone(),
                    resource_names: names,
                    error_detail: Some(RpcStatus {
                        code: 3, // INVALID_ARGUMENT
                        message: msg,
                        details: Vec::new(),
                    }),
                    ..Default::default()
                }
            }
        }
    }

    /// The first requests of a state-of-the-world stream for `types`.
    fn sotw_hello(&self, types_: &[(&'static str, bool)]) -> Vec<DiscoveryRequest> {
        let st = self.lock();
        types_
            .iter()
            .filter(|(t, wildcard)| {
                *wildcard || st.subscribed.get(t).is_some_and(|n| !n.is_empty())
            })
            .map(|(t, _)| DiscoveryRequest {
                type_url: (*t).into(),
                version_info: st.versions.get(t).cloned().unwrap_or_default(),
                resource_names: st.names(t),
                ..Default::default()
            })
            .collect()
    }
}

async fn run(cfg: Xds, sink: Arc<dyn Apply>, status: Arc<Status>) {
    let (secrets, secrets_rx) = tokio::sync::watch::channel(BTreeSet::new());
    let shared = Arc::new(Shared {
        cfg,
        sink,
        status,
        state: std::sync::Mutex::new(State {
            accepted: Store::default(),
            versions: BTreeMap::new(),
            subscribed: BTreeMap::new(),
        }),
        secrets,
    });
    if let Some(server) = shared.cfg.sds.clone() {
        tokio::spawn(sds_loop(shared.clone(), server, secrets_rx));
    }
    let mut backoff = Backoff::new();
    loop {
        let s = &shared;
        let got_response = match channel(&s.cfg.server).await {
            Ok(ch) => {
                let client = AggregatedDiscoveryServiceClient::new(ch)
                    .max_decoding_message_size(MAX_RESPONSE_BYTES);
                let r = match s.cfg.api {
                    XdsApi::Sotw => sotw(s, client).await,
                    XdsApi::Delta => delta(s, client).await,
                };
                s.status.set_connected(false);
                ended("ads", r)
            }
            Err(e) => {
                tracing::warn!(server = %s.cfg.server, error = %e, "xds: cannot connect");
                false
            }
        };
        backoff.wait(got_response).await;
    }
}

/// Logs how a stream ended; true when it had delivered something.
fn ended(what: &str, r: Result<u64, Failed>) -> bool {
    match r {
        Ok(n) => {
            tracing::warn!(
                stream = what,
                responses = n,
                "xds: stream ended; reconnecting"
            );
            n > 0
        }
        Err((n, e)) => {
            tracing::warn!(stream = what, responses = n, error = %e, "xds: stream failed; reconnecting");
            n > 0
        }
    }
}

/// Reconnect delays: 200 ms doubling to 10 s, with up to 50 % jitter; back to 200 ms after a
/// stream that delivered a response.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Backoff(Duration::from_millis(200))
    }

    async fn wait(&mut self, reset: bool) {
        if reset {
            self.0 = Duration::from_millis(200);
        }
        let jitter = Duration::from_millis(fastrand::u64(0..=self.0.as_millis() as u64 / 2));
        tokio::time::sleep(self.0 + jitter).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(10));
    }
}

type Failed = (u64, String);

/// Sends requests on a stream, with the node on the first only when the bootstrap says so.
struct Sender<R> {
    tx: mpsc::UnboundedSender<R>,
    node: Node,
    every: bool,
    first: bool,
}

trait WithNode {
    fn set_node(&mut self, n: Node);
}

impl WithNode for DiscoveryRequest {
    fn set_node(&mut self, n: Node) {
        self.node = Some(n);
    }
}

impl WithNode for DeltaDiscoveryRequest {
    fn set_node(&mut self, n: Node) {
        self.node = Some(n);
    }
}

impl<R: WithNode> Sender<R> {
    fn new(cfg: &Xds) -> (Self, mpsc::UnboundedReceiver<R>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Sender {
                tx,
                node: node(cfg),
                every: !cfg.node_on_first_message_only,
                first: true,
            },
            rx,
        )
    }

    fn send(&mut self, mut r: R) {
        if self.first || self.every {
            r.set_node(self.node.clone());
            self.first = false;
        }
        let _ = self.tx.send(r);
    }
}

async fn sotw(
    s: &Arc<Shared>,
    mut client: AggregatedDiscoveryServiceClient<Channel>,
) -> Result<u64, Failed> {
    let (mut tx, rx) = Sender::<DiscoveryRequest>::new(&s.cfg);
    let on_ads = ads_types(&s.cfg);
    for r in s.sotw_hello(&on_ads) {
        tx.send(r);
    }
    let mut stream = client
        .stream_aggregated_resources(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
        .await
        .map_err(|e| (0, e.to_string()))?
        .into_inner();
    s.status.set_connected(true);
    let mut n = 0u64;
    let mut nonces: BTreeMap<&'static str, String> = BTreeMap::new();
    loop {
        let Some((resp, t)) = next(&mut stream, &mut n, &on_ads, |r| &r.type_url).await? else {
            return Ok(n);
        };
        nonces.insert(t, resp.nonce.clone());
        let reply = s.sotw_response(&resp, t);
        tx.send(reply);
        for (t, _, new) in s.resubscribe() {
            if !on_ads.iter().any(|(x, _)| *x == t) {
                continue;
            }
            let version_info = s.lock().versions.get(t).cloned().unwrap_or_default();
            tx.send(DiscoveryRequest {
                type_url: t.into(),
                version_info,
                response_nonce: nonces.get(t).cloned().unwrap_or_default(),
                resource_names: new.into_iter().collect(),
                ..Default::default()
            });
        }
    }
}

/// The next response of an ADS stream of a type it asked for (others are logged and skipped),
/// counting responses in `n`; `None` when the server ended the stream.
///
/// Errors: the stream failed, with the count so far.
async fn next<R>(
    stream: &mut tonic::Streaming<R>,
    n: &mut u64,
    asked: &[(&'static str, bool)],
    type_of: impl Fn(&R) -> &String,
) -> Result<Option<(R, &'static str)>, Failed> {
    loop {
        let resp = match stream.message().await {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(None),
            Err(e) => return Err((*n, e.to_string())),
        };
        *n += 1;
        let url = type_of(&resp);
        match static_type(url).filter(|t| asked.iter().any(|(x, _)| x == t)) {
            Some(t) => return Ok(Some((resp, t))),
            None => tracing::warn!(type_url = url, "xds: a type not asked for; ignored"),
        }
    }
}

/// SDS on its own server (istio-agent's `sds-grpc` socket): state of the world, every wanted
/// secret on one stream, as istio-agent serves it (`DeltaSecrets` is unimplemented there).
async fn sds_loop(
    s: Arc<Shared>,
    server: HostAddr,
    mut names: tokio::sync::watch::Receiver<BTreeSet<String>>,
) {
    use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient;
    let mut backoff = Backoff::new();
    loop {
        // Nothing to ask for yet: wait for a listener or cluster to name a secret.
        if names.borrow().is_empty() && names.changed().await.is_err() {
            return;
        }
        let got = match channel(&server).await {
            Ok(ch) => {
                let client = SecretDiscoveryServiceClient::new(ch)
                    .max_decoding_message_size(MAX_RESPONSE_BYTES);
                let r = sds(&s, client, &mut names).await;
                ended("sds", r)
            }
            Err(e) => {
                tracing::warn!(server = %server, error = %e, "xds: cannot connect to SDS");
                false
            }
        };
        backoff.wait(got).await;
    }
}

async fn sds(
    s: &Arc<Shared>,
    mut client: envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient<Channel>,
    names: &mut tokio::sync::watch::Receiver<BTreeSet<String>>,
) -> Result<u64, Failed> {
    let (mut tx, rx) = Sender::<DiscoveryRequest>::new(&s.cfg);
    let mut asked = names.borrow_and_update().clone();
    let version = s
        .lock()
        .versions
        .get(types::SECRET)
        .cloned()
        .unwrap_or_default();
    tx.send(DiscoveryRequest {
        type_url: types::SECRET.into(),
        version_info: version,
        resource_names: asked.iter().cloned().collect(),
        ..Default::default()
    });
    let mut stream = client
        .stream_secrets(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
        .await
        .map_err(|e| (0, e.to_string()))?
        .into_inner();
    let mut n = 0u64;
    let mut nonce = String::new();
    loop {
        tokio::select! {
            m = stream.message() => {
                let resp = match m {
                    Ok(Some(r)) => r,
                    Ok(None) => return Ok(n),
                    Err(e) => return Err((n, e.to_string())),
                };
                n += 1;
                if resp.type_url != types::SECRET {
                    continue;
                }
                nonce = resp.nonce.clone();
                let reply = s.sotw_response(&resp, types::SECRET);
                tx.send(reply);
                // Secrets can complete listeners and clusters, which can name more secrets.
                s.resubscribe();
            }
            changed = names.changed() => {
                if changed.is_err() {
                    return Ok(n);
                }
                let now = names.borrow_and_update().clone();
                if now != asked {
                    asked = now;
                    let version = s.lock().versions.get(types::SECRET).cloned().unwrap_or_default();
                    tx.send(DiscoveryRequest {
                        type_url: types::SECRET.into(),
                        version_info: version,
                        response_nonce: nonce.clone(),
                        resource_names: asked.iter().cloned().collect(),
                        ..Default::default()
                    });
                }
            }
        }
    }
}

/// A resource's name, decoded from its body: field 1 of every type here (`name`, or
/// `cluster_name` of a `ClusterLoadAssignment`).
fn resource_name(a: &envoy_types::pb::google::protobuf::Any) -> String {
    use prost::Message;
    #[derive(Clone, PartialEq, prost::Message)]
    struct Named {
        #[prost(string, tag = "1")]
        name: String,
    }
    Named::decode(a.value.as_slice())
        .map(|n| n.name)
        .unwrap_or_default()
}

async fn delta(
    s: &Arc<Shared>,
    mut client: AggregatedDiscoveryServiceClient<Channel>,
) -> Result<u64, Failed> {
    let (mut tx, rx) = Sender::<DeltaDiscoveryRequest>::new(&s.cfg);
    let on_ads = ads_types(&s.cfg);
    {
        let st = s.lock();
        for (t, wildcard) in &on_ads {
            let names: Vec<String> = st.names(t);
            if *wildcard || !names.is_empty() {
                tx.send(DeltaDiscoveryRequest {
                    type_url: (*t).into(),
                    resource_names_subscribe: names,
                    initial_resource_versions: st
                        .accepted
                        .of(t)
                        .map(|(n, e)| (n.to_string(), e.version.clone()))
                        .collect(),
                    ..Default::default()
                });
            }
        }
    }
    let mut stream = client
        .delta_aggregated_resources(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
        .await
        .map_err(|e| (0, e.to_string()))?
        .into_inner();
    s.status.set_connected(true);
    let mut n = 0u64;
    loop {
        let Some((resp, t)) = next(&mut stream, &mut n, &on_ads, |r| &r.type_url).await? else {
            return Ok(n);
        };
        let items: Vec<(String, Entry)> = resp
            .resources
            .iter()
            .filter_map(|r| {
                let body = r.resource.clone()?;
                let name = if r.name.is_empty() {
                    resource_name(&body)
                } else {
                    r.name.clone()
                };
                Some((
                    name,
                    Entry {
                        version: r.version.clone(),
                        body,
                    },
                ))
            })
            .collect();
        let incoming: BTreeSet<String> = items.iter().map(|(n, _)| n.clone()).collect();
        let removed = resp.removed_resources.clone();
        let nack = s.consider(t, &incoming, |c| c.update(t, items, &removed));
        match nack {
            None => {
                let count = s.lock().accepted.of(t).count();
                s.status
                    .acked(types::short(t), &resp.system_version_info, count);
                tracing::info!(
                    r#type = types::short(t),
                    version = resp.system_version_info,
                    "xds: ACK"
                );
                tx.send(DeltaDiscoveryRequest {
                    type_url: t.into(),
                    response_nonce: resp.nonce.clone(),
                    ..Default::default()
                });
            }
            Some(msg) => {
                s.status.nacked(types::short(t), &msg);
                tracing::warn!(r#type = types::short(t), error = msg, "xds: NACK");
                tx.send(DeltaDiscoveryRequest {
                    type_url: t.into(),
                    response_nonce: resp.nonce.clone(),
                    error_detail: Some(RpcStatus {
                        code: 3,
                        message: msg,
                        details: Vec::new(),
                    }),
                    ..Default::default()
                });
            }
        }
        for (t, old, new) in s.resubscribe() {
            if !on_ads.iter().any(|(x, _)| *x == t) {
                continue;
            }
            tx.send(DeltaDiscoveryRequest {
                type_url: t.into(),
                resource_names_subscribe: new.difference(&old).cloned().collect(),
                resource_names_unsubscribe: old.difference(&new).cloned().collect(),
                ..Default::default()
            });
        }
    }
}
