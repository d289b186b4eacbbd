"""Exports one span with the real OpenTelemetry Python SDK, configured by the environment only.

    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=... OTEL_EXPORTER_OTLP_HEADERS=... export_env.py SERVICE

The OTLP/HTTP protobuf exporter is built without arguments, so the endpoint and the headers are
what the SDK itself makes of the environment variables (the headers percent-decoded, as the
OpenTelemetry specification says). Prints the export result (SUCCESS or FAILURE) and exits 0
only on SUCCESS.
"""

import sys

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

service = sys.argv[1] if len(sys.argv) > 1 else "env-exporter"


class Keep(SpanExporter):
    """Keeps the finished spans, so the real exporter can be called with them and its result read."""

    def __init__(self):
        self.spans = []

    def export(self, spans):
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self):
        pass


keep = Keep()
provider = TracerProvider(resource=Resource.create({"service.name": service}))
provider.add_span_processor(SimpleSpanProcessor(keep))
with provider.get_tracer("oncall-test").start_as_current_span("GET /checkout"):
    pass

exporter = OTLPSpanExporter()  # endpoint and headers from the environment
result = exporter.export(keep.spans)
exporter.shutdown()
print(result.name)
sys.exit(0 if result == SpanExportResult.SUCCESS else 1)
