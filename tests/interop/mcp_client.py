"""The official MCP Python SDK client, talking Streamable HTTP through
headgate the way Vapi does: a new connection per tool call, `X-Call-Id` and
a static route key as the only headers. Prints one JSON line."""
import asyncio
import json
import sys
import time

from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


async def session(url, headers, fn):
    async with create_mcp_http_client(headers=headers) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as s:
                await s.initialize()
                return await fn(s)


async def main(url, call_id, key):
    headers = {"X-Call-Id": call_id, "x-headgate-key": key}
    out = {}

    async def tools(s):
        return [t.name for t in (await s.list_tools()).tools]

    async def data(s):
        r = await s.call_tool("my_data", {})
        return r.content[0].text

    async def report(s):
        start = time.monotonic()
        seen = []

        async def on_progress(progress, total, message):
            seen.append(round(time.monotonic() - start, 3))

        r = await s.call_tool("slow_report", {"steps": 4}, progress_callback=on_progress)
        return {"progress": seen, "done": round(time.monotonic() - start, 3), "text": r.content[0].text}

    out["tools"] = await session(url, headers, tools)
    out["data"] = await session(url, headers, data)
    out["report"] = await session(url, headers, report)
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
