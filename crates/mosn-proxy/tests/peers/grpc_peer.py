"""A real gRPC server and client (grpcio, gRPC's C core) for the proxy's interop tests.

Messages are raw bytes (identity serializers), so no .proto needs compiling.

  grpc_peer.py server            prints "PORT <n>", serves until killed
  grpc_peer.py client HOST:PORT  runs every case through HOST:PORT, prints "OK <case>" for each,
                                 exits 1 on the first failure
  grpc_peer.py calls HOST:PORT OK FAIL
                                 makes OK calls to Unary and FAIL calls to Fail, prints "DONE"

Methods of service test.Svc: Unary (echo with "pong:" prefix, echoes x-echo metadata as a
trailer), Fail (NOT_FOUND "nope"), ServerStream (n items), ClientStream (count and bytes),
Bidi (echo each message as it comes), Slow (one item, then waits for the client's cancellation,
which it counts), Cancelled (the number of cancellations the server observed).
"""
import sys
import threading
import time

import grpc
from concurrent import futures

SVC = "test.Svc"
MAX = 64 * 1024 * 1024
OPTS = [("grpc.max_send_message_length", MAX), ("grpc.max_receive_message_length", MAX)]
cancelled = 0
lock = threading.Lock()


def unary(req, ctx):
    md = dict(ctx.invocation_metadata())
    if "x-echo" in md:
        ctx.set_trailing_metadata((("x-echo-trailer", md["x-echo"]),))
    if len(req) > 1024:
        return req  # large messages come back whole
    return b"pong:" + req


def fail(req, ctx):
    ctx.abort(grpc.StatusCode.NOT_FOUND, "nope")


def server_stream(req, ctx):
    for i in range(int(req)):
        yield b"item-%d" % i


def client_stream(it, ctx):
    n = total = 0
    for m in it:
        n += 1
        total += len(m)
    return b"count=%d total=%d" % (n, total)


def bidi(it, ctx):
    for m in it:
        yield b"echo:" + m


def slow(req, ctx):
    global cancelled
    yield b"first"
    deadline = time.time() + 20
    while ctx.is_active() and time.time() < deadline:
        time.sleep(0.01)
    if not ctx.is_active():
        with lock:
            cancelled += 1


def cancelled_count(req, ctx):
    with lock:
        return str(cancelled).encode()


def serve():
    h = grpc.method_handlers_generic_handler(SVC, {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        "Slow": grpc.unary_stream_rpc_method_handler(slow),
        "Cancelled": grpc.unary_unary_rpc_method_handler(cancelled_count),
    })
    s = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=OPTS)
    s.add_generic_rpc_handlers((h,))
    port = s.add_insecure_port("127.0.0.1:0")
    s.start()
    print("PORT %d" % port, flush=True)
    s.wait_for_termination()


def check(cond, what):
    if not cond:
        print("FAIL %s" % what, flush=True)
        sys.exit(1)


def client(target):
    ch = grpc.insecure_channel(target, options=OPTS)
    grpc.channel_ready_future(ch).result(timeout=10)
    m = lambda name: "/%s/%s" % (SVC, name)

    r, call = ch.unary_unary(m("Unary")).with_call(b"ping", metadata=(("x-echo", "v1"),), timeout=10)
    check(r == b"pong:ping", "unary reply %r" % r)
    check(call.code() == grpc.StatusCode.OK, "unary status")
    check(dict(call.trailing_metadata()).get("x-echo-trailer") == "v1", "unary trailer %r" % (call.trailing_metadata(),))
    print("OK unary", flush=True)

    big = bytes(range(256)) * (16 * 1024)  # 4 MiB
    r = ch.unary_unary(m("Unary"))(big, timeout=30)
    check(r == big, "large unary")
    print("OK large_unary", flush=True)

    try:
        ch.unary_unary(m("Fail"))(b"x", timeout=10)
        check(False, "error status: no error")
    except grpc.RpcError as e:
        check(e.code() == grpc.StatusCode.NOT_FOUND and e.details() == "nope", "error status %s %r" % (e.code(), e.details()))
    print("OK status_code_and_message", flush=True)

    items = list(ch.unary_stream(m("ServerStream"))(b"5", timeout=10))
    check(items == [b"item-%d" % i for i in range(5)], "server stream %r" % items)
    print("OK server_streaming", flush=True)

    r = ch.stream_unary(m("ClientStream"))(iter([b"abc"] * 10), timeout=10)
    check(r == b"count=10 total=30", "client stream %r" % r)
    print("OK client_streaming", flush=True)

    # Ping-pong: each message must come back before the next is sent (no buffering, no stall).
    import queue
    q = queue.Queue()
    def gen():
        for i in range(10):
            yield b"m%d" % i
            got = q.get(timeout=10)
            check(got == b"echo:m%d" % i, "bidi %r" % got)
    for reply in ch.stream_stream(m("Bidi"))(gen(), timeout=30):
        q.put(reply)
    print("OK bidi_ping_pong", flush=True)

    it = ch.unary_stream(m("Slow"))(b"", timeout=30)
    check(next(it) == b"first", "slow first")
    it.cancel()
    deadline = time.time() + 10
    n = 0
    while time.time() < deadline:
        n = int(ch.unary_unary(m("Cancelled"))(b"", timeout=10))
        if n >= 1:
            break
        time.sleep(0.05)
    check(n >= 1, "the server never saw the cancellation")
    print("OK cancel_observed_by_server", flush=True)


def calls(target, ok, fail):
    ch = grpc.insecure_channel(target, options=OPTS)
    for _ in range(ok):
        check(ch.unary_unary("/%s/Unary" % SVC)(b"x", timeout=10) == b"pong:x", "unary")
    for _ in range(fail):
        try:
            ch.unary_unary("/%s/Fail" % SVC)(b"x", timeout=10)
            check(False, "Fail succeeded")
        except grpc.RpcError as e:
            check(e.code() == grpc.StatusCode.NOT_FOUND, "Fail code %s" % e.code())
    print("DONE", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve()
    elif sys.argv[1] == "calls":
        calls(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        client(sys.argv[2])
