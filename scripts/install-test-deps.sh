#!/usr/bin/env bash
# Installs what the test suites need beyond the Rust toolchain (Debian packages). Idempotent.
set -euo pipefail
need=()
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)   # interop: a real Prometheus scrapes mosn
command -v iptables >/dev/null 2>&1 || need+=(iptables)       # original_dst: REDIRECT in a test netns
command -v ip >/dev/null 2>&1 || need+=(iproute2)
if [[ ${#need[@]} -gt 0 ]]; then
  if [[ $(id -u) != 0 ]]; then
    echo "install-test-deps: missing ${need[*]}; install them (apt-get install ${need[*]})" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  # Keep package scripts from starting daemons (prometheus): the tests start what they need.
  [[ -e /usr/sbin/policy-rc.d ]] || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; }
  apt-get install -y -q "${need[@]}" >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q "${need[@]}" >/dev/null; }
fi
