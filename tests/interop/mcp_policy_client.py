"""The official MCP Python SDK client against a route with a tool policy:
lists the tools, calls an allowed one and a denied one. Prints one JSON
line: the tools it saw, the allowed call's text, the denied call's error."""
import asyncio
import json
import sys

from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


async def main(url, call_id, key):
    headers = {"X-Call-Id": call_id, "x-headgate-key": key}
    out = {}
    async with create_mcp_http_client(headers=headers) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as s:
                await s.initialize()
                out["tools"] = sorted(t.name for t in (await s.list_tools()).tools)
                r = await s.call_tool("search_orders", {"q": "shoes"})
                out["allowed"] = r.content[0].text
                try:
                    r = await s.call_tool("delete_account", {})
                    out["denied"] = {"ran": True, "result": [c.text for c in r.content]}
                except Exception as e:  # the SDK raises McpError for a JSON-RPC error
                    err = getattr(e, "error", None)
                    out["denied"] = {
                        "message": getattr(err, "message", str(e)),
                        "data": getattr(err, "data", None),
                    }
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
