"""Request metadata of MCP 2026-07-28 (issue 23 item 2): `MCP-Protocol-Version` must equal
the body's `params._meta["io.modelcontextprotocol/protocolVersion"]`, `Mcp-Method` the
body's method and `Mcp-Name` its tool, prompt or resource (after decoding the
`=?base64?…?=` sentinel). An intermediary that routes or rate-limits on the headers and
an upstream that executes the body must never be told two different things.

Both real SDK servers speak 2026-07-28: the TypeScript SDK v2 (`createMcpHandler`,
modern_server.mjs) and the Python SDK 2.3.0 (py_server.py's `MCPServer`, which picks the
protocol generation by the `MCP-Protocol-Version` header). Each mismatching request is
sent through a drawbridge in front of both; the assertions are made on the servers' own
logs: the request never arrived (the servers log every request, with its body, on
arrival) and nothing ran. A well-formed 2026-07-28 call through the same routes runs (the
control), and so does the same call sent directly to each server.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import anyio
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from conftest import (E2E_DIR, LOOPBACK, _peer_logs, accepts_connections, free_port,
                      start_drawbridge, start_peer, stop_peer, wait_until)

from .conftest import Server
from .wire import ExecLog, Reply, barrier, marker, request

MODERN = "2026-07-28"
MODERN_SERVER = E2E_DIR / "modern_server.mjs"


@dataclass(frozen=True)
class Upstream:
    """A 2026-07-28 server behind the gateway: where to reach it and what it logged."""
    name: str
    prefix: str  # the gateway route's path
    direct: str  # http://127.0.0.1:PORT/mcp
    executions: Path  # JSON lines with "tool" (TS) or "kind": "tool" (Python)
    requests: Path  # JSON lines of what arrived, with the body

    def executed(self, value: str) -> bool:
        return value in self.executions.read_text()

    def received(self, value: str) -> bool:
        """Whether any request carrying `value` in its body arrived."""
        for line in self.requests.read_text().splitlines():
            entry = json.loads(line) if line.strip() else {}
            body = entry.get("body")
            if body is None and "body_b64" in entry:
                body = base64.b64decode(entry["body_b64"]).decode("utf-8", "replace")
            if body and value in body:
                return True
        return False


@pytest.fixture(scope="module")
def modern_ts(peer_log_dir) -> Iterator[tuple[str, Path, Path]]:
    port = free_port()
    executions = peer_log_dir / "meta-ts-exec.jsonl"
    requests = peer_log_dir / "meta-ts-requests.jsonl"
    executions.write_text("")
    requests.write_text("")
    _peer_logs["meta-ts-requests"] = requests
    proc = start_peer("meta-ts", ["node", str(MODERN_SERVER), str(port), str(executions),
                                  str(requests)], peer_log_dir, cwd=E2E_DIR)
    try:
        wait_until(lambda: accepts_connections(port), proc, "meta-ts")
        yield f"http://{LOOPBACK}:{port}", executions, requests
    finally:
        stop_peer(proc)


@pytest.fixture(scope="module")
def meta_gateway(adv_issuer, modern_ts, py_server: Server, peer_log_dir):
    """A drawbridge with one authenticated, default-deny route per 2026-07-28 server."""
    ts_base, ts_exec, ts_requests = modern_ts
    listen_port, admin_port = free_port(), free_port()
    base = f"http://{LOOPBACK}:{listen_port}"
    upstreams = [
        Upstream("ts", "/tsm/mcp", f"{ts_base}/mcp", ts_exec, ts_requests),
        Upstream("py", "/pym/mcp", f"{py_server.base}/mcp", py_server.log.path,
                 py_server.log.path),
    ]
    routes = "".join(f"""\
  - name: meta-{u.name}
    match: {{ path: {u.prefix} }}
    public_url: {base}{u.prefix}
    upstream:
      url: {u.direct}
      timeouts: {{ connect: 2s, read: 20s, stream_idle: 30s }}
    auth:
      issuers: [adv]
      required_scopes: [mcp:tools]
    upstream_auth:
      none: {{}}
    policy:
      default: deny
      tools:
        echo: [tools:echo]
      prompts:
        greeting: [tools:echo]
      resources:
        "test://public/*": [tools:echo]
""" for u in upstreams)
    config = f"""\
listen: {LOOPBACK}:{listen_port}
admin:
  listen: {LOOPBACK}:{admin_port}
issuers:
  - name: adv
    issuer: {adv_issuer.url}
    algorithms: [RS256]
routes:
""" + routes
    proc = start_drawbridge("drawbridge-meta", config, peer_log_dir,
                            f"http://{LOOPBACK}:{admin_port}")
    tokens = {u.name: adv_issuer.mint(base + u.prefix) for u in upstreams}
    try:
        yield base, {u.name: u for u in upstreams}, tokens
    finally:
        stop_peer(proc)


@pytest.fixture(params=["ts", "py"])
def upstream_name(request) -> str:
    return request.param


def envelope(version=MODERN) -> dict:
    return {"io.modelcontextprotocol/protocolVersion": version,
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "adversarial", "version": "1"}}


def echo_call(value: str, meta: dict | None, tool: str = "echo", meta_key: str = "_meta") -> dict:
    params: dict = {"name": tool, "arguments": {"message": value}}
    if meta is not None:
        params[meta_key] = meta
    return {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}


def sentinel(value: str) -> str:
    return "=?base64?" + base64.b64encode(value.encode()).decode() + "?="


def post(base: str, path: str, token: str | None, message: dict,
         headers: list[tuple[str, str]]) -> Reply:
    lines = [("Content-Type", "application/json"),
             ("Accept", "application/json, text/event-stream")]
    if token:
        lines.append(("Authorization", f"Bearer {token}"))
    return request(base, "POST", path, lines + headers, json.dumps(message).encode())


def good_headers(version=MODERN, method="tools/call", name="echo") -> list[tuple[str, str]]:
    return [("MCP-Protocol-Version", version), ("Mcp-Method", method), ("Mcp-Name", name)]


# name -> (body meta, body tool, meta key, header lines). Every body calls `echo`, the one
# tool the route allows, so only the headers (or the body's version) disagree.
MISMATCHES = {
    "Mcp-Name-other-tool": (envelope(), "echo", "_meta",
                            good_headers(name="admin-delete")),
    "Mcp-Name-base64-other-tool": (envelope(), "echo", "_meta",
                                   good_headers(name=sentinel("admin-delete"))),
    "Mcp-Name-bad-base64": (envelope(), "echo", "_meta",
                            good_headers(name="=?base64?ZWNobx==?=")),
    "Mcp-Name-empty-sentinel": (envelope(), "echo", "_meta", good_headers(name="=?base64?=")),
    "Mcp-Name-missing": (envelope(), "echo", "_meta", good_headers()[:2]),
    "Mcp-Method-other": (envelope(), "echo", "_meta", good_headers(method="tools/list")),
    "Mcp-Method-missing": (envelope(), "echo", "_meta",
                           [good_headers()[0], good_headers()[2]]),
    "version-header-older": (envelope(), "echo", "_meta", good_headers(version="2025-11-25")),
    "version-header-missing": (envelope(), "echo", "_meta", good_headers()[1:]),
    "version-header-without-meta": (None, "echo", "_meta", good_headers()),
    "meta-older-than-header": (envelope("2025-11-25"), "echo", "_meta", good_headers()),
    "meta-version-not-a-string": ({**envelope(), "io.modelcontextprotocol/protocolVersion": 20260728},
                                  "echo", "_meta", good_headers()),
    "meta-spelled-_Meta": (envelope(), "echo", "_Meta", good_headers()),
}


def test_a_well_formed_2026_07_28_call_runs(meta_gateway, upstream_name):
    base, upstreams, tokens = meta_gateway
    up = upstreams[upstream_name]
    direct = marker()
    reply = post(up.direct.rsplit("/mcp", 1)[0], "/mcp", None, echo_call(direct, envelope()),
                 good_headers())
    assert reply.status == 200, (reply.status, reply.text())
    assert up.executed(direct), "directly, the server runs a 2026-07-28 call"
    through = marker()
    encoded = marker()
    for value, name in ((through, "echo"), (encoded, sentinel("echo"))):
        reply = post(base, up.prefix, tokens[upstream_name], echo_call(value, envelope()),
                     good_headers(name=name))
        assert reply.status == 200, (name, reply.status, reply.text())
        assert up.executed(value), f"{name}: the call did not run through the gateway"


@pytest.mark.parametrize("case", list(MISMATCHES))
def test_headers_disagreeing_with_the_body_never_reach_the_server(meta_gateway,
                                                                  upstream_name, case):
    base, upstreams, tokens = meta_gateway
    up = upstreams[upstream_name]
    meta, tool, meta_key, headers = MISMATCHES[case]
    value = marker()
    reply = post(base, up.prefix, tokens[upstream_name],
                 echo_call(value, meta, tool, meta_key), headers)
    assert reply.status == 400, (reply.status, reply.text())
    error = json.loads(reply.body)["error"]
    # HeaderMismatch, or (another spelling of _meta) an invalid request, or (a version
    # header over a body whose _meta names none) invalid params, as the revision says.
    assert error["code"] in (-32020, -32600, -32602), error
    if meta_key == "_meta":
        invalid = case in ("version-header-without-meta", "meta-version-not-a-string")
        assert error["code"] == (-32602 if invalid else -32020), error
    # The servers log every request on arrival: make sure they logged all they got.
    if upstream_name == "py":
        barrier(up.direct.rsplit("/mcp", 1)[0], ExecLog(up.requests))
    assert not up.received(value), f"{case}: the request reached the server"
    assert not up.executed(value), f"{case}: the server ran it"


async def python_client_pinned_to_2026_07_28(url: str, token: str, value: str) -> dict:
    """The Python SDK 2.3.0 client, `mode="2026-07-28"`: every request carries `_meta` and
    the metadata headers the SDK derives from it, which the gateway checks."""
    seen: dict = {}
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    async with http, Client(streamable_http_client(url, http_client=http), cache=None,
                            mode=MODERN) as client:
        seen["version"] = client.session.protocol_version
        echoed = await client.call_tool("echo", {"message": value})
        seen["echo"] = "".join(b.text for b in echoed.content if b.type == "text")
        prompt = await client.get_prompt("greeting")
        seen["prompt"] = [m.content.text for m in prompt.messages]
        resource = await client.read_resource("test://public/info")
        seen["resource"] = [c.text for c in resource.contents]
    return seen


def test_the_python_sdk_client_sends_headers_the_gateway_accepts(meta_gateway):
    """tools/call, prompts/get and resources/read each need Mcp-Name: the real client's
    requests pass, and the Python server runs them."""
    base, upstreams, tokens = meta_gateway
    up = upstreams["py"]
    log = ExecLog(up.executions)
    since = log.mark()
    value = marker()

    async def bounded():
        with anyio.fail_after(30):
            return await python_client_pinned_to_2026_07_28(base + up.prefix, tokens["py"],
                                                            value)

    seen = anyio.run(bounded)
    assert seen["version"] == MODERN, seen
    assert value in seen["echo"], seen
    ran = log.executions(since)
    assert any(e["kind"] == "tool" and value in json.dumps(e["args"]) for e in ran), ran
    assert any(e["kind"] == "prompt" and e["prompt"] == "greeting" for e in ran), ran
    assert any(e["kind"] == "resource" and e["resource"] == "test://public/info"
               for e in ran), ran
    assert not log.forbidden_executions(since), "a forbidden item ran"
