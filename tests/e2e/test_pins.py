"""Pinned tool definitions end to end, with the real everything server: `drawbridge pin`
writes the lock file from the server itself (initialize, then every tools/list page),
and a route pinning it shows and lets the MCP Python SDK call exactly the pinned
definitions. A definition that no longer matches its pin (simulated by a lock file
that recorded another definition of `echo`) is hidden from the SDK's list and its call
refused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import (DRAWBRIDGE_BIN, E2E_DIR, LOOPBACK, accepts_connections, free_port,
                      protected_route, start_peer, stop_peer, wait_until)
from headless_oauth import OAuthClient
from test_oauth import oauth_session, raw_post, run, tools_call

OTHER_DIGEST = "sha256:" + "0" * 64


def pin_everything(everything_server: str, lock, log_dir) -> dict:
    config = log_dir / "pin-everything.yaml"
    config.write_text(f"""\
listen: {LOOPBACK}:1
admin: {{ listen: {LOOPBACK}:2 }}
routes:
  - name: everything
    match: {{ path: /everything/mcp }}
    upstream: {{ url: {everything_server} }}
""")
    done = subprocess.run(
        [str(DRAWBRIDGE_BIN), "pin", "-c", str(config), "--route", "everything",
         "--out", str(lock)],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return read_lock(lock.read_text())


def read_lock(text: str) -> dict:
    """The lock file's top-level scalars and its `tools` map (the everything server's
    tool names need no YAML quoting)."""
    lock: dict = {"tools": {}}
    in_tools = False
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("  ") and in_tools:
            name, digest = line.strip().split(": ", 1)
            lock["tools"][name] = digest
            continue
        key, _, value = line.partition(":")
        in_tools = key == "tools"
        if not in_tools:
            value = value.strip()
            lock[key] = int(value) if value.isdigit() else value
    return lock


def test_a_changed_definition_is_hidden_from_the_sdk_and_its_call_refused(
        authserver, everything_server, peer_log_dir):
    lock = peer_log_dir / "everything.lock"
    pinned = pin_everything(everything_server, lock, peer_log_dir)
    assert pinned["version"] == 1 and pinned["digest"] == "sha256-jcs"
    assert {"echo", "get-sum"} <= set(pinned["tools"]), pinned["tools"]
    # The reviewed `echo` was another definition than the one the server lists now.
    pinned["tools"]["echo"] = OTHER_DIGEST
    lock.write_text(json.dumps(pinned))  # JSON is YAML
    policy = {"tools": {"*": ["mcp:tools"]}, "pins": {"file": str(lock), "on_change": "hide"}}
    with protected_route("pins", authserver.issuer, everything_server, policy,
                         peer_log_dir) as url:
        alice = OAuthClient(url, user="alice")

        async def scenario():
            async with oauth_session(alice, url) as session:
                listed = {tool.name for tool in (await session.list_tools()).tools}
                summed = await session.call_tool("get-sum", {"a": 2, "b": 3})
                return listed, summed

        listed, summed = run(scenario)
        assert listed == set(pinned["tools"]) - {"echo"}, listed
        assert not summed.is_error, summed
        response = raw_post(url, alice.access_token, tools_call("echo", {"message": "hi"}))
        assert response.status_code == 403, response.text
        message = response.json()["error"]["message"]
        assert "echo" in message and "pinned" in message, message


def test_a_rug_pull_between_two_lists_is_hidden_and_never_runs(authserver, peer_log_dir):
    """A real rug pull: a Python SDK server lists `fetch` as reviewed (pinned from the
    server itself), then changes its description and schema. Through a route pinning
    it, the SDK client sees and runs the reviewed `fetch`; after the change, the next
    list hides it and its call is refused: the server's own log shows it ran once."""
    state = peer_log_dir / "rug-pull.state"
    exec_log = peer_log_dir / "rug-pull.exec"
    state.write_text("reviewed")
    exec_log.write_text("")
    port = free_port()
    proc = start_peer("rug-pull", [sys.executable, str(E2E_DIR / "rug_pull_server.py"),
                                   str(port)], peer_log_dir, cwd=E2E_DIR,
                      env={**os.environ, "RUG_STATE": str(state), "RUG_EXEC_LOG": str(exec_log)})
    try:
        wait_until(lambda: accepts_connections(port), proc, "rug-pull")
        upstream = f"http://{LOOPBACK}:{port}/mcp"
        lock = peer_log_dir / "rug-pull.lock"
        pinned = pin_everything(upstream, lock, peer_log_dir)
        assert set(pinned["tools"]) == {"echo", "fetch"}, pinned
        policy = {"tools": {"*": ["mcp:tools"]},
                  "pins": {"file": str(lock), "on_change": "hide"}}
        with protected_route("rugpull", authserver.issuer, upstream, policy,
                             peer_log_dir) as url:
            alice = OAuthClient(url, user="alice")

            def executions(tool: str) -> list[dict]:
                lines = exec_log.read_text().splitlines()
                return [e for e in map(json.loads, lines) if e["tool"] == tool]

            async def reviewed():
                async with oauth_session(alice, url) as session:
                    listed = {t.name for t in (await session.list_tools()).tools}
                    fetched = await session.call_tool("fetch", {"url": "https://a.example"})
                    return listed, fetched

            listed, fetched = run(reviewed)
            assert listed == {"echo", "fetch"}, listed
            assert not fetched.is_error, fetched
            assert len(executions("fetch")) == 1

            state.write_text("pulled")

            async def pulled():
                async with oauth_session(alice, url) as session:
                    listed = {t.name for t in (await session.list_tools()).tools}
                    try:
                        result = await session.call_tool("fetch", {"url": "https://b.example"})
                        refused = result.is_error
                    except Exception:  # the SDK raises on the gateway's 403
                        refused = True
                    echoed = await session.call_tool("echo", {"message": "still here"})
                    return listed, refused, echoed

            listed, refused, echoed = run(pulled)
            assert listed == {"echo"}, listed
            assert refused
            assert not echoed.is_error, echoed
            # What the server ran: the reviewed call only, never one after the pull.
            assert [e["args"]["url"] for e in executions("fetch")] == ["https://a.example"]
            response = raw_post(url, alice.access_token,
                                tools_call("fetch", {"url": "https://c.example"}))
            assert response.status_code == 403, response.text
            assert "pinned" in response.json()["error"]["message"]
            assert len(executions("fetch")) == 1
    finally:
        stop_peer(proc)
