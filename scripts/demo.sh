#!/usr/bin/env bash
# The demo: server-everything (a real MCP server from npm) on 127.0.0.1:3001, drawbridge
# with the repository's gateway.yaml in front of it, and a real MCP client (the Python
# SDK) talking to it through the gateway. Installs what is missing; idempotent.
# It keeps serving until Ctrl-C; DEMO_EXIT=1 stops after the client transcript.
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

scripts/setup.sh
scripts/setup-e2e.sh
echo "== building drawbridge (release)"
cargo build --locked --release --bin drawbridge

export EVERYTHING_PORT="${EVERYTHING_PORT:-3001}"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

wait_for() { # url, what
  for _ in $(seq 1 100); do
    if curl -s -o /dev/null "$1" 2>/dev/null || python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" "$1" 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  echo "demo: $2 did not come up at $1" >&2; exit 1
}

echo "== starting server-everything on 127.0.0.1:$EVERYTHING_PORT"
(cd tests/e2e && env -i PATH="$PATH" HOME="$HOME" PORT="$EVERYTHING_PORT" \
  node --import ./loopback.mjs node_modules/@modelcontextprotocol/server-everything/dist/index.js streamableHttp \
  >/tmp/drawbridge-demo-everything.log 2>&1) &
pids+=($!)
python3 - "$EVERYTHING_PORT" <<'PY'
import socket, sys, time
for _ in range(150):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=0.5).close(); break
    except OSError:
        time.sleep(0.2)
else:
    sys.exit("demo: server-everything did not start")
PY

echo "== starting drawbridge with gateway.yaml"
target/release/drawbridge run --config gateway.yaml &
pids+=($!)
wait_for "http://127.0.0.1:9090/readyz" "drawbridge admin"

echo "== MCP client transcript through the gateway"
tests/e2e/.venv/bin/python deploy/demo/client.py "http://127.0.0.1:8080/everything/mcp"

cat <<TXT

drawbridge is running:
  MCP endpoint (give this to an MCP client):  http://127.0.0.1:8080/everything/mcp
  metrics:                                   http://127.0.0.1:9090/metrics
  health / readiness:                        http://127.0.0.1:9090/healthz  /readyz
  upstream (server-everything, direct):      http://127.0.0.1:$EVERYTHING_PORT/mcp
TXT
if [[ "${DEMO_EXIT:-0}" == "1" ]]; then exit 0; fi
echo "Ctrl-C stops everything."
wait
