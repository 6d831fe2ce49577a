"""Browser-based MCP clients through drawbridge, in a real browser (Debian's Chromium,
headless, driven by playwright-core through browser_fetch.mjs).

This module owns the Origin/CORS scenarios: a page served on an allowed origin uses
fetch() to initialize and list tools on the everything server through the gateway (the
browser's CORS preflight is answered by the gateway, and the answers carry the CORS
headers the page needs to read `Mcp-Session-Id`); a page served on another origin cannot:
its preflighted requests fail in the browser, and even the "simple" request a browser sends
without a preflight (a text/plain POST, the DNS-rebinding shape) is refused 403 by the
gateway, so a recording upstream behind the same gateway sees nothing from it.

Every server here listens on 127.0.0.1 (the pages differ from each other and from the
gateway by port, so each is its own origin); every wait is bounded; the browser runs in
its own process group and is stopped with it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from conftest import (
    DRAWBRIDGE_BIN, E2E_DIR, LOOPBACK, free_port, peer_log_text, start_drawbridge, stop_peer,
)

CHROMIUM = Path("/usr/bin/chromium")
HELPER = E2E_DIR / "browser_fetch.mjs"
BROWSER_TIMEOUT_S = 60.0

# The page: runs the MCP exchange named by ?scenario= against ?gateway= and stores what it
# saw in window.__result for browser_fetch.mjs to collect.
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>drawbridge browser client</title></head>
<body><script>
const params = new URLSearchParams(location.search);
const everything = params.get("everything");
const recorded = params.get("recorded");
const accept = "application/json, text/event-stream";
function rpc(id, method, params) {
  return JSON.stringify({jsonrpc: "2.0", id, method, params});
}
async function attempt(label, out, f) {
  try { out[label] = await f(); } catch (e) { out[label] = {failed: String(e)}; }
}
async function mcpExchange(out) {
  await attempt("initialize", out, async () => {
    const r = await fetch(everything, {method: "POST",
      headers: {"Content-Type": "application/json", "Accept": accept},
      body: rpc(1, "initialize", {protocolVersion: "2025-06-18", capabilities: {},
                                  clientInfo: {name: "browser", version: "1"}})});
    return {status: r.status, session: r.headers.get("mcp-session-id"), body: await r.text()};
  });
  const session = out.initialize && out.initialize.session;
  await attempt("tools", out, async () => {
    const headers = {"Content-Type": "application/json", "Accept": accept,
                     "MCP-Protocol-Version": "2025-06-18"};
    if (session) headers["Mcp-Session-Id"] = session;
    await fetch(everything, {method: "POST", headers,
      body: JSON.stringify({jsonrpc: "2.0", method: "notifications/initialized"})});
    const r = await fetch(everything, {method: "POST", headers, body: rpc(2, "tools/list", {})});
    return {status: r.status, body: await r.text()};
  });
  await attempt("recorded", out, async () => {
    const r = await fetch(recorded, {method: "POST",
      headers: {"Content-Type": "application/json", "Accept": accept},
      body: rpc(3, "ping", {})});
    return {status: r.status};
  });
  // The DNS-rebinding shape: a "simple" request, sent without a preflight.
  await attempt("simple", out, async () => {
    const r = await fetch(recorded, {method: "POST", mode: "no-cors",
      headers: {"Content-Type": "text/plain"},
      body: rpc(4, "tools/call", {name: "echo", arguments: {message: "from a page"}})});
    return {type: r.type};
  });
}
(async () => {
  const out = {origin: location.origin};
  await mcpExchange(out);
  window.__result = out;
})();
</script></body></html>
"""


class _Recorder:
    """A stand-in MCP upstream that records every request it receives."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str]] = []
        self.lock = threading.Lock()


def _serve(handler_class) -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer((LOOPBACK, 0), handler_class)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://{LOOPBACK}:{server.server_address[1]}"


def _page_server() -> tuple[ThreadingHTTPServer, str]:
    class Page(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            body = PAGE.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return _serve(Page)


def _recording_upstream(recorder: _Recorder) -> tuple[ThreadingHTTPServer, str]:
    class Upstream(BaseHTTPRequestHandler):
        def _record(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode(errors="replace") if length else ""
            with recorder.lock:
                recorder.requests.append((self.command, self.headers.get("Origin") or "", body))
            answer = json.dumps({"jsonrpc": "2.0", "id": 3, "result": {}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        do_POST = do_GET = do_DELETE = do_OPTIONS = _record  # noqa: N815

        def log_message(self, *args):
            pass

    return _serve(Upstream)


@pytest.fixture(scope="module")
def browser_setup(everything_server, peer_log_dir) -> Iterator[dict]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} missing: run scripts/setup-e2e.sh", pytrace=False)
    if not (E2E_DIR / "node_modules/playwright-core").exists():
        pytest.fail("playwright-core missing: run scripts/setup-e2e.sh", pytrace=False)
    allowed_page, allowed_url = _page_server()
    hostile_page, hostile_url = _page_server()
    recorder = _Recorder()
    upstream, upstream_url = _recording_upstream(recorder)
    listen_port, admin_port = free_port(), free_port()
    admin_url = f"http://{LOOPBACK}:{admin_port}"
    config = f"""\
listen: {LOOPBACK}:{listen_port}
admin:
  listen: {LOOPBACK}:{admin_port}
routes:
  - name: everything
    match: {{ path: /everything/mcp }}
    upstream:
      url: {everything_server}
    allowed_origins: ["{allowed_url}"]
  - name: recorded
    match: {{ path: /recorded/mcp }}
    upstream:
      url: {upstream_url}/mcp
    allowed_origins: ["{allowed_url}"]
"""
    proc = start_drawbridge("drawbridge-browser", config, peer_log_dir, admin_url)
    gateway = f"http://{LOOPBACK}:{listen_port}"
    try:
        yield {
            "allowed": allowed_url,
            "hostile": hostile_url,
            "gateway": gateway,
            "recorder": recorder,
            "log_dir": peer_log_dir,
        }
    finally:
        stop_peer(proc)
        for server in (allowed_page, hostile_page, upstream):
            server.shutdown()
            server.server_close()


def open_in_browser(setup: dict, page_base: str, name: str) -> dict:
    """Loads the page from `page_base` in Chromium and returns what it reported."""
    user_data = setup["log_dir"] / f"chromium-{name}"
    shutil.rmtree(user_data, ignore_errors=True)
    user_data.mkdir()
    gateway = setup["gateway"]
    url = (f"{page_base}/?everything={gateway}/everything/mcp"
           f"&recorded={gateway}/recorded/mcp")
    proc = subprocess.Popen(
        ["node", str(HELPER), url, str(user_data)],
        cwd=E2E_DIR, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True, text=True,
    )
    try:
        out, err = proc.communicate(timeout=BROWSER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        stop_peer(proc)
        out, err = proc.communicate()
        pytest.fail(f"the browser did not finish in {BROWSER_TIMEOUT_S:.0f}s:\n{err}")
    finally:
        if proc.poll() is None:
            stop_peer(proc)
    assert proc.returncode == 0, f"browser_fetch failed ({proc.returncode}):\n{err}"
    return json.loads(out.strip().splitlines()[-1])


def test_a_page_on_an_allowed_origin_initializes_and_lists_tools(browser_setup):
    result = open_in_browser(browser_setup, browser_setup["allowed"], "allowed")
    init = result["initialize"]
    assert init.get("status") == 200, result
    # Readable only because the gateway exposes it to the page's origin.
    assert init.get("session"), result
    assert '"serverInfo"' in init["body"], result
    tools = result["tools"]
    assert tools.get("status") == 200, result
    assert '"echo"' in tools["body"], result
    assert result["recorded"] == {"status": 200}, result
    with browser_setup["recorder"].lock:
        seen = list(browser_setup["recorder"].requests)
    # The allowed page's ping arrived; its "simple" request did too (allowed origin).
    assert [r[0] for r in seen].count("POST") >= 1, seen
    assert all(r[0] != "OPTIONS" for r in seen), f"a preflight was forwarded: {seen}"
    with browser_setup["recorder"].lock:
        browser_setup["recorder"].requests.clear()


def test_a_page_on_another_origin_cannot_reach_the_upstream(browser_setup):
    result = open_in_browser(browser_setup, browser_setup["hostile"], "hostile")
    # Preflighted requests fail in the browser (the gateway refused the preflight).
    for label in ("initialize", "tools", "recorded"):
        assert "failed" in result[label], result
    # The simple request was sent (an opaque answer) but refused at the gateway.
    assert result["simple"] == {"type": "opaque"}, result
    with browser_setup["recorder"].lock:
        seen = list(browser_setup["recorder"].requests)
    assert seen == [], f"the upstream received requests from another origin: {seen}"
    log = peer_log_text("drawbridge-browser")
    assert "origin_not_allowed" in log, log[-4000:]
