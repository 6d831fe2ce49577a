#!/usr/bin/env bash
# Instructions per request under callgrind, for two drawbridge builds in one run: the
# method of docs/BENCHMARKS.md ("Instruction counts per request"), automated.
#
# run.sh runs the targets under `valgrind --tool=callgrind --instr-atstart=no`; this
# script switches counting on (`callgrind_control -i on`) while the measured wrk run of a
# target is going and off after it, then divides each process's instruction total by the
# requests it served in that window (the polls of its `ProxyHttp::logging` future, once
# per request: it never waits), read from the callgrind output itself.
#
# Usage: benches/load/instructions.sh NEW_BIN_DIR REF_BIN [TARGETS] [BODY_BYTES]
#   NEW_BIN_DIR  a directory holding the drawbridge binary under test (release build)
#   REF_BIN      the drawbridge binary to compare with (targets X@ref)
#   TARGETS      run.sh targets (default e,e@ref: the full pipeline, both builds)
#   BODY_BYTES   run.sh --body-bytes (default 0: the plain 100-byte tools/call)
# Prints one line per target: instructions, requests, instructions per request.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
new_dir="${1:?usage: instructions.sh NEW_BIN_DIR REF_BIN [TARGETS] [BODY_BYTES]}"
ref_bin="${2:?usage: instructions.sh NEW_BIN_DIR REF_BIN [TARGETS] [BODY_BYTES]}"
targets="${3:-e,e@ref}"
body_bytes="${4:-0}"
command -v callgrind_control >/dev/null || { echo "needs valgrind (callgrind_control)" >&2; exit 1; }

out="$(mktemp -d)"
trap 'kill "$runner" 2>/dev/null || true; [[ -n ${KEEP:-} ]] || rm -rf "$out"' EXIT
[[ -z ${KEEP:-} ]] || echo "outputs kept in $out" >&2
measured=17s # a duration no warm-up uses, to tell the measured wrk run apart

"$here/run.sh" --bin-dir "$new_dir" --ref-bin "$ref_bin" --targets "$targets" \
    --rounds 1 --warmup 4s --duration "$measured" --rate 0 --connections 4 \
    --body-bytes "$body_bytes" --out "$out/report.md" \
    --wrap "valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=$out/cg.%p" \
    >"$out/run.log" 2>&1 &
runner=$!

# Count only while a measured wrk runs (bounded: run.sh gives up on its own).
counting=0
for ((i = 0; i < 36000; i++)); do
    kill -0 "$runner" 2>/dev/null || break
    if pgrep -f "wrk .*-d$measured" >/dev/null; then
        ((counting)) || { callgrind_control -i on >/dev/null 2>&1 || true; counting=1; }
    elif ((counting)); then
        callgrind_control -i off >/dev/null 2>&1 || true
        counting=0
    fi
    sleep 0.05
done
wait "$runner" || { echo "run.sh failed:" >&2; tail -20 "$out/run.log" >&2; exit 1; }

python3 - "$out" <<'EOF'
import glob, re, sys
for path in sorted(glob.glob(sys.argv[1] + "/cg.*")):
    names, total, calls, current, cmd = {}, 0, 0, None, "?"
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("cmd: "):
                cmd = line[5:].split()[0]
            m = re.match(r"(?:summary|totals): (\d+)", line)
            if m:
                total = max(total, int(m.group(1)))
            m = re.match(r"cfn=\((\d+)\)(?: (.*))?", line)
            if m:
                if m.group(2):
                    names[m.group(1)] = m.group(2)
                current = names.get(m.group(1), "")
                continue
            m = re.match(r"c?fn=\((\d+)\) (.*)", line)
            if m:
                names[m.group(1)] = m.group(2)
            m = re.match(r"calls=(\d+)", line)
            if m and current is not None:
                # The future of `logging` is polled once per request (it never waits).
                if current.startswith("<drawbridge::proxy::Gateway as") and current.endswith(
                    "ProxyHttp>::logging::{{closure}}"
                ):
                    calls += int(m.group(1))
                current = None
    if calls:
        print(f"{cmd}: {total} instructions, {calls} requests, "
              f"{total / calls:,.0f} per request")
EOF
grep -E "^\| \((e|e@ref|d|d@ref)\) " "$out/report.md" | head -4 || true
