#!/usr/bin/env bash
# Supply-chain check: cargo-audit of Cargo.lock and fuzz/Cargo.lock against the RustSec
# advisories committed in audit/advisory-db/ (no network: CI has none). Fails on any
# advisory — vulnerability, unmaintained, unsound — not in the ignore list of
# .cargo/audit.toml, where each one is named with its reason. Refresh the snapshot with
# scripts/refresh-advisories.sh. docs/RELIABILITY.md#supply-chain has the last result.
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

# The version this check was written against; installed once, from crates.io.
audit_version=0.22.2
if ! cargo audit --version >/dev/null 2>&1; then
  echo "audit: installing cargo-audit $audit_version"
  cargo install --locked cargo-audit --version "$audit_version"
fi

[ -d audit/advisory-db/crates ] || {
  echo "audit: audit/advisory-db/ is missing (scripts/refresh-advisories.sh FULL_DB_DIR)" >&2
  exit 1
}
# cargo-audit wants a database it may write to (it takes a lock file in it).
db="$(mktemp -d)"
trap 'rm -rf "$db"' EXIT
cp -R audit/advisory-db/. "$db/"

head -n 3 audit/advisory-db/SOURCE.md | tail -n 1
for lock in Cargo.lock fuzz/Cargo.lock; do
  echo "== cargo audit $lock"
  cargo audit --db "$db" --no-fetch --file "$lock"
done
