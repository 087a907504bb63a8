"""A small xDS v3 ADS server for the xDS tests, on PyPI's xds-protos (Envoy's generated API) and
grpcio: state of the world (StreamAggregatedResources) and delta (DeltaAggregatedResources), and
SDS (SecretDiscoveryService.StreamSecrets, state of the world, as istio-agent serves it).

Usage: ads_server.py STATE_FILE LOG_FILE
  STATE_FILE  JSON {"version": "...", "resources": {TYPE_URL: [resource in Envoy's proto JSON]}};
              {"@raw": {"name", "type_url", "hex"}} sends those bytes as the resource.
              It is re-read when it changes (write a new file and rename it over the old one);
              every stream then gets the new state.
  LOG_FILE    every request received, one JSON object per line: stream, api, type, version_info,
              nonce, error (NACK message or null), node (present or not), names / subscribe /
              unsubscribe.
Prints "PORT <port>" on stdout once serving on 127.0.0.1 (a port the OS chose, or $ADS_PORT), or
"PORT 0" when serving on the unix socket $ADS_UNIX.

Types this build of xds-protos does not know (Istio's own filter configs) are sent as
xds.type.v3.TypedStruct wrapping the original type URL, as Istio itself did before 1.20.
"""

import hashlib
import importlib
import json
import os
import pkgutil
import queue
import sys
import threading
import time
from concurrent import futures

import grpc
from google.protobuf import any_pb2, json_format, symbol_database
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from envoy.service.secret.v3 import sds_pb2_grpc

STATE, LOG = sys.argv[1], sys.argv[2]
WILDCARD = {
    "type.googleapis.com/envoy.config.listener.v3.Listener",
    "type.googleapis.com/envoy.config.cluster.v3.Cluster",
}
log_lock = threading.Lock()
cond = threading.Condition()
state = {"version": "", "resources": {}, "stamp": None}
loaded_packages = set()


def known(full_name):
    """Imports the generated modules of a type's package; True when the type is then known."""
    pool = symbol_database.Default().pool
    try:
        pool.FindMessageTypeByName(full_name)
        return True
    except KeyError:
        pass
    package = full_name.rsplit(".", 1)[0]
    if package in loaded_packages:
        return False
    loaded_packages.add(package)
    try:
        mod = importlib.import_module(package)
        for info in pkgutil.iter_modules(mod.__path__):
            if info.name.endswith("_pb2"):
                importlib.import_module(package + "." + info.name)
    except ImportError:
        return False
    try:
        pool.FindMessageTypeByName(full_name)
        return True
    except KeyError:
        return False


def wrap_unknown(v):
    """Replaces every Any of an unknown type with a TypedStruct carrying it."""
    if isinstance(v, list):
        return [wrap_unknown(x) for x in v]
    if not isinstance(v, dict):
        return v
    out = {k: wrap_unknown(x) for k, x in v.items()}
    t = out.get("@type")
    if t and not known(t.split("/", 1)[1]):
        known("xds.type.v3.TypedStruct")
        rest = {k: x for k, x in out.items() if k != "@type"}
        out = {"@type": "type.googleapis.com/xds.type.v3.TypedStruct", "type_url": t, "value": rest}
    return out


def pack(type_url, obj):
    if "@raw" in obj:  # bytes as given, for hostile-input tests: {"@raw": {"type_url", "hex"}}
        return any_pb2.Any(type_url=obj["@raw"]["type_url"], value=bytes.fromhex(obj["@raw"]["hex"]))
    a = any_pb2.Any()
    json_format.ParseDict(wrap_unknown({"@type": type_url, **obj}), a)
    return a


def name_of(obj):
    return obj.get("name") or obj.get("cluster_name") or obj.get("@raw", {}).get("name")


def load():
    try:
        st = os.stat(STATE)
    except FileNotFoundError:
        return
    stamp = (st.st_mtime_ns, st.st_ino, st.st_size)
    if stamp == state["stamp"]:
        return
    with open(STATE) as f:
        doc = json.load(f)
    res = {}
    for t, items in doc.get("resources", {}).items():
        res[t] = {}
        for obj in items:
            body = pack(t, obj)
            res[t][name_of(obj)] = (body, hashlib.sha1(body.SerializeToString()).hexdigest()[:12])
    with cond:
        state.update(version=str(doc.get("version", "")), resources=res, stamp=stamp)
        cond.notify_all()


def watch():
    while True:
        try:
            load()
        except Exception as e:  # a half-written file: read it again next round
            print("state:", e, file=sys.stderr, flush=True)
        time.sleep(0.05)


def record(**kw):
    with log_lock, open(LOG, "a") as f:
        f.write(json.dumps(kw) + "\n")


streams = iter(range(1, 1 << 30))


def quietly(requests):
    """The requests of a stream, ending quietly when the client goes away."""
    try:
        yield from requests
    except grpc.RpcError:
        return


def pump(context, out, types, respond):
    """Yields respond(t) for each type the reader queues, and for every type in `types` when the
    served resources change; respond may return None for nothing to send. Ends with the stream."""
    seen = state["stamp"]
    while context.is_active():
        try:
            queued = [out.get(timeout=0.05)]
        except queue.Empty:
            with cond:
                stamp = state["stamp"]
            if stamp == seen:
                continue
            seen = stamp
            queued = list(types)
        for t in queued:
            if t is None:
                return
            r = respond(t)
            if r is not None:
                yield r


def sotw(request_iterator, context, api):
    """A state-of-the-world stream (ADS, or SDS as istio-agent serves it)."""
    sid = next(streams)
    wanted = {}  # type -> names ([] = all)
    out = queue.Queue()
    n = [0]

    def reader():
        for req in quietly(request_iterator):
            record(stream=sid, api=api, type=req.type_url, version_info=req.version_info,
                   nonce=req.response_nonce, node=req.HasField("node"),
                   error=req.error_detail.message if req.HasField("error_detail") else None,
                   names=list(req.resource_names))
            first = req.type_url not in wanted
            changed = wanted.get(req.type_url) != list(req.resource_names)
            wanted[req.type_url] = list(req.resource_names)
            if first or changed:
                out.put(req.type_url)
        out.put(None)

    def respond(t):
        with cond:
            have = state["resources"].get(t, {})
            version = state["version"]
        names = wanted.get(t) or []
        n[0] += 1
        resp = discovery_pb2.DiscoveryResponse(version_info=version, type_url=t, nonce=f"{sid}-{n[0]}")
        for name, (body, _) in sorted(have.items()):
            if t in WILDCARD or name in names:
                resp.resources.append(body)
        return resp

    threading.Thread(target=reader, daemon=True).start()
    yield from pump(context, out, wanted, respond)


class SDS(sds_pb2_grpc.SecretDiscoveryServiceServicer):
    def StreamSecrets(self, request_iterator, context):
        yield from sotw(request_iterator, context, "sds")


class ADS(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    def StreamAggregatedResources(self, request_iterator, context):
        yield from sotw(request_iterator, context, "sotw")

    def DeltaAggregatedResources(self, request_iterator, context):
        sid = next(streams)
        subs = {}  # type -> set of names, or None for a wildcard
        sent = {}  # type -> {name: hash} the client has
        out = queue.Queue()
        n = [0]

        def reader():
            for req in quietly(request_iterator):
                record(stream=sid, api="delta", type=req.type_url, nonce=req.response_nonce,
                       node=req.HasField("node"),
                       error=req.error_detail.message if req.HasField("error_detail") else None,
                       subscribe=list(req.resource_names_subscribe),
                       unsubscribe=list(req.resource_names_unsubscribe),
                       initial=dict(req.initial_resource_versions))
                t = req.type_url
                if t not in subs:
                    subs[t] = None if (t in WILDCARD and not req.resource_names_subscribe) else set()
                    sent[t] = dict(req.initial_resource_versions)
                if subs[t] is not None:
                    subs[t] |= set(req.resource_names_subscribe)
                    subs[t] -= set(req.resource_names_unsubscribe)
                if not req.response_nonce or req.resource_names_subscribe or req.resource_names_unsubscribe:
                    out.put(t)
            out.put(None)

        def diff(t):
            with cond:
                have = state["resources"].get(t, {})
                version = state["version"]
            want = subs.get(t)
            mine = {k: v for k, v in have.items() if want is None or k in want}
            client = sent.setdefault(t, {})
            resp = discovery_pb2.DeltaDiscoveryResponse(type_url=t, system_version_info=version)
            for name, (body, h) in sorted(mine.items()):
                if client.get(name) != h:
                    resp.resources.add(name=name, version=h, resource=body)
                    client[name] = h
            for name in sorted(set(client) - set(mine)):
                resp.removed_resources.append(name)
                del client[name]
            if not resp.resources and not resp.removed_resources:
                return None
            n[0] += 1
            resp.nonce = f"{sid}-{n[0]}"
            return resp

        threading.Thread(target=reader, daemon=True).start()
        yield from pump(context, out, subs, diff)


def main():
    load()
    threading.Thread(target=watch, daemon=True).start()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16),
                         options=[("grpc.max_send_message_length", 64 << 20)])
    ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(ADS(), server)
    sds_pb2_grpc.add_SecretDiscoveryServiceServicer_to_server(SDS(), server)
    unix = os.environ.get("ADS_UNIX")
    if unix:
        if os.path.exists(unix):
            os.unlink(unix)
        server.add_insecure_port("unix:" + unix)
        port = 0
    else:
        port = server.add_insecure_port("127.0.0.1:" + os.environ.get("ADS_PORT", "0"))
    server.start()
    print(f"PORT {port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
