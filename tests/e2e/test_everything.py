"""MCP traffic from the official Python SDK to the everything server, with and without drawbridge.

This module owns what is sent and what is asserted: the initialize handshake, tools/list,
a tools/call round trip, a streamed tools/call with progress notifications, session
termination (DELETE), and the gateway's request counter. Each scenario runs against the
upstream directly (the baseline: a failure there is the peer's, not drawbridge's) and
through a public drawbridge route. Starting the peers is conftest.py's job.
"""

from __future__ import annotations

import re
import time
from contextlib import asynccontextmanager
from typing import AsyncIterator

import anyio
import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from conftest import http_get

SCENARIO_TIMEOUT_S = 30.0
STREAMING_TOOL = "trigger-long-running-operation"


def run(scenario, *args):
    """Run an async scenario to completion, bounded by SCENARIO_TIMEOUT_S."""

    async def bounded():
        with anyio.fail_after(SCENARIO_TIMEOUT_S):
            return await scenario(*args)

    return anyio.run(bounded)


@asynccontextmanager
async def mcp_session(url: str, http_client: httpx2.AsyncClient | None = None) -> AsyncIterator[ClientSession]:
    """An initialized MCP session over Streamable HTTP; exiting it DELETEs the session."""
    async with streamable_http_client(url, http_client=http_client) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            yield session


def text_of(result) -> str:
    assert not result.is_error, result
    return "".join(block.text for block in result.content if block.type == "text")


def test_initialize_and_list_tools(mcp_url):
    async def scenario():
        async with mcp_session(mcp_url) as session:
            info = session.initialize_result
            assert info.server_info.name == "mcp-servers/everything"
            assert info.capabilities.tools is not None
            tools = {tool.name for tool in (await session.list_tools()).tools}
            assert {"echo", STREAMING_TOOL} <= tools

    run(scenario)


def test_echo_round_trip(mcp_url):
    message = "drawbridge e2e: héllo ✓"

    async def scenario():
        async with mcp_session(mcp_url) as session:
            result = await session.call_tool("echo", {"message": message})
            assert text_of(result) == f"Echo: {message}"

    run(scenario)


def test_progress_notifications_stream_before_the_result(mcp_url):
    """Progress must arrive as it happens: an SSE response buffered by the gateway would not."""
    steps, duration = 4, 2.0
    progress: list[tuple[float, float, float | None]] = []  # (arrival, progress, total)

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((time.monotonic(), value, total))

    async def scenario():
        async with mcp_session(mcp_url) as session:
            result = await session.call_tool(
                STREAMING_TOOL, {"duration": duration, "steps": steps}, progress_callback=on_progress
            )
            return time.monotonic(), result

    result_arrival, result = run(scenario)
    assert "Long running operation completed" in text_of(result)
    assert len(progress) >= 2, progress
    assert [value for _, value, _ in progress] == sorted(value for _, value, _ in progress)
    assert all(total == steps for _, _, total in progress)
    # Steps are duration/steps apart; the first one must not be held back until the end.
    # A buffering gateway delivers it with the result (milliseconds apart); a streaming one
    # about (steps - 1) steps earlier. One step is the bar: a busy machine that delays the
    # first event by up to two steps still passes, buffering never does.
    first_arrival = progress[0][0]
    assert result_arrival - first_arrival >= duration / steps, (result_arrival - first_arrival, progress)


def test_session_closes_cleanly(mcp_url):
    """Leaving the client context sends DELETE with the session id; it must succeed."""
    responses: list[tuple[str, int]] = []

    async def record(response: httpx2.Response) -> None:
        responses.append((response.request.method, response.status_code))

    async def scenario():
        async with httpx2.AsyncClient(event_hooks={"response": [record]}) as client:
            async with mcp_session(mcp_url, http_client=client) as session:
                await session.call_tool("echo", {"message": "bye"})

    run(scenario)
    deletes = [status for method, status in responses if method == "DELETE"]
    assert deletes and all(status in (200, 204) for status in deletes), responses


def parse_prometheus(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Samples of a Prometheus text exposition as (name, labels, value); comments skipped."""
    samples = []
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)", line)
        if match is None:
            continue
        name, labels, value = match.groups()
        label_pairs = re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', labels or "")
        samples.append((name, dict(label_pairs), float(value)))
    return samples


def route_requests(admin_url: str) -> dict[tuple[str, str], float]:
    """drawbridge_requests_total of the everything route, by (method, status)."""
    status, body = http_get(f"{admin_url}/metrics")
    assert status == 200, body
    return {
        (labels.get("method", ""), labels.get("status", "")): value
        for name, labels, value in parse_prometheus(body)
        if name == "drawbridge_requests_total" and labels.get("route") == "everything"
    }


def test_metrics_count_requests_on_the_route(gateway):
    """Other tests use this gateway too: compare before and after this scenario's
    requests (initialize, notifications/initialized, tools/call: at least 3 POSTs 200/202,
    and the DELETE)."""
    before = route_requests(gateway.admin_url)

    async def scenario():
        async with mcp_session(gateway.url) as session:
            await session.call_tool("echo", {"message": "count me"})

    run(scenario)

    def grown(after: dict[tuple[str, str], float]) -> dict[tuple[str, str], float]:
        return {key: value - before.get(key, 0.0) for key, value in after.items()
                if value != before.get(key, 0.0)}

    # Counters move just after each answer goes out: wait (bounded) for them.
    deadline = time.monotonic() + 10.0
    while True:
        delta = grown(route_requests(gateway.admin_url))
        posts_ok = delta.get(("POST", "200"), 0.0) + delta.get(("POST", "202"), 0.0)
        if (posts_ok >= 3 and delta.get(("DELETE", "200"), 0.0) + delta.get(("DELETE", "204"), 0.0) >= 1) \
                or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert posts_ok >= 3, delta
    assert delta.get(("DELETE", "200"), 0.0) + delta.get(("DELETE", "204"), 0.0) >= 1, delta

