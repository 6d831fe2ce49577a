"""The Python SDK 2.3.0 (`mcp==2.3.0`) as client AND upstream, through an authenticated,
default-deny drawbridge route, in each of the client's connection modes.

The upstream is listen_server.py (the SDK's MCPServer, serving both protocol generations);
its own log says which tools ran, which change events it published and every request body
it received. The client signs in through the development authorization server
(headless_oauth.py) with the route's scope only, which the policy lets call `echo` and
`touch` and `confirm`, read `note://public`, and nothing else.

- `auto` (probe `server/discover`, fall back to `initialize` on any refusal) and
  `2026-07-28` must both end on 2026-07-28; `legacy` on 2025-11-25. In each, the tool list
  is filtered, the allowed call runs and the forbidden one is refused by the gateway
  (JSON-RPC -32005) and never runs.
- `subscriptions/listen` (2026-07-28): of what the upstream publishes on the stream, a
  `notifications/resources/updated` for `note://secret` (which the caller may not read) is
  dropped, the one for `note://public` and the tools list-change pass.
- W3C trace context in `_meta` (`traceparent`, `tracestate`) reaches the upstream
  byte for byte, in both generations.
- A multi round-trip request (input-required, 2026-07-28): the client's retry reaches
  the upstream with the `requestState` the upstream minted.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import anyio
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ResourceUpdated, ToolsListChanged
from mcp.shared.exceptions import MCPError
from mcp_types import ElicitResult

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

LISTEN_SERVER = E2E_DIR / "listen_server.py"
PYTHON = E2E_DIR / ".venv/bin/python"
SCENARIO_TIMEOUT_S = 60.0
MODERN = "2026-07-28"
LEGACY = "2025-11-25"
PUBLIC, SECRET = "note://public", "note://secret"
# A W3C trace context whose tracestate has two members and the characters the grammar
# allows beyond letters and digits (RFC W3C trace-context: `_-*/@=` and spaces around ",").
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACESTATE = "congo=t61rcWkgMzE, rojo@vendor=00f0-67aa_0b*a9/02b7"


@dataclass(frozen=True)
class ListenUpstream:
    url: str
    log: Path


@pytest.fixture(scope="module")
def listen_upstream(peer_log_dir) -> Iterator[ListenUpstream]:
    port = free_port()
    log = peer_log_dir / "listen-upstream.jsonl"
    log.write_text("")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LISTEN_LOG": str(log)}
    proc = start_peer("listen-upstream", [str(PYTHON), str(LISTEN_SERVER), str(port)],
                      peer_log_dir, cwd=E2E_DIR, env=env)
    try:
        wait_until(lambda: accepts_connections(port), proc, "listen-upstream")
        yield ListenUpstream(f"http://{LOOPBACK}:{port}/mcp", log)
    finally:
        stop_peer(proc)


@pytest.fixture(scope="module")
def listen_route(authserver, listen_upstream, peer_log_dir) -> Iterator[str]:
    policy = {
        "tools": {"echo": ["mcp:tools"], "touch": ["mcp:tools"], "confirm": ["mcp:tools"]},
        "resources": {PUBLIC: ["mcp:tools"]},
    }
    with protected_route("listen", authserver.issuer, listen_upstream.url, policy,
                         peer_log_dir) as url:
        yield url


@pytest.fixture(scope="module")
def oauth(listen_route) -> OAuthClient:
    """One signed-in client for the module: the sign-in happens on first use."""
    return OAuthClient(listen_route, user="alice")


def log_entries(upstream: ListenUpstream) -> list[dict]:
    return [json.loads(line) for line in upstream.log.read_text().splitlines() if line.strip()]


def run(scenario, *args):
    async def bounded():
        with anyio.fail_after(SCENARIO_TIMEOUT_S):
            return await scenario(*args)

    return anyio.run(bounded)


async def use_in_mode(url: str, oauth: OAuthClient, mode: str) -> dict:
    seen: dict = {}
    async with oauth.http_client() as http:
        async with Client(streamable_http_client(url, http_client=http), mode=mode,
                          cache=None) as client:
            seen["version"] = client.session.protocol_version
            seen["tools"] = sorted(t.name for t in (await client.list_tools()).tools)
            echoed = await client.call_tool("echo", {"message": mode})
            seen["echo"] = "".join(b.text for b in echoed.content if b.type == "text")
            try:
                await client.call_tool("admin_delete", {})
                seen["forbidden"] = "answered"
            except MCPError as e:
                seen["forbidden"] = e.error.code
    return seen


@pytest.mark.parametrize("mode,version", [("auto", MODERN), (MODERN, MODERN), ("legacy", LEGACY)])
def test_each_client_mode_through_an_authenticated_default_deny_route(
        mode, version, listen_route, listen_upstream, oauth):
    before = len(log_entries(listen_upstream))
    seen = run(use_in_mode, listen_route, oauth, mode)
    assert seen["version"] == version, seen
    assert seen["tools"] == ["confirm", "echo", "touch"], "the list must be filtered to what alice may call"
    assert seen["echo"] == f"Echo: {mode}"
    assert seen["forbidden"] == -32005, seen
    ran = [e["tool"] for e in log_entries(listen_upstream)[before:] if "tool" in e]
    assert ran == ["echo"], f"the upstream executed {ran}"
    if version == MODERN:
        # The generation is the upstream's to see too: every request it got carried the
        # 2026-07-28 envelope and none was an initialize.
        bodies = [json.loads(e["body"]) for e in log_entries(listen_upstream)[before:] if "body" in e]
        assert bodies and all(b.get("method") != "initialize" for b in bodies), bodies
        assert all(b["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] == MODERN
                   for b in bodies), bodies


async def listen_then_touch(url: str, oauth: OAuthClient) -> list:
    events: list = []
    async with oauth.http_client() as http:
        async with Client(streamable_http_client(url, http_client=http), mode=MODERN,
                          cache=None) as client:
            async with client.listen(tools_list_changed=True,
                                     resource_subscriptions=[PUBLIC, SECRET]) as subscription:
                await client.call_tool("touch", {})
                # The upstream publishes secret, public, then the tools change, in this
                # order on one stream: once the last has arrived, the others would have.
                async for event in subscription:
                    events.append(event)
                    if isinstance(event, ToolsListChanged):
                        break
    return events


def test_listen_stream_drops_updates_for_resources_the_caller_may_not_read(
        listen_route, listen_upstream, oauth):
    before = len(log_entries(listen_upstream))
    events = run(listen_then_touch, listen_route, oauth)
    assert events == [ResourceUpdated(uri=PUBLIC), ToolsListChanged()], events
    after = log_entries(listen_upstream)[before:]
    published = [e["published"] for e in after if "published" in e]
    assert published == [f"resources/updated {SECRET}", f"resources/updated {PUBLIC}",
                         "tools/list_changed"], "the upstream must have published all three"
    listens = [json.loads(e["body"]) for e in after
               if "body" in e and json.loads(e["body"]).get("method") == "subscriptions/listen"]
    assert len(listens) == 1, "the subscription reached the upstream once"


async def call_with_trace_context(url: str, oauth: OAuthClient, mode: str) -> str:
    async with oauth.http_client() as http:
        async with Client(streamable_http_client(url, http_client=http), mode=mode,
                          cache=None) as client:
            result = await client.call_tool("echo", {"message": f"traced {mode}"},
                                            meta={"traceparent": TRACEPARENT,
                                                  "tracestate": TRACESTATE})
            return "".join(b.text for b in result.content if b.type == "text")


@pytest.mark.parametrize("mode", [MODERN, "legacy"])
def test_trace_context_in_meta_reaches_the_upstream_unchanged(mode, listen_route, listen_upstream,
                                                             oauth):
    before = len(log_entries(listen_upstream))
    assert run(call_with_trace_context, listen_route, oauth, mode) == f"Echo: traced {mode}"
    calls = [e["body"] for e in log_entries(listen_upstream)[before:]
             if "body" in e and f"traced {mode}" in e["body"]]
    assert len(calls) == 1, calls
    meta = json.loads(calls[0])["params"]["_meta"]
    assert meta["traceparent"] == TRACEPARENT and meta["tracestate"] == TRACESTATE, meta
    # Byte for byte, as the client serialised them (no re-encoding, no escaping).
    assert f'"traceparent":"{TRACEPARENT}"' in calls[0]
    assert f'"tracestate":"{TRACESTATE}"' in calls[0]


async def confirm_with_elicitation(url: str, oauth: OAuthClient) -> str:
    async def accept(_context, _params) -> ElicitResult:
        return ElicitResult(action="accept", content={"ok": True})

    async with oauth.http_client() as http:
        async with Client(streamable_http_client(url, http_client=http), mode=MODERN,
                          cache=None, elicitation_callback=accept) as client:
            result = await client.call_tool("confirm", {})
            return "".join(b.text for b in result.content if b.type == "text")


def test_an_input_required_round_trip_reaches_the_upstream_with_its_own_state(
        listen_route, listen_upstream, oauth):
    """A 2026-07-28 multi round-trip request through the gateway: the client answers the
    embedded elicitation and retries; the upstream gets back the requestState it minted."""
    before = len(log_entries(listen_upstream))
    assert run(confirm_with_elicitation, listen_route, oauth) == "confirmed=true"
    rounds = [e for e in log_entries(listen_upstream)[before:] if e.get("tool") == "confirm"]
    assert [sorted(e) for e in rounds] == [["minted", "tool"], ["received", "tool"]], rounds
    assert rounds[1]["received"] == rounds[0]["minted"]
