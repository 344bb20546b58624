"""Exporter configuration from the standard OTEL_* variables: the span exporters and metric
readers (the SDK's own, wrapped so that a collector outage is one warning and a local encoding
error is told apart from it), the resource, and the exporters' own logging."""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter, SpanExportResult

log = logging.getLogger("genai")

DEFAULT_SERVICE_NAME = "mitmproxy-genai"
# Spans kept while the collector is down (the newest win; about 2 KB each), unless
# OTEL_BSP_MAX_QUEUE_SIZE is set: then that many wait, as many as the SDK's queue holds.
MAX_QUEUED_SPANS = 2048
# After a failed span export, later batches wait this long before the collector is tried again.
RETRY_AFTER_S = 2.0
# Spans per export request, as the SDK's batches (OTEL_BSP_MAX_EXPORT_BATCH_SIZE's default).
SPANS_PER_EXPORT = 512
# The SDK's span queue (OTEL_BSP_MAX_QUEUE_SIZE, SDK default 2048) fills in seconds at a few
# hundred calls per second while an export hangs; it drops what does not fit.
DEFAULT_SPAN_QUEUE = 8192
EXPORTER_CHOICES = ("otlp", "console", "none")
METRICS_ONLY_EXPORTERS = ("prometheus",)
# The Prometheus scrape endpoint binds loopback unless told otherwise (OpenTelemetry's default
# is "localhost"; an address reachable by others is a decision to make on purpose).
PROMETHEUS_DEFAULT_HOST = "127.0.0.1"
PROMETHEUS_DEFAULT_PORT = 9464


class ConfigurationError(ValueError):
    """A telemetry environment variable has a value this addon cannot honour."""


def _exporter_names(variable: str, choices: Sequence[str] = EXPORTER_CHOICES) -> list[str]:
    names = [n.strip().lower() for n in os.environ.get(variable, "otlp").split(",") if n.strip()]
    for name in names:
        if name not in choices:
            raise ConfigurationError(f"{variable}={name!r} is not supported; use one of {', '.join(choices)}")
    return [n for n in names if n != "none"]


_HOST_AND_PORT = re.compile(r"(?:[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:]+\]):[0-9]{1,5}")


def _collector_url(value: str) -> bool:
    """`http(s)://HOST[:PORT]`, or `HOST:PORT` (the exporter then uses TLS unless
    OTEL_EXPORTER_OTLP_INSECURE=true)."""
    if "://" not in value:
        return _HOST_AND_PORT.fullmatch(value) is not None
    url = urlsplit(value)
    try:
        url.port  # noqa: B018 (it raises on a port that is no number)
    except ValueError:
        return False
    return url.scheme in ("http", "https") and bool(url.hostname)


def _endpoint(signal: str) -> str:
    """The OTLP/gRPC endpoint of a signal, refused at start when it is no URL the exporter can use
    (`htp://…`, `http://host:port/x` with a port that is no number): found only at the first
    export, it would read as a collector that does not answer."""
    for variable in (f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        if value := os.environ.get(variable, "").strip():
            if not _collector_url(value):
                raise ConfigurationError(
                    f"{variable}={value!r} is not a collector URL; use http://HOST:PORT (OTLP/gRPC, e.g. "
                    "http://localhost:4317)"
                )
            return value
    return "http://localhost:4317"


class OutageLog:
    """One warning when a collector stops accepting data, one note when it is back."""

    def __init__(self, signal: str, endpoint: str, kept: str) -> None:
        self._signal = signal
        self._endpoint = endpoint
        self._kept = kept
        self._down = False

    def report(self, ok: bool, recovered: str = "") -> None:
        """`recovered`: what the note on recovery adds (what happened to the data that waited)."""
        if ok and self._down:
            self._down = False
            log.info("OpenTelemetry collector at %s accepts %s again%s.", self._endpoint, self._signal, recovered)
        elif not ok and not self._down:
            self._down = True
            log.warning(
                "OpenTelemetry collector at %s does not accept %s; traffic is unaffected, %s "
                "(set OTEL_EXPORTER_OTLP_ENDPOINT).",
                self._endpoint,
                self._signal,
                self._kept,
            )


class ExportErrorLog:
    """An exporter that raises has a local error (encoding a value, a bug), not an unreachable
    collector (the OTLP exporters return FAILURE for that): the first is logged with its traceback,
    the rest counted. Called from the `except` block."""

    def __init__(self, signal: str) -> None:
        self._signal = signal
        self.errors = 0

    def report(self, consequence: str) -> None:
        self.errors += 1
        log.log(
            logging.ERROR if self.errors == 1 else logging.DEBUG,
            "OpenTelemetry export of %s failed here, not at the collector; %s (%d such errors so far).",
            self._signal,
            consequence,
            self.errors,
            exc_info=self.errors == 1,
        )


def _later(delay_s: float, action: Callable[[], None]) -> None:
    timer = threading.Timer(delay_s, action)
    timer.daemon = True
    timer.start()


class GuardedSpanExporter(SpanExporter):
    """Turns export failures into `OutageLog` reports, and keeps failed spans for the next try.

    At most `kept` wait (the newest); they go out in requests of `slice_size` spans, as the SDK's
    own batches do, however many waited. After a failure, batches wait without trying for
    `retry_after_s`: a dead collector then costs one slow attempt now and then, not one per batch,
    and the SDK's own queue keeps draining instead of dropping spans. The waiting spans are tried
    again after that pause (`later` schedules it) even when no new span comes, so they reach a
    collector that is back without waiting for traffic: a short outage loses no span. A batch
    whose export raises is dropped (see `ExportErrorLog`): it would fail again. `dropped` counts
    the spans lost either way; the note on recovery and the exit line say it.
    """

    def __init__(
        self,
        inner: SpanExporter,
        outage: OutageLog,
        kept: int = MAX_QUEUED_SPANS,
        retry_after_s: float = RETRY_AFTER_S,
        clock: Callable[[], float] = time.monotonic,
        later: Callable[[float, Callable[[], None]], None] = _later,
        slice_size: int = SPANS_PER_EXPORT,
    ) -> None:
        self.inner = inner  # the exporter it guards
        self._outage = outage
        self._kept = kept
        self._slice = slice_size
        self._retry_after_s = retry_after_s
        self._clock = clock
        self._later = later
        self._lock = threading.Lock()  # the SDK's worker and the retry of waiting spans
        self._retry_scheduled = False
        self.export_errors = ExportErrorLog("spans")
        self._waiting: deque[ReadableSpan] = deque(maxlen=kept)
        self._retry_at = 0.0
        self.dropped = 0

    @property
    def kept(self) -> int:
        """How many spans may wait for the collector."""
        return self._kept

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock:
            return self._export(spans)

    def _export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        batch = [*self._waiting, *spans]
        self._waiting.clear()
        if self._clock() < self._retry_at:
            self._keep(batch)
            return SpanExportResult.FAILURE
        # In slices: what waited through an outage can be far more than one request may carry
        # (a Collector takes 4 MB per request by default).
        position = delivered = 0
        while position < len(batch):
            chunk = batch[position : position + self._slice]
            try:
                result = self.inner.export(chunk)
            except Exception:
                self.dropped += len(chunk)
                self.export_errors.report(f"a batch of {len(chunk)} spans is dropped")
            else:
                if result != SpanExportResult.SUCCESS:
                    break
                delivered += len(chunk)
            position += len(chunk)
        if position < len(batch):
            self._outage.report(False)
            self._retry_at = self._clock() + self._retry_after_s
            self._keep(batch[position:])
            return SpanExportResult.FAILURE
        if delivered:
            self._retry_at = 0.0
            self._outage.report(True, f"; {delivered} spans sent, {self.dropped} dropped in outages so far")
        return SpanExportResult.SUCCESS if delivered == len(batch) else SpanExportResult.FAILURE

    def _keep(self, spans: list[ReadableSpan]) -> None:
        """Spans wait for the next try (the newest `kept`), which is scheduled if none is."""
        self.dropped += max(len(self._waiting) + len(spans) - self._kept, 0)
        self._waiting.extend(spans)
        if not self._retry_scheduled:
            self._retry_scheduled = True
            self._later(max(self._retry_at - self._clock(), 0.0), self._retry_waiting)

    def _retry_waiting(self) -> None:
        with self._lock:
            self._retry_scheduled = False
            if self._waiting:
                self._export([])

    @property
    def waiting(self) -> int:
        """How many spans wait for the collector now."""
        return len(self._waiting)

    def shutdown(self) -> None:
        with self._lock:
            if self._waiting:
                self._retry_at = 0.0
                self._export([])
                self.dropped += len(self._waiting)  # the collector is still down: these are lost now
                self._waiting.clear()
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class GuardedMetricExporter(MetricExporter):
    """Turns export failures into `OutageLog` reports, exceptions into `ExportErrorLog` ones."""

    def __init__(self, inner: MetricExporter, outage: OutageLog) -> None:
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self.inner = inner  # the exporter it guards
        self._outage = outage
        self.export_errors = ExportErrorLog("metrics")

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        try:
            result = self.inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        except Exception:
            self.export_errors.report("the next export sends the totals again")
            return MetricExportResult.FAILURE
        self._outage.report(result == MetricExportResult.SUCCESS)
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.inner.shutdown(timeout_millis=timeout_millis, **kwargs)


def span_exporters() -> list[SpanExporter]:
    exporters: list[SpanExporter] = []
    queue = os.environ.get("OTEL_BSP_MAX_QUEUE_SIZE", "")
    kept = int(queue) if queue.isdigit() and int(queue) > 0 else MAX_QUEUED_SPANS
    for name in _exporter_names("OTEL_TRACES_EXPORTER"):
        if name == "console":
            exporters.append(ConsoleSpanExporter())
        else:
            outage = OutageLog("spans", _endpoint("traces"), f"up to {kept} spans wait for it")
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            exporters.append(GuardedSpanExporter(OTLPSpanExporter(), outage, kept))
    return exporters


def _prometheus_reader() -> MetricReader:
    """The OpenTelemetry Prometheus reader, served at OTEL_EXPORTER_PROMETHEUS_HOST:PORT/metrics."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import start_http_server

    host = os.environ.get("OTEL_EXPORTER_PROMETHEUS_HOST", PROMETHEUS_DEFAULT_HOST)
    port_text = os.environ.get("OTEL_EXPORTER_PROMETHEUS_PORT", str(PROMETHEUS_DEFAULT_PORT))
    if not port_text.isdigit():
        raise ConfigurationError(f"OTEL_EXPORTER_PROMETHEUS_PORT={port_text!r} is not a port number")
    reader = PrometheusMetricReader()
    try:
        start_http_server(int(port_text), addr=host)
    except OSError as error:
        raise ConfigurationError(f"cannot serve Prometheus metrics on {host}:{port_text}: {error}") from error
    log.info("Prometheus metrics at http://%s:%s/metrics", host, port_text)
    return reader


def metric_readers() -> list[MetricReader]:
    readers: list[MetricReader] = []
    for name in _exporter_names("OTEL_METRICS_EXPORTER", EXPORTER_CHOICES + METRICS_ONLY_EXPORTERS):
        exporter: MetricExporter
        if name == "prometheus":
            readers.append(_prometheus_reader())
            continue
        if name == "console":
            exporter = ConsoleMetricExporter()
        else:
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

            outage = OutageLog("metrics", _endpoint("metrics"), "metrics are cumulative and catch up when it is back")
            exporter = GuardedMetricExporter(OTLPMetricExporter(), outage)
        readers.append(PeriodicExportingMetricReader(exporter))
    return readers


def build_resource() -> Resource:
    """Standard variables win; otherwise a default service name and a fresh instance id.

    A unique `service.instance.id` keeps the cumulative series of several proxies apart.
    """
    defaults = Resource.create({"service.name": DEFAULT_SERVICE_NAME, "service.instance.id": str(uuid.uuid4())})
    return defaults.merge(OTELResourceDetector().detect())


def quiet_exporter_logs() -> None:
    """The gRPC exporter logs every retry and failure; `OutageLog` says it once instead.

    Also keeps exporter ERROR records away from mitmdump, which exits on errors at start-up.
    """
    logging.getLogger("opentelemetry.exporter.otlp.proto.grpc").setLevel(logging.CRITICAL)
