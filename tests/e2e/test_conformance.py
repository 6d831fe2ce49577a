"""The official MCP conformance suite (@modelcontextprotocol/conformance) through drawbridge.

The suite's server scenarios run against one MCP server (conformance_server.mjs: the
TypeScript SDK v2 serving both protocol generations from one endpoint) twice for each
generation — 2025-11-25 (initialize handshake) and 2026-07-28 (stateless, per-request
`_meta`, `server/discover`, `subscriptions/listen`, input-required results) — once
directly and once through the gateway, on two routes:

- `open`: a public route (no auth block, no policy) whose `allowed_origins` holds the
  gateway's own origin (the suite's DNS-rebinding scenario sends `Origin` both ways);
- `auth`: an authenticated, default-deny route whose policy lets the caller's token do
  everything the scenarios use. The suite's `server` command cannot carry a bearer token;
  conformance_preload.mjs adds it, from CONFORMANCE_BEARER_TOKEN, to every request the
  suite sends to the gateway's origin.

Every check that does not fail directly must get the same verdict (id and status, as
many times) through the gateway; a check — and so a scenario — that fails directly is
reported, not counted against the gateway. Known divergences are listed in
KNOWN_DIVERGENCES with the reason; one that no longer shows fails the test, so the list
cannot go stale. What the upstream executed (its own execution log) must be the same
through the gateway as directly.

The suite needs Node 22's fs.globSync; conformance_preload.mjs provides it on Node 20.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import anyio
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from conftest import (
    E2E_DIR,
    LOOPBACK,
    accepts_connections,
    free_port,
    start_drawbridge,
    start_peer,
    stop_peer,
    wait_until,
)
from headless_oauth import OAuthClient

SUITE = E2E_DIR / "node_modules/@modelcontextprotocol/conformance/dist/index.js"
PRELOAD = E2E_DIR / "conformance_preload.mjs"
UPSTREAM = E2E_DIR / "conformance_server.mjs"
GENERATIONS = ("2025-11-25", "2026-07-28")
ROUTES = ("open", "auth")
# Per scenario; the longest (server-stateless waits for list-change notifications on a
# subscription stream) takes about 8 s on this machine.
SCENARIO_TIMEOUT_MS = 15000
SUITE_TIMEOUT_S = 300
SIGN_IN_TIMEOUT_S = 60
# A check that did not fail.
NOT_FAILED = {"SUCCESS", "WARNING", "INFO", "SKIPPED"}

# (generation, route or None for both, scenario, check id) -> why the gateway's verdict
# differs from the upstream's. Each must still differ (else the test fails: remove the
# entry); nothing else may.
KNOWN_DIVERGENCES: dict[tuple[str, str | None, str, str], str] = {
    ("2026-07-28", "auth", "server-stateless", "sep-2575-http-server-method-not-found-404"):
        "`unknown/method` on a default-deny route is refused by the policy (403, -32005) "
        "before the upstream could answer 404 -32601: by design, an unlisted method never "
        "reaches the upstream.",
}


@dataclass(frozen=True)
class Upstream:
    url: str
    execution_log: Path


@dataclass(frozen=True)
class ConformanceGateway:
    base: str
    open_url: str
    auth_url: str


@pytest.fixture(scope="module")
def conformance_upstream(peer_log_dir) -> Iterator[Upstream]:
    port = free_port()
    log = peer_log_dir / "conformance-executions.jsonl"
    log.write_text("")
    proc = start_peer("conformance-upstream", ["node", str(UPSTREAM), str(port), str(log)],
                      peer_log_dir, cwd=E2E_DIR)
    try:
        wait_until(lambda: accepts_connections(port), proc, "conformance-upstream")
        yield Upstream(f"http://{LOOPBACK}:{port}/mcp", log)
    finally:
        stop_peer(proc)


def conformance_gateway_config(listen_port: int, admin_port: int, issuer: str, upstream: str) -> str:
    base = f"http://{LOOPBACK}:{listen_port}"
    return f"""\
listen: {LOOPBACK}:{listen_port}
admin:
  listen: {LOOPBACK}:{admin_port}
issuers:
  - name: e2e
    issuer: {issuer}
routes:
  - name: open
    match: {{ path: /open/mcp }}
    public_url: {base}/open/mcp
    upstream:
      url: {upstream}
    allowed_origins: [{base}]
  - name: auth
    match: {{ path: /auth/mcp }}
    public_url: {base}/auth/mcp
    upstream:
      url: {upstream}
    allowed_origins: [{base}]
    auth:
      issuers: [e2e]
      required_scopes: [mcp:tools]
    upstream_auth:
      none: {{}}
    policy:
      default: deny
      tools:
        "test_*": [mcp:tools]
        json_schema_2020_12_tool: [mcp:tools]
      resources:
        "test://*": [mcp:tools]
      prompts:
        "test_*": [mcp:tools]
"""


@pytest.fixture(scope="module")
def conformance_gateway(authserver, conformance_upstream, peer_log_dir) -> Iterator[ConformanceGateway]:
    listen_port, admin_port = free_port(), free_port()
    config = conformance_gateway_config(listen_port, admin_port, authserver.issuer,
                                        conformance_upstream.url)
    proc = start_drawbridge("drawbridge-conformance", config, peer_log_dir,
                            f"http://{LOOPBACK}:{admin_port}")
    base = f"http://{LOOPBACK}:{listen_port}"
    try:
        yield ConformanceGateway(base, f"{base}/open/mcp", f"{base}/auth/mcp")
    finally:
        stop_peer(proc)


@pytest.fixture(scope="module")
def bearer_token(conformance_gateway) -> str:
    """An access token for the `auth` route, from a real sign-in by the Python SDK."""
    oauth = OAuthClient(conformance_gateway.auth_url, user="alice")

    async def sign_in() -> None:
        with anyio.fail_after(SIGN_IN_TIMEOUT_S):
            async with oauth.http_client() as http:
                async with Client(streamable_http_client(conformance_gateway.auth_url,
                                                         http_client=http)) as client:
                    await client.list_tools()

    anyio.run(sign_in)
    return oauth.access_token


def scenario_name(result_dir: Path) -> str:
    """`server-<scenario>-<ISO timestamp>` -> `<scenario>`."""
    return re.sub(r"-\d{4}-\d\d-\d\dT[\d-]+Z$", "", result_dir.name).removeprefix("server-")


def run_suite(url: str, generation: str, out: Path, env_extra: dict[str, str] | None = None
              ) -> dict[str, list[dict]]:
    """Every server scenario of `generation` against `url`: scenario -> its checks."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(out), **(env_extra or {})}
    done = subprocess.run(
        ["node", "--import", str(PRELOAD), str(SUITE), "server", "--url", url, "--suite", "all",
         "--spec-version", generation, "--timeout", str(SCENARIO_TIMEOUT_MS), "-o", str(out)],
        cwd=E2E_DIR, env=env, capture_output=True, text=True, timeout=SUITE_TIMEOUT_S)
    (out / "suite.log").write_text(done.stdout + done.stderr)
    results = {scenario_name(p.parent): json.loads(p.read_text())
               for p in out.glob("server-*/checks.json")}
    # The suite exits non-zero when any scenario fails; it must still have run them all.
    assert results, f"the suite ran no scenario (exit {done.returncode}):\n{done.stderr[-3000:]}"
    return results


def verdicts(checks: list[dict]) -> Counter:
    return Counter((c["id"], c["status"]) for c in checks)


def passed(checks: list[dict]) -> bool:
    return all(c["status"] in NOT_FAILED for c in checks)


def executions(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def direct_runs(conformance_upstream, tmp_path_factory) -> dict[str, tuple[dict, Counter]]:
    """Each generation's results against the upstream itself, and what it executed."""
    runs = {}
    for generation in GENERATIONS:
        before = len(executions(conformance_upstream.execution_log))
        results = run_suite(conformance_upstream.url, generation,
                            tmp_path_factory.mktemp(f"conformance-direct-{generation}"))
        ran = Counter(e["tool"] for e in executions(conformance_upstream.execution_log)[before:])
        runs[generation] = (results, ran)
    return runs


def divergences(direct: dict[str, list[dict]], gateway: dict[str, list[dict]]
                ) -> dict[tuple[str, str], tuple[Counter, Counter]]:
    """(scenario, check id) -> (verdicts directly, verdicts through the gateway), where
    they differ."""
    found = {}
    for scenario in sorted(set(direct) | set(gateway)):
        mine, theirs = verdicts(direct.get(scenario, [])), verdicts(gateway.get(scenario, []))
        for check in sorted({c for c, _ in mine} | {c for c, _ in theirs}):
            a = Counter({k: n for k, n in mine.items() if k[0] == check})
            b = Counter({k: n for k, n in theirs.items() if k[0] == check})
            if a != b:
                found[(scenario, check)] = (a, b)
    return found


def failed_directly(a: Counter) -> bool:
    return any(status not in NOT_FAILED for (_, status) in a)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("generation", GENERATIONS)
def test_the_conformance_suite_gives_the_same_results_through_the_gateway(
        generation, route, direct_runs, conformance_gateway, conformance_upstream, bearer_token,
        tmp_path_factory):
    direct, ran_directly = direct_runs[generation]
    url = conformance_gateway.open_url if route == "open" else conformance_gateway.auth_url
    env = {}
    if route == "auth":
        env = {"CONFORMANCE_BEARER_TOKEN": bearer_token,
               "CONFORMANCE_BEARER_ORIGIN": conformance_gateway.base}
    before = len(executions(conformance_upstream.execution_log))
    gateway = run_suite(url, generation,
                        tmp_path_factory.mktemp(f"conformance-{route}-{generation}"), env)
    ran_through = Counter(e["tool"] for e in executions(conformance_upstream.execution_log)[before:])

    passing = sorted(s for s, checks in direct.items() if passed(checks))
    failing = sorted(s for s, checks in direct.items() if not passed(checks))
    differ = divergences(direct, gateway)
    counted = {k: v for k, v in differ.items() if not failed_directly(v[0])}
    known = {(s, c) for (g, r, s, c) in KNOWN_DIVERGENCES if g == generation and r in (None, route)}
    checks = sum(len(c) for c in direct.values())
    print(f"\nconformance {generation} via {route}: {len(direct)} scenarios ({checks} checks), "
          f"{len(passing)} pass directly, "
          f"{sum(passed(gateway.get(s, [])) for s in passing)} of them through the gateway; "
          f"failing directly (not counted): {failing}")
    for (scenario, check), (a, b) in sorted(differ.items()):
        tag = "known" if (scenario, check) in known else "not counted" if failed_directly(a) else "NEW"
        print(f"  differs ({tag}): {scenario} / {check}: directly {dict(a)}, gateway {dict(b)}")

    assert set(gateway) == set(direct), "the same scenarios must run both ways"
    assert len(passing) >= 25, f"too few scenarios pass directly to compare: {passing}"
    unexpected = {k: v for k, v in counted.items() if k not in known}
    assert not unexpected, f"the gateway changed the verdict of checks that pass directly: {unexpected}"
    stale = sorted(k for k in known if k not in counted)
    assert not stale, f"KNOWN_DIVERGENCES lists checks that no longer differ; remove them: {stale}"
    # What the upstream executed, tool by tool, is what it executed without the gateway.
    assert ran_through == ran_directly, (ran_through, ran_directly)
