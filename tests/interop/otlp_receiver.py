"""An OTLP/HTTP traces receiver for tests: decodes every export with the
official opentelemetry-proto package and appends one JSON line per span to
the file given as argv[2]: ids in hex, name, kind, attributes."""
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

OUT = sys.argv[2]


def value(v):
    which = v.WhichOneof("value")
    return getattr(v, which) if which else None


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        req = trace_service_pb2.ExportTraceServiceRequest()
        req.ParseFromString(body)
        with open(OUT, "a") as f:
            for rs in req.resource_spans:
                service = {a.key: value(a.value) for a in rs.resource.attributes}.get("service.name")
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        f.write(json.dumps({
                            "service": service,
                            "trace_id": s.trace_id.hex(),
                            "span_id": s.span_id.hex(),
                            "parent_span_id": s.parent_span_id.hex(),
                            "name": s.name,
                            "kind": s.kind,
                            "attributes": {a.key: value(a.value) for a in s.attributes},
                        }) + "\n")
        out = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
