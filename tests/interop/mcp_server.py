"""A real bearer-auth MCP server (fastmcp + StaticTokenVerifier).

Each token belongs to one user; `my_data` returns only that user's data, so
a request that arrives with the wrong token gets the wrong user's data (or
401), and the test sees it. `slow_report` streams progress notifications.
"""
import asyncio
import sys

from fastmcp import Context, FastMCP
from fastmcp.server.auth.providers.jwt import StaticTokenVerifier
from fastmcp.server.dependencies import get_access_token

TOKENS = {
    "tok-alice-7c1": {"client_id": "alice", "scopes": []},
    "tok-bob-93e": {"client_id": "bob", "scopes": []},
}
DATA = {"alice": "orders of alice: 3", "bob": "orders of bob: 7"}

mcp = FastMCP("crm", auth=StaticTokenVerifier(tokens=TOKENS))


@mcp.tool
def my_data() -> str:
    """The caller's own records."""
    token = get_access_token()
    return DATA[token.client_id]


@mcp.tool
async def slow_report(steps: int, ctx: Context) -> str:
    """Reports progress once per step, 300 ms apart."""
    for i in range(steps):
        await ctx.report_progress(i + 1, steps, f"step {i + 1}")
        await asyncio.sleep(0.3)
    return "report done"


if __name__ == "__main__":
    mcp.run(transport="http", host="127.0.0.1", port=int(sys.argv[1]), path="/mcp", show_banner=False, log_level="warning")
