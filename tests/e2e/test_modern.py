"""MCP 2026-07-28 through drawbridge: a modern-only upstream behind an authenticated,
default-deny route.

The upstream is the TypeScript SDK v2's `createMcpHandler` with `legacy: 'reject'`
(modern_server.mjs): it answers only 2026-07-28 requests, so a client reaches it only if
the gateway lets `server/discover` through. The clients are the Python SDK 2.3.0 in its
default mode (`auto`: probe `server/discover`, fall back to `initialize` on any refusal)
and the TypeScript SDK v2 client in `auto` mode. Each asserts the era the client
negotiated, the filtered tool list, and — from the server's own execution log — that the
allowed tool ran and the forbidden one never did.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Iterator

import anyio
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from conftest import (
    E2E_DIR,
    LOOPBACK,
    accepts_connections,
    free_port,
    protected_route,
    start_peer,
    stop_peer,
    wait_until,
)
from headless_oauth import OAuthClient

MODERN_SERVER = E2E_DIR / "modern_server.mjs"
MODERN_CLIENT = E2E_DIR / "modern_client.mjs"
SCENARIO_TIMEOUT_S = 60.0
MODERN_VERSION = "2026-07-28"


@pytest.fixture(scope="module")
def modern_server(peer_log_dir) -> Iterator[tuple[str, Path]]:
    """The modern-only upstream's URL and its execution log."""
    port = free_port()
    log = peer_log_dir / "modern-executions.jsonl"
    log.write_text("")
    proc = start_peer("modern-server", ["node", str(MODERN_SERVER), str(port), str(log)],
                      peer_log_dir, cwd=E2E_DIR)
    try:
        wait_until(lambda: accepts_connections(port), proc, "modern-server")
        yield f"http://{LOOPBACK}:{port}/mcp", log
    finally:
        stop_peer(proc)


@pytest.fixture(scope="module")
def modern_route(authserver, modern_server, peer_log_dir) -> Iterator[str]:
    """A gateway whose one route is protected and denies every tool but `echo`."""
    upstream, _ = modern_server
    with protected_route("modern", authserver.issuer, upstream,
                         {"tools": {"echo": ["tools:echo"]}}, peer_log_dir) as url:
        yield url


def executions(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def run(scenario, *args):
    async def bounded():
        with anyio.fail_after(SCENARIO_TIMEOUT_S):
            return await scenario(*args)

    return anyio.run(bounded)


async def python_client_in_default_mode(url: str, oauth: OAuthClient, mode: str = "auto") -> dict:
    """What the Python SDK's `Client` (default mode: auto) negotiated and saw."""
    seen: dict = {}
    async with oauth.http_client() as http:
        # No client-side cache: the list is asked again after the step-up below.
        async with Client(streamable_http_client(url, http_client=http), cache=None,
                          mode=mode) as client:
            seen["discovered"] = client.session.discover_result is not None
            seen["version"] = client.session.protocol_version
            # Signed in with the route's scope only: nothing to call, nothing listed.
            seen["tools_before"] = sorted(t.name for t in (await client.list_tools()).tools)
            # 403 insufficient_scope, the SDK steps up to tools:echo, then the call runs.
            echoed = await client.call_tool("echo", {"message": "from python"})
            seen["echo"] = "".join(b.text for b in echoed.content if b.type == "text")
            seen["tools"] = sorted(t.name for t in (await client.list_tools()).tools)
            try:
                await client.call_tool("admin-delete", {})
                seen["forbidden"] = "answered"
            except MCPError as e:
                seen["forbidden"] = e.error.code
    return seen


def test_python_client_in_auto_mode_gets_2026_07_28(modern_route, modern_server):
    _, log = modern_server
    before = len(executions(log))
    seen = run(python_client_in_default_mode, modern_route, OAuthClient(modern_route, user="alice"))
    assert seen["discovered"], seen
    assert seen["version"] == MODERN_VERSION, seen
    assert seen["tools_before"] == [], "with mcp:tools alone no tool may be called"
    assert seen["tools"] == ["echo"], "the list must be filtered to what alice may call"
    assert seen["echo"] == "Echo: from python"
    # The gateway's policy refusal: JSON-RPC -32005 in a 403, never a server answer.
    assert seen["forbidden"] == -32005, seen
    ran = [e["tool"] for e in executions(log)[before:]]
    assert ran == ["echo"], f"the upstream executed {ran}"


def test_python_client_pinned_to_2026_07_28(modern_route, modern_server):
    """`mode="2026-07-28"`: no discovery probe, every request carries `_meta` and the
    request metadata headers (MCP-Protocol-Version, Mcp-Method, Mcp-Name), which the
    gateway checks against the body; a conforming client passes them all."""
    _, log = modern_server
    before = len(executions(log))
    seen = run(python_client_in_default_mode, modern_route,
               OAuthClient(modern_route, user="alice"), MODERN_VERSION)
    assert seen["version"] == MODERN_VERSION, seen
    assert seen["tools_before"] == [], seen
    assert seen["tools"] == ["echo"], seen
    assert seen["echo"] == "Echo: from python", seen
    assert seen["forbidden"] == -32005, seen
    ran = [e["tool"] for e in executions(log)[before:]]
    assert ran == ["echo"], f"the upstream executed {ran}"


def test_typescript_v2_client_in_auto_mode(modern_route, modern_server):
    _, log = modern_server
    # A token carrying tools:echo, from the Python SDK's sign-in and step-up.
    oauth = OAuthClient(modern_route, user="bob")
    run(python_client_in_default_mode, modern_route, oauth)
    token = oauth.storage.tokens.access_token
    before = len(executions(log))
    done = subprocess.run(["node", str(MODERN_CLIENT), modern_route], cwd=E2E_DIR,
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "MODERN_TOKEN": token},
                          capture_output=True, text=True, timeout=SCENARIO_TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert "failure" not in report, report
    assert report["era"] == "modern" and report["version"] == MODERN_VERSION, report
    assert report["tools"] == ["echo"], report
    assert report["echo"] == "Echo: modern", report
    assert report["forbidden"]["outcome"] == "error", report
    assert "403" in json.dumps(report["forbidden"]), report
    ran = [e["tool"] for e in executions(log)[before:]]
    assert ran == ["echo"], f"the upstream executed {ran}"
