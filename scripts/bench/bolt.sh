#!/usr/bin/env bash
# Bolt (SOFARPC) or Dubbo benchmark on loopback: the project's bolt-load client against its echo
# server, directly and through mosn-rs (a `bolt` or `dubbo` listener, one worker), rounds
# interleaved, medians reported. mosn-rs is pinned to CPU 1; the client and the echo server share
# CPU 0.
#
#   scripts/bench/bolt.sh [--runs N] [--duration S] [--connections C] [--in-flight M] [--size B]
#                         [--v2 | --dubbo]
#
# Prints, per round and as medians: requests/s, p50/p99 latency (µs), errors; and for mosn-rs its
# CPU time per request (user+sys from /proc) and its peak resident memory (VmHWM).
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=3 duration=8 conns=8 inflight=16 size=128 v2= proto=bolt
while [[ $# -gt 0 ]]; do
  case $1 in
    --runs) runs=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --connections) conns=$2; shift 2 ;;
    --in-flight) inflight=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --v2) v2=--v2; shift ;;
    --dubbo) proto=dubbo; shift ;;
    *) echo "bolt.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
cargo build -q --release -p mosn -p bolt-load
load=target/release/bolt-load
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

taskset -c 0 "$load" server --protocol "$proto" > "$work/server.out" &
pids+=($!)
until grep -q listening "$work/server.out" 2>/dev/null; do sleep 0.1; done
up=$(awk '/listening/{print $2}' "$work/server.out")

cat > "$work/mosn.json" <<JSON
{"servers": [{"default_log_path": "stderr", "processor": 1,
  "routers": [{"router_config_name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"],
    "routers": [{"match": {"headers": [{"name": "service", "value": ".*", "regex": true}]},
                 "route": {"cluster_name": "echo"}}]}]}],
  "listeners": [{"name": "rpc", "address": "127.0.0.1:0", "bind_port": true,
    "filter_chains": [{"filters": [{"type": "proxy", "config": {
      "downstream_protocol": "$proto", "upstream_protocol": "$proto", "router_config_name": "r"}}]}]}]}],
 "cluster_manager": {"clusters": [{"name": "echo", "type": "SIMPLE", "lb_type": "LB_ROUNDROBIN",
   "hosts": [{"address": "$up"}]}]}}
JSON
taskset -c 1 target/release/mosn start -c "$work/mosn.json" > "$work/mosn.log" 2>&1 &
mosn_pid=$!
pids+=($mosn_pid)
for _ in $(seq 100); do grep -q 'listener=rpc' "$work/mosn.log" && break; sleep 0.1; done
proxy=$(grep -o 'listener=rpc .*address=[0-9.:]*' "$work/mosn.log" | head -1 | sed 's/.*address=//')
[[ -n $proxy ]] || { echo "mosn did not start:"; cat "$work/mosn.log"; exit 1; }

cpu_ticks() { awk '{print $14 + $15}' "/proc/$mosn_pid/stat"; }
hz=$(getconf CLK_TCK)
run() { taskset -c 0 "$load" client --protocol "$proto" --target "$1" --connections "$conns" --in-flight "$inflight" --duration "$duration" --size "$size" $v2; }
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p"; }

echo "bolt.sh: $proto, $runs rounds x ${duration}s, $conns connections x $inflight in flight, ${size}-byte content ${v2}"
: > "$work/direct" ; : > "$work/mosn"
for r in $(seq "$runs"); do
  d=$(run "$up"); echo "round $r direct: $d"; echo "$d" >> "$work/direct"
  t0=$(cpu_ticks)
  m=$(run "$proxy")
  t1=$(cpu_ticks)
  reqs=$(echo "$m" | field requests)
  us=$(python3 -c "print(round(($t1-$t0)/$hz*1e6/max($reqs,1), 2))")
  echo "round $r mosn:   $m cpu_us_per_req=$us"; echo "$m cpu_us_per_req=$us" >> "$work/mosn"
done
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo
printf '%-8s %10s %8s %8s %7s %14s %9s\n' target rps p50_us p99_us errors cpu_us_per_req rss_MB
for t in direct mosn; do
  rps=$(field rps < "$work/$t" | median); p50=$(field p50_us < "$work/$t" | median)
  p99=$(field p99_us < "$work/$t" | median); err=$(field errors < "$work/$t" | median)
  cpu=-; rss=-
  if [[ $t == mosn ]]; then
    cpu=$(field cpu_us_per_req < "$work/mosn" | median)
    rss=$(awk '/VmHWM/{printf "%.1f", $2/1024}' "/proc/$mosn_pid/status")
  fi
  printf '%-8s %10s %8s %8s %7s %14s %9s\n' "$t" "$rps" "$p50" "$p99" "$err" "$cpu" "$rss"
done
