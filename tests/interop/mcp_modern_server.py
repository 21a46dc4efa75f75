"""A stateless MCP server on revision 2026-07-28 (the official Python SDK's
`MCPServer`), for the revision's headers through the proxy. Its tools:
a plain one, one whose name is not ASCII (clients send it encoded in
`Mcp-Name`), and that one's twin the route denies. Every tool that runs
appends its name to the file given as argv[2]. The SDK's server checks
`Mcp-Method`/`Mcp-Name` against the body itself, so a header the proxy
changed on the way would be refused here.
"""
import sys

from mcp.server.mcpserver import MCPServer

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


if __name__ == "__main__":
    server.run(
        "streamable-http",
        host="127.0.0.1",
        port=int(sys.argv[1]),
        streamable_http_path="/mcp",
        stateless_http=True,
    )
