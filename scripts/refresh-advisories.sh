#!/usr/bin/env bash
# Regenerates the committed advisory snapshot (audit/advisory-db/) from a full RustSec
# advisory-db checkout: only the advisories of crates that appear in Cargo.lock or
# fuzz/Cargo.lock, so the repository carries a few hundred KB instead of the whole
# database, and CI (which has no internet) can run cargo-audit against it.
#
#   scripts/refresh-advisories.sh FULL_DB_DIR
#
# FULL_DB_DIR: a clone of https://github.com/rustsec/advisory-db (or a copy of one).
# Run it again after `cargo update`, after adding a dependency, and from time to time
# to pick up new advisories; commit audit/advisory-db/ with the lock files.
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
full="${1:?usage: scripts/refresh-advisories.sh FULL_DB_DIR}"
[ -d "$full/crates" ] || { echo "refresh-advisories: $full has no crates/ directory" >&2; exit 1; }
out="$repo_root/audit/advisory-db"

# Where the advisories come from: the checkout's commit, else its snapshot note.
if git -C "$full" rev-parse --git-dir >/dev/null 2>&1; then
  source="advisory-db commit $(git -C "$full" log -1 --format='%H, committed %cI')"
elif [ -f "$full/SNAPSHOT.txt" ]; then
  source="$(head -n 1 "$full/SNAPSHOT.txt" | sed -n 's/.*(\(commit [^)]*\)).*/advisory-db \1/p')"
  source="${source:-advisory-db snapshot of unknown commit}"
else
  source="advisory-db snapshot of unknown commit"
fi

crates="$(cat "$repo_root/Cargo.lock" "$repo_root/fuzz/Cargo.lock" |
  sed -n 's/^name = "\(.*\)"$/\1/p' | sort -u)"

rm -rf "$out"
mkdir -p "$out/crates"
kept=0
for name in $crates; do
  if [ -d "$full/crates/$name" ]; then
    cp -R "$full/crates/$name" "$out/crates/"
    kept=$((kept + 1))
  fi
done
cp "$full/LICENSE.txt" "$out/" 2>/dev/null || true
advisories="$(find "$out/crates" -name 'RUSTSEC-*.md' | wc -l)"
{
  echo "# RustSec advisories for drawbridge's dependencies (pruned snapshot)"
  echo
  echo "Source: $source."
  echo "Pruned on $(date -u +%Y-%m-%d) by scripts/refresh-advisories.sh: the advisories"
  echo "of the $kept crates of Cargo.lock and fuzz/Cargo.lock that have any"
  echo "($advisories advisories). The database is public domain (CC0-1.0, LICENSE.txt)."
  echo "scripts/audit.sh checks the lock files against it; do not edit by hand."
} >"$out/SOURCE.md"
echo "refresh-advisories: $advisories advisories for $kept crates, from $source"
