"""The official MCP Python SDK client on revision 2026-07-28 through the
proxy. Its first `tools/call` of `search_orders` leaves with a wrong
`Mcp-Name` (an HTTP hook changes it, as a stale client's would differ):
the proxy must answer 400 / -32020 so the SDK re-lists and sends again.
Then the tool whose name is not ASCII, and its denied twin. Prints one
JSON line."""
import asyncio
import json
import sys
import time

from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


async def main(url, call_id, key):
    out = {"sent_names": [], "statuses": []}
    spoiled = False

    async def on_request(request):
        nonlocal spoiled
        name = request.headers.get("mcp-name")
        if name == "search_orders" and not spoiled:
            spoiled = True
            request.headers["mcp-name"] = "search_ordersX"
            name = "search_ordersX"
        if name is not None:
            out["sent_names"].append(name)
        out.setdefault("params", []).extend(v for k, v in request.headers.items() if k.lower().startswith("mcp-param-"))

    async def on_response(response):
        if response.request.headers.get("mcp-name") is not None:
            out["statuses"].append(response.status_code)

    http = create_mcp_http_client(headers={"X-Call-Id": call_id, "x-headgate-key": key})
    http.event_hooks = {"request": [on_request], "response": [on_response]}
    async with http:
        async with Client(streamable_http_client(url, http_client=http), mode="2026-07-28") as c:
            out["tools"] = sorted(t.name for t in (await c.list_tools()).tools)
            r = await c.call_tool("search_orders", {"q": "shoes"})
            out["search"] = r.content[0].text
            r = await c.call_tool("weather/東京", {})
            out["weather"] = r.content[0].text
            r = await c.call_tool("forecast", {"city": "東京"})
            out["forecast"] = r.content[0].text
            # A tools list change announced by a tool call reaches the
            # `subscriptions/listen` stream: how long it took.
            async with c.listen(tools_list_changed=True) as sub:
                started = time.perf_counter()
                await c.call_tool("touch_tools", {})
                async for _event in sub:
                    out["listen_ms"] = (time.perf_counter() - started) * 1000
                    break
            try:
                r = await c.call_tool("admin/東京", {})
                out["denied"] = {"ran": True, "result": [x.text for x in r.content]}
            except Exception as e:  # the SDK raises MCPError for a JSON-RPC error
                out["denied"] = {
                    "code": getattr(e, "code", None),
                    "message": str(e),
                    "data": getattr(getattr(e, "error", None), "data", None),
                }
    print(json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
