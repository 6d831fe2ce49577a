#!/usr/bin/env bash
# The demo, in one command (`make demo`). Installs what is missing, builds drawbridge, then
# starts on 127.0.0.1, each with a scrubbed environment and its log in a temp directory:
#   - the development authorization server (tests/e2e/authserver)      :9400
#   - server-everything, a real MCP server from npm                     :3001
#   - whoami (tests/e2e/whoami_server.py), shows the token it receives  :3002
#   - drawbridge with the repository's gateway.yaml                     :8080, admin :9090
# and runs deploy/demo/client.py: real MCP clients (the Python SDK with OAuth) going
# through the gateway, step by step; it exits non-zero if anything is not as expected.
# Then it keeps serving until Ctrl-C; DEMO_EXIT=1 stops after the transcript.
# Idempotent; every process it starts is stopped when it exits.
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

scripts/setup.sh
scripts/setup-e2e.sh
echo "== building drawbridge (release)"
cargo build --locked --release --bin drawbridge

bin="$repo_root/target/release/drawbridge"
e2e="$repo_root/tests/e2e"
py="$e2e/.venv/bin/python"
# The upstreams' ports may be moved (EVERYTHING_PORT, WHOAMI_PORT); the others are the
# issuer and public_url baked into gateway.yaml.
as_port=9400 listen_port=8080 admin_port=9090
everything_port="${EVERYTHING_PORT:-3001}" whoami_port="${WHOAMI_PORT:-3002}"
startup_timeout_s=60  # generous: a busy machine may be compiling too
logs="$(mktemp -d "${TMPDIR:-/tmp}/drawbridge-demo.XXXXXX")"
mkdir -p "$logs/home"
base_env=(env -i "PATH=$PATH" "HOME=$logs/home" "LANG=C.UTF-8")

declare -A pid_of=()
cleanup() {
  local pid _
  for pid in "${pid_of[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  for _ in $(seq 1 50); do  # up to 5 s, then SIGKILL
    local alive=0
    for pid in "${pid_of[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for pid in "${pid_of[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

show_log() { # name
  echo "---- last 40 lines of $logs/$1.log" >&2
  tail -n 40 "$logs/$1.log" >&2 || true
  echo "----" >&2
}

fail() { # name, message
  echo "demo: $2" >&2
  show_log "$1"
  exit 1
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

http_ok() { curl --noproxy '*' -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null; }

# start NAME DIR COMMAND...: in its own session (so that its whole process group can be
# stopped), stdin closed, output to $logs/NAME.log.
start() {
  local name=$1 dir=$2
  shift 2
  (cd "$dir" && exec setsid "$@" </dev/null >"$logs/$name.log" 2>&1) &
  pid_of[$name]=$!
}

# wait_ready NAME WHAT PROBE...: bounded; fails with the log's tail if NAME exits or
# PROBE does not succeed in time.
wait_ready() {
  local name=$1 what=$2 deadline=$((SECONDS + startup_timeout_s))
  shift 2
  until "$@"; do
    kill -0 "${pid_of[$name]}" 2>/dev/null || fail "$name" "$name exited during start-up ($what)"
    ((SECONDS < deadline)) || fail "$name" "$name did not come up within ${startup_timeout_s}s ($what)"
    sleep 0.2
  done
}

for port in $as_port $everything_port $whoami_port $listen_port $admin_port; do
  if port_open "$port"; then
    echo "demo: 127.0.0.1:$port is already in use (is another demo still running? the upstreams" \
      "can be moved with EVERYTHING_PORT=… WHOAMI_PORT=…)" >&2
    exit 1
  fi
done

# Fresh secrets per run, shared by the authorization server and drawbridge only.
exchange_secret="$(head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
session_key="$("$bin" keygen)"
echo "== logs in $logs"

echo "== starting the development authorization server on 127.0.0.1:$as_port"
start authserver "$e2e" "${base_env[@]}" PORT="$as_port" DRAWBRIDGE_CLIENT_SECRET="$exchange_secret" \
  AUTH_USERS=alice,bob node --import ./loopback.mjs authserver/server.mjs
wait_ready authserver "OpenID discovery" http_ok "http://127.0.0.1:$as_port/.well-known/openid-configuration"

echo "== starting server-everything on 127.0.0.1:$everything_port"
# Its get-env tool returns its environment verbatim: it gets nothing worth leaking.
start everything "$e2e" "${base_env[@]}" PORT="$everything_port" \
  node --import ./loopback.mjs node_modules/@modelcontextprotocol/server-everything/dist/index.js streamableHttp
wait_ready everything "port $everything_port" port_open "$everything_port"

echo "== starting whoami on 127.0.0.1:$whoami_port"
start whoami "$e2e" "${base_env[@]}" "$py" whoami_server.py "$whoami_port"
wait_ready whoami "port $whoami_port" port_open "$whoami_port"

echo "== starting drawbridge with gateway.yaml"
# The environment gateway.yaml reads, for `run` and for `explain` below.
gateway_env=("${base_env[@]}" DRAWBRIDGE_SESSION_KEY="$session_key"
  DRAWBRIDGE_EXCHANGE_SECRET="$exchange_secret"
  EVERYTHING_URL="http://127.0.0.1:$everything_port/mcp" WHOAMI_URL="http://127.0.0.1:$whoami_port/mcp")
start drawbridge "$repo_root" "${gateway_env[@]}" NO_COLOR=1 RUST_LOG="${RUST_LOG:-info}" \
  "$bin" run --config gateway.yaml
wait_ready drawbridge "/readyz" http_ok "http://127.0.0.1:$admin_port/readyz"

echo "== MCP client transcript through the gateway (deploy/demo/client.py)"
# The client leaves alice's access token here (mode 600) for the explain step.
token_file="$logs/alice.jwt"
if ! "${base_env[@]}" DEMO_TOKEN_FILE="$token_file" "$py" deploy/demo/client.py \
  "http://127.0.0.1:$listen_port" "http://127.0.0.1:$admin_port"; then
  fail drawbridge "the client transcript did not go as expected (logs in $logs)"
fi

echo
echo "== 6. Why was get-env refused? drawbridge explain, with alice's token and gateway.yaml"
get_env='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get-env","arguments":{}}}'
echo "   \$ drawbridge explain -c gateway.yaml --route everything --token @alice.jwt --request -"
set +e
explained="$(printf '%s' "$get_env" | "${gateway_env[@]}" "$bin" explain -c gateway.yaml \
  --route everything --token "@$token_file" --request - 2>&1)"
status=$?
set -e
printf '%s\n' "$explained" | sed 's/^/   /'
if [[ $status -ne 1 ]] || ! grep -q "default deny" <<<"$explained"; then
  fail drawbridge "explain did not say why get-env is refused (exit $status)"
fi
echo "   \$ drawbridge explain ... --list   (what alice's token shows of the policy)"
listed="$("${gateway_env[@]}" "$bin" explain -c gateway.yaml --route everything \
  --token "@$token_file" --list 2>&1)" || fail drawbridge "explain --list failed"
printf '%s\n' "$listed" | sed 's/^/   /'

cat <<TXT

drawbridge is running (logs in $logs):
  MCP endpoints (give one to any MCP client; sign in as alice or bob, no password):
    http://127.0.0.1:$listen_port/everything/mcp   server-everything, per-tool scopes
    http://127.0.0.1:$listen_port/whoami/mcp       whoami, the upstream gets an exchanged token
  metrics:               http://127.0.0.1:$admin_port/metrics
  health / readiness:    http://127.0.0.1:$admin_port/healthz  /readyz
  authorization server:  http://127.0.0.1:$as_port  (development only: no passwords)
TXT
if [[ "${DEMO_EXIT:-0}" == "1" ]]; then exit 0; fi
echo "Ctrl-C stops everything."
# Serve until Ctrl-C; if a component stops on its own, say which and fail.
wait -n || true
for name in "${!pid_of[@]}"; do
  kill -0 "${pid_of[$name]}" 2>/dev/null || fail "$name" "$name stopped unexpectedly"
done
exit 1
