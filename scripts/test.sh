#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what is missing, builds, runs the
# Rust unit and integration tests, then the end-to-end tests with real MCP peers.
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

scripts/setup.sh
scripts/setup-e2e.sh

echo "== cargo test (unit + integration)"
cargo build --locked --bins
cargo test --locked

echo "== end-to-end tests (real server-everything, real MCP client)"
DRAWBRIDGE_BIN="$repo_root/target/debug/drawbridge" scripts/test-e2e.sh

echo "== deploy/ checks (promtool rules and tests, dashboard queries, manifests)"
scripts/check-deploy.sh
