"""The official MCP Python SDK client calling `whoami` through headgate as
a voice platform does (`X-Call-Id`, the static route key). Prints the
tool's answer, or `ERROR <message>` when the call failed.

    mcp_whoami_client.py URL CALL_ID ROUTE_KEY
"""
import asyncio
import sys

from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


async def main(url, call_id, key):
    headers = {"X-Call-Id": call_id, "x-headgate-key": key}
    try:
        async with create_mcp_http_client(headers=headers) as http:
            async with streamable_http_client(url, http_client=http) as (read, write):
                async with ClientSession(read, write) as s:
                    await s.initialize()
                    r = await s.call_tool("whoami", {})
                    print(r.content[0].text)
    except BaseException as e:  # noqa: BLE001 - the test reads the message
        print("ERROR", repr(e))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
