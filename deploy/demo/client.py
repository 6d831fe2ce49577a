"""The demo's client transcript, which doubles as a smoke test (exit status 1 when any
outcome differs from what the demo promises). Real clients only: the official MCP Python
SDK with its OAuthClientProvider, signing users in headlessly at the development
authorization server (tests/e2e/headless_oauth.py), through drawbridge.

Usage: client.py [GATEWAY_BASE [ADMIN_BASE]]
       (defaults http://127.0.0.1:8080 and http://127.0.0.1:9090, as scripts/demo.sh runs them)
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "e2e"))
from headless_oauth import OAuthClient  # noqa: E402

GATEWAY = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080"
ADMIN = sys.argv[2] if len(sys.argv) > 2 else "http://127.0.0.1:9090"
EVERYTHING, WHOAMI = f"{GATEWAY}/everything/mcp", f"{GATEWAY}/whoami/mcp"
PERMITTED = {"echo", "trigger-long-running-operation"}  # what tools:echo unlocks
METRICS = ("drawbridge_auth_failures_total", "drawbridge_tool_calls_total",
           "drawbridge_token_exchange_total", "drawbridge_session_rejections_total")


class Unexpected(Exception):
    """An outcome other than the one the demo promises."""


def expect(ok: bool, what: str) -> None:
    if not ok:
        raise Unexpected(what)


def claims_of(jwt: str) -> dict:
    """A JWT's payload, unverified: the demo only shows what was issued."""
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def text_of(result) -> str:
    expect(not result.is_error, f"tool error: {result}")
    return "".join(block.text for block in result.content if block.type == "text")


class Trace:
    """Prints every HTTP exchange of one SDK client (OAuth ones included) as it happens."""

    def __init__(self, client: OAuthClient, issuer: str) -> None:
        self.client, self.issuer, self.on, self.session_ids = client, issuer, True, []

    async def hook(self, response: httpx2.Response) -> None:
        request, url = response.request, str(response.request.url)
        if "mcp-session-id" in response.headers:
            self.session_ids.append(response.headers["mcp-session-id"])
        if not self.on:
            return
        where = url.replace(GATEWAY, "gateway ").replace(self.issuer, "auth server ")
        note = ""
        try:
            body = json.loads(request.content or b"null")
            if isinstance(body, dict) and "method" in body:
                note = body["method"] + (f" {body['params']['name']}" if body["method"] == "tools/call" else "")
        except (ValueError, httpx2.RequestNotRead, KeyError, TypeError):
            pass
        if "/.well-known/" in url:
            note = "authorization server metadata" if self.issuer and url.startswith(self.issuer) \
                else "protected resource metadata (RFC 9728)"
        elif url.endswith("/reg"):
            note = "dynamic client registration"
        elif request.method in ("GET", "DELETE"):
            note = "server-to-client event stream" if request.method == "GET" else "end of session"
        elif url.endswith("/token"):
            scopes = " ".join(sorted(self.client.agent.requested_scopes()))
            note = f"{self.client.user} signed in (code + PKCE), asked for: {scopes}"
        print(f"   {request.method:6} {where.split('?')[0]}  -> {response.status_code}  {note}")
        if response.status_code in (401, 403) and "www-authenticate" in response.headers:
            print(f"          WWW-Authenticate: {response.headers['www-authenticate']}")


@asynccontextmanager
async def session_for(client: OAuthClient, url: str, trace: Trace | None = None):
    http = client.http_client()
    if trace is not None:
        http.event_hooks["response"].append(trace.hook)
    async with http, streamable_http_client(url, http_client=http) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            yield session


async def list_names(session: ClientSession) -> set[str]:
    return {tool.name for tool in (await session.list_tools()).tools}


async def anonymous(http: httpx2.AsyncClient) -> str:
    print("\n== 1. An anonymous request: 401 and a challenge that names the metadata")
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo"}}
    response = await http.post(EVERYTHING, json=call, headers={"Accept": "application/json, text/event-stream"})
    print(f"   POST {EVERYTHING} (no token) -> {response.status_code}")
    challenge = response.headers.get("www-authenticate", "")
    print(f"   WWW-Authenticate: {challenge}")
    expect(response.status_code == 401, "an anonymous request was not refused with 401")
    params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    expect("resource_metadata" in params, "the challenge names no resource metadata")
    metadata = (await http.get(params["resource_metadata"])).json()
    print(f"   GET {params['resource_metadata']}")
    for key in ("resource", "authorization_servers", "scopes_supported"):
        print(f"      {key}: {json.dumps(metadata.get(key))}")
    expect(metadata.get("resource") == EVERYTHING, "the metadata names another resource")
    return metadata["authorization_servers"][0]


async def alice_on_everything(issuer: str) -> OAuthClient:
    print("\n== 2. alice with the Python SDK, given only the route URL")
    alice = OAuthClient(EVERYTHING, user="alice")
    trace = Trace(alice, issuer)
    async with session_for(alice, EVERYTHING, trace) as session:
        claims = claims_of(alice.access_token)
        print(f"   token: aud={claims['aud']} sub={claims['sub']} scope={claims['scope']!r}")
        expect(claims["aud"] == EVERYTHING and claims["sub"] == "alice", "unexpected token")
        names = await list_names(session)
        print(f"   tools/list -> {sorted(names)}   (mcp:tools alone permits no tool)")
        expect(names == set(), f"tools listed without a tool scope: {names}")
        print("   tools/call echo: the gateway answers 403 with a step-up challenge; the SDK re-authorizes")
        echoed = text_of(await session.call_tool("echo", {"message": "hello through drawbridge"}))
        print(f"   echo -> {echoed!r}")
        expect(echoed == "Echo: hello through drawbridge", "echo did not answer")
        expect(alice.agent.authorizations == 2, "the step-up did not happen once")
        scope = set(claims_of(alice.access_token)["scope"].split())
        print(f"   token now: scope={' '.join(sorted(scope))!r}")
        trace.on = False
        names = await list_names(session)
        print(f"   tools/list -> {sorted(names)}   (get-sum needs tools:read: hidden)")
        expect(names == PERMITTED, f"unexpected tool list {names}")
        progress: list[float] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append(value)

        await session.call_tool("trigger-long-running-operation", {"duration": 1, "steps": 3},
                                progress_callback=on_progress)
        print(f"   trigger-long-running-operation -> streamed {len(progress)} progress notifications")
        expect(len(progress) == 3, "progress notifications were lost")
        try:
            await session.call_tool("get-env", {})
            expect(False, "get-env was allowed")
        except MCPError as refused:
            print(f"   get-env -> refused: {refused.message}")
            expect("not permitted" in refused.message, "get-env refused for another reason")
        expect(alice.agent.authorizations == 2, "a tool no scope can grant sent alice to sign in")
    token_file = os.environ.get("DEMO_TOKEN_FILE")
    if token_file:  # for the demo's `drawbridge explain` step
        descriptor = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(alice.access_token)
    return alice


async def whoami(issuer: str) -> None:
    print("\n== 3. /whoami/mcp: drawbridge exchanges alice's token (RFC 8693) for one of the upstream's own")
    alice = OAuthClient(WHOAMI, user="alice")
    async with session_for(alice, WHOAMI, Trace(alice, issuer)) as session:
        seen = json.loads(text_of(await session.call_tool("whoami", {})))
    upstream_token = seen["authorization"].removeprefix("Bearer ")
    mine, theirs = claims_of(alice.access_token), seen["claims"]
    print(f"   alice's token:     aud={mine['aud']} sub={mine['sub']} scope={mine['scope']!r}")
    print(f"   upstream received: aud={theirs['aud']} sub={theirs['sub']} scope={theirs.get('scope')!r} "
          f"client_id={theirs['client_id']} act={json.dumps(theirs.get('act'))}")
    print(f"   the upstream's token is alice's token: {upstream_token == alice.access_token}")
    expect(theirs["aud"] == "whoami-upstream" and theirs["sub"] == "alice", "wrong exchanged token")
    expect(theirs.get("scope") == "tools:read", "the exchanged token is not downscoped")
    expect(upstream_token != alice.access_token and alice.access_token not in json.dumps(seen),
           "the client's token reached the upstream")


async def stolen_session(alice: OAuthClient, http: httpx2.AsyncClient) -> None:
    print("\n== 4. A stolen session id: bob presents alice's Mcp-Session-Id")
    trace = Trace(alice, "")
    trace.on = False
    bob = OAuthClient(EVERYTHING, user="bob")
    async with session_for(alice, EVERYTHING, trace) as session:
        expect(len(set(trace.session_ids)) == 1, "alice's session has no single Mcp-Session-Id")
        alice_session = trace.session_ids[0]
        print(f"   alice's session id (sealed by drawbridge): {alice_session[:40]}…")
        async with session_for(bob, EVERYTHING):
            pass
        print(f"   bob signed in: sub={claims_of(bob.access_token)['sub']}")
        version = session.initialize_result.protocol_version
        listing = {"jsonrpc": "2.0", "id": 7, "method": "tools/list"}
        for who, token in (("bob", bob.access_token), ("alice", alice.access_token)):
            headers = {"Authorization": f"Bearer {token}", "Mcp-Session-Id": alice_session,
                       "MCP-Protocol-Version": version, "Accept": "application/json, text/event-stream"}
            response = await http.post(EVERYTHING, json=listing, headers=headers)
            body = response.text.strip() if response.status_code != 200 else "(tools)"
            print(f"   {who:5} + alice's session id -> {response.status_code} {body}")
            expect(response.status_code == (404 if who == "bob" else 200), f"{who}: unexpected status")


async def metrics(http: httpx2.AsyncClient) -> None:
    print(f"\n== 5. Metrics excerpt ({ADMIN}/metrics)")
    text = (await http.get(f"{ADMIN}/metrics")).text
    lines = [line for line in text.splitlines() if line.startswith(METRICS)]
    for line in lines:
        print(f"   {line}")
    joined = "\n".join(lines)
    for family, label in (("auth_failures", 'reason="missing_token"'),
                          ("tool_calls", 'decision="allow"'), ("tool_calls", 'decision="deny"'),
                          ("token_exchange", 'result="success"'),
                          ("session_rejections", 'reason="wrong_identity"')):
        expect(re.search(rf"drawbridge_{family}_total\{{[^}}]*{label}", joined) is not None,
               f"no drawbridge_{family}_total{{{label}}}")


async def transcript() -> None:
    async with httpx2.AsyncClient(timeout=10.0) as http:
        issuer = await anonymous(http)
        alice = await alice_on_everything(issuer)
        await whoami(issuer)
        await stolen_session(alice, http)
        await metrics(http)
    print("\nAll demo outcomes as expected.")


def main() -> None:
    async def bounded() -> None:
        with anyio.fail_after(120):
            await transcript()

    failure = None
    try:
        anyio.run(bounded)
    except* Unexpected as group:  # the SDK's task groups wrap what they propagate
        failure = group
        while isinstance(failure, BaseExceptionGroup):
            failure = failure.exceptions[0]
    if failure is not None:
        sys.exit(f"\nDEMO FAILED: {failure}")


if __name__ == "__main__":
    main()
