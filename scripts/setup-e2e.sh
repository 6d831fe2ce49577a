#!/usr/bin/env bash
# Installs what the end-to-end tests (tests/e2e) need, and nothing else:
#   - Node peers: `npm ci` into tests/e2e/node_modules, from package-lock.json
#     (server-everything, oidc-provider for authserver/, the TypeScript MCP SDK client);
#   - Python clients and the whoami upstream: a venv at tests/e2e/.venv, from
#     requirements.txt (the `mcp` SDK provides both client and server).
# Idempotent: each step leaves a stamp (a hash of its inputs) inside the directory it
# fills, and is skipped while the stamp matches. Deleting the directory forces a reinstall.
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

install_node_peers
install_python_clients
echo "setup-e2e: ready"
