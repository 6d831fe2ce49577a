#!/usr/bin/env bash
# Installs what the end-to-end tests (tests/e2e) need, and nothing else:
#   - Node peers: `npm ci` into tests/e2e/node_modules, from package-lock.json
#     (server-everything, oidc-provider for authserver/, the TypeScript MCP SDK client);
#   - Python clients and the whoami upstream: a venv at tests/e2e/.venv, from
#     requirements.txt (the `mcp` SDK provides both client and server);
#   - the Prometheus server (test_prometheus.py): /usr/bin/prometheus taken out of
#     Debian's `prometheus` .deb into target/tools/prometheus, the way
#     scripts/check-deploy.sh takes promtool (the package itself is not installed: no
#     system user, no service, no web assets);
#   - nginx (test_scale_out.py, the load balancer): Debian's nginx-light when no nginx is
#     installed, without starting its service;
#   - Chromium (test_browser.py, driven headless by playwright-core from node_modules):
#     Debian's chromium package when /usr/bin/chromium is missing.
# Idempotent: each step leaves a stamp (a hash of its inputs) inside the directory it
# fills, and is skipped while the stamp matches. Deleting the directory forces a reinstall.
# The two test-only tools are checked by presence. SETUP_E2E_PEERS_ONLY=1 skips them
# (the demo needs only the peers).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
e2e="$repo_root/tests/e2e"
venv="$e2e/.venv"

stamp_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

install_node_peers() {
  local stamp="$e2e/node_modules/.e2e-install.stamp" want
  want="$(stamp_of "$e2e/package-lock.json" <(node --version))"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "setup-e2e: node_modules up to date"
    return
  fi
  echo "setup-e2e: npm ci in tests/e2e"
  (cd "$e2e" && npm ci --no-audit --no-fund)
  echo "$want" > "$stamp"
}

create_venv() {
  if python3 -m venv "$venv"; then return; fi
  echo "setup-e2e: python3 -m venv failed; installing python3-venv with apt-get"
  rm -rf "$venv"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv
  python3 -m venv "$venv"
}

install_python_clients() {
  local stamp="$venv/.e2e-install.stamp" want
  want="$(stamp_of "$e2e/requirements.txt" <(python3 --version))"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "setup-e2e: .venv up to date"
    return
  fi
  echo "setup-e2e: creating tests/e2e/.venv and installing requirements.txt"
  rm -rf "$venv"
  create_venv
  "$venv/bin/python" -m pip install --disable-pip-version-check --quiet -r "$e2e/requirements.txt"
  echo "$want" > "$stamp"
}

install_prometheus() {
  local tools="$repo_root/target/tools" bin="$repo_root/target/tools/prometheus" tmp
  if [[ -x "$bin" ]] && "$bin" --version >/dev/null 2>&1; then
    echo "setup-e2e: target/tools/prometheus present"
    return
  fi
  command -v apt-get >/dev/null 2>&1 || {
    echo "setup-e2e: prometheus is missing and apt-get is not available" >&2
    exit 1
  }
  echo "setup-e2e: fetching the prometheus server from Debian's prometheus package"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  chmod 755 "$tmp"   # apt-get download's sandbox user (_apt) writes the .deb here
  if ! (cd "$tmp" && apt-get download -qq prometheus >/dev/null 2>&1); then
    apt-get update -qq
    (cd "$tmp" && apt-get download -qq prometheus >/dev/null)
  fi
  dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/root"
  install -D -m 0755 "$tmp/root/usr/bin/prometheus" "$bin.partial"
  mv -f "$bin.partial" "$bin"   # never a half-written binary under the final name
  # The same package carries promtool (scripts/check-deploy.sh); keep it if it is absent.
  [[ -x "$tools/promtool" ]] || install -D -m 0755 "$tmp/root/usr/bin/promtool" "$tools/promtool"
  rm -rf "$tmp"
  trap - EXIT
}

install_nginx() {
  if command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]]; then
    echo "setup-e2e: nginx present"
    return
  fi
  echo "setup-e2e: installing nginx-light with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # RUNLEVEL=1: do not start the distribution's nginx service (it listens on :80).
  RUNLEVEL=1 apt-get install -y -qq nginx-light >/dev/null ||
    RUNLEVEL=1 apt-get install -y -qq nginx >/dev/null
}

install_chromium() {
  if [[ -x /usr/bin/chromium ]]; then
    echo "setup-e2e: chromium present"
    return
  fi
  command -v apt-get >/dev/null 2>&1 || {
    echo "setup-e2e: chromium is missing and apt-get is not available" >&2
    exit 1
  }
  echo "setup-e2e: installing chromium with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends chromium >/dev/null || {
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium >/dev/null
  }
}

install_node_peers
install_python_clients
if [[ "${SETUP_E2E_PEERS_ONLY:-0}" != 1 ]]; then
  install_prometheus
  install_nginx
  install_chromium
fi
echo "setup-e2e: ready"
