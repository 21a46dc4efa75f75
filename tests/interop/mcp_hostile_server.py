"""The policy server (mcp_policy_server.py) answering in shapes a filter
could misread, for the tools/list filter's fail-closed tests.

Usage: mcp_hostile_server.py PORT RAN_FILE MODE, MODE one of:
- gzip: JSON responses, gzip-compressed whenever the client accepts it;
- case: JSON responses labelled `Application/JSON`;
- ff: SSE responses with a 0xFF byte in delete_account's description;
- crlf: SSE responses whose events end in LF then CRLF;
- legacy: the legacy HTTP+SSE transport (responses on the GET stream).
"""
import sys

import uvicorn
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware

sys.argv, (port, ran, mode) = sys.argv[:3], sys.argv[1:4]
import mcp_policy_server  # noqa: E402  (reads RAN_FILE from argv[2])


class Mangle:
    """Rewrites what the app sends: headers on the response head, bytes in
    the body, as MODE asks."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def mangled(message):
            if message["type"] == "http.response.start":
                headers = []
                for k, v in message.get("headers", []):
                    if mode == "case" and k.lower() == b"content-type" and v.startswith(b"application/json"):
                        v = b"Application/JSON"
                    if mode in ("ff", "crlf") and k.lower() == b"content-length":
                        continue
                    headers.append((k, v))
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body":
                body = message.get("body", b"")
                if mode == "ff":
                    body = body.replace(b"Deletes the caller", b"Deletes \xffthe caller")
                if mode == "crlf":
                    body = body.replace(b"\r\n\r\n", b"\n\r\n").replace(b"\n\n", b"\n\r\n")
                message = {**message, "body": body}
            await send(message)

        return await self.app(scope, receive, mangled)


server = mcp_policy_server.mcp
if mode == "legacy":
    app = server.http_app(transport="sse", path="/messages/sse")
elif mode == "gzip":
    app = server.http_app(path="/mcp", json_response=True,
                          middleware=[Middleware(GZipMiddleware, minimum_size=1)])
elif mode == "case":
    app = server.http_app(path="/mcp", json_response=True, middleware=[Middleware(Mangle)])
else:
    app = server.http_app(path="/mcp", json_response=False, middleware=[Middleware(Mangle)])
uvicorn.run(app, host="127.0.0.1", port=int(port), log_level="warning")
