"""An MCP upstream that reports the credential it received, for drawbridge's e2e tests.

Its one tool, `whoami`, returns (as JSON text) the `Authorization` header of the HTTP
request that carried the call and the claims of the bearer token in it, decoded WITHOUT
verification: this server trusts nobody's signature, it only shows a test what arrived.
Written with the Python SDK's MCPServer (the 2.x name of FastMCP), Streamable HTTP on
127.0.0.1 only.

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


def main() -> None:
    port = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("WHOAMI_PORT")
    if not port:
        sys.exit(__doc__)
    # host=127.0.0.1 makes the SDK turn on its DNS-rebinding check with loopback Host
    # values allowed; drawbridge sends the upstream's own authority as Host, so it passes.
    server.run("streamable-http", host=LOOPBACK, port=int(port))


if __name__ == "__main__":
    main()
