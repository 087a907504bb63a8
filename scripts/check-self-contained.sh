#!/usr/bin/env bash
# Fails when a tracked file (test, script, example, doc) relies on a path outside the repository:
# the team's shared folder beside the checkout, or this machine's absolute paths. A clone must
# stand alone.
set -euo pipefail
cd "$(dirname "$0")/.."
outside=shared
hits=$(git ls-files -z | grep -zv '^scripts/check-self-contained.sh$' \
  | xargs -0 grep -nE "\\.\\./${outside}|/work/(main|${outside}|\\.library|\\.mirror)" -- 2>/dev/null || true)
if [[ -n $hits ]]; then
  echo "check-self-contained: these lines point outside the repository:" >&2
  echo "$hits" >&2
  exit 1
fi
echo "check-self-contained: ok"
