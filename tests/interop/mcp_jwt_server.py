"""A fastmcp server that verifies bearer JWTs with fastmcp's own
JWTVerifier against a JWKS (the authorization server's, or headgate's
/.well-known/jwks.json), for the credentials tests.

    mcp_jwt_server.py PORT JWKS_URI ISSUER AUDIENCE ALGORITHM

Its tool `whoami` answers the verified claims as JSON: the test sees which
user (and tenant) each call reached the server as.
"""
import json
import sys

from fastmcp import FastMCP
from fastmcp.server.auth.providers.jwt import JWTVerifier
from fastmcp.server.dependencies import get_access_token

port, jwks, issuer, audience, alg = sys.argv[1:6]
verifier = JWTVerifier(jwks_uri=jwks, issuer=issuer, audience=audience, algorithm=alg)
mcp = FastMCP("crm", auth=verifier)


@mcp.tool
def whoami() -> str:
    """The caller, as the verified token says."""
    claims = get_access_token().claims
    return json.dumps({k: claims.get(k) for k in ("sub", "tenant", "iss", "aud", "client_id")})


if __name__ == "__main__":
    mcp.run(transport="http", host="127.0.0.1", port=int(port), path="/mcp", show_banner=False, log_level="warning")
