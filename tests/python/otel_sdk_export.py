"""Export traces, logs and metrics to ProdSentinel with the official OpenTelemetry Python SDK.

    otel_sdk_export.py grpc 127.0.0.1:4317 <service-name>
    otel_sdk_export.py http http://127.0.0.1:4318 <service-name>

One checkout trace: a SERVER root span "POST /checkout" (status ERROR) with a child "charge card"
that records a ValueError (exception event, status ERROR) and logs it at ERROR inside the span;
one INFO log outside any span; a counter "checkout.requests" (+1, +2) and a histogram
"checkout.duration" (120 ms, 2500 ms). Everything is flushed before exit. Prints one JSON line
with the ids the caller should find in the database.
"""

import json
import logging
import sys
import time

from opentelemetry import trace
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode


def exporters(protocol, endpoint):
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        return (OTLPSpanExporter(endpoint=endpoint, insecure=True, timeout=10),
                OTLPLogExporter(endpoint=endpoint, insecure=True, timeout=10),
                OTLPMetricExporter(endpoint=endpoint, insecure=True, timeout=10))
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    return (OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", timeout=10),
            OTLPLogExporter(endpoint=f"{endpoint}/v1/logs", timeout=10),
            OTLPMetricExporter(endpoint=f"{endpoint}/v1/metrics", timeout=10))


def main():
    protocol, endpoint, service = sys.argv[1], sys.argv[2], sys.argv[3]
    span_exporter, log_exporter, metric_exporter = exporters(protocol, endpoint)
    resource = Resource.create({"service.name": service, "service.version": "1.0.0"})

    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))
    reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=3_600_000)
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])

    log = logging.getLogger("checkout")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(LoggingHandler(level=logging.INFO, logger_provider=logger_provider))

    tracer = tracer_provider.get_tracer("checkout")
    meter = meter_provider.get_meter("checkout")
    requests = meter.create_counter("checkout.requests", unit="{request}")
    duration = meter.create_histogram("checkout.duration", unit="ms")

    log.info("checkout service started")
    with tracer.start_as_current_span("POST /checkout", kind=SpanKind.SERVER) as root:
        root.set_attribute("order.id", 17)
        with tracer.start_as_current_span("charge card", kind=SpanKind.CLIENT,
                                          record_exception=False, set_status_on_exception=False) as child:
            time.sleep(0.02)
            try:
                raise ValueError("card declined by issuer")
            except ValueError as error:
                child.record_exception(error)
                child.set_status(Status(StatusCode.ERROR, "card declined"))
                log.error("payment failed", exc_info=True)
        root.set_status(Status(StatusCode.ERROR, "payment failed"))
        ids = {
            "trace_id": format(root.get_span_context().trace_id, "032x"),
            "root_span_id": format(root.get_span_context().span_id, "016x"),
            "child_span_id": format(child.get_span_context().span_id, "016x"),
        }
    requests.add(1, {"outcome": "ok"})
    requests.add(2, {"outcome": "ok"})
    duration.record(120.0, {"outcome": "ok"})
    duration.record(2500.0, {"outcome": "ok"})

    for provider in (tracer_provider, logger_provider, meter_provider):
        provider.force_flush()
        provider.shutdown()
    print(json.dumps(ids))


if __name__ == "__main__":
    main()
