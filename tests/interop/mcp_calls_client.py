"""The official MCP Python SDK client making a series of tool calls
through headgate as one call (`X-Call-Id`):

    mcp_calls_client.py URL CALL_ID ROUTE_KEY CALLS_JSON

CALLS_JSON is a list of [tool, arguments]; the tool `tools/list` lists
the tools instead (every page). Prints one JSON line: for each call,
{"text": <the result's text>} or {"code": <error.data.code>, "message":
<error message>}, for a listing {"tools": [<names, sorted>]}.
"""
import asyncio
import json
import sys

from mcp import ClientSession, types
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


async def list_all(s):
    """Every page of the server's tools, as an agent lists them."""
    tools, cursor = [], None
    while True:
        page = await s.list_tools(params=types.PaginatedRequestParams(cursor=cursor) if cursor else None)
        tools += page.tools
        cursor = page.next_cursor
        if not cursor:
            return tools


async def main(url, call_id, key, calls):
    out = []
    headers = {"X-Call-Id": call_id, "x-headgate-key": key}
    async with create_mcp_http_client(headers=headers) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as s:
                await s.initialize()
                for tool, args in json.loads(calls):
                    if tool == "tools/list":
                        out.append({"tools": sorted(t.name for t in await list_all(s))})
                        continue
                    try:
                        r = await s.call_tool(tool, args)
                        out.append({"text": "".join(c.text for c in r.content if c.type == "text")})
                    except Exception as e:  # the SDK raises MCPError for a JSON-RPC error
                        err = getattr(e, "error", None)
                        data = getattr(err, "data", None) or {}
                        out.append({"code": data.get("code"), "message": getattr(err, "message", str(e))})
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
