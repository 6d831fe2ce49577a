"""MCP 2026-07-28 multi round-trip requests through drawbridge: the upstream's
`requestState` is bound to the caller it was issued to.

The upstream is the Python SDK 2.3.0's MCPServer (state_server.py) with a tool that asks
for input: its first answer is an input-required result with an elicitation request and
a `requestState`. The client is the Python SDK's `Client`, signed in through the
gateway's authenticated route, which answers the elicitation and retries with the state
(the SDK drives the loop itself). Then a second user replays the first user's sealed
state with their own token: the gateway refuses it, and the upstream's own request log
shows the replay never arrived.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Iterator

import anyio
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import ElicitResult, InputRequiredResult

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

STATE_SERVER = E2E_DIR / "state_server.py"
SCENARIO_TIMEOUT_S = 60.0
MODERN_VERSION = "2026-07-28"
INVALID_PARAMS = -32602


@pytest.fixture(scope="module")
def state_server(peer_log_dir) -> Iterator[tuple[str, Path, Path]]:
    """The upstream's URL, its request log and its execution log."""
    port = free_port()
    requests = peer_log_dir / "state-requests.jsonl"
    runs = peer_log_dir / "state-executions.jsonl"
    requests.write_text("")
    runs.write_text("")
    env = {"STATE_REQUEST_LOG": str(requests), "STATE_EXECUTION_LOG": str(runs)}
    proc = start_peer("state-server", [sys.executable, str(STATE_SERVER), str(port)],
                      peer_log_dir, env={**os.environ, **env})
    try:
        wait_until(lambda: accepts_connections(port), proc, "state-server")
        yield f"http://{LOOPBACK}:{port}/mcp", requests, runs
    finally:
        stop_peer(proc)


@pytest.fixture(scope="module")
def state_route(authserver, state_server, peer_log_dir) -> Iterator[str]:
    """A gateway whose one route is protected and lets `ask` through a default-deny policy."""
    upstream, _, _ = state_server
    with protected_route("state", authserver.issuer, upstream,
                         {"tools": {"ask": ["mcp:tools"]}}, peer_log_dir) as url:
        yield url


def lines(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def run(scenario, *args):
    async def bounded():
        with anyio.fail_after(SCENARIO_TIMEOUT_S):
            return await scenario(*args)

    return anyio.run(bounded)


async def answer_teal(_context, _params) -> ElicitResult:
    return ElicitResult(action="accept", content={"colour": "teal"})


async def alice_asks(url: str, oauth: OAuthClient) -> dict:
    """Alice's two calls: one the SDK drives to the end, one stopped at the first round
    to keep the sealed state she was handed."""
    seen: dict = {}
    async with oauth.http_client() as http:
        async with Client(streamable_http_client(url, http_client=http), cache=None,
                          elicitation_callback=answer_teal) as client:
            seen["version"] = client.session.protocol_version
            done = await client.call_tool("ask", {})
            seen["answer"] = "".join(b.text for b in done.content if b.type == "text")
            first = await client.session.call_tool("ask", {}, allow_input_required=True)
            assert isinstance(first, InputRequiredResult), first
            seen["sealed"] = first.request_state
    return seen


async def replay(url: str, oauth: OAuthClient, sealed: str) -> dict:
    """Another caller resumes with the sealed state it got hold of."""
    async with oauth.http_client() as http:
        async with Client(streamable_http_client(url, http_client=http), cache=None,
                          elicitation_callback=answer_teal) as client:
            try:
                result = await client.call_tool(
                    "ask", {}, request_state=sealed,
                    input_responses={"colour": ElicitResult(action="accept",
                                                            content={"colour": "red"})})
                return {"outcome": "answered",
                        "text": "".join(b.text for b in result.content if b.type == "text")}
            except MCPError as e:
                return {"outcome": "error", "code": e.error.code, "message": e.error.message}


def test_request_state_round_trips_for_its_caller_and_a_replay_never_reaches_the_upstream(
        state_route, state_server):
    _, requests, runs = state_server
    alice = run(alice_asks, state_route, OAuthClient(state_route, user="alice"))
    assert alice["version"] == MODERN_VERSION, alice
    # The round trip works through the gateway: the tool ran twice and got its own state.
    assert alice["answer"] == "colour: teal; state: asked-for-colour", alice
    rounds = [(r["round"], r.get("state")) for r in lines(runs)]
    assert rounds[:2] == [(1, None), (2, "asked-for-colour")], rounds
    # Alice holds only the gateway's seal, never the upstream's state.
    sealed = alice["sealed"]
    assert sealed and sealed.startswith("rs1."), alice
    upstream_states = [json.loads(r["body"]).get("params", {}).get("requestState")
                       for r in lines(requests) if r["body"].strip().startswith("{")]
    upstream_states = [s for s in upstream_states if s]
    assert upstream_states, "the upstream never received its state back"
    assert sealed not in upstream_states

    # Bob replays Alice's sealed state with his own token.
    seen_before, runs_before = len(lines(requests)), len(lines(runs))
    bob = run(replay, state_route, OAuthClient(state_route, user="bob"), sealed)
    assert bob["outcome"] == "error" and bob["code"] == INVALID_PARAMS, bob
    # The gateway's refusal (the SDK server's own says "Invalid or expired requestState").
    assert bob["message"].startswith("invalid or expired requestState"), bob
    replayed = [r for r in lines(requests)[seen_before:] if "requestState" in r["body"]]
    assert replayed == [], f"the upstream received the replay: {replayed}"
    assert lines(runs)[runs_before:] == [], "the upstream ran the tool for the replay"
