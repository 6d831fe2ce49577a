"""OAuth end to end: real MCP clients, a real authorization server, real upstreams.

This module owns what is sent and asserted when drawbridge protects routes with tokens
from the development authorization server (authserver/, oidc-provider): the MCP Python
SDK's OAuthClientProvider starting from nothing but the route URL (401, metadata
discovery, dynamic registration, authorization code + PKCE with a headless sign-in,
a token for the route as resource), filtered tool lists, step-up on 403
insufficient_scope, refused tools, what the upstream received after token exchange,
sessions bound to the user, and opaque tokens checked by introspection. Starting the
peers is conftest.py's job; the headless user agent is headless_oauth.py's.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import AsyncIterator

import anyio
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from conftest import E2E_DIR, WHOAMI_AUDIENCE, http_get, peer_log_text, upstream_requests
from headless_oauth import OAuthClient

SCENARIO_TIMEOUT_S = 60.0
HTTP_TIMEOUT_S = 10.0
POLICY_TOOLS = {"echo", "trigger-long-running-operation"}  # everything route, tools:echo
TS_CLIENT = E2E_DIR / "ts_client.mjs"


def run(scenario, *args):
    """Run an async scenario to completion, bounded by SCENARIO_TIMEOUT_S."""

    async def bounded():
        with anyio.fail_after(SCENARIO_TIMEOUT_S):
            return await scenario(*args)

    return anyio.run(bounded)


@dataclass
class Exchange:
    method: str
    url: str
    status: int
    headers: dict[str, str]


@dataclass
class Recorder:
    """Every HTTP exchange one client made, OAuth ones included, in order."""

    exchanges: list[Exchange] = field(default_factory=list)

    async def hook(self, response: httpx2.Response) -> None:
        self.exchanges.append(Exchange(response.request.method, str(response.request.url),
                                       response.status_code, dict(response.headers)))

    def summary(self) -> list[tuple[str, str, int]]:
        return [(e.method, e.url, e.status) for e in self.exchanges]

    def session_ids(self) -> set[str]:
        return {e.headers["mcp-session-id"] for e in self.exchanges if "mcp-session-id" in e.headers}


@asynccontextmanager
async def oauth_session(client: OAuthClient, url: str,
                        recorder: Recorder | None = None) -> AsyncIterator[ClientSession]:
    """An initialized MCP session on `url`, authenticated by `client` (which signs in,
    registers and steps up by itself as the server demands)."""
    http = client.http_client()
    if recorder is not None:
        http.event_hooks["response"].append(recorder.hook)
    async with http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


def claims_of(jwt: str) -> dict:
    """A JWT's payload, unverified (the tests only read what was issued)."""
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def text_of(result) -> str:
    assert not result.is_error, result
    return "".join(block.text for block in result.content if block.type == "text")


def challenge_params(header: str) -> dict[str, str]:
    """The auth-params of a `Bearer k="v", ...` challenge."""
    assert header.startswith("Bearer "), header
    return dict(re.findall(r'(\w+)="([^"]*)"', header))


def raw_post(url: str, token: str | None, message: dict, session_id: str | None = None,
             protocol_version: str | None = None) -> httpx2.Response:
    """One JSON-RPC POST outside any SDK, for asserting on status and headers."""
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if session_id:
        headers["Mcp-Session-Id"] = session_id
    if protocol_version:
        headers["MCP-Protocol-Version"] = protocol_version
    with httpx2.Client(timeout=HTTP_TIMEOUT_S) as http:
        return http.post(url, json=message, headers=headers)


def tools_call(name: str, arguments: dict | None = None, request_id: int = 1) -> dict:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
            "params": {"name": name, "arguments": arguments or {}}}


def in_order(summary: list[tuple[str, str, int]], expected: list[tuple[str, str, int]]) -> bool:
    """True when `expected` occurs in `summary` as a subsequence (URL compared by prefix)."""
    it = iter(summary)
    return all(any(m == em and u.startswith(eu) and s == es for m, u, s in it)
               for em, eu, es in expected)


@dataclass
class SignedIn:
    client: OAuthClient
    recorder: Recorder
    listed: set[str]


@pytest.fixture(scope="module")
def alice_signed_in(oauth_gateway) -> SignedIn:
    """alice's SDK client after one session on the everything route: initialize and
    tools/list only, so her token carries only what the 401 challenge asked for."""
    client, recorder = OAuthClient(oauth_gateway.everything_url, user="alice"), Recorder()

    async def scenario():
        async with oauth_session(client, oauth_gateway.everything_url, recorder) as session:
            return {tool.name for tool in (await session.list_tools()).tools}

    return SignedIn(client, recorder, run(scenario))


def test_unauthenticated_request_gets_a_challenge_naming_the_metadata(oauth_gateway):
    response = raw_post(oauth_gateway.everything_url, None, tools_call("echo"))
    assert response.status_code == 401, response.text
    params = challenge_params(response.headers["www-authenticate"])
    base = oauth_gateway.everything_url.removesuffix("/everything/mcp")
    assert params["resource_metadata"] == f"{base}/.well-known/oauth-protected-resource/everything/mcp"
    assert params["scope"] == "mcp:tools"

    with httpx2.Client(timeout=HTTP_TIMEOUT_S) as http:
        metadata = http.get(params["resource_metadata"]).json()
    assert metadata["resource"] == oauth_gateway.everything_url
    assert metadata["authorization_servers"] == [oauth_gateway.issuer]
    assert metadata["scopes_supported"] == ["mcp:tools"]


def test_python_sdk_discovers_registers_and_signs_in_from_the_bare_url(oauth_gateway, alice_signed_in):
    client, recorder = alice_signed_in.client, alice_signed_in.recorder
    gateway, issuer = oauth_gateway.everything_url, oauth_gateway.issuer
    base = gateway.removesuffix("/everything/mcp")
    assert in_order(recorder.summary(), [
        ("POST", gateway, 401),
        ("GET", f"{base}/.well-known/oauth-protected-resource/everything/mcp", 200),
        ("GET", f"{issuer}/.well-known/", 200),  # RFC 8414 or OpenID discovery
        ("POST", f"{issuer}/reg", 201),  # dynamic client registration
        ("POST", f"{issuer}/token", 200),  # authorization code + PKCE
        ("POST", gateway, 200),  # initialize, now with the token
    ]), recorder.summary()

    assert client.agent.authorizations == 1
    authorization = client.agent.authorization_urls[0]
    assert "code_challenge_method=S256" in authorization
    assert "mcp:tools" in client.agent.requested_scopes(0)

    claims = claims_of(client.access_token)
    assert claims["iss"] == issuer
    assert claims["aud"] == gateway  # RFC 8707: the route is the resource
    assert claims["sub"] == "alice"
    assert claims["client_id"] == client.storage.client_info.client_id
    assert set(claims["scope"].split()) == {"mcp:tools"}


def test_tool_list_shows_only_what_the_token_permits(alice_signed_in, everything_server):
    async def upstream_tools():
        async with streamable_http_client(everything_server) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return {tool.name for tool in (await session.list_tools()).tools}

    assert len(run(upstream_tools)) > len(POLICY_TOOLS)  # the upstream has many more
    # mcp:tools alone permits no tool on this route: the gateway hides them all.
    assert alice_signed_in.listed == set()


def test_missing_tool_scope_is_a_403_step_up_challenge(oauth_gateway, alice_signed_in):
    response = raw_post(oauth_gateway.everything_url, alice_signed_in.client.access_token,
                        tools_call("echo", {"message": "x"}))
    assert response.status_code == 403, response.text
    params = challenge_params(response.headers["www-authenticate"])
    assert params["error"] == "insufficient_scope"
    assert set(params["scope"].split()) == {"mcp:tools", "tools:echo"}
    assert params["resource_metadata"].endswith("/.well-known/oauth-protected-resource/everything/mcp")


def test_token_for_one_route_is_refused_on_another(oauth_gateway, alice_signed_in):
    response = raw_post(oauth_gateway.whoami_url, alice_signed_in.client.access_token,
                        tools_call("whoami"))
    assert response.status_code == 401, response.text
    params = challenge_params(response.headers["www-authenticate"])
    assert params["error"] == "invalid_token"
    assert params["resource_metadata"].endswith("/.well-known/oauth-protected-resource/whoami/mcp")


def test_python_sdk_steps_up_and_the_allowed_tool_succeeds(oauth_gateway):
    client = OAuthClient(oauth_gateway.everything_url, user="alice")
    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    async def scenario():
        async with oauth_session(client, oauth_gateway.everything_url) as session:
            echoed = await session.call_tool("echo", {"message": "through the gate"})
            listed = {tool.name for tool in (await session.list_tools()).tools}
            streamed = await session.call_tool("trigger-long-running-operation",
                                               {"duration": 0.5, "steps": 2},
                                               progress_callback=on_progress)
            return echoed, listed, streamed

    echoed, listed, streamed = run(scenario)
    assert text_of(echoed) == "Echo: through the gate"
    # First sign-in for the challenged mcp:tools, then step-up for what the 403 named.
    assert client.agent.authorizations == 2
    assert {"mcp:tools", "tools:echo"} <= client.agent.requested_scopes(1)
    assert {"mcp:tools", "tools:echo"} <= set(claims_of(client.access_token)["scope"].split())
    assert listed == POLICY_TOOLS
    assert "completed" in text_of(streamed)
    assert len(progress) == 2


def test_tool_outside_the_policy_is_refused(oauth_gateway):
    client = OAuthClient(oauth_gateway.everything_url, user="alice")
    recorder = Recorder()

    async def scenario():
        async with oauth_session(client, oauth_gateway.everything_url, recorder) as session:
            with pytest.raises(MCPError) as refused:
                await session.call_tool("get-env", {})
            # The session survives the refusal.
            await session.list_tools()
            return refused.value

    error = run(scenario)
    assert "get-env" in error.message and "not permitted" in error.message
    refusals = [e for e in recorder.exchanges if e.status == 403]
    assert refusals
    for refusal in refusals:
        # No scope would help, so there is no step-up challenge at all.
        assert "www-authenticate" not in refusal.headers


def test_tool_outside_the_policy_does_not_send_the_user_to_reauthorize(oauth_gateway):
    client = OAuthClient(oauth_gateway.everything_url, user="alice")

    async def scenario():
        async with oauth_session(client, oauth_gateway.everything_url) as session:
            with pytest.raises(MCPError):
                await session.call_tool("get-env", {})

    run(scenario)
    assert client.agent.authorizations == 1


def test_upstream_receives_an_exchanged_token_never_the_clients(oauth_gateway):
    client = OAuthClient(oauth_gateway.whoami_url, user="alice")

    async def scenario():
        async with oauth_session(client, oauth_gateway.whoami_url) as session:
            first = json.loads(text_of(await session.call_tool("whoami", {})))
            second = json.loads(text_of(await session.call_tool("whoami", {})))
            return first, second

    first, second = run(scenario)
    client_token = client.access_token
    assert claims_of(client_token)["aud"] == oauth_gateway.whoami_url

    authorization = first["authorization"]
    assert authorization.startswith("Bearer ")
    upstream_token = authorization.removeprefix("Bearer ")
    assert upstream_token != client_token
    assert client_token not in json.dumps(first)
    claims = first["claims"]
    assert claims["aud"] == WHOAMI_AUDIENCE
    assert claims["sub"] == "alice"
    assert claims["iss"] == oauth_gateway.issuer
    assert claims["client_id"] == "drawbridge"
    assert claims["act"] == {"sub": "drawbridge"}
    assert claims["scope"] == "tools:read"  # per_operation: only what `whoami` needs
    # The exchanged token is cached: the second call carries the same one.
    assert second["authorization"] == authorization
    # Neither token is logged by the gateway; the upstream never saw the client's.
    gateway_log = peer_log_text("drawbridge-oauth")
    assert client_token not in gateway_log and upstream_token not in gateway_log
    assert client_token not in peer_log_text("whoami")
    assert not any(client_token in line for line in upstream_requests("whoami"))


def test_session_is_bound_to_the_user_not_to_the_id(oauth_gateway):
    alice, alice_recorder = OAuthClient(oauth_gateway.everything_url, user="alice"), Recorder()
    bob = OAuthClient(oauth_gateway.everything_url, user="bob")
    list_tools = {"jsonrpc": "2.0", "id": 7, "method": "tools/list"}

    async def bob_signs_in():
        async with oauth_session(bob, oauth_gateway.everything_url):
            pass

    async def scenario():
        async with oauth_session(alice, oauth_gateway.everything_url, alice_recorder) as session:
            version = session.initialize_result.protocol_version
            (alice_session,) = alice_recorder.session_ids()
            await bob_signs_in()
            assert claims_of(bob.access_token)["sub"] == "bob"
            stolen = await anyio.to_thread.run_sync(
                lambda: raw_post(oauth_gateway.everything_url, bob.access_token, list_tools,
                                 alice_session, version))
            own = await anyio.to_thread.run_sync(
                lambda: raw_post(oauth_gateway.everything_url, alice.access_token, list_tools,
                                 alice_session, version))
            # alice carries on in her session.
            await session.list_tools()
            return stolen, own

    stolen, own = run(scenario)
    assert stolen.status_code == 404, stolen.text
    assert own.status_code == 200, own.text


def test_opaque_tokens_are_introspected(oauth_gateway):
    client = OAuthClient(oauth_gateway.opaque_url, user="bob")

    async def scenario():
        async with oauth_session(client, oauth_gateway.opaque_url) as session:
            return await session.call_tool("echo", {"message": "opaque"})

    result = run(scenario)
    assert text_of(result) == "Echo: opaque"
    assert client.access_token.count(".") != 2  # not a JWT: only introspection can check it
    assert "tools:echo" in client.storage.tokens.scope.split()
    status, metrics = http_get(f"{oauth_gateway.admin_url}/metrics")
    assert status == 200
    introspections = re.findall(
        r'^drawbridge_cache_requests_total\{(?=[^}]*cache="introspection")(?=[^}]*result="miss")[^}]*\}\s+(\S+)$',
        metrics, re.MULTILINE)
    assert introspections and float(introspections[0]) >= 1, metrics



def test_typescript_sdk_from_bare_url_with_step_up(oauth_gateway):
    """ts_client.mjs: the TypeScript SDK's client and OAuthClientProvider, headless."""
    try:
        finished = subprocess.run(
            ["node", str(TS_CLIENT), oauth_gateway.everything_url, "bob"],
            cwd=E2E_DIR, capture_output=True, text=True, timeout=SCENARIO_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as timeout:
        pytest.fail(f"ts_client.mjs did not finish: {timeout.stderr}")
    assert finished.returncode == 0, finished.stderr
    out = json.loads(finished.stdout)
    assert out["server"] == "mcp-servers/everything"
    assert out["tools_before"] == []  # mcp:tools alone permits no tool here
    assert out["echo"] == "Echo: from typescript"  # after a step-up
    assert set(out["tools_after"]) == POLICY_TOOLS
    assert out["get_env"].startswith("refused: ")
    # Not any exception: the gateway refused with 403 and the JSON-RPC code for a policy
    # refusal (get-env is in no rule, so no scope helps: no step-up challenge), and the SDK
    # did not crash on it.
    assert out["get_env_raw"] == {"status": 403, "code": -32005, "insufficient_scope": False}, out
    assert out["get_env_error"]["name"] not in {"TypeError", "ReferenceError", "SyntaxError",
                                                "RangeError"}, out
    assert out["authorization_scopes"][:2] == ["mcp:tools", "mcp:tools tools:echo"]
    assert out["token"]["aud"] == oauth_gateway.everything_url
    assert out["token"]["sub"] == "bob"
    assert out["token"]["client_id"] == out["client_id"]
    assert set(out["token"]["scope"].split()) == {"mcp:tools", "tools:echo"}



def test_refused_token_exchange_fails_closed_before_the_upstream(oauth_gateway):
    """whoami-wide exchanges for tools:admin, which no user token carries: the authorization
    server refuses (invalid_scope), so the gateway must refuse too, and the upstream must
    see nothing."""
    client = OAuthClient(oauth_gateway.whoami_wide_url, user="alice")
    requests_before = upstream_requests("whoami")  # whoami's own request log

    async def scenario():
        with pytest.raises(Exception) as failed:  # the SDK wraps it in ExceptionGroups
            async with oauth_session(client, oauth_gateway.whoami_wide_url):
                pass
        return failed.value

    failure = run(scenario)
    assert "refused a token for the upstream" in repr(failure)
    response = raw_post(oauth_gateway.whoami_wide_url, client.access_token, tools_call("whoami"))
    assert response.status_code == 403, response.text
    assert "www-authenticate" not in response.headers  # no step-up would help
    assert client.access_token not in response.text
    assert upstream_requests("whoami") == requests_before
