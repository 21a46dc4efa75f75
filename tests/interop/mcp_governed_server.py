"""A fastmcp server for the route's governance (budgets, max_result_bytes):

    mcp_governed_server.py PORT RAN_FILE MODE     (MODE: json | sse)

`send_sms` appends a line to RAN_FILE each time it runs (the test counts
the runs the server saw); `report` answers `size` bytes of text. MODE
`json` answers POSTs with JSON bodies, `sse` with event streams.
"""
import sys

from fastmcp import FastMCP

port, ran, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
mcp = FastMCP("governed")


@mcp.tool
def send_sms(to: str, text: str) -> str:
    """Sends a text message."""
    with open(ran, "a") as f:
        f.write(f"send_sms {to}\n")
    return f"sent to {to}"


@mcp.tool
def report(size: int) -> str:
    """A report of `size` bytes."""
    return "r" * size


if __name__ == "__main__":
    mcp.run(transport="http", host="127.0.0.1", port=port, path="/mcp", show_banner=False,
            log_level="warning", json_response=(mode == "json"))
