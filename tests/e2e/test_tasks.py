"""Task ids (the tasks of MCP 2025-11-25) through drawbridge: a task id is bound to the
caller it was issued to.

The upstream is the TypeScript SDK v1's experimental tasks runtime (task_server.mjs: one
InMemoryTaskStore behind a stateless transport, so it shows every task to whoever asks,
as any server behind one shared credential would). The client is the same SDK's client
(task_client.mjs), with a token from the gateway's authorization server. Alice runs a
task tool as a task and follows it to its result with the SDK's own polling (tasks/get,
tasks/result) and lists her tasks; then Bob presents Alice's task id, and the upstream's
own request log shows it never arrived.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Iterator

import anyio
import pytest

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

TASK_SERVER = E2E_DIR / "task_server.mjs"
TASK_CLIENT = E2E_DIR / "task_client.mjs"
CLIENT_TIMEOUT_S = 60
INVALID_PARAMS = -32602


@pytest.fixture(scope="module")
def task_server(peer_log_dir) -> Iterator[tuple[str, Path, Path]]:
    """The upstream's URL, its execution log and its request log."""
    port = free_port()
    runs = peer_log_dir / "task-executions.jsonl"
    requests = peer_log_dir / "task-requests.jsonl"
    runs.write_text("")
    requests.write_text("")
    proc = start_peer("task-server",
                      ["node", str(TASK_SERVER), str(port), str(runs), str(requests)],
                      peer_log_dir, cwd=E2E_DIR)
    try:
        wait_until(lambda: accepts_connections(port), proc, "task-server")
        yield f"http://{LOOPBACK}:{port}/mcp", runs, requests
    finally:
        stop_peer(proc)


@pytest.fixture(scope="module")
def task_route(authserver, task_server, peer_log_dir) -> Iterator[str]:
    """A gateway whose protected route shares one (empty) upstream credential between
    every caller, and lets `work` and the tasks methods through a default-deny policy."""
    upstream, _, _ = task_server
    policy = {"tools": {"work": ["mcp:tools"]}, "methods": {"tasks/*": ["mcp:tools"]}}
    with protected_route("tasks", authserver.issuer, upstream, policy, peer_log_dir) as url:
        yield url


def lines(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def signed_in(url: str, user: str) -> str:
    """`user`'s access token for the route, from the SDK's OAuth flow (a first request
    answered 401 starts it)."""
    oauth = OAuthClient(url, user=user)

    async def first_request():
        with anyio.fail_after(CLIENT_TIMEOUT_S):
            async with oauth.http_client() as http:
                await http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                                headers={"accept": "application/json, text/event-stream"})

    anyio.run(first_request)
    return oauth.access_token


def client(url: str, token: str, action: str, arg: str) -> dict:
    done = subprocess.run(["node", str(TASK_CLIENT), url, token, action, arg], cwd=E2E_DIR,
                          capture_output=True, text=True, timeout=CLIENT_TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def tasks_requests(requests: Path) -> list[dict]:
    out = []
    for r in lines(requests):
        body = r["body"].strip()
        if body.startswith("{"):
            message = json.loads(body)
            if str(message.get("method", "")).startswith("tasks/"):
                out.append(message)
    return out


def test_a_task_id_works_for_its_caller_and_another_callers_use_never_reaches_the_upstream(
        task_route, task_server):
    _, runs, requests = task_server
    alice_token = signed_in(task_route, "alice")
    alice = client(task_route, alice_token, "own", "alice")
    # The SDK followed its task to the end through the gateway.
    assert alice["result"] == "done: alice", alice
    assert alice["again"] == "done: alice" and alice["status"] == "completed", alice
    created = [r for r in lines(runs) if r["label"] == "alice"]
    assert len(created) == 1, created
    raw = created[0]["taskId"]
    # Alice holds only the gateway's seals, never the upstream's id.
    assert alice["taskId"].startswith("tk1."), alice
    assert alice["gotTaskId"].startswith("tk1."), alice
    assert raw not in json.dumps(alice)
    # The upstream got its own id back on every tasks request, never a seal.
    asked = [m["params"]["taskId"] for m in tasks_requests(requests) if "taskId" in m.get("params", {})]
    assert asked and set(asked) == {raw}, asked
    # One upstream credential for every caller: the gateway cannot tell whose task a
    # listed id is, so tasks/list shows none.
    assert alice["listed"] == [], alice

    # Bob presents Alice's sealed id, then the upstream's raw one, with his own token.
    bob_token = signed_in(task_route, "bob")
    seen_before = len(lines(requests))
    for presented in (alice["taskId"], raw):
        bob = client(task_route, bob_token, "use", presented)
        for step in ("get", "result", "cancel"):
            out = bob[step]
            # The gateway's refusal (400 with JSON-RPC -32602, which this SDK surfaces as
            # a transport error carrying the body), not the server's "Task not found".
            assert not out["ok"] and out["code"] in (400, INVALID_PARAMS), (step, bob)
            assert f'"code":{INVALID_PARAMS}' in out["message"], (step, bob)
            assert "unknown or expired task id" in out["message"], (step, bob)
    after = lines(requests)[seen_before:]
    reached = [r for r in after if "tasks/" in r["body"]]
    assert reached == [], f"the upstream received Bob's tasks requests: {reached}"
    # Alice's task is untouched (not cancelled) and still hers.
    again = client(task_route, alice_token, "use", alice["taskId"])
    assert again["get"]["ok"] and again["get"]["value"]["status"] == "completed", again
