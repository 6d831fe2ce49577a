"""An MCP upstream for drawbridge's SDK tests: the Python SDK 2.3.0's MCPServer, serving
both protocol generations (2026-07-28 requests and the 2025-era handshake) over
Streamable HTTP on 127.0.0.1 only.

- `echo` (the tests' policy allows it) and `admin_delete` (the policy forbids it);
- two readable resources, `note://public` (the caller may read it) and `note://secret`
  (it may not);
- `touch`: publishes, to every `subscriptions/listen` stream, a resource-updated event for
  `note://secret`, then one for `note://public`, then a tools list-changed event;
- `confirm` (2026-07-28 multi round-trip): answers input-required (an elicitation and a
  `requestState` it mints) until the client retries with the answer and that state.

Its own log (LISTEN_LOG, one JSON line each, written before anything is answered):
`{"tool": name}` for every tool that runs (`confirm` adds the requestState it minted or
received), `{"published": event}` for every event `touch` publishes, and `{"body": text}` for every HTTP request body it receives — so a test
asserts what the upstream executed, published and received, not what the gateway said.

Usage: LISTEN_LOG=/path/to/log listen_server.py PORT
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import ElicitRequest, ElicitRequestFormParams, ElicitResult, InputRequiredResult

LOOPBACK = "127.0.0.1"
PUBLIC = "note://public"
SECRET = "note://secret"

server = MCPServer(name="listen", instructions="Publishes change events for drawbridge's tests.")


def record(entry: dict[str, Any]) -> None:
    with open(os.environ["LISTEN_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps(entry) + "\n")


@server.tool()
async def echo(message: str) -> str:
    """Echoes its message."""
    record({"tool": "echo"})
    return f"Echo: {message}"


@server.tool()
async def admin_delete() -> str:
    """Deletes everything (the gateway's policy forbids it)."""
    record({"tool": "admin_delete"})
    return "deleted"


@server.tool()
async def touch(ctx: Context) -> str:
    """Publishes: secret updated, public updated, tools list changed."""
    record({"tool": "touch"})
    for uri in (SECRET, PUBLIC):
        record({"published": f"resources/updated {uri}"})
        await ctx.notify_resource_updated(uri)
    record({"published": "tools/list_changed"})
    await ctx.notify_tools_changed()
    return "touched"


@server.tool()
async def confirm(ctx: Context) -> str | InputRequiredResult:
    """Asks the client to confirm, then answers with what came back."""
    answer = (ctx.input_responses or {}).get("ok")
    state = ctx.request_state
    if state is None or not isinstance(answer, ElicitResult):
        minted = f"confirm-{secrets.token_urlsafe(12)}"
        record({"tool": "confirm", "minted": minted})
        question = ElicitRequestFormParams(
            message="Really?",
            requested_schema={"type": "object", "properties": {"ok": {"type": "boolean"}},
                              "required": ["ok"]},
        )
        return InputRequiredResult(input_requests={"ok": ElicitRequest(params=question)},
                                   request_state=minted)
    record({"tool": "confirm", "received": state})
    return f"confirmed={json.dumps((answer.content or {}).get('ok'))}"


@server.resource(PUBLIC, mime_type="text/plain")
def public_note() -> str:
    return "public"


@server.resource(SECRET, mime_type="text/plain")
def secret_note() -> str:
    return "secret"


def with_body_log(app: Any) -> Any:
    """An ASGI app that records every HTTP request body, verbatim, then runs `app`."""

    async def logged(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        messages = []
        while more:
            message = await receive()
            messages.append(message)
            chunks.append(message.get("body", b""))
            more = message.get("type") == "http.request" and message.get("more_body", False)
        if any(chunks):
            record({"body": b"".join(chunks).decode("utf-8", errors="replace")})
        replay = iter(messages)

        async def replayed() -> dict[str, Any]:
            try:
                return next(replay)
            except StopIteration:
                return await receive()

        await app(scope, replayed, send)

    return logged


def main() -> None:
    import uvicorn

    if len(sys.argv) != 2 or "LISTEN_LOG" not in os.environ:
        sys.exit(__doc__)
    app = with_body_log(server.streamable_http_app(host=LOOPBACK))
    uvicorn.run(app, host=LOOPBACK, port=int(sys.argv[1]), log_level="warning")


if __name__ == "__main__":
    main()
