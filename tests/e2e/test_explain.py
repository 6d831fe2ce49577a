"""`drawbridge explain` end to end: a token issued by the real authorization server
(signed in through the MCP Python SDK's OAuth flow), the route's configuration file as
the gateway runs it, and the real everything server behind it. For each request,
explain's decision is the gateway's: a call explain allows is executed by the server
(its result comes back to the SDK), a call it refuses gets the very status, JSON-RPC
error and challenge explain printed. `--list` on the server's own tools/list answer
shows exactly what the SDK lists through the gateway.
"""

from __future__ import annotations

import json
import subprocess

from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from conftest import DRAWBRIDGE_BIN, protected_route
from headless_oauth import OAuthClient
from test_oauth import oauth_session, raw_post, run, text_of, tools_call

POLICY = {
    "tools": {
        "echo": {"scopes": ["mcp:tools"], "arguments": {"message": {"max_length": 12}}},
        "get-sum": {"scopes": ["mcp:tools"],
                    "arguments": {"a": {"max": 100}, "b": {"max": 100}}},
        "get-env": ["tools:admin"],
        "get-tiny-image": {"scopes": ["tools:admin"], "mode": "shadow"},
    },
}


def explain(config, token: str, body: dict | None, *extra: str) -> tuple[int, dict]:
    argv = [str(DRAWBRIDGE_BIN), "explain", "-c", str(config), "--route", "explain",
            "--token", "-", "--format", "json", *extra]
    if body is not None:
        argv += ["--request", str(config.parent / "explain-body.json")]
        (config.parent / "explain-body.json").write_text(json.dumps(body))
    done = subprocess.run(argv, input=token, capture_output=True, text=True, timeout=60)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def without_request_id(body):
    if isinstance(body, list):
        return [without_request_id(b) for b in body]
    body = dict(body)
    body.pop("request_id", None)
    error = body.get("error")
    if isinstance(error, dict) and isinstance(error.get("data"), dict):
        error = dict(error)
        error["data"] = {k: v for k, v in error["data"].items() if k != "requestId"}
        if not error["data"]:
            del error["data"]
        body["error"] = error
    return body


def test_explain_decides_as_the_gateway_and_the_server_do(authserver, everything_server,
                                                           peer_log_dir):
    config = peer_log_dir / "drawbridge-explain.yaml"
    with protected_route("explain", authserver.issuer, everything_server, POLICY,
                         peer_log_dir) as url:
        alice = OAuthClient(url, user="alice")
        allowed = [("echo", {"message": "hi"}, "Echo: hi"),
                   ("get-sum", {"a": 2, "b": 3}, "5")]

        async def executed():
            async with oauth_session(alice, url) as session:
                results = [text_of(await session.call_tool(name, arguments))
                           for name, arguments, _ in allowed]
                listed = [tool.name for tool in (await session.list_tools()).tools]
                return results, listed

        results, listed = run(executed)
        token = alice.access_token
        # Allowed by explain, and executed by the server.
        for (name, arguments, expected), result in zip(allowed, results):
            code, explained = explain(config, token, tools_call(name, arguments))
            assert code == 0 and explained["decision"] == "allow", explained
            assert expected in result, result
        code, explained = explain(config, token, tools_call("get-tiny-image"))
        assert code == 0, explained
        assert any(s["step"] == "shadow" for s in explained["steps"]), explained

        refused = [
            ("echo", {"message": "a message longer than twelve"}),
            ("get-sum", {"a": "2", "b": 3}),
            ("get-env", {}),
            ("not-a-tool", {}),
        ]
        for name, arguments in refused:
            message = tools_call(name, arguments, request_id=5)
            code, explained = explain(config, token, message)
            response = raw_post(url, token, message)
            assert code == 1, explained
            assert explained["status"] == response.status_code, (name, explained)
            assert explained["body"] == without_request_id(response.json()), name
            assert explained["www_authenticate"] == response.headers.get("www-authenticate"), name
        # The value of a refused argument is never printed.
        code, explained = explain(config, token, tools_call("echo", {"message": "x" * 40}))
        assert "x" * 40 not in json.dumps(explained)

        # --list on what the server itself lists: exactly what the SDK saw through us.
        async def upstream_tools():
            async with streamable_http_client(everything_server) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    tools = (await session.list_tools()).tools
                    return [t.model_dump(mode="json", by_alias=True, exclude_none=True)
                            for t in tools]

        answer = {"jsonrpc": "2.0", "id": 1, "result": {"tools": run(upstream_tools)}}
        answer_file = peer_log_dir / "explain-tools.json"
        answer_file.write_text(json.dumps(answer))
        code, shown = explain(config, token, None, "--list", "--request", str(answer_file))
        assert code == 0
        names = [i["name"] for i in shown["items"] if i["shown"]]
        assert names == listed, (names, listed)
        assert len(shown["items"]) > len(names), "something is hidden"
