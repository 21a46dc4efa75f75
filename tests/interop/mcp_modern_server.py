"""A stateless MCP server on revision 2026-07-28 (the official Python SDK's
`MCPServer`), for the revision's headers through the proxy. Its tools:
a plain one, one whose name is not ASCII (clients send it encoded in
`Mcp-Name`), and that one's twin the route denies. Every tool that runs
appends its name to the file given as argv[2]. Also a tool with an
`x-mcp-header` argument (`Mcp-Param-City`) and one that announces a
tools list change to `subscriptions/listen` streams. The SDK's server checks
`Mcp-Method`/`Mcp-Name` against the body itself, so a header the proxy
changed on the way would be refused here.
"""
import sys
from typing import Annotated

from pydantic import Field

from mcp.server.mcpserver import Context, MCPServer

RAN = sys.argv[2]
server = MCPServer("orders")


def ran(name: str) -> None:
    with open(RAN, "a", encoding="utf-8") as f:
        f.write(name + "\n")


@server.tool()
def search_orders(q: str) -> str:
    """Searches orders."""
    ran("search_orders")
    return f"found {q}"


@server.tool(name="weather/東京")
def weather_tokyo() -> str:
    """Tokyo's weather."""
    ran("weather/東京")
    return "晴れ"


@server.tool(name="admin/東京")
def admin_tokyo() -> str:
    """Resets Tokyo."""
    ran("admin/東京")
    return "reset"


@server.tool()
def forecast(city: Annotated[str, Field(json_schema_extra={"x-mcp-header": "City"})]) -> str:
    """A city's forecast. `city` travels in `Mcp-Param-City` too: the
    server refuses the call (-32020) if that header differs from the body."""
    ran("forecast")
    return f"sunny in {city}"


@server.tool()
async def touch_tools(ctx: Context) -> str:
    """Tells `subscriptions/listen` streams that the tool list changed."""
    await ctx.notify_tools_changed()
    return "touched"


if __name__ == "__main__":
    server.run(
        "streamable-http",
        host="127.0.0.1",
        port=int(sys.argv[1]),
        streamable_http_path="/mcp",
        stateless_http=True,
    )
