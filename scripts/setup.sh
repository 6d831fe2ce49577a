#!/usr/bin/env bash
# Installs what building drawbridge needs on a fresh Debian machine (run as root), and
# nothing that is already there. Idempotent. The Rust toolchain, Node.js/npm and Python 3
# are expected to be present; Debian packages are installed with apt-get when missing.
set -euo pipefail

need_apt=()
# Pingora's build compiles C (zstd, brotli, libz) with cmake; pkg-config finds libraries.
for pkg in cmake pkg-config make gcc g++; do
  command -v "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
# python3 -m venv (for the e2e clients) needs Debian's python3-venv when Python is Debian's.
if [[ ${#need_apt[@]} -gt 0 ]]; then
  echo "setup: installing ${need_apt[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
for tool in cargo node npm python3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "setup: $tool is required but missing" >&2; exit 1; }
done
echo "setup: build tools present"
