#!/usr/bin/env bash
# Load benchmark (issue 9, first cut): MCP `tools/call` JSON-RPC POSTs at a fixed
# concurrency through
#   (a)     the upstream directly: nginx answering every POST with a static JSON-RPC result
#   (b)     a plain nginx reverse-proxy hop (keepalive upstream) in front of (a)
#   (c)     a bare Pingora proxy with no logic (benches/bare_pingora.rs) in front of (a)
#   (d)     drawbridge, one public route, RUST_LOG=warn, in front of (a)
#   (d+log) the same with RUST_LOG=info: one access line per request, written to /dev/null
#   (e)     drawbridge with the full pipeline: placeholder, skipped until it exists
# Every proxy runs one worker thread; nginx runs one worker process.
#
# Rounds are interleaved (round 1: a b c d d+log, round 2: a b c d d+log, ...) so drift
# and other load hit every target alike; the table reports per-target medians. Per round
# and target: wrk req/s, p50 and p99 latency, and the CPU time per request of the proxy
# process and of the upstream, from /proc/<pid>/stat utime+stime deltas.
#
# Usage: benches/load/run.sh [options]
#   --duration D     measured wrk run per target and round (default 5s; wrk syntax)
#   --warmup D       wrk warm-up before every measured run, 0 for none (default 1s)
#   --rounds N       rounds (default 3)
#   --connections N  wrk connections, one wrk thread (default 16)
#   --pin MODE       off: let the scheduler place everything (default); auto: with >= 2
#                    CPUs, the proxy under test on CPU 0, upstream nginx and wrk on CPU 1
#                    (taskset). On 2 CPUs, wrk + upstream need ~30 us of CPU per request,
#                    so pinning them to one core caps the nginx hop near its own capacity,
#                    and under background load it keeps the proxy on a busy core; see
#                    docs/BENCHMARKS.md
#   --targets LIST   comma-separated subset of a,b,c,d,d+log (default: all)
#   --port-base P    listeners use 127.0.0.1:P .. P+14 (default 18400)
#   --no-build       use the binaries already in the target dir instead of `cargo build`
#   --out FILE       where the markdown report goes (default benches/load/last-run.md)
#   -h, --help       this text
# Environment: CARGO_TARGET_DIR (default <repo>/target/bench, so that benchmark builds do
# not disturb a development build in target/).
#
# Needs nginx, wrk, curl and python3; as root, missing ones are installed with apt-get
# (services are not started: RUNLEVEL=1). Every listener is on 127.0.0.1. Everything
# started here is stopped, and the temporary directory removed, on exit.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

duration=5s
warmup=1s
rounds=3
connections=16
pin=off
targets_csv="a,b,c,d,d+log"
port_base=18400
build=1
out="$here/last-run.md"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "run.sh: $*" >&2; exit 1; }

while (($#)); do
    case "$1" in
    --duration) duration="${2:?}"; shift 2 ;;
    --warmup) warmup="${2:?}"; shift 2 ;;
    --rounds) rounds="${2:?}"; shift 2 ;;
    --connections) connections="${2:?}"; shift 2 ;;
    --pin) pin="${2:?}"; shift 2 ;;
    --targets) targets_csv="${2:?}"; shift 2 ;;
    --port-base) port_base="${2:?}"; shift 2 ;;
    --no-build) build=0; shift ;;
    --out) out="${2:?}"; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
    esac
done
[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive integer"
[[ $connections =~ ^[1-9][0-9]*$ ]] || die "--connections must be a positive integer"
[[ $pin == auto || $pin == off ]] || die "--pin is auto or off"
[[ $duration =~ ^[1-9][0-9]*[smh]?$ ]] || die "--duration: a whole number of s, m or h"
[[ $warmup =~ ^(0|[1-9][0-9]*[smh]?)$ ]] || die "--warmup: 0 or a whole number of s, m or h"
IFS=, read -r -a targets <<<"$targets_csv"
for t in "${targets[@]}"; do
    [[ $t =~ ^(a|b|c|d|d\+log)$ ]] || die "unknown target $t (a, b, c, d, d+log)"
done
has_target() { [[ ",$targets_csv," == *",$1,"* ]]; }

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target/bench}"

# --- tools -------------------------------------------------------------------------
missing=()
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
command -v wrk >/dev/null || missing+=(wrk)
command -v curl >/dev/null || missing+=(curl)
command -v python3 >/dev/null || missing+=(python3)
command -v taskset >/dev/null || missing+=(util-linux)
if ((${#missing[@]})); then
    ((EUID == 0)) || die "missing ${missing[*]}; install them (apt-get) or run as root"
    echo "installing ${missing[*]}" >&2
    apt-get update -qq
    # RUNLEVEL=1: do not start the distribution's nginx service (it listens on :80).
    RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" ||
        RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            "${missing[@]/nginx-light/nginx}"
fi
nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"
clk_tck="$(getconf CLK_TCK)"
ncpu="$(nproc)"
if [[ $pin == auto ]] && ((ncpu < 2)); then pin=off; fi
# CPU sets: proxy under test | upstream | load generator.
if [[ $pin == auto ]]; then
    on_proxy=(taskset -c 0) on_upstream=(taskset -c 1) on_wrk=(taskset -c 1)
else
    on_proxy=() on_upstream=() on_wrk=()
fi

# --- build -------------------------------------------------------------------------
if ((build)); then
    echo "building (CARGO_TARGET_DIR=$CARGO_TARGET_DIR) ..." >&2
    artifacts="$(cd "$repo" && cargo build --release --locked --bin drawbridge \
        --bench bare_pingora --message-format=json-render-diagnostics)"
    exe_of() {
        python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == sys.argv[1] and m.get("executable"):
        print(m["executable"])' "$1" <<<"$artifacts" | tail -n1
    }
    drawbridge_bin="$(exe_of drawbridge)"
    bare_bin="$(exe_of bare_pingora)"
else
    drawbridge_bin="$CARGO_TARGET_DIR/release/drawbridge"
    bare_bin="$(ls -t "$CARGO_TARGET_DIR"/release/deps/bare_pingora-* 2>/dev/null |
        grep -v '\.d$' | head -n1 || true)"
fi
[[ -x $drawbridge_bin ]] || die "no drawbridge binary (looked for '$drawbridge_bin')"
[[ -x $bare_bin ]] || die "no bare_pingora binary in $CARGO_TARGET_DIR (build without --no-build)"

# --- processes and clean-up --------------------------------------------------------
tmp="$(mktemp -d /tmp/drawbridge-load.XXXXXX)"
chmod 755 "$tmp" # nginx workers run unprivileged and need to traverse it
declare -A pid stop_signal
cleanup() {
    local rc=$? name i alive
    trap - EXIT INT TERM
    for name in "${!pid[@]}"; do
        kill "-${stop_signal[$name]}" "${pid[$name]}" 2>/dev/null || true
    done
    for ((i = 0; i < 50; i++)); do
        alive=0
        for name in "${!pid[@]}"; do
            kill -0 "${pid[$name]}" 2>/dev/null && alive=1
        done
        ((alive)) || break
        sleep 0.1
    done
    for name in "${!pid[@]}"; do
        kill -KILL "${pid[$name]}" 2>/dev/null || true
        wait "${pid[$name]}" 2>/dev/null || true
    done
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start NAME SIGNAL CPUSET... -- COMMAND...; output goes to $tmp/NAME.log.
start() {
    local name="$1" sig="$2" cpus=()
    shift 2
    while [[ $1 != -- ]]; do cpus+=("$1"); shift; done
    shift
    "${cpus[@]}" "$@" >"$tmp/$name.log" 2>&1 &
    pid[$name]=$!
    stop_signal[$name]=$sig
}

body='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}'
expected='{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"ok"}]}}'

post() { # URL OUTFILE -> prints the status code (000: no answer)
    curl -s -m 5 -o "$2" -w '%{http_code}' -X POST -H 'content-type: application/json' \
        -H 'accept: application/json, text/event-stream' --data-binary "$body" "$1" || true
}

# Waits until NAME answers at URL, then checks it answers 200 with the expected body.
wait_and_verify() {
    local name="$1" url="$2" i status=000
    for ((i = 0; i < 100; i++)); do
        kill -0 "${pid[$name]}" 2>/dev/null || break
        status="$(post "$url" "$tmp/verify.body")"
        [[ $status == 000 ]] || break
        sleep 0.1
    done
    if [[ $status != 200 || "$(cat "$tmp/verify.body" 2>/dev/null)" != "$expected" ]]; then
        echo "run.sh: $name at $url answered $status, body: $(head -c 300 "$tmp/verify.body" 2>/dev/null)" >&2
        echo "--- $name log:" >&2
        tail -n 30 "$tmp/$name.log" >&2 || true
        exit 1
    fi
}

nginx_conf() { # NAME PORT LOCATION-BLOCK [HTTP-EXTRA]
    local dir="$tmp/$1"
    mkdir -p "$dir"
    cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    client_body_temp_path $dir/client_body;
    proxy_temp_path $dir/proxy;
    ${4:-}
    server {
        listen 127.0.0.1:$2;
        $3
    }
}
EOF
}

p_a=$port_base p_b=$((port_base + 1)) p_c=$((port_base + 2))
p_d=$((port_base + 3)) p_dlog=$((port_base + 4))
for p in $p_a $p_b $p_c $p_d $p_dlog $((port_base + 13)) $((port_base + 14)); do
    port_free "$p" || die "127.0.0.1:$p is in use (choose another --port-base)"
done
declare -A url proxy_of label
label[a]="(a) upstream direct (nginx)"
label[b]="(b) nginx hop"
label[c]="(c) bare Pingora"
label[d]="(d) drawbridge, public route, log=warn"
label[d+log]="(d+log) drawbridge, log=info (access log to /dev/null)"

# (a) The upstream: always running, every proxy forwards to it.
nginx_conf upstream "$p_a" "location = /mcp { default_type application/json; return 200 '$expected'; }"
start upstream QUIT "${on_upstream[@]}" -- "$nginx_bin" -p "$tmp/upstream" \
    -c "$tmp/upstream/nginx.conf" -e "$tmp/upstream/error.log"
wait_and_verify upstream "http://127.0.0.1:$p_a/mcp"
url[a]="http://127.0.0.1:$p_a/mcp"
proxy_of[a]=""

if has_target b; then
    nginx_conf hop "$p_b" \
        'location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }' \
        "upstream up { server 127.0.0.1:$p_a; keepalive 64; keepalive_requests 1000000; }"
    start hop QUIT "${on_proxy[@]}" -- "$nginx_bin" -p "$tmp/hop" -c "$tmp/hop/nginx.conf" \
        -e "$tmp/hop/error.log"
    wait_and_verify hop "http://127.0.0.1:$p_b/mcp"
    url[b]="http://127.0.0.1:$p_b/mcp" proxy_of[b]=hop
fi

if has_target c; then
    start bare INT "${on_proxy[@]}" -- "$bare_bin" --listen "127.0.0.1:$p_c" \
        --upstream "127.0.0.1:$p_a" --threads 1
    wait_and_verify bare "http://127.0.0.1:$p_c/mcp"
    url[c]="http://127.0.0.1:$p_c/mcp" proxy_of[c]=bare
fi

drawbridge_conf() { # FILE PORT ADMIN-PORT
    cat >"$1" <<EOF
listen: 127.0.0.1:$2
admin:
  listen: 127.0.0.1:$3
workers: 1
routes:
  - name: bench
    match: { path: /mcp }
    public_url: http://127.0.0.1:$2/mcp
    upstream:
      url: http://127.0.0.1:$p_a/mcp
EOF
    "$drawbridge_bin" validate "$1" >/dev/null 2>&1 || {
        "$drawbridge_bin" validate "$1" >&2 || true
        die "generated $1 does not validate"
    }
}
if has_target d; then
    drawbridge_conf "$tmp/gateway-warn.yaml" "$p_d" $((port_base + 13))
    RUST_LOG=warn start drawbridge INT "${on_proxy[@]}" -- "$drawbridge_bin" run \
        --config "$tmp/gateway-warn.yaml"
    wait_and_verify drawbridge "http://127.0.0.1:$p_d/mcp"
    url[d]="http://127.0.0.1:$p_d/mcp" proxy_of[d]=drawbridge
fi
if has_target d+log; then
    drawbridge_conf "$tmp/gateway-info.yaml" "$p_dlog" $((port_base + 14))
    # The access log is the point of this variant: on, but written to /dev/null.
    RUST_LOG=info start drawbridge-log INT "${on_proxy[@]}" -- sh -c \
        'exec "$0" run --config "$1" 2>/dev/null' "$drawbridge_bin" "$tmp/gateway-info.yaml"
    wait_and_verify drawbridge-log "http://127.0.0.1:$p_dlog/mcp"
    url[d+log]="http://127.0.0.1:$p_dlog/mcp" proxy_of[d+log]=drawbridge-log
fi

# (e) PLACEHOLDER: drawbridge with the full pipeline (token validation, policy, sealed
# sessions, token exchange) is not implemented yet. When it is: start it here with an
# authorization server stand-in, a valid bearer token in post.lua, and add target e.
echo "(e) skipped: full pipeline not implemented yet" >&2

# --- measurement -------------------------------------------------------------------
# Processes whose CPU is counted for a name: the process and its direct children (the
# nginx master and its worker; the Pingora processes have no children).
declare -A tree
for name in "${!pid[@]}"; do
    tree[$name]="${pid[$name]} $(pgrep -P "${pid[$name]}" | tr '\n' ' ' || true)"
done

ticks_of() { # NAME -> utime+stime clock ticks summed over its process tree
    local total=0 p line
    local -a f
    for p in ${tree[$1]}; do
        read -r line <"/proc/$p/stat" || die "$1 (pid $p) is gone"
        read -r -a f <<<"${line##*) }" # fields from 3 on: utime is 14, stime 15
        total=$((total + f[11] + f[12]))
    done
    echo "$total"
}
machine_busy_ticks() {
    local _ user nice system idle iowait irq softirq steal
    read -r _ user nice system idle iowait irq softirq steal _ </proc/stat
    echo $((user + nice + system + irq + softirq + steal))
}
# Sets children_ms to the CPU of this shell's reaped children (wrk), from the `times`
# builtin; not a function printing it, since `$(...)` would run `times` in a subshell.
children_cpu() {
    times >"$tmp/times"
    local _ cu cs
    { read -r _; read -r cu cs; } <"$tmp/times"
    children_ms=$(($(to_ms "$cu") + $(to_ms "$cs")))
}
to_ms() { # 1m2.345s -> 62345
    local m="${1%%m*}" s="${1#*m}"
    s="${s%s}"
    echo $((10#$m * 60000 + 10#${s%.*} * 1000 + 10#${s#*.}))
}

seconds_of() { # wrk duration (5, 5s, 2m, 1h) -> whole seconds
    local n="${1%[smh]}"
    [[ $n =~ ^[0-9]+$ ]] || die "cannot read duration $1"
    case "$1" in *m) echo $((n * 60)) ;; *h) echo $((n * 3600)) ;; *) echo "$n" ;; esac
}
run_wrk() { # URL DURATION; a hung wrk is killed a minute after it should have ended
    timeout $(($(seconds_of "$2") + 60)) "${on_wrk[@]}" wrk -t1 -c"$connections" -d"$2" --latency \
        -s "$here/post.lua" "$1"
}

results="$tmp/results.tsv"
printf 'round\ttarget\trequests\tduration_us\tp50_us\tp99_us\tproxy_ticks\tupstream_ticks\twrk_ms\tmachine_ticks\tflags\n' >"$results"
mkdir -p "$tmp/raw"
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
echo "rounds: $rounds x ${targets[*]}, ${duration} each (warm-up $warmup), -c$connections, pin=$pin" >&2
for ((round = 1; round <= rounds; round++)); do
    for t in "${targets[@]}"; do
        [[ $warmup == 0 ]] || run_wrk "${url[$t]}" "$warmup" >/dev/null
        proxy="${proxy_of[$t]}"
        pb=0 pa=0
        [[ -z $proxy ]] || pb="$(ticks_of "$proxy")"
        ub="$(ticks_of upstream)" mb="$(machine_busy_ticks)"
        children_cpu
        wb=$children_ms
        raw="$tmp/raw/round$round-$t.txt"
        run_wrk "${url[$t]}" "$duration" >"$raw"
        children_cpu
        wa=$children_ms ma="$(machine_busy_ticks)" ua="$(ticks_of upstream)"
        [[ -z $proxy ]] || pa="$(ticks_of "$proxy")"
        line="$(grep '^WRK_RESULT ' "$raw")" || die "no result from wrk for $t: $(cat "$raw")"
        declare -A r=()
        for kv in ${line#WRK_RESULT }; do r[${kv%%=*}]="${kv#*=}"; done
        flags=""
        if grep -q 'Non-2xx' "$raw" || ((r[non2xx] > 0)); then flags+="non2xx=${r[non2xx]};"; fi
        if grep -q 'Socket errors' "$raw" ||
            ((r[connect] + r[read] + r[write] + r[timeout] > 0)); then
            flags+="socket_errors=${r[connect]}/${r[read]}/${r[write]}/${r[timeout]};"
        fi
        ((r[requests] > 0)) || flags+="no_requests;"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$t" "${r[requests]}" \
            "${r[duration_us]}" "${r[p50_us]}" "${r[p99_us]}" $((pa - pb)) $((ua - ub)) \
            $((wa - wb)) $((ma - mb)) "${flags:--}" >>"$results"
        printf '  round %d %-6s %8.0f req/s  p50 %5d us  p99 %6d us  %s\n' "$round" "$t" \
            "$(python3 -c "print(${r[requests]}*1e6/${r[duration_us]})")" "${r[p50_us]}" \
            "${r[p99_us]}" "$flags" >&2
        [[ -z $flags ]] || echo "  WARNING: round $round target $t: $flags (excluded from medians)" >&2
        unset r
    done
done
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

# Resident memory after the run.
rss_of() { # NAME -> kB summed over its process tree
    local total=0 p kb
    for p in ${tree[$1]}; do
        kb="$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status")"
        total=$((total + kb))
    done
    echo "$total"
}
rss_lines=""
for name in upstream hop bare drawbridge drawbridge-log; do
    [[ -n ${pid[$name]:-} ]] || continue
    rss_lines+="$name=$(rss_of "$name") "
done

# --- report ------------------------------------------------------------------------
commit="$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
git -C "$repo" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || commit+=" (+ uncommitted changes)"
python3 "$here/report.py" \
    --results "$results" --clk-tck "$clk_tck" --rss "$rss_lines" \
    --meta "date=$(date -u +%Y-%m-%dT%H:%MZ)" \
    --meta "commit=$commit" \
    --meta "machine=$ncpu CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(uname -r)" \
    --meta "load=$load_before before, $load_after after (1/5/15 min)" \
    --meta "rustc=$(rustc --version 2>/dev/null || echo unknown)" \
    --meta "nginx=$("$nginx_bin" -v 2>&1 | sed 's/^nginx version: //')" \
    --meta "wrk=-t1 -c$connections -d$duration (warm-up $warmup), $rounds rounds, interleaved" \
    --meta "pin=$pin" \
    --meta "command=benches/load/run.sh --duration $duration --warmup $warmup --rounds $rounds --connections $connections --pin $pin --targets $targets_csv" \
    | tee "$out"
echo "report written to $out" >&2
