"""The official MCP Python SDK client over the legacy HTTP+SSE transport:
lists the tools and calls an allowed one and a denied one (each bounded
in time). Prints one JSON line like mcp_policy_client.py's."""
import asyncio
import json
import sys

from mcp import ClientSession
from mcp.client.sse import sse_client


async def main(url, call_id, key):
    headers = {"X-Call-Id": call_id, "x-headgate-key": key}
    out = {}
    async with sse_client(url, headers=headers) as (read, write):
        async with ClientSession(read, write) as s:
            await asyncio.wait_for(s.initialize(), 10)
            out["tools"] = sorted(t.name for t in (await asyncio.wait_for(s.list_tools(), 10)).tools)
            r = await asyncio.wait_for(s.call_tool("search_orders", {"q": "shoes"}), 10)
            out["allowed"] = r.content[0].text
            try:
                r = await asyncio.wait_for(s.call_tool("delete_account", {}), 10)
                out["denied"] = {"ran": True, "result": [c.text for c in r.content]}
            except asyncio.TimeoutError:
                out["denied"] = {"timeout": True}
            except Exception as e:
                err = getattr(e, "error", None)
                out["denied"] = {"message": getattr(err, "message", str(e)), "data": getattr(err, "data", None)}
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
