"""A rate limit as a real MCP client meets it: the official Python SDK, through a public
drawbridge route to the everything server whose limit is 6 requests an hour per client.
The SDK surfaces the gateway's 429 as the JSON-RPC error in its body (code -32008, the
message naming the limit and when to retry), not as a bare transport failure; and the
refused calls were answered by the gateway alone (its counters: refusals, and the 200s
of exactly the requests that passed).
"""

from __future__ import annotations

import re
from typing import Iterator

import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from conftest import (LOOPBACK, free_port, gateway_config, http_get, start_drawbridge,
                      stop_peer)
from test_everything import run, text_of

LIMIT = 6


@pytest.fixture(scope="module")
def limited_url(everything_server, peer_log_dir) -> Iterator[tuple[str, str]]:
    """(route URL, admin URL) of a gateway whose route allows LIMIT requests per client."""
    listen_port, admin_port = free_port(), free_port()
    admin_url = f"http://{LOOPBACK}:{admin_port}"
    config = gateway_config(listen_port, admin_port, everything_server)
    config += f"    rate_limit: {{ requests: {LIMIT}, per: 1h, key: client }}\n"
    proc = start_drawbridge("drawbridge-limited", config, peer_log_dir, admin_url)
    try:
        yield f"http://{LOOPBACK}:{listen_port}/everything/mcp", admin_url
    finally:
        stop_peer(proc)


def test_the_python_sdk_surfaces_the_rate_limit_error_and_refused_calls_never_run(limited_url):
    url, admin_url = limited_url

    async def scenario():
        outcomes = []
        async with streamable_http_client(url) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                # Listed first: the SDK lists tools itself before its first call
                # otherwise (for their output schemas), and that request would count.
                await session.list_tools()
                for i in range(LIMIT):
                    try:
                        echoed = text_of(await session.call_tool("echo", {"message": f"m{i}"}))
                        outcomes.append(("ok", echoed))
                    except MCPError as e:
                        outcomes.append(("refused", e.error.code, e.error.message))
        return outcomes

    outcomes = run(scenario)
    # initialize, notifications/initialized and tools/list take three of the six (the
    # SDK's GET stream may take a fourth): two or three echoes pass, then every call is
    # refused.
    passed = [o for o in outcomes if o[0] == "ok"]
    assert 2 <= len(passed) <= 3, outcomes
    assert outcomes[:len(passed)] == passed, outcomes
    for i, (_, echoed) in enumerate(passed):
        assert echoed == f"Echo: m{i}", outcomes
    refused = outcomes[len(passed):]
    assert len(refused) >= LIMIT - 3, outcomes
    for _, code, message in refused:
        assert code == -32008, outcomes
        assert "this route's rate limit" in message and "key: client" in message, message
        assert re.search(r"retry after \d+s", message), message

    status, metrics = http_get(f"{admin_url}/metrics")
    assert status == 200
    counted = re.search(
        r'^drawbridge_rate_limited_total\{key="client",limit="route",route="everything"\} (\d+)',
        metrics, re.MULTILINE)
    assert counted and int(counted.group(1)) >= len(refused), metrics
    # Forwarded and answered: initialize, tools/list and the echoes that passed; the
    # refused calls were answered by the gateway alone.
    served = re.search(
        r'^drawbridge_requests_total\{method="POST",route="everything",status="200"\} (\d+)',
        metrics, re.MULTILINE)
    assert served and int(served.group(1)) == 2 + len(passed), metrics
