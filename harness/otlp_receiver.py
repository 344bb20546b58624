"""A real OTLP/gRPC receiver (metrics and traces) that keeps what it is sent, for tests and the demo.

It stands in for an OpenTelemetry Collector, which cannot be installed here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span


def any_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    return getattr(value, kind) if kind else None


def attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: any_value(pair.value) for pair in pairs}


@dataclass
class Point:
    """One exported data point of a metric, flattened."""

    metric: str
    scope: str
    unit: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    value: float  # sum for counters and histograms
    count: int  # histogram count (1 for counters)
    bucket_bounds: list[float]
    time_unix_nano: int


@dataclass
class ExportedSpan:
    name: str
    kind: int
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: str
    trace_id: str
    span_id: str
    parent_span_id: str
    status_code: int
    status_message: str
    start_time_unix_nano: int
    end_time_unix_nano: int


class OTLPReceiver(metrics_service_pb2_grpc.MetricsServiceServicer, trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, port: int = 0, on_export: Callable[[str], None] | None = None, delay: float = 0) -> None:
        """`delay`: seconds each export waits before it is answered (a slow collector)."""
        self._lock = threading.Lock()
        self._delay = delay
        self.metric_requests: list[metrics_service_pb2.ExportMetricsServiceRequest] = []
        self.trace_requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self._on_export = on_export
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(self, self._server)
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port(f"127.0.0.1:{port}")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> OTLPReceiver:
        self._server.start()
        return self

    def stop(self, grace: float | None = 0.5) -> None:
        """Stop serving; `grace=None` refuses new exports at once, like a crashed collector."""
        self._server.stop(grace=grace).wait(2)

    def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 (gRPC method name)
        time.sleep(self._delay)
        with self._lock:
            if isinstance(request, metrics_service_pb2.ExportMetricsServiceRequest):
                self.metric_requests.append(request)
                signal, response = "metrics", metrics_service_pb2.ExportMetricsServiceResponse()
            else:
                self.trace_requests.append(request)
                signal, response = "traces", trace_service_pb2.ExportTraceServiceResponse()
        if self._on_export:
            self._on_export(signal)
        return response

    # -- reading what arrived --

    def points(self, metric: str) -> list[Point]:
        """Every exported data point of `metric`, oldest first."""
        with self._lock:
            requests = list(self.metric_requests)
        found: list[Point] = []
        for request in requests:
            for resource_metrics in request.resource_metrics:
                resource = attributes(resource_metrics.resource.attributes)
                for scope_metrics in resource_metrics.scope_metrics:
                    for m in scope_metrics.metrics:
                        if m.name != metric:
                            continue
                        found.extend(_flatten(m, scope_metrics.scope.name, resource))
        return found

    def latest(self, metric: str, **match: Any) -> list[Point]:
        """The newest cumulative point per attribute set whose attributes contain `match`."""
        newest: dict[tuple[Any, ...], Point] = {}
        for point in self.points(metric):
            if all(point.attributes.get(k.replace("__", ".")) == v for k, v in match.items()):
                labels = tuple(sorted((k, str(v)) for k, v in point.attributes.items()))
                key = (point.scope, labels, point.resource.get("service.instance.id"))
                if key not in newest or point.time_unix_nano >= newest[key].time_unix_nano:
                    newest[key] = point
        return list(newest.values())

    def spans(self) -> list[ExportedSpan]:
        with self._lock:
            requests = list(self.trace_requests)
        return [span for request in requests for span in _spans(request)]

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
        """Poll until `predicate()` is truthy; return its value or raise after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError("the OTLP receiver did not get the expected telemetry in time")
            time.sleep(0.1)


def _flatten(metric: Any, scope: str, resource: dict[str, Any]) -> Iterator[Point]:
    kind = metric.WhichOneof("data")
    data = getattr(metric, kind)
    for dp in data.data_points:
        if kind == "histogram":
            value, count, bounds = dp.sum, dp.count, list(dp.explicit_bounds)
        else:
            value = dp.as_int if dp.WhichOneof("value") == "as_int" else dp.as_double
            count, bounds = 1, []
        yield Point(
            metric.name,
            scope,
            metric.unit,
            attributes(dp.attributes),
            resource,
            value,
            count,
            bounds,
            dp.time_unix_nano,
        )


def _spans(request: trace_service_pb2.ExportTraceServiceRequest) -> Iterator[ExportedSpan]:
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                yield ExportedSpan(
                    name=span.name,
                    kind=span.kind,
                    attributes=attributes(span.attributes),
                    resource=resource,
                    scope=scope_spans.scope.name,
                    trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(),
                    parent_span_id=span.parent_span_id.hex(),
                    status_code=span.status.code,
                    status_message=span.status.message,
                    start_time_unix_nano=span.start_time_unix_nano,
                    end_time_unix_nano=span.end_time_unix_nano,
                )


SPAN_KIND_CLIENT = Span.SpanKind.SPAN_KIND_CLIENT
