"""An MCP upstream with a multi round-trip tool (MCP 2026-07-28), for drawbridge's e2e
tests of `requestState` bound to the caller.

Its tool `ask` answers a first call with an input-required result: an elicitation
request and a `requestState` of its own (which MCPServer seals with its own key, as it
does by default). The retry carrying the answer and the state runs the tool to the end.
Written with the Python SDK 2.3.0's MCPServer, Streamable HTTP on 127.0.0.1 only.

Two logs, JSON lines, so a test asserts on what this server received and did, not on
what the gateway answered:
- STATE_REQUEST_LOG: every HTTP request as it arrived (method, path, body text);
- STATE_EXECUTION_LOG: every run of `ask` (which round, the state it was given).

Usage: state_server.py PORT
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import ElicitRequest, ElicitRequestFormParams, InputRequiredResult

LOOPBACK = "127.0.0.1"

server = MCPServer(name="state", instructions="Asks for a colour over two round trips.")


def record(path: str | None, entry: dict[str, Any]) -> None:
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(json.dumps(entry) + "\n")


@server.tool()
async def ask(ctx: Context) -> str | InputRequiredResult:
    """Asks the user for a colour, then reports it."""
    log = os.environ.get("STATE_EXECUTION_LOG")
    if ctx.request_state is None:
        record(log, {"tool": "ask", "round": 1})
        question = ElicitRequest(
            params=ElicitRequestFormParams(
                message="Which colour?",
                requested_schema={
                    "type": "object",
                    "properties": {"colour": {"type": "string"}},
                    "required": ["colour"],
                },
            )
        )
        return InputRequiredResult(input_requests={"colour": question},
                                   request_state="asked-for-colour")
    answer = (ctx.input_responses or {}).get("colour")
    content = getattr(answer, "content", None) or {}
    record(log, {"tool": "ask", "round": 2, "state": ctx.request_state})
    return f"colour: {content.get('colour')}; state: {ctx.request_state}"


def with_request_log(app: Any, log_path: str) -> Any:
    """An ASGI app that appends each HTTP request (method, path, whole body) to
    `log_path` once its body has arrived, then lets `app` answer it."""

    async def logged(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await app(scope, receive, send)
            return
        chunks: list[bytes] = []

        async def recording() -> dict[str, Any]:
            message = await receive()
            if message.get("type") == "http.request":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    record(log_path, {"method": scope.get("method"), "path": scope.get("path"),
                                      "body": b"".join(chunks).decode("utf-8", "replace")})
            return message

        await app(scope, recording, send)

    return logged


def main() -> None:
    import uvicorn

    if len(sys.argv) < 2:
        sys.exit(__doc__)
    app = server.streamable_http_app(host=LOOPBACK)
    request_log = os.environ.get("STATE_REQUEST_LOG")
    if request_log:
        app = with_request_log(app, request_log)
    uvicorn.run(app, host=LOOPBACK, port=int(sys.argv[1]), log_level="info")


if __name__ == "__main__":
    main()
