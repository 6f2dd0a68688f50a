"""A real OTLP/HTTP trace receiver for the tests.

Listens on 127.0.0.1 (port 0: a free one, printed as `listening PORT` on
stdout), accepts `POST /v1/traces` with an `application/x-protobuf` body,
decodes it with the official `opentelemetry-proto` package and appends one JSON
object per span to the file given as the first argument:

    {"trace_id": hex, "span_id": hex, "parent_span_id": hex or "", "name": str,
     "kind": int, "service": str, "attributes": {key: value}, "status": int}

Anything else is answered 404; a body that does not decode, 400 (so a broken
exporter fails the test rather than passing silently).
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

OUT = sys.argv[1]
LOCK = threading.Lock()


def value(v):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind) if kind else None


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if self.path != "/v1/traces":
            self.send_response(404)
            self.end_headers()
            return
        req = trace_service_pb2.ExportTraceServiceRequest()
        try:
            req.ParseFromString(body)
        except Exception as e:  # noqa: BLE001 - any decode failure is a 400
            self.send_response(400)
            self.end_headers()
            self.wfile.write(str(e).encode())
            return
        lines = []
        for rs in req.resource_spans:
            res = {kv.key: value(kv.value) for kv in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    lines.append(
                        json.dumps(
                            {
                                "trace_id": s.trace_id.hex(),
                                "span_id": s.span_id.hex(),
                                "parent_span_id": s.parent_span_id.hex(),
                                "name": s.name,
                                "kind": s.kind,
                                "service": res.get("service.name", ""),
                                "attributes": {kv.key: value(kv.value) for kv in s.attributes},
                                "status": s.status.code,
                            }
                        )
                    )
        with LOCK, open(OUT, "a", encoding="utf-8") as f:
            for line in lines:
                f.write(line + "\n")
        reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(f"listening {server.server_address[1]}", flush=True)
server.serve_forever()
