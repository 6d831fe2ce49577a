#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for SECONDS each (default 60) and prints,
# per target, the executions, the corpus size and whether it found anything.
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`).
# Each target starts from its seeds (fuzz/seeds/TARGET, committed) and the corpus of
# earlier runs (fuzz/corpus/TARGET, not committed); a finding is written to
# fuzz/artifacts/TARGET/ and makes the script exit non-zero, after the other targets ran.
#
# Built without a sanitizer (`-s none`): the crate forbids `unsafe`, so what we look for
# is panics, arithmetic overflow (debug assertions are on), stack overflow, timeouts and
# the targets' own differential assertions; AddressSanitizer would cost half the speed.
#
# FUZZ_BUILD=--dev builds without optimisation (much faster to build, slower to run);
# FUZZ_SEEDS_ONLY=1 starts from the seeds alone, in a temporary corpus (loading a large
# corpus takes longer than a short run). The CI smoke, scripts/fuzz-smoke.sh, uses both.
set -euo pipefail
build_flags=(-s none ${FUZZ_BUILD:-})
fuzz_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$fuzz_dir/.."

seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(inspect filter sse bearer_jwt session_open config)
fi

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz/run.sh: the nightly toolchain is missing (rustup toolchain install nightly)" >&2
  exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz/run.sh: cargo-fuzz is missing (cargo install cargo-fuzz --locked)" >&2
  exit 2
fi

# Everything is built first; the runs then start the binaries themselves, so that an
# edit made while they run cannot trigger a rebuild in between.
for target in "${targets[@]}"; do
  cargo +nightly fuzz build "${build_flags[@]}" "$target"
done
profile=release
[ "${FUZZ_BUILD:-}" = --dev ] && profile=debug
bin_dir="fuzz/target/$(rustc +nightly -vV | sed -n 's/^host: //p')/$profile"

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
status=0
printf '%-14s %8s %14s %10s %8s  %s\n' target seconds executions exec/s corpus result
for target in "${targets[@]}"; do
  corpus="fuzz/corpus/$target"
  [ -n "${FUZZ_SEEDS_ONLY:-}" ] && corpus="$logs/corpus-$target"
  mkdir -p "$corpus" "fuzz/artifacts/$target"
  log="$logs/$target.log"
  result=ok
  # -timeout: an input taking 10 s is a finding (a hang); -rss_limit_mb: so is 2 GiB.
  if ! "$bin_dir/$target" -artifact_prefix="fuzz/artifacts/$target/" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    "$corpus" "fuzz/seeds/$target" >"$log" 2>&1; then
    result="FINDING (see fuzz/artifacts/$target/)"
    status=1
    cp "$log" "fuzz/artifacts/$target/last-run.log"
    grep -E -A1 '^(thread .* panicked|SUMMARY|.*Test unit written)' "$log" | head -n 8 >&2 || true
  fi
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)"
  size="$(find "$corpus" -type f | wc -l)"
  printf '%-14s %8s %14s %10s %8s  %s\n' "$target" "$seconds" "${execs:-?}" "${rate:-?}" "$size" "$result"
done
exit "$status"
