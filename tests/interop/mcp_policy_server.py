"""A fastmcp server with several tools, for the route's tool policy.

Every tool that runs appends its name to the file given as argv[2], so the
test can see that a denied tool never ran on the server.
"""
import sys

from fastmcp import FastMCP

RAN = sys.argv[2]
mcp = FastMCP("orders")


def ran(name: str) -> None:
    with open(RAN, "a") as f:
        f.write(name + "\n")


@mcp.tool
def search_orders(q: str) -> str:
    """Searches orders."""
    ran("search_orders")
    return f"found {q}"


@mcp.tool
def get_order(order_id: int) -> str:
    """One order."""
    ran("get_order")
    return f"order {order_id}"


@mcp.tool
def delete_account() -> str:
    """Deletes the caller's account."""
    ran("delete_account")
    return "deleted"


@mcp.tool
def admin_reset() -> str:
    """Resets everything."""
    ran("admin_reset")
    return "reset"


if __name__ == "__main__":
    mcp.run(transport="http", host="127.0.0.1", port=int(sys.argv[1]), path="/mcp", show_banner=False, log_level="warning")
