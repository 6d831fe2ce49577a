#!/usr/bin/env bash
# Load benchmark (issue 9, first cut): MCP `tools/call` JSON-RPC POSTs at a fixed
# concurrency through
#   (a)     the upstream directly: nginx answering every POST with a static JSON-RPC result
#   (b)     a plain nginx reverse-proxy hop (keepalive upstream, request bodies up to 1 MiB
#           held in memory rather than in temporary files) in front of (a)
#   (c)     a bare Pingora proxy with no logic (benches/bare_pingora.rs) in front of (a)
#   (d)     drawbridge, one public route, RUST_LOG=warn, in front of (a)
#   (d+log) the same with RUST_LOG=info: one access line per request, written to /dev/null
#   (d+tls) (d) with the `tls` listener: wrk speaks HTTPS (HTTP/1.1, kept-alive connections,
#           so a handshake per connection, then record encryption per request); an RSA
#           2048 certificate made per run with openssl
#   (e)     drawbridge with the full pipeline, RUST_LOG=warn: RS256 JWT validation (JWKS
#           from OIDC discovery; verified tokens cached), per-tool policy, RFC 8693 token
#           exchange (scopes per_operation; issued tokens cached) and a sealed
#           Mcp-Session-Id opened on every request and sealed again on every answer
#   (e+audit) the same with RUST_LOG=warn,audit=info: one `authorization` audit event per
#           request, written to /dev/null
#   (e+info) the same at the default level (RUST_LOG=info, default `log` settings), the
#           log written to a file: the report gives its bytes per request
#   (d@ref), (e@ref) (d) and (e) run by another drawbridge binary (--ref-bin), to compare
#           two builds or revisions in one interleaved run
# Every proxy runs one worker thread; nginx runs one worker process. For (e), a third
# nginx (not measured) serves the authorization server as static files: OIDC discovery,
# the JWKS of an RSA key generated per run, and a token endpoint with a fixed answer; the
# user's access token is minted with python3 and `openssl dgst`.
#
# Rounds are interleaved (round 1: a b c ... e+audit, round 2: the same, ...) so drift
# and other load hit every target alike; the table reports per-target medians. Per round
# and target: wrk req/s, p50 and p99 latency, and the CPU time per request of the proxy
# process and of the upstream, from /proc/<pid>/stat utime+stime deltas.
#
# Usage: benches/load/run.sh [options]
#   --duration D     measured wrk run per target and round (default 5s; wrk syntax)
#   --warmup D       wrk warm-up before every measured run, 0 for none (default 1s)
#   --rounds N       rounds (default 3)
#   --connections N  wrk connections, one wrk thread (default 16)
#   --rate R         after the wrk rounds, a fixed-rate run per target and round at R
#                    requests/s (open loop, benches/load/fixed_rate.py) for the latency
#                    a user feels below saturation; 0 to skip (default 1000)
#   --rate-duration D  length of each fixed-rate run (default 5s)
#   --pin MODE       off: let the scheduler place everything (default); auto: with >= 2
#                    CPUs, the proxy under test on CPU 0, upstream nginx and wrk on CPU 1
#                    (taskset). On 2 CPUs, wrk + upstream need ~30 us of CPU per request,
#                    so pinning them to one core caps the nginx hop near its own capacity,
#                    and under background load it keeps the proxy on a busy core; see
#                    docs/BENCHMARKS.md
#   --targets LIST   comma-separated subset of a,b,c,d,d+log,d+tls,e,e+audit,e+info,d@ref,e@ref
#                    (default: all but the @ref ones; those need --ref-bin); the
#                    upstream (a) always runs, it is measured only when listed
#   --ref-bin PATH   the drawbridge binary of the @ref targets (e.g. one built from
#                    another commit or with other settings); also adds d@ref and e@ref to
#                    the default targets
#   --body-bytes N   send a tools/call body of exactly N bytes (its argument padded),
#                    e.g. 60000 for a body near drawbridge's 64 KiB in-memory inspection
#                    path, or more for the streamed one; 0: the plain 100-byte call
#                    (default)
#   --port-base P    listeners use 127.0.0.1:P .. P+18 (default 18400)
#   --no-build       use the binaries already in the target dir instead of `cargo build`
#   --bin-dir DIR    run DIR/drawbridge and DIR/bare_pingora (copies of an earlier build)
#                    instead of building
#   --profile NAME   cargo profile to build and run (default release, as shipped)
#   --ref-bare PATH  a bare_pingora binary to run as target c@ref (e.g. one built with
#                    the system allocator); adds c@ref to the default targets
#   --wrap CMD       run every drawbridge process under CMD (split on spaces), for
#                    profiling, e.g. --wrap "valgrind --tool=callgrind --instr-atstart=no"
#                    (then `callgrind_control -i on` during the measured run); the
#                    report's numbers are then those of the profiler, not drawbridge's.
#                    The log-enabled variants (d+log, e+audit) run through `sh -c exec`
#                    and are not profiled this way
#   --out FILE       where the markdown report goes (default benches/load/last-run.md)
#   -h, --help       this text
# Environment: CARGO_TARGET_DIR (default <repo>/target/bench, so that benchmark builds do
# not disturb a development build in target/).
#
# Needs nginx, wrk, curl, python3 (and openssl for (e)); as root, missing ones are
# installed with apt-get (services are not started: RUNLEVEL=1). Every listener is on
# 127.0.0.1. Everything started here is stopped, and the temporary directory removed, on
# exit.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

duration=5s
warmup=1s
rounds=3
connections=16
pin=off
targets_csv="a,b,c,d,d+log,e,e+audit"
port_base=18400
build=1
out="$here/last-run.md"
rate=1000
rate_duration=5s
ref_bin=""
ref_bare=""
body_bytes=0
bin_dir=""
wrap=()
profile=release
targets_given=0

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "run.sh: $*" >&2; exit 1; }
seconds_of() { # wrk duration (5, 5s, 2m, 1h) -> whole seconds
    local n="${1%[smh]}"
    [[ $n =~ ^[0-9]+$ ]] || die "cannot read duration $1"
    case "$1" in *m) echo $((n * 60)) ;; *h) echo $((n * 3600)) ;; *) echo "$n" ;; esac
}

while (($#)); do
    case "$1" in
    --duration) duration="${2:?}"; shift 2 ;;
    --warmup) warmup="${2:?}"; shift 2 ;;
    --rounds) rounds="${2:?}"; shift 2 ;;
    --connections) connections="${2:?}"; shift 2 ;;
    --rate) rate="${2:?}"; shift 2 ;;
    --rate-duration) rate_duration="${2:?}"; shift 2 ;;
    --pin) pin="${2:?}"; shift 2 ;;
    --targets) targets_csv="${2:?}"; targets_given=1; shift 2 ;;
    --port-base) port_base="${2:?}"; shift 2 ;;
    --body-bytes) body_bytes="${2:?}"; shift 2 ;;
    --no-build) build=0; shift ;;
    --out) out="${2:?}"; shift 2 ;;
    --ref-bin) ref_bin="${2:?}"; shift 2 ;;
    --ref-bare) ref_bare="${2:?}"; shift 2 ;;
    --profile) profile="${2:?}"; shift 2 ;;
    --bin-dir) bin_dir="${2:?}"; build=0; shift 2 ;;
    --wrap) read -r -a wrap <<<"${2:?}"; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
    esac
done
[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "--rounds must be a positive integer"
[[ $connections =~ ^[1-9][0-9]*$ ]] || die "--connections must be a positive integer"
[[ $rate =~ ^[0-9]+$ ]] || die "--rate must be a whole number of requests per second"
[[ $rate_duration =~ ^[1-9][0-9]*s?$ ]] || die "--rate-duration: a whole number of seconds"
[[ $pin == auto || $pin == off ]] || die "--pin is auto or off"
[[ $body_bytes =~ ^[0-9]+$ ]] && ((body_bytes == 0 || (body_bytes >= 100 && body_bytes <= 4000000))) ||
    die "--body-bytes: 0, or 100 to 4000000 (drawbridge's default body limit is 4 MiB)"
[[ $duration =~ ^[1-9][0-9]*[smh]?$ ]] || die "--duration: a whole number of s, m or h"
[[ $warmup =~ ^(0|[1-9][0-9]*[smh]?)$ ]] || die "--warmup: 0 or a whole number of s, m or h"
if [[ -n $ref_bin ]]; then
    [[ -x $ref_bin ]] || die "--ref-bin $ref_bin is not an executable"
    ref_bin="$(cd "$(dirname "$ref_bin")" && pwd)/$(basename "$ref_bin")"
    ((targets_given)) || targets_csv+=",d@ref,e@ref"
fi
if [[ -n $ref_bare ]]; then
    [[ -x $ref_bare ]] || die "--ref-bare $ref_bare is not an executable"
    ((targets_given)) || targets_csv+=",c@ref"
fi
IFS=, read -r -a targets <<<"$targets_csv"
for t in "${targets[@]}"; do
    [[ $t =~ ^(a|b|c|d|d\+log|d\+tls|e|e\+audit|e\+info|c@ref|d@ref|e@ref)$ ]] ||
        die "unknown target $t (a, b, c, d, d+log, d+tls, e, e+audit, e+info, c@ref, d@ref, e@ref)"
    [[ $t != [de]@ref || -n $ref_bin ]] || die "target $t needs --ref-bin"
    [[ $t != c@ref || -n $ref_bare ]] || die "target c@ref needs --ref-bare"
done
has_target() { [[ ",$targets_csv," == *",$1,"* ]]; }
full_pipeline=0
if has_target e || has_target e+audit || has_target e+info || has_target e@ref; then
    full_pipeline=1
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target/bench}"

# --- tools -------------------------------------------------------------------------
missing=()
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
command -v wrk >/dev/null || missing+=(wrk)
command -v curl >/dev/null || missing+=(curl)
command -v python3 >/dev/null || missing+=(python3)
command -v taskset >/dev/null || missing+=(util-linux)
((!full_pipeline)) && ! has_target d+tls || command -v openssl >/dev/null || missing+=(openssl)
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
    artifacts="$(cd "$repo" && cargo build --profile "$profile" --locked --bin drawbridge \
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
elif [[ -n $bin_dir ]]; then
    drawbridge_bin="$bin_dir/drawbridge" bare_bin="$bin_dir/bare_pingora"
else
    drawbridge_bin="$CARGO_TARGET_DIR/$profile/drawbridge"
    bare_bin="$(ls -t "$CARGO_TARGET_DIR/$profile"/deps/bare_pingora-* 2>/dev/null |
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
    [[ $name == drawbridge* ]] && set -- "${wrap[@]}" "$@"
    "${cpus[@]}" "$@" >"$tmp/$name.log" 2>&1 &
    pid[$name]=$!
    stop_signal[$name]=$sig
}

body='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}'
if ((body_bytes > 0)); then # the same call, its message padded to the size asked for
    body="${body%hi\"\}\}\}}$(printf "%$((body_bytes - 98))s" '' | tr ' ' x)\"}}}"
    ((${#body} == body_bytes)) || die "internal: padded body is ${#body} bytes, not $body_bytes"
fi
printf '%s' "$body" >"$tmp/body.json"
expected='{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"ok"}]}}'

post() { # URL OUTFILE -> prints the status code (000: no answer)
    # -k: (d+tls) serves a certificate made for this run.
    curl -k -s -m 5 -o "$2" -w '%{http_code}' -X POST -H 'content-type: application/json' \
        -H 'accept: application/json, text/event-stream' --data-binary "@$tmp/body.json" "$1" || true
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
p_e=$((port_base + 5)) p_eaudit=$((port_base + 6)) p_as=$((port_base + 7))
p_dref=$((port_base + 8)) p_eref=$((port_base + 9)) p_cref=$((port_base + 10))
p_einfo=$((port_base + 17)) p_dtls=$((port_base + 19))
for p in $p_a $p_b $p_c $p_d $p_dlog $p_e $p_eaudit $p_as $p_dref $p_eref $p_cref \
    $((port_base + 11)) $((port_base + 12)) $((port_base + 13)) $((port_base + 14)) \
    $((port_base + 15)) $((port_base + 16)) $p_einfo $((port_base + 18)) $p_dtls $((port_base + 20)); do
    port_free "$p" || die "127.0.0.1:$p is in use (choose another --port-base)"
done
declare -A url proxy_of label
label[a]="(a) upstream direct (nginx)"
label[b]="(b) nginx hop"
label[c]="(c) bare Pingora"
label[d]="(d) drawbridge, public route, log=warn"
label[d+log]="(d+log) drawbridge, log=info (access log to /dev/null)"
label[d+tls]="(d+tls) drawbridge, public route, TLS listener (HTTPS, kept alive)"
label[e]="(e) drawbridge, full pipeline, log=warn"
label[e+audit]="(e+audit) drawbridge, full pipeline, audit=info (to /dev/null)"
label[e+info]="(e+info) drawbridge, full pipeline, RUST_LOG=info, default log settings (to a file)"
label[c@ref]="(c@ref) the reference bare Pingora"
label[d@ref]="(d@ref) the reference binary, public route, log=warn"
label[e@ref]="(e@ref) the reference binary, full pipeline, log=warn"

# (a) The upstream: always running, every proxy forwards to it. Like an MCP server
# (the TypeScript SDK's transport, for one), it answers a request that carries an
# Mcp-Session-Id with that session's id; the (e) set-up's `initialize` asks for one with
# X-Bench-Init. Requests without either (every target but (e)) get the same answer as
# before, without the header. A request marked X-Bench-Verify (only the (e) set-up sends
# one) is logged with the credential and session id the upstream received.
nginx_conf upstream "$p_a" "location = /mcp {
            default_type application/json;
            add_header Mcp-Session-Id \$bench_session always;
            access_log $tmp/upstream/verify.log bench_verify if=\$bench_verify;
            return 200 '$expected';
        }" 'map "$http_mcp_session_id$http_x_bench_init" $bench_session { default bench-session; "" ""; }
    map $http_x_bench_verify $bench_verify { default 0; 1 1; }
    log_format bench_verify "authorization=[$http_authorization] mcp-session-id=[$http_mcp_session_id]";'
start upstream QUIT "${on_upstream[@]}" -- "$nginx_bin" -p "$tmp/upstream" \
    -c "$tmp/upstream/nginx.conf" -e "$tmp/upstream/error.log"
wait_and_verify upstream "http://127.0.0.1:$p_a/mcp"
url[a]="http://127.0.0.1:$p_a/mcp"
proxy_of[a]=""

if has_target b; then
    nginx_conf hop "$p_b" \
        'location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection "";
            client_body_buffer_size 1m; }' \
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
if has_target c@ref; then
    start bare-ref INT "${on_proxy[@]}" -- "$ref_bare" --listen "127.0.0.1:$p_cref" \
        --upstream "127.0.0.1:$p_a" --threads 1
    wait_and_verify bare-ref "http://127.0.0.1:$p_cref/mcp"
    url[c@ref]="http://127.0.0.1:$p_cref/mcp" proxy_of[c@ref]=bare-ref
fi

must_validate() { # FILE: stop the run, with drawbridge's own errors, if FILE is not valid
    "$drawbridge_bin" validate "$1" >/dev/null 2>&1 || {
        "$drawbridge_bin" validate "$1" >&2 || true
        die "generated $1 does not validate"
    }
}
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
    must_validate "$1"
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
if has_target d+tls; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
        -addext subjectAltName=IP:127.0.0.1 -keyout "$tmp/tls.key" -out "$tmp/tls.crt" \
        2>/dev/null || die "openssl could not make a certificate"
    chmod 600 "$tmp/tls.key"
    drawbridge_conf "$tmp/gateway-tls.yaml" "$p_dtls" $((port_base + 20))
    printf 'tls:\n  cert_file: %s\n  key_file: %s\n' "$tmp/tls.crt" "$tmp/tls.key" \
        >>"$tmp/gateway-tls.yaml"
    sed -i "s#public_url: http://#public_url: https://#" "$tmp/gateway-tls.yaml"
    must_validate "$tmp/gateway-tls.yaml"
    RUST_LOG=warn start drawbridge-tls INT "${on_proxy[@]}" -- "$drawbridge_bin" run \
        --config "$tmp/gateway-tls.yaml"
    wait_and_verify drawbridge-tls "https://127.0.0.1:$p_dtls/mcp"
    url[d+tls]="https://127.0.0.1:$p_dtls/mcp" proxy_of[d+tls]=drawbridge-tls
fi
if has_target d@ref; then
    drawbridge_conf "$tmp/gateway-ref.yaml" "$p_dref" $((port_base + 15))
    RUST_LOG=warn start drawbridge-ref INT "${on_proxy[@]}" -- "$ref_bin" run \
        --config "$tmp/gateway-ref.yaml"
    wait_and_verify drawbridge-ref "http://127.0.0.1:$p_dref/mcp"
    url[d@ref]="http://127.0.0.1:$p_dref/mcp" proxy_of[d@ref]=drawbridge-ref
fi

# (e) and (e+audit): drawbridge with the full pipeline. The authorization server is
# static files served by its own nginx (not measured): OIDC discovery, the JWKS of an RSA
# key generated for this run, and a token endpoint whose answer never changes. One user
# access token (RS256) is minted per gateway (aud = its public_url); a sealed session id
# comes from one `initialize` through the gateway; wrk sends both on every request.
if ((full_pipeline)); then
    as_url="http://127.0.0.1:$p_as"
    mkdir -p "$tmp/keys" "$tmp/authz/www/.well-known"
    chmod 700 "$tmp/keys"
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$tmp/keys/as.pem" \
        2>/dev/null || die "openssl could not generate an RSA key"
    # JWKS and discovery document. n and e from the openssl CLI, base64url by python3.
    python3 - "$tmp/keys/as.pem" "$as_url" "$tmp/authz/www" <<'PY' || die "cannot write the JWKS"
import base64, json, re, subprocess, sys

key, issuer, www = sys.argv[1:]
def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
def rsa(*args):
    return subprocess.run(["openssl", "rsa", "-in", key, "-noout", *args],
                          check=True, capture_output=True, text=True).stdout
def big_endian(i):
    return i.to_bytes((i.bit_length() + 7) // 8, "big")
n = int(rsa("-modulus").strip().split("=", 1)[1], 16)
e = int(re.search(r"publicExponent: (\d+)", rsa("-text")).group(1))
jwk = {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": "bench-1",
       "n": b64u(big_endian(n)), "e": b64u(big_endian(e))}
with open(f"{www}/jwks", "w") as f:
    json.dump({"keys": [jwk]}, f)
with open(f"{www}/.well-known/openid-configuration", "w") as f:
    json.dump({
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "jwks_uri": f"{issuer}/jwks",
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }, f)
PY
    chmod -R a+rX "$tmp/authz/www"
    # The access log of this server counts the calls to the token endpoint.
    nginx_conf authz "$p_as" "default_type application/json;
        root $tmp/authz/www;
        access_log $tmp/authz/access.log bench_as;
        location = /token {
            return 200 '{\"access_token\":\"upstream-token\",\"token_type\":\"Bearer\",\"expires_in\":3600,\"issued_token_type\":\"urn:ietf:params:oauth:token-type:access_token\"}';
        }" 'log_format bench_as "$request_method $uri $status";'
    start authz QUIT -- "$nginx_bin" -p "$tmp/authz" -c "$tmp/authz/nginx.conf" \
        -e "$tmp/authz/error.log"
    for ((i = 0; i < 100; i++)); do
        [[ "$(curl -s -m 2 -o /dev/null -w '%{http_code}' "$as_url/jwks" || true)" == 200 ]] && break
        kill -0 "${pid[authz]}" 2>/dev/null || die "the authorization-server nginx died: $(cat "$tmp/authz.log")"
        sleep 0.1
    done
    session_key="$("$drawbridge_bin" keygen)" || die "drawbridge keygen failed"
    # The user's token must outlive the run (the gateways cache it, and the exchanged
    # token, never past its exp).
    token_life=$((rounds * ${#targets[@]} * ($(seconds_of "$duration") + $(seconds_of "$warmup")) + 600))
    ((token_life > 3600)) || token_life=3600
fi
token_calls() { grep -c '^POST /token 200$' "$tmp/authz/access.log" 2>/dev/null || true; }

mint_token() { # AUDIENCE -> an RS256 access token (header alg, kid, typ at+jwt)
    python3 - "$tmp/keys/as.pem" "$as_url" "$1" "$token_life" <<'PY'
import base64, json, subprocess, sys, time

key, issuer, audience, life = sys.argv[1:]
def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
def part(obj):
    return b64u(json.dumps(obj, separators=(",", ":")).encode())
now = int(time.time())
signing_input = part({"alg": "RS256", "kid": "bench-1", "typ": "at+jwt"}) + "." + part({
    "iss": issuer, "sub": "bench-user", "aud": audience, "exp": now + int(life), "iat": now,
    "scope": "mcp:tools tools:echo", "client_id": "bench-client"})
sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key],
                     input=signing_input.encode(), check=True, capture_output=True).stdout
print(signing_input + "." + b64u(sig))
PY
}

full_conf() { # FILE PORT ADMIN-PORT
    cat >"$1" <<EOF2
listen: 127.0.0.1:$2
admin:
  listen: 127.0.0.1:$3
workers: 1
sessions:
  keys:
    - id: bench
      secret: '$session_key'
issuers:
  - name: bench
    issuer: $as_url
routes:
  - name: bench
    match: { path: /mcp }
    public_url: http://127.0.0.1:$2/mcp
    upstream:
      url: http://127.0.0.1:$p_a/mcp
    auth:
      issuers: [bench]
      required_scopes: [mcp:tools]
    policy:
      tools:
        echo: [tools:echo]
    upstream_auth:
      token_exchange:
        issuer: bench
        client_id: drawbridge
        client_secret: x
        audience: upstream
        scopes: per_operation
        base_scopes: [mcp:tools]
EOF2
    must_validate "$1"
}

# post_as NAME URL OUTFILE BODY [HEADER...] -> status; response headers in OUTFILE.headers
post_as() {
    local name="$1" url="$2" outfile="$3" data="$4" h args=()
    shift 4
    for h in "$@"; do args+=(-H "$h"); done
    curl -s -m 5 -D "$outfile.headers" -o "$outfile" -w '%{http_code}' -X POST \
        -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' \
        "${args[@]}" --data-binary "$data" "$url" || true
}
header_of() { # NAME FILE -> the value of the last header NAME in FILE (curl -D output)
    awk -v n="$(tr 'A-Z' 'a-z' <<<"$1")" -F': *' \
        'tolower($1) == n { v = $2 } END { sub(/\r$/, "", v); print v }' "$2"
}
fail_full() { # NAME MESSAGE
    echo "run.sh: $1: $2" >&2
    echo "--- $1 log:" >&2
    tail -n 30 "$tmp/$1.log" >&2 || true
    exit 1
}

# start_full TARGET NAME PORT ADMIN-PORT RUST_LOG [BINARY]: starts a full-pipeline
# gateway, waits until it is ready (issuer keys fetched), obtains a sealed session and
# checks one request end to end before anything is measured.
start_full() {
    local t="$1" name="$2" port="$3" admin="$4" log="$5" bin="${6:-$drawbridge_bin}"
    local i status token sealed c0 c1 c2 c3
    local u="http://127.0.0.1:$port/mcp"
    full_conf "$tmp/gateway-$name.yaml" "$port" "$admin"
    if [[ $log == warn ]]; then
        RUST_LOG=$log start "$name" INT "${on_proxy[@]}" -- "$bin" run \
            --config "$tmp/gateway-$name.yaml"
    elif [[ $log == info ]]; then # the default level, kept: its size is measured
        RUST_LOG=info start "$name" INT "${on_proxy[@]}" -- sh -c \
            'exec "$0" run --config "$1" 2>>"$2"' "$bin" "$tmp/gateway-$name.yaml" \
            "$tmp/$name.stderr"
    else # audit events on: written, to /dev/null
        RUST_LOG=$log start "$name" INT "${on_proxy[@]}" -- sh -c \
            'exec "$0" run --config "$1" 2>/dev/null' "$bin" "$tmp/gateway-$name.yaml"
    fi
    status=000
    for ((i = 0; i < 200; i++)); do
        kill -0 "${pid[$name]}" 2>/dev/null || break
        status="$(curl -s -m 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$admin/readyz" || true)"
        [[ $status == 200 ]] && break
        sleep 0.1
    done
    [[ $status == 200 ]] || fail_full "$name" "/readyz answered $status (issuer keys not fetched?)"
    token="$(mint_token "$u")" || die "cannot mint a token"
    c0="$(token_calls)"
    # initialize: the upstream hands out `bench-session`, the client sees it sealed.
    status="$(post_as "$name" "$u" "$tmp/$name.init" \
        '{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}' \
        "authorization: Bearer $token" 'x-bench-init: 1')"
    sealed="$(header_of mcp-session-id "$tmp/$name.init.headers")"
    [[ $status == 200 && $sealed == v1.* ]] ||
        fail_full "$name" "initialize answered $status with Mcp-Session-Id '$sealed'"
    c1="$(token_calls)"
    # The measured request, once, marked for the upstream's verification log.
    : >"$tmp/upstream/verify.log"
    status="$(post_as "$name" "$u" "$tmp/$name.verify" "@$tmp/body.json" "authorization: Bearer $token" \
        "mcp-session-id: $sealed" 'x-bench-verify: 1')"
    [[ $status == 200 && "$(cat "$tmp/$name.verify")" == "$expected" ]] ||
        fail_full "$name" "tools/call answered $status, body: $(head -c 300 "$tmp/$name.verify")"
    [[ "$(header_of mcp-session-id "$tmp/$name.verify.headers")" == v1.* ]] ||
        fail_full "$name" "the answer does not carry a sealed Mcp-Session-Id"
    [[ "$(cat "$tmp/upstream/verify.log")" == "authorization=[Bearer upstream-token] mcp-session-id=[bench-session]" ]] ||
        fail_full "$name" "the upstream received: $(cat "$tmp/upstream/verify.log")"
    c2="$(token_calls)"
    # The same request again: the exchanged token must come from the cache now.
    status="$(post_as "$name" "$u" "$tmp/$name.verify" "@$tmp/body.json" "authorization: Bearer $token" \
        "mcp-session-id: $sealed")"
    c3="$(token_calls)"
    [[ $status == 200 ]] || fail_full "$name" "second tools/call answered $status"
    ((c1 - c0 == 1 && c2 - c1 == 1)) ||
        fail_full "$name" "token endpoint calls: $((c1 - c0)) for initialize, $((c2 - c1)) for tools/call (expected 1 and 1)"
    ((c3 == c2)) || fail_full "$name" "the second tools/call exchanged the token again (not cached)"
    echo "$name: ready; initialize and the first tools/call each exchanged the token once," \
        "the second tools/call was served from the cache; the upstream got the exchanged" \
        "token and its own session id" >&2
    url[$t]="$u" proxy_of[$t]="$name" wrk_auth[$t]="Bearer $token" wrk_session[$t]="$sealed"
    admin_of[$t]="$admin"
}
declare -A wrk_auth wrk_session admin_of
if has_target e; then
    start_full e drawbridge-e "$p_e" $((port_base + 11)) warn
fi
if has_target e+audit; then
    start_full e+audit drawbridge-e-audit "$p_eaudit" $((port_base + 12)) warn,audit=info
fi
if has_target e+info; then
    start_full e+info drawbridge-e-info "$p_einfo" $((port_base + 18)) info
fi
if has_target e@ref; then
    start_full e@ref drawbridge-e-ref "$p_eref" $((port_base + 16)) warn "$ref_bin"
fi
token_calls_before="$(token_calls)"

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

run_wrk() { # TARGET DURATION; a hung wrk is killed a minute after it should have ended
    # post.lua adds Authorization and Mcp-Session-Id from these when they are not empty,
    # and sends the body in BENCH_BODY_FILE.
    BENCH_AUTHORIZATION="${wrk_auth[$1]:-}" BENCH_SESSION_ID="${wrk_session[$1]:-}" \
        BENCH_BODY_FILE="$tmp/body.json" \
        timeout $(($(seconds_of "$2") + 60)) "${on_wrk[@]}" wrk -t1 -c"$connections" -d"$2" \
        --latency -s "$here/post.lua" "${url[$1]}"
}

results="$tmp/results.tsv"
printf 'round\ttarget\trequests\tduration_us\tp50_us\tp99_us\tproxy_ticks\tupstream_ticks\twrk_ms\tmachine_ticks\tflags\n' >"$results"
mkdir -p "$tmp/raw"
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
echo "rounds: $rounds x ${targets[*]}, ${duration} each (warm-up $warmup), -c$connections, pin=$pin" >&2
for ((round = 1; round <= rounds; round++)); do
    for t in "${targets[@]}"; do
        [[ $warmup == 0 ]] || run_wrk "$t" "$warmup" >/dev/null
        proxy="${proxy_of[$t]}"
        pb=0 pa=0
        [[ -z $proxy ]] || pb="$(ticks_of "$proxy")"
        ub="$(ticks_of upstream)" mb="$(machine_busy_ticks)"
        children_cpu
        wb=$children_ms
        raw="$tmp/raw/round$round-$t.txt"
        run_wrk "$t" "$duration" >"$raw"
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

# Fixed rate, well below saturation: what a request costs in latency when nothing
# queues. Open loop (latency counted from each request's scheduled time); interleaved
# rounds like the wrk runs.
rate_results="$tmp/rate.tsv"
printf 'round\ttarget\tline\n' >"$rate_results"
if ((rate > 0)); then
    echo "fixed rate: $rounds rounds x ${targets[*]}, $rate req/s for ${rate_duration%s}s each" >&2
    for ((round = 1; round <= rounds; round++)); do
        for t in "${targets[@]}"; do
            raw="$tmp/raw/rate-round$round-$t.txt"
            BENCH_AUTHORIZATION="${wrk_auth[$t]:-}" BENCH_SESSION_ID="${wrk_session[$t]:-}" \
                timeout $((${rate_duration%s} + 60)) "${on_wrk[@]}" python3 "$here/fixed_rate.py" \
                "${url[$t]}" --rate "$rate" --duration "${rate_duration%s}" --connections "$connections" \
                --body-file "$tmp/body.json" >"$raw" 2>&1 || true
            line="$(grep '^FIXED_RATE ' "$raw" || true)"
            [[ -n $line ]] || { echo "  fixed rate, $t: no result: $(tail -n 3 "$raw")" >&2; continue; }
            printf '%s\t%s\t%s\n' "$round" "$t" "$line" >>"$rate_results"
            printf '  rate round %d %-7s %s\n' "$round" "$t" \
                "$(grep -o 'achieved_rps=[^ ]* p50_us=[^ ]* p90_us=[^ ]* p99_us=[^ ]*' <<<"$line")" >&2
        done
    done
fi
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

# Full pipeline: did the caches hold during the measured runs? The token endpoint's
# access log and each gateway's own counters say.
pipeline_args=()
if ((full_pipeline)); then
    pipeline_args+=(--pipeline "token endpoint calls during warm-ups and measured runs: $(($(token_calls) - token_calls_before)) (set-up: 2 per gateway, one per scope set)")
    for t in e e+audit e@ref; do
        [[ -n ${admin_of[$t]:-} ]] || continue
        summary="$(curl -s -m 5 "http://127.0.0.1:${admin_of[$t]}/metrics" | python3 -c '
import re, sys
want = {
    ("drawbridge_cache_requests_total", "cache", "token"): "verified-token cache",
    ("drawbridge_cache_requests_total", "cache", "exchange"): "exchanged-token cache",
}
seen = {}
for line in sys.stdin:
    m = re.match(r"(\w+)\{([^}]*)\} (\S+)$", line.strip())
    if not m:
        continue
    labels = dict(re.findall(r"(\w+)=\"([^\"]*)\"", m.group(2)))
    for (name, key, value), what in want.items():
        if m.group(1) == name and labels.get(key) == value:
            seen.setdefault(what, {})[labels.get("result", "?")] = float(m.group(3))
    if m.group(1) == "drawbridge_session_rejections_total":
        seen.setdefault("session rejections", {})[labels.get("reason", "?")] = float(m.group(3))
print("; ".join(what + " " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(r.items()))
                for what, r in seen.items()) or "no metrics")
' || echo "metrics unavailable")"
        pipeline_args+=(--pipeline "($t) $summary")
    done
    # Log volume at the default level: every byte the process wrote, over every request it
    # served (set-up, warm-ups and measured runs alike).
    if [[ -n ${admin_of[e+info]:-} ]]; then
        served="$(curl -s -m 5 "http://127.0.0.1:${admin_of[e+info]}/metrics" |
            awk '/^drawbridge_requests_total\{/ { n += $NF } END { printf "%d", n }')"
        bytes="$(stat -c %s "$tmp/drawbridge-e-info.stderr" 2>/dev/null || echo 0)"
        if ((served > 0)); then
            pipeline_args+=(--pipeline "(e+info) log at the default level: $bytes bytes over $served requests, $(python3 -c "print(f'{$bytes / $served:.2f}')") bytes per request")
        fi
    fi
fi

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
for name in upstream hop bare bare-ref drawbridge drawbridge-log drawbridge-e \
    drawbridge-e-audit drawbridge-ref drawbridge-e-ref; do
    [[ -n ${pid[$name]:-} ]] || continue
    rss_lines+="$name=$(rss_of "$name") "
done

# --- report ------------------------------------------------------------------------
ref_meta=()
[[ -z $ref_bin ]] || ref_meta+=(--meta "ref=$ref_bin (built $(stat -c %y "$ref_bin" | cut -d. -f1))")
[[ -z $ref_bare ]] || ref_meta+=(--meta "ref_bare=$ref_bare (built $(stat -c %y "$ref_bare" | cut -d. -f1))")
commit="$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
git -C "$repo" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || commit+=" (+ uncommitted changes)"
python3 "$here/report.py" \
    --results "$results" --rate-results "$rate_results" --clk-tck "$clk_tck" --rss "$rss_lines" "${pipeline_args[@]}" \
    --meta "date=$(date -u +%Y-%m-%dT%H:%MZ)" \
    --meta "commit=$commit" \
    --meta "machine=$ncpu CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(uname -r)" \
    --meta "load=$load_before before, $load_after after (1/5/15 min)" \
    --meta "rustc=$(rustc --version 2>/dev/null || echo unknown)" \
    --meta "nginx=$("$nginx_bin" -v 2>&1 | sed 's/^nginx version: //')" \
    --meta "wrk=-t1 -c$connections -d$duration (warm-up $warmup), $rounds rounds, interleaved" \
    --meta "pin=$pin" \
    "${ref_meta[@]}" \
    --meta "profile=$([[ -n $bin_dir ]] && echo "binaries from $bin_dir" || echo "$profile")" \
    --meta "rate=$rate req/s for $rate_duration per target and round (0: not run), $connections connections" \
    --meta "command=benches/load/run.sh --duration $duration --warmup $warmup --rounds $rounds --connections $connections --rate $rate --rate-duration $rate_duration --body-bytes $body_bytes --pin $pin --profile $profile${bin_dir:+ --bin-dir $bin_dir} --targets $targets_csv${ref_bin:+ --ref-bin $ref_bin}${ref_bare:+ --ref-bare $ref_bare}" \
    | tee "$out"
echo "report written to $out" >&2
