"""A fastmcp server whose tools change between runs, for pinned tool
definitions (`pin_tools`):

    mcp_pinned_server.py PORT RAN_FILE SMS_DESCRIPTION LOOKUP_NAME MODE

`send_sms` is described by SMS_DESCRIPTION and appends a line to RAN_FILE
each time it runs; the second tool is named LOOKUP_NAME (a rename is a new
tool). MODE `json` answers POSTs with JSON bodies, `sse` with event
streams; tools are listed one per page (`nextCursor`), so a held tool can
be on any page.
"""
import sys

from fastmcp import FastMCP

port, ran, sms_description, lookup_name, mode = sys.argv[1:6]
mcp = FastMCP("pinned", list_page_size=1)


def send_sms(to: str, text: str) -> str:
    with open(ran, "a") as f:
        f.write(f"send_sms {to}\n")
    return f"sent to {to}"


def lookup(order: str) -> str:
    return f"order {order}: shipped"


mcp.tool(send_sms, description=sms_description)
mcp.tool(lookup, name=lookup_name, description="Looks an order up.")

if __name__ == "__main__":
    mcp.run(transport="http", host="127.0.0.1", port=int(port), path="/mcp", show_banner=False,
            log_level="warning", json_response=(mode == "json"))
