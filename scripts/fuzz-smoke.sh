#!/usr/bin/env bash
# CI smoke of the fuzz targets: each one runs a few seconds from its seeds, so that all
# of them keep building and none fails on the inputs it already knows. The long runs
# (fuzz/run.sh 300 and up) and their figures are in docs/RELIABILITY.md.
#
#   scripts/fuzz-smoke.sh [SECONDS]   (default 5 per target)
#
# Needs the nightly toolchain (cargo-fuzz builds with -Z flags) and fails loudly without
# it; installs cargo-fuzz once when it is missing.
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

seconds="${1:-5}"
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz-smoke: FAILED: the nightly Rust toolchain is missing;" \
    "install it with: rustup toolchain install nightly" >&2
  exit 1
fi
fuzz_version=0.13.2
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz-smoke: installing cargo-fuzz $fuzz_version"
  cargo install --locked cargo-fuzz --version "$fuzz_version"
fi
# A development build (no optimisation) builds in a fraction of the time of the release
# build the long runs use; the smoke is about building and the seeds, not speed, so it
# starts from the seeds alone.
FUZZ_BUILD=--dev FUZZ_SEEDS_ONLY=1 fuzz/run.sh "$seconds"
