#!/usr/bin/env bash
# TLS variant of scripts/bench/bench.sh http1: TLS on the downstream side of mosn-rs, nginx and
# HAProxy (same ECDSA P-256 certificate, TLS 1.3), plaintext to one nginx upstream. Two loads:
#   keepalive  wrk -c50 over kept-alive TLS connections        -> requests/s
#   handshake  wrk -c50 with "Connection: close" per request   -> new TLS handshakes/s
# Each proxy runs one worker pinned to CPU 1; wrk and the upstream share CPU 0. Rounds are
# interleaved and medians reported, as in bench.sh. Loopback only; every run is bounded.
#   bash scripts/bench/tls.sh [--runs N] [--duration S]
set -euo pipefail
runs=3 duration=6
while [[ $# -gt 0 ]]; do
  case $1 in --runs) runs=$2; shift 2 ;; --duration) duration=$2; shift 2 ;; *) echo "tls.sh: unknown $1" >&2; exit 2 ;; esac
done
here=$(cd "$(dirname "$0")/../.." && pwd)
mosn=$here/target/release/mosn
[[ -x $mosn ]] || { echo "tls.sh: build first: cargo build --release" >&2; exit 2; }
for c in nginx haproxy wrk openssl taskset python3; do command -v $c >/dev/null || { echo "tls.sh: $c missing" >&2; exit 2; }; done
work=$(mktemp -d -t mosn-tls-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.2; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; echo "tls.sh: nothing on $1" >&2; return 1; }
start() { local name=$1 cpu=$2; shift 2; taskset -c "$cpu" "$@" >"$work/$name.log" 2>&1 & pids+=($!); echo $! >"$work/$name.pid"; }
proc_tree() { local p=$1; echo "$p"; for c in $(cat /proc/$p/task/*/children 2>/dev/null); do proc_tree "$c"; done; }
cpu_ticks() { local t=0 p; for p in $(proc_tree "$1"); do [[ -r /proc/$p/stat ]] && t=$((t + $(awk '{print $14+$15}' /proc/$p/stat))); done; echo $t; }

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
  -keyout "$work/key.pem" -out "$work/cert.pem" >/dev/null 2>&1
cat "$work/cert.pem" "$work/key.pem" >"$work/haproxy.pem"
up=$(free_port) pn=$(free_port) ph=$(free_port) pm=$(free_port)
mkdir -p "$work/up" "$work/nx"
cat >"$work/up/nginx.conf" <<C
worker_processes 1; daemon off; pid $work/up/nginx.pid; error_log $work/up/error.log;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$up; location / { default_type text/plain; return 200 "ok"; } } }
C
start upstream 0 nginx -p "$work/up" -c "$work/up/nginx.conf"
cat >"$work/nx/nginx.conf" <<C
worker_processes 1; daemon off; pid $work/nx/nginx.pid; error_log $work/nx/error.log;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 1000000; ssl_session_cache off; ssl_session_tickets off;
  upstream up { server 127.0.0.1:$up; keepalive 256; keepalive_requests 1000000; }
  server { listen 127.0.0.1:$pn ssl; ssl_certificate $work/cert.pem; ssl_certificate_key $work/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
C
start nginx 1 nginx -p "$work/nx" -c "$work/nx/nginx.conf"
cat >"$work/haproxy.cfg" <<C
global
  nbthread 1
  maxconn 8000
  tune.ssl.cachesize 0
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
frontend fe
  bind 127.0.0.1:$ph ssl crt $work/haproxy.pem no-tls-tickets
  default_backend be
backend be
  server s1 127.0.0.1:$up
C
start haproxy 1 haproxy -f "$work/haproxy.cfg" -db
cat >"$work/mosn.json" <<C
{"servers":[{"default_log_path":"$work/mosn.log","default_log_level":"ERROR","processor":1,
 "routers":[{"router_config_name":"r","virtual_hosts":[{"name":"all","domains":["*"],"routers":[{"match":{"prefix":"/"},"route":{"cluster_name":"up"}}]}]}],
 "listeners":[{"name":"tls","address":"127.0.0.1:$pm","bind_port":true,"filter_chains":[{
   "tls_context":{"status":true,"cert_chain":"$work/cert.pem","private_key":"$work/key.pem"},
   "filters":[{"type":"proxy","config":{"downstream_protocol":"Http1","upstream_protocol":"Http1","router_config_name":"r"}}]}]}]}],
 "cluster_manager":{"clusters":[{"name":"up","type":"SIMPLE","hosts":[{"address":"127.0.0.1:$up"}]}]}}
C
start mosn 1 "$mosn" start -c "$work/mosn.json"
wait_port "$up"; wait_port "$pn"; wait_port "$ph"; wait_port "$pm"
declare -A port=([nginx]=$pn [haproxy]=$ph [mosn]=$pm)
hz=$(getconf CLK_TCK)
echo "load target round rate cpu_us" >"$work/results"
for r in $(seq 1 "$runs"); do
  for load in keepalive handshake; do
    for t in nginx haproxy mosn; do
      hdr=(); [[ $load == handshake ]] && hdr=(-H "Connection: close")
      pid=$(cat "$work/$t.pid"); c0=$(cpu_ticks "$pid")
      taskset -c 0 wrk -t1 -c50 -d"${duration}s" "${hdr[@]}" "https://127.0.0.1:${port[$t]}/" >"$work/out" 2>&1 || true
      c1=$(cpu_ticks "$pid")
      python3 - "$work/out" "$load" "$t" "$r" "$c0" "$c1" "$hz" >>"$work/results" <<'PY'
import re,sys
t=open(sys.argv[1]).read(); load,tg,r,c0,c1,hz=sys.argv[2:8]
m=re.search(r'Requests/sec:\s+([\d.]+)',t); n=re.search(r'(\d+) requests in',t)
rate=float(m.group(1)) if m else 0.0; cnt=int(n.group(1)) if n else 1
print(load,tg,r,rate,round((int(c1)-int(c0))*1e6/int(hz)/max(cnt,1),2))
PY
    done
  done
done
python3 - "$work/results" <<'PY'
import sys,statistics as st
rows=[l.split() for l in open(sys.argv[1]).read().splitlines()[1:]]
print("TLS downstream, one worker each on CPU 1; medians of interleaved rounds")
for load,unit in (("keepalive","req/s"),("handshake","handshakes/s")):
    med={}
    for t in ("nginx","haproxy","mosn"):
        rs=[(float(r[3]),float(r[4])) for r in rows if r[0]==load and r[1]==t]
        med[t]=(st.median(x for x,_ in rs), st.median(y for _,y in rs))
        print(f"{load:9} {t:8} {med[t][0]:10.1f} {unit:12} cpu {med[t][1]:7.2f} us/req")
    for p in ("nginx","haproxy"):
        if med[p][0]>0: print(f"{load:9} mosn/{p}: {med['mosn'][0]/med[p][0]:.2f}x rate, {med['mosn'][1]/med[p][1] if med[p][1] else 0:.2f}x cpu")
PY
