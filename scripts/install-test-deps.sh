#!/usr/bin/env bash
# Installs what the test suites need beyond the Rust toolchain (Debian packages). Idempotent.
set -euo pipefail
need=()
command -v curl >/dev/null 2>&1 || need+=(curl)
if [[ ${#need[@]} -gt 0 ]]; then
  if [[ $(id -u) != 0 ]]; then
    echo "install-test-deps: missing ${need[*]}; install them (apt-get install ${need[*]})" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${need[@]}" >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q "${need[@]}" >/dev/null; }
fi
