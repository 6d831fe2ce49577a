"""The demo's client transcript: a real MCP client (the official Python SDK) talking to
server-everything through drawbridge. Prints each step so a person can follow it.

Usage: client.py <route URL>
"""

from __future__ import annotations

import sys

import anyio
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client


async def transcript(url: str) -> None:
    print(f"client -> {url}")
    async with streamable_http_client(url) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            print(f"  initialize      -> {init.server_info.name} (protocol {init.protocol_version})")
            tools = (await session.list_tools()).tools
            print(f"  tools/list      -> {len(tools)} tools: {', '.join(t.name for t in tools[:6])}, ...")
            result = await session.call_tool("echo", {"message": "hello through drawbridge"})
            text = "".join(b.text for b in result.content if b.type == "text")
            print(f"  tools/call echo -> {text}")
            steps: list[float] = []

            async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                steps.append(progress)
                print(f"    progress {progress:g}/{total:g}" if total else f"    progress {progress:g}")

            await session.call_tool(
                "trigger-long-running-operation",
                {"duration": 1, "steps": 3},
                progress_callback=on_progress,
            )
            print(f"  tools/call trigger-long-running-operation -> streamed {len(steps)} progress events")
    print("  session closed (DELETE)")


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    async def bounded() -> None:
        with anyio.fail_after(60):
            await transcript(sys.argv[1])

    anyio.run(bounded)


if __name__ == "__main__":
    main()
