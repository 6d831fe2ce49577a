#!/usr/bin/env bash
# Runs the end-to-end tests (tests/e2e) against an already built drawbridge binary.
# It does not build: run `cargo build` first, or point DRAWBRIDGE_BIN at a binary.
# Extra arguments go to pytest, e.g. `scripts/test-e2e.sh -k upstream`.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export DRAWBRIDGE_BIN="${DRAWBRIDGE_BIN:-$repo_root/target/debug/drawbridge}"

"$repo_root/scripts/setup-e2e.sh"

if [[ ! -x "$DRAWBRIDGE_BIN" ]]; then
  echo "test-e2e: warning: no drawbridge binary at $DRAWBRIDGE_BIN; gateway tests will fail" >&2
fi

cd "$repo_root"
exec tests/e2e/.venv/bin/python -m pytest -q tests/e2e "$@"
