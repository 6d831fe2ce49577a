"""A canonical MCP server built with the official Python SDK (`mcp` 2.x, MCPServer), for
drawbridge's adversarial suite: stateful Streamable HTTP at /mcp (with an event store, so
a GET with `Last-Event-ID` replays stored answers) and the SDK's legacy
HTTP+SSE transport (GET /sse, POST /messages/?session_id=…) on one Starlette app served
by uvicorn on 127.0.0.1.

The same tools, prompts and resources as ts_server.mjs. Every tool execution, prompt get
and resource read appends one JSON line to the execution log (synchronously, before the
answer is written): {"kind": "tool", "tool": name, "args": {...}, "transport":
"streamable"|"sse", "session": id}; and every HTTP request, as it arrives, is logged as
{"kind": "request", "method", "url", "headers"} (raw header pairs, duplicates kept), so a
test can assert on what the upstream RECEIVED and EXECUTED whatever the gateway answered;
each request body it reads is logged too ({"kind": "body", "url", "body_b64"}).

Usage: py_server.py PORT EXEC_LOG
"""

from __future__ import annotations

import base64
import json
import sys
from typing import Any

import uvicorn
from starlette.routing import Route
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.streamable_http import EventCallback, EventMessage, EventStore

LOOPBACK = "127.0.0.1"

server = MCPServer(name="adversarial-py")
exec_log_path = ""


def append(entry: dict[str, Any]) -> None:
    with open(exec_log_path, "a", encoding="utf-8") as log:
        log.write(json.dumps(entry) + "\n")


def transport_and_session(ctx: Context) -> tuple[str, str | None]:
    request = ctx.request_context.request
    query = getattr(request, "query_params", None)
    if query is not None and "session_id" in query:
        return "sse", query.get("session_id")
    headers = ctx.headers or {}
    return "streamable", headers.get("mcp-session-id")


def executed(kind: str, name: str, args: dict[str, Any], ctx: Context) -> None:
    transport, session = transport_and_session(ctx)
    append({"kind": kind, kind: name, "args": args, "transport": transport, "session": session})


@server.tool(name="echo")
async def echo(ctx: Context, message: str = "", target: str = "") -> str:
    """Echoes its message (allowed by the policy)."""
    executed("tool", "echo", {"message": message, "target": target}, ctx)
    return f"echo: {message}"


@server.tool(name="admin-delete")
async def admin_delete(ctx: Context, message: str = "", target: str = "") -> str:
    """Deletes everything (forbidden by the policy)."""
    executed("tool", "admin-delete", {"message": message, "target": target}, ctx)
    return f"admin-delete: {target}"


@server.tool(name="get-secret")
async def get_secret(ctx: Context, message: str = "", target: str = "") -> str:
    """Returns a secret (forbidden by the policy)."""
    executed("tool", "get-secret", {"message": message, "target": target}, ctx)
    return "get-secret: s3cr3t"


@server.tool(name="search")
async def search(ctx: Context, query: str, options: dict[str, Any]) -> str:
    """Searches to a depth (argument rules bound it); nested arguments."""
    executed("tool", "search", {"query": query, "options": options}, ctx)
    return f"search: {query}"


@server.prompt(name="greeting")
async def greeting(ctx: Context) -> str:
    """An allowed prompt."""
    executed("prompt", "greeting", {}, ctx)
    return "prompt greeting"


@server.prompt(name="forbidden-prompt")
async def forbidden_prompt(ctx: Context) -> str:
    """A forbidden prompt."""
    executed("prompt", "forbidden-prompt", {}, ctx)
    return "prompt forbidden-prompt"


@server.resource("test://public/info", name="public-info", mime_type="text/plain")
async def public_info() -> str:
    # The SDK gives static resources no Context: transport and session are not known.
    append({"kind": "resource", "resource": "test://public/info", "args": {}})
    return "resource public-info"


@server.resource("test://secret/key", name="secret-key", mime_type="text/plain")
async def secret_key() -> str:
    append({"kind": "resource", "resource": "test://secret/key", "args": {}})
    return "resource secret-key"


class OrderedEventStore(EventStore):
    """Every event, in the order stored, so that `Last-Event-ID` replays what followed."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, Any]] = []  # (event id, stream id, message)

    async def store_event(self, stream_id, message):
        event_id = f"{stream_id}_{len(self.events) + 1:08d}"
        self.events.append((event_id, stream_id, message))
        return event_id

    async def replay_events_after(self, last_event_id, send_callback: EventCallback):
        index = next((i for i, event in enumerate(self.events) if event[0] == last_event_id), None)
        if index is None:
            return None
        stream_id = self.events[index][1]
        for event_id, stream, message in self.events[index + 1:]:
            if stream == stream_id and message is not None:
                await send_callback(EventMessage(message, event_id))
        return stream_id


def request_logger(app):
    """ASGI middleware: log each HTTP request as it arrives, before anything parses it."""

    async def logged(scope, receive, send):
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        query = scope.get("query_string", b"").decode("latin-1")
        target = scope.get("raw_path", scope["path"].encode()).decode("latin-1")
        url = target + (f"?{query}" if query else "")
        append({
            "kind": "request",
            "method": scope["method"],
            "url": url,
            "headers": [item for name, value in scope["headers"]
                        for item in (name.decode("latin-1"), value.decode("latin-1"))],
        })
        chunks: list[bytes] = []

        async def receive_logged():
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False) and any(chunks):
                    # The body exactly as received, for assertions on its bytes.
                    append({"kind": "body", "url": url,
                            "body_b64": base64.b64encode(b"".join(chunks)).decode()})
            return message

        await app(scope, receive_logged, send)

    return logged


def main() -> None:
    global exec_log_path
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    port, exec_log_path = int(sys.argv[1]), sys.argv[2]
    app = server.streamable_http_app(host=LOOPBACK, event_store=OrderedEventStore())
    # The legacy transport's routes, on the same app (and the same tools).
    legacy = server.sse_app(host=LOOPBACK)
    app.router.routes.extend(legacy.routes)
    # The same stream under /outside/: it still announces `/messages/?session_id=…`, a
    # path outside /outside/, which a gateway whose upstream base is /outside/ cannot map.
    sse = next(r for r in legacy.routes if isinstance(r, Route) and r.path == "/sse")
    app.router.routes.append(Route("/outside/sse", endpoint=sse.endpoint, methods=["GET"]))
    uvicorn.run(request_logger(app), host=LOOPBACK, port=port, log_level="warning")


if __name__ == "__main__":
    main()
