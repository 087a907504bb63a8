#!/usr/bin/env bash
# Runs every test of the project: installs the test peers, then the whole workspace's tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
cargo test --workspace --locked "$@"
