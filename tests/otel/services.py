"""Two small services instrumented with the real OpenTelemetry Python SDK, for oncall's tests.

    services.py payments   --port P --endpoint URL --token T --mode latency|errors|ok
    services.py storefront --port S --endpoint URL --token T --payments http://127.0.0.1:P [--bug-every N]

storefront serves GET /checkout: a fast database span, then a call to payments with W3C trace
context propagated in the HTTP headers. payments serves POST /authorize with a child span
provider.authorize that is slow (latency), fails (errors) or is fast (ok). With --bug-every N,
storefront's own code (span cart.totals) fails every Nth checkout with a 500. Both export their
spans over OTLP/HTTP protobuf to URL with the bearer token, and flush on SIGTERM.
"""

import argparse
import signal
import sys
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

p = argparse.ArgumentParser()
p.add_argument("service", choices=["storefront", "payments"])
p.add_argument("--port", type=int, required=True)
p.add_argument("--endpoint", required=True)
p.add_argument("--token", required=True)
p.add_argument("--mode", default="ok", choices=["ok", "latency", "errors"])
p.add_argument("--payments", default="")
p.add_argument("--delay", type=float, default=1.2)
# storefront only: a bug in its own code fails every Nth checkout (0: never), as a bad release would.
p.add_argument("--bug-every", type=int, default=0)
# payments only: how the downstream service presents itself (a scenario can play another service).
p.add_argument("--name", default="", help="service.name to report (default: the role)")
p.add_argument("--op", default="provider.authorize", help="the downstream call's span name")
p.add_argument("--error", default="card network unavailable", help="the downstream call's error")
args = p.parse_args()

provider = TracerProvider(resource=Resource.create({"service.name": args.name or args.service}))
exporter = OTLPSpanExporter(endpoint=args.endpoint, headers={"Authorization": f"Bearer {args.token}"})
provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=200))
tracer = provider.get_tracer("oncall-test")
propagator = TraceContextTextMapPropagator()


served = 0


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def reply(self, code, body=b"ok"):
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/ready":
            return self.reply(200)
        if args.service != "storefront" or self.path != "/checkout":
            return self.reply(404)
        with tracer.start_as_current_span("GET /checkout", kind=SpanKind.SERVER) as span:
            with tracer.start_as_current_span("SELECT orders", kind=SpanKind.CLIENT) as db:
                db.set_attribute("db.system", "postgresql")
                time.sleep(0.005)
            global served
            served += 1
            if args.bug_every and served % args.bug_every == 0:
                with tracer.start_as_current_span("cart.totals") as totals:
                    err = KeyError("currency")
                    totals.record_exception(err)
                    totals.set_status(Status(StatusCode.ERROR, "KeyError: 'currency'"))
                span.set_status(Status(StatusCode.ERROR, "internal error"))
                return self.reply(500, b"internal error")
            headers = {}
            propagator.inject(headers)
            req = urllib.request.Request(args.payments + "/authorize", data=b"{}", headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    r.read()
                self.reply(200)
            except Exception as e:  # the payment failed
                span.set_status(Status(StatusCode.ERROR, "payment failed"))
                self.reply(502, str(e).encode())

    def do_POST(self):
        if args.service != "payments" or self.path != "/authorize":
            return self.reply(404)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        # W3C extraction from a plain dict is case-sensitive: lower-case the keys.
        carrier = {k.lower(): v for k, v in self.headers.items()}
        ctx = propagator.extract(carrier)
        with tracer.start_as_current_span("POST /authorize", context=ctx, kind=SpanKind.SERVER) as span:
            with tracer.start_as_current_span(args.op, kind=SpanKind.CLIENT) as call:
                if args.mode == "latency":
                    time.sleep(args.delay)
                elif args.mode == "errors":
                    time.sleep(0.01)
                    call.set_status(Status(StatusCode.ERROR, args.error))
                    span.set_status(Status(StatusCode.ERROR, "authorization failed"))
                    return self.reply(502, args.error.encode())
                else:
                    time.sleep(0.01)
            self.reply(200)


server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)


def stop(*_):
    provider.shutdown()  # flushes the last spans
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
server.serve_forever()
