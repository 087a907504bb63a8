#!/usr/bin/env bash
# Runs every test of the project: installs the test peers, then the whole workspace's tests. Every
# test binary runs even when one fails (--no-fail-fast); the last line sums them up.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh || exit 1
log=$(mktemp -t mosn-test.XXXXXX)
trap 'rm -f "$log"' EXIT
# The hot-upgrade tests drive the project's own Bolt load generator, a binary of another package.
cargo build --locked -p bolt-load || exit 1
cargo test --workspace --locked --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
awk '
  /^test result:/ {
    bins++
    for (i = 1; i <= NF; i++) {
      if ($(i+1) ~ /^passed;?$/) p += $i
      if ($(i+1) ~ /^failed;?$/) f += $i
      if ($(i+1) ~ /^ignored;?$/) g += $i
    }
  }
  /^error: .*test failed|^error: could not compile/ { broken++ }
  END {
    printf "SUMMARY: %d passed, %d failed, %d ignored in %d test binaries%s\n", p, f, g, bins,
      (broken ? sprintf("; %d binaries failed or did not build", broken) : "")
  }' "$log"
exit "$status"
