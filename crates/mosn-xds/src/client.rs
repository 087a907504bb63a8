//! The ADS client: one gRPC stream to the control plane, state of the world
//! (`StreamAggregatedResources`) or delta (`DeltaAggregatedResources`), on its own thread (the
//! control thread; never a worker's).
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
    DiscoveryRequest,
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

/// What the client has accepted, kept across reconnects.
struct Session {
    cfg: Xds,
    sink: Arc<dyn Apply>,
    status: Arc<Status>,
    accepted: Store,
    /// Last accepted `version_info` per type (state of the world).
    versions: BTreeMap<&'static str, String>,
    /// Names subscribed per non-wildcard type (RDS, EDS).
    subscribed: BTreeMap<&'static str, BTreeSet<String>>,
}

/// The types this client asks for, with whether the subscription is a wildcard.
const TYPES: [(&str, bool); 4] = [
    (types::CLUSTER, true),
    (types::ENDPOINT, false),
    (types::LISTENER, true),
    (types::ROUTE, false),
];

fn static_type(t: &str) -> Option<&'static str> {
    TYPES.iter().map(|(t, _)| *t).find(|x| *x == t)
}

impl Session {
    /// Merges a response into a copy of the accepted store, translates and applies it. Returns
    /// the NACK message when something was left out.
    fn consider(
        &mut self,
        type_url: &'static str,
        incoming: &BTreeSet<String>,
        merge: impl FnOnce(&mut Store),
    ) -> Option<String> {
        let mut cand = self.accepted.clone();
        merge(&mut cand);
        if type_url == types::ENDPOINT || type_url == types::ROUTE {
            if let Some(s) = self.subscribed.get(type_url) {
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
            if !bad.is_empty() {
                for r in bad {
                    revert(&mut cand, &self.accepted, &r.name);
                    problems.push(r.to_string());
                }
                continue;
            }
            match self.sink.apply(&t) {
                Ok(()) => {
                    self.status.set_ignored_filters(
                        t.ignored_filters
                            .iter()
                            .map(|(k, v)| (k.clone(), *v))
                            .collect(),
                    );
                    self.accepted = cand;
                    return (!problems.is_empty()).then(|| problems.join("; "));
                }
                Err(e) => match e.culprit {
                    Some((ty, name)) if ty == type_url && incoming.contains(&name) => {
                        revert(&mut cand, &self.accepted, &name);
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

    /// The RDS/EDS names the accepted resources use, where they differ from the subscription:
    /// `(type, new names)`. The store drops resources no longer wanted.
    fn resubscribe(&mut self) -> Vec<(&'static str, BTreeSet<String>, BTreeSet<String>)> {
        let w = wanted(&self.accepted);
        let mut out = Vec::new();
        for (t, names) in [(types::ROUTE, w.routes), (types::ENDPOINT, w.endpoints)] {
            let old = self.subscribed.get(t).cloned().unwrap_or_default();
            if old != names {
                self.accepted.retain(t, &names);
                self.subscribed.insert(t, names.clone());
                out.push((t, old, names));
            }
        }
        out
    }
}

async fn run(cfg: Xds, sink: Arc<dyn Apply>, status: Arc<Status>) {
    let mut s = Session {
        cfg,
        sink,
        status,
        accepted: Store::default(),
        versions: BTreeMap::new(),
        subscribed: BTreeMap::new(),
    };
    let mut backoff = Duration::from_millis(200);
    loop {
        let got_response = match channel(&s.cfg.server).await {
            Ok(ch) => {
                let client = AggregatedDiscoveryServiceClient::new(ch)
                    .max_decoding_message_size(MAX_RESPONSE_BYTES);
                let r = match s.cfg.api {
                    XdsApi::Sotw => sotw(&mut s, client).await,
                    XdsApi::Delta => delta(&mut s, client).await,
                };
                s.status.set_connected(false);
                match r {
                    Ok(n) => {
                        tracing::warn!(responses = n, "xds: stream ended; reconnecting");
                        n > 0
                    }
                    Err((n, e)) => {
                        tracing::warn!(responses = n, error = %e, "xds: stream failed; reconnecting");
                        n > 0
                    }
                }
            }
            Err(e) => {
                tracing::warn!(server = %s.cfg.server, error = %e, "xds: cannot connect");
                false
            }
        };
        if got_response {
            backoff = Duration::from_millis(200);
        }
        let jitter = Duration::from_millis(fastrand::u64(0..=backoff.as_millis() as u64 / 2));
        tokio::time::sleep(backoff + jitter).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

type Failed = (u64, String);

async fn sotw(
    s: &mut Session,
    mut client: AggregatedDiscoveryServiceClient<Channel>,
) -> Result<u64, Failed> {
    let (tx, rx) = mpsc::unbounded_channel::<DiscoveryRequest>();
    let node = node(&s.cfg);
    let every = !s.cfg.node_on_first_message_only;
    let mut first = true;
    let mut send = |mut r: DiscoveryRequest| {
        if first || every {
            r.node = Some(node.clone());
            first = false;
        }
        let _ = tx.send(r);
    };
    for (t, wildcard) in TYPES {
        if wildcard || s.subscribed.get(t).is_some_and(|n| !n.is_empty()) {
            send(DiscoveryRequest {
                type_url: t.into(),
                version_info: s.versions.get(t).cloned().unwrap_or_default(),
                resource_names: s.subscribed.get(t).into_iter().flatten().cloned().collect(),
                ..Default::default()
            });
        }
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
        let resp = match stream.message().await {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(n),
            Err(e) => return Err((n, e.to_string())),
        };
        n += 1;
        let Some(t) = static_type(&resp.type_url) else {
            tracing::warn!(
                type_url = resp.type_url,
                "xds: a type not asked for; ignored"
            );
            continue;
        };
        nonces.insert(t, resp.nonce.clone());
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
        let wildcard = t == types::LISTENER || t == types::CLUSTER;
        let nack = s.consider(t, &incoming, |c| {
            if wildcard {
                c.replace(t, items);
            } else {
                c.update(t, items, &[]);
            }
        });
        let names = |s: &Session, t| -> Vec<String> {
            s.subscribed.get(t).into_iter().flatten().cloned().collect()
        };
        match nack {
            None => {
                s.versions.insert(t, resp.version_info.clone());
                s.status.acked(
                    types::short(t),
                    &resp.version_info,
                    s.accepted.of(t).count(),
                );
                tracing::info!(
                    r#type = types::short(t),
                    version = resp.version_info,
                    "xds: ACK"
                );
                send(DiscoveryRequest {
                    type_url: t.into(),
                    version_info: resp.version_info.clone(),
                    response_nonce: resp.nonce.clone(),
                    resource_names: names(s, t),
                    ..Default::default()
                });
            }
            Some(msg) => {
                s.status.nacked(types::short(t), &msg);
                tracing::warn!(
                    r#type = types::short(t),
                    version = resp.version_info,
                    error = msg,
                    "xds: NACK"
                );
                send(DiscoveryRequest {
                    type_url: t.into(),
                    version_info: s.versions.get(t).cloned().unwrap_or_default(),
                    response_nonce: resp.nonce.clone(),
                    resource_names: names(s, t),
                    error_detail: Some(RpcStatus {
                        code: 3, // INVALID_ARGUMENT
                        message: msg,
                        details: Vec::new(),
                    }),
                    ..Default::default()
                });
            }
        }
        for (t, _, new) in s.resubscribe() {
            send(DiscoveryRequest {
                type_url: t.into(),
                version_info: s.versions.get(t).cloned().unwrap_or_default(),
                response_nonce: nonces.get(t).cloned().unwrap_or_default(),
                resource_names: new.into_iter().collect(),
                ..Default::default()
            });
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
    s: &mut Session,
    mut client: AggregatedDiscoveryServiceClient<Channel>,
) -> Result<u64, Failed> {
    let (tx, rx) = mpsc::unbounded_channel::<DeltaDiscoveryRequest>();
    let node = node(&s.cfg);
    let every = !s.cfg.node_on_first_message_only;
    let mut first = true;
    let mut send = |mut r: DeltaDiscoveryRequest| {
        if first || every {
            r.node = Some(node.clone());
            first = false;
        }
        let _ = tx.send(r);
    };
    for (t, wildcard) in TYPES {
        let names: Vec<String> = s.subscribed.get(t).into_iter().flatten().cloned().collect();
        if wildcard || !names.is_empty() {
            send(DeltaDiscoveryRequest {
                type_url: t.into(),
                resource_names_subscribe: names,
                initial_resource_versions: s
                    .accepted
                    .of(t)
                    .map(|(n, e)| (n.to_string(), e.version.clone()))
                    .collect(),
                ..Default::default()
            });
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
        let resp = match stream.message().await {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(n),
            Err(e) => return Err((n, e.to_string())),
        };
        n += 1;
        let Some(t) = static_type(&resp.type_url) else {
            tracing::warn!(
                type_url = resp.type_url,
                "xds: a type not asked for; ignored"
            );
            continue;
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
                s.status.acked(
                    types::short(t),
                    &resp.system_version_info,
                    s.accepted.of(t).count(),
                );
                tracing::info!(
                    r#type = types::short(t),
                    version = resp.system_version_info,
                    "xds: ACK"
                );
                send(DeltaDiscoveryRequest {
                    type_url: t.into(),
                    response_nonce: resp.nonce.clone(),
                    ..Default::default()
                });
            }
            Some(msg) => {
                s.status.nacked(types::short(t), &msg);
                tracing::warn!(r#type = types::short(t), error = msg, "xds: NACK");
                send(DeltaDiscoveryRequest {
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
            send(DeltaDiscoveryRequest {
                type_url: t.into(),
                resource_names_subscribe: new.difference(&old).cloned().collect(),
                resource_names_unsubscribe: old.difference(&new).cloned().collect(),
                ..Default::default()
            });
        }
    }
}
