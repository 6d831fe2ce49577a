"""An MCP upstream that reports the credential it received, for drawbridge's e2e tests.

Its one tool, `whoami`, returns (as JSON text) the `Authorization` header of the HTTP
request that carried the call and the claims of the bearer token in it, decoded WITHOUT
verification: this server trusts nobody's signature, it only shows a test what arrived.
Written with the Python SDK's MCPServer (the 2.x name of FastMCP), Streamable HTTP on
127.0.0.1 only.

Every HTTP request it receives is appended, as it arrives, to the request log named by
WHOAMI_REQUEST_LOG (one line: method, path, and every header name and value), so a test
can assert what reached the upstream, or that nothing did, without relying on what the
SDK or uvicorn happen to print (uvicorn's access lines are block-buffered on stdout).

Usage: whoami_server.py PORT   (or WHOAMI_PORT in the environment)
"""

from __future__ import annotations

import base64
import json
import os
import sys
from typing import Any

from mcp.server.mcpserver import Context, MCPServer

LOOPBACK = "127.0.0.1"

server = MCPServer(name="whoami", instructions="Reports the credential this upstream received.")


def unverified_claims(authorization: str | None) -> dict[str, Any] | None:
    """The JSON payload of a `Bearer <JWT>` header, or None when it is not one."""
    if not authorization or not authorization.lower().startswith("bearer "):
        return None
    parts = authorization.split(" ", 1)[1].strip().split(".")
    if len(parts) != 3:
        return None
    try:
        padded = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(padded))
    except ValueError:
        return None
    return claims if isinstance(claims, dict) else None


@server.tool()
async def whoami(ctx: Context) -> str:
    """The Authorization header this server received and its token's (unverified) claims."""
    headers = ctx.headers or {}
    authorization = headers.get("authorization")
    report = {
        "authorization": authorization,
        "claims": unverified_claims(authorization),
        "forwarded_headers": sorted(name.lower() for name in headers.keys()),
    }
    return json.dumps(report)


def with_request_log(app: Any, log_path: str) -> Any:
    """An ASGI app that appends one line per HTTP request to `log_path`, then runs `app`."""

    async def logged(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") == "http":
            headers = " ".join(
                f"{name.decode('latin-1')}={value.decode('latin-1')}"
                for name, value in scope.get("headers", [])
            )
            line = f"{scope.get('method')} {scope.get('path')} {headers}\n"
            with open(log_path, "a", encoding="utf-8") as log:
                log.write(line)
        await app(scope, receive, send)

    return logged


def main() -> None:
    import uvicorn

    port = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("WHOAMI_PORT")
    if not port:
        sys.exit(__doc__)
    # host=127.0.0.1 makes the SDK turn on its DNS-rebinding check with loopback Host
    # values allowed; drawbridge sends the upstream's own authority as Host, so it passes.
    app = server.streamable_http_app(host=LOOPBACK)
    request_log = os.environ.get("WHOAMI_REQUEST_LOG")
    if request_log:
        app = with_request_log(app, request_log)
    uvicorn.run(app, host=LOOPBACK, port=int(port), log_level="info")


if __name__ == "__main__":
    main()
