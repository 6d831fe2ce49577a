"""Claim rules end to end: the real authorization server (oidc-provider) puts a `groups`
claim in each user's access tokens (alice: sre, platform; bob: dev), and the `claims`
route lets only the `sre` group call or see the whoami tool. The MCP Python SDK signs
each user in from the bare route URL; the whoami upstream's own request log shows that
a refused call never reached it.
"""

from __future__ import annotations

from conftest import upstream_requests
from headless_oauth import OAuthClient
from test_oauth import claims_of, oauth_session, raw_post, run, tools_call


def sign_in_and_list(url: str, user: str) -> tuple[OAuthClient, set[str]]:
    client = OAuthClient(url, user=user)

    async def scenario():
        async with oauth_session(client, url) as session:
            return {tool.name for tool in (await session.list_tools()).tools}

    return client, run(scenario)


def test_a_claim_rule_decides_calls_and_lists_with_real_tokens(oauth_gateway):
    url = oauth_gateway.claims_url
    alice, alice_sees = sign_in_and_list(url, "alice")
    bob, bob_sees = sign_in_and_list(url, "bob")
    assert claims_of(alice.access_token)["groups"] == ["sre", "platform"]
    assert claims_of(bob.access_token)["groups"] == ["dev"]
    # Same scopes, different groups: the list follows the claim rule.
    assert set(claims_of(alice.access_token)["scope"].split()) == set(
        claims_of(bob.access_token)["scope"].split())
    assert alice_sees == {"whoami"}
    assert bob_sees == set()

    async def alice_calls():
        async with oauth_session(alice, url) as session:
            return await session.call_tool("whoami", {})

    result = run(alice_calls)
    assert not result.is_error, result

    before = upstream_requests("whoami")
    response = raw_post(url, bob.access_token, tools_call("whoami"))
    assert response.status_code == 403, response.text
    # More scopes would not help: no step-up challenge.
    assert "www-authenticate" not in response.headers, response.headers
    message = response.json()["error"]["message"]
    assert "claims:groups" in message and "sre" not in message, message
    assert upstream_requests("whoami") == before, "bob's refused call reached the upstream"
