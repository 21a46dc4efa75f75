"""Runs the research folder's framing checks (own_fwd_framing.py: 25
smuggling and framing cases, raw bytes in, what a raw upstream parsed out)
against a headgate on PORT, over cleartext or with TLS on both sides: the
client's connection wrapped in TLS (trusting CA), the checks' raw upstream
serving TLS with CERT and KEY. The checks themselves are not changed: only
the two places that open a connection are wrapped.

usage: python3 bench/framing.py CHECKS.py PORT [CA CERT KEY]
"""
import ssl, sys

checks, port = sys.argv[1], sys.argv[2]
tls = sys.argv[3:6]
src = open(checks).read()
if tls:
    ca, cert, key = tls
    client = ssl.create_default_context(cafile=ca)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    opened = "s = socket.create_connection(PROXY); s.sendall(raw)"
    accepted = "c, _ = srv.accept()"
    assert opened in src and accepted in src, "the checks changed: update the wrapping"
    src = src.replace(opened, "s = CLIENT.wrap_socket(socket.create_connection(PROXY), server_hostname='localhost'); s.sendall(raw)")
    src = src.replace(accepted, "c, _ = srv.accept(); c = SERVER.wrap_socket(c, server_side=True)")
    env = {"CLIENT": client, "SERVER": server}
else:
    env = {}
sys.argv = [checks, port]
exec(compile(src, checks, "exec"), {"__name__": "__main__", **env})
