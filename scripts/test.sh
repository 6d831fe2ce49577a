#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what is missing, builds, runs the
# Rust unit and integration tests, a smoke of the fuzz targets and the supply-chain
# audit, then the end-to-end tests with real MCP peers.
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

scripts/setup.sh

echo "== module imports (no cycles between modules or files)"
python3 scripts/check-imports.py

scripts/setup-e2e.sh

echo "== cargo test (unit + integration)"
cargo build --locked --bins
cargo test --locked

# What the count covers: integration tests named `double_*` check the test doubles (the
# in-process IdP) on their own, not the gateway; report them apart.
listed="$(cargo test --locked --test integration -- --list 2>/dev/null | grep ': test$' || true)"
all_tests="$(printf '%s\n' "$listed" | grep -c ': test$' || true)"
double_tests="$(printf '%s\n' "$listed" | grep -cE '(^|::)double_[A-Za-z0-9_]*: test$' || true)"
echo "== integration: $((all_tests - double_tests)) tests of the gateway," \
  "$double_tests self-tests of the test doubles (double_*)"

echo "== fuzz smoke (every target a few seconds from its seeds; fuzz/run.sh for long runs)"
scripts/fuzz-smoke.sh

echo "== supply chain (cargo audit against the committed advisory snapshot)"
scripts/audit.sh

echo "== end-to-end tests (real server-everything, real MCP client)"
DRAWBRIDGE_BIN="$repo_root/target/debug/drawbridge" scripts/test-e2e.sh

echo "== deploy/ checks (promtool rules and tests, dashboard queries, manifests)"
scripts/check-deploy.sh
