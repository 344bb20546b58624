"""OpenTelemetry side: providers, instruments, exporters, and `record` for a finished exchange.

This runs in its own process (`python telemetry.py`, started by `telemetry_process`), so neither
the SDK's per-measurement work nor span encoding competes with mitmproxy's event loop for the
GIL. Exports run on the SDK's background threads; `record` only updates in-memory state.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import IO, Any, TextIO

from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.metrics import CallbackOptions, Histogram, Meter, Observation
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, SpanFlags
from opentelemetry.proto.trace.v1.trace_pb2 import Status as ProtoStatus
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope as SdkScope
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

import protocol
import telemetry_process
from pricing import PriceTable
from protocol import Exchange, FinishedCall, RateLimits
from summary import UsageSummary

log = logging.getLogger("genai.telemetry")

DEFAULT_SERVICE_NAME = "mitmproxy-genai"
SCOPE_NAME = "mitmproxy-genai"
LEGACY_SCOPE_NAME = "openai.meter"
# A bounded shutdown: flush what is pending, then close the exporters.
SHUTDOWN_BUDGET_S = telemetry_process.SHUTDOWN_BUDGET_S

TOKEN_BUCKETS = [4**i for i in range(14)]  # 1, 4, 16, ... 67108864
DURATION_BUCKETS = [0.01 * 2**i for i in range(14)]  # 0.01 ... 81.92
COST_BUCKETS = [0.00001 * 4**i for i in range(13)]  # $0.00001 ... $167
MAX_DISTINCT_VALUES = 500
# Spans kept while the collector is down (the newest win): about 2 KB each.
MAX_QUEUED_SPANS = 2048
# After a failed span export, later batches wait this long before the collector is tried again.
RETRY_AFTER_S = 2.0
# Encoded attributes kept for reuse by `SpanEncoder`; beyond this many it starts afresh.
MAX_ENCODED_ATTRIBUTES = 4096
# The SDK's span queue (OTEL_BSP_MAX_QUEUE_SIZE, SDK default 2048) fills in seconds at a few
# hundred calls per second while an export hangs; it drops what does not fit.
DEFAULT_SPAN_QUEUE = 8192
OVERFLOW_VALUE = "_OTHER"

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


def _endpoint(signal: str) -> str:
    return (
        os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or "http://localhost:4317"
    )


class _OutageLog:
    """One warning when a collector stops accepting data, one note when it is back."""

    def __init__(self, signal: str, endpoint: str, kept: str) -> None:
        self._signal = signal
        self._endpoint = endpoint
        self._kept = kept
        self._down = False

    def report(self, ok: bool) -> None:
        if ok and self._down:
            self._down = False
            log.info("OpenTelemetry collector at %s accepts %s again.", self._endpoint, self._signal)
        elif not ok and not self._down:
            self._down = True
            log.warning(
                "OpenTelemetry collector at %s does not accept %s; traffic is unaffected, %s "
                "(set OTEL_EXPORTER_OTLP_ENDPOINT).",
                self._endpoint,
                self._signal,
                self._kept,
            )


class _GuardedSpanExporter(SpanExporter):
    """Turns export failures into `_OutageLog` reports, and keeps failed spans for the next try.

    At most `MAX_QUEUED_SPANS` wait (the newest); they go out with the next batch once the
    collector accepts data again, so a short outage loses no span. After a failure, batches wait
    without trying for `RETRY_AFTER_S`: a dead collector then costs one slow attempt now and then,
    not one per batch, and the SDK's own queue keeps draining instead of dropping spans.
    """

    def __init__(self, inner: SpanExporter, outage: _OutageLog) -> None:
        self._inner = inner
        self._outage = outage
        self._waiting: deque[ReadableSpan] = deque(maxlen=MAX_QUEUED_SPANS)
        self._retry_at = 0.0
        self.dropped = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        batch = [*self._waiting, *spans]
        self._waiting.clear()
        if time.monotonic() < self._retry_at:
            result = SpanExportResult.FAILURE
        else:
            try:
                result = self._inner.export(batch)
            except Exception:
                result = SpanExportResult.FAILURE
            self._outage.report(result == SpanExportResult.SUCCESS)
            self._retry_at = 0.0 if result == SpanExportResult.SUCCESS else time.monotonic() + RETRY_AFTER_S
        if result != SpanExportResult.SUCCESS:
            self.dropped += max(len(batch) - MAX_QUEUED_SPANS, 0)
            self._waiting.extend(batch)
        return result

    def shutdown(self) -> None:
        if self._waiting:
            self._retry_at = 0.0
            self.export([])
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class _GuardedMetricExporter(MetricExporter):
    """Turns export failures and exceptions into `_OutageLog` reports."""

    def __init__(self, inner: MetricExporter, outage: _OutageLog) -> None:
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self._inner = inner
        self._outage = outage

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        try:
            result = self._inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        except Exception:
            result = MetricExportResult.FAILURE
        self._outage.report(result == MetricExportResult.SUCCESS)
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)


_SPAN_KINDS = {
    SpanKind.INTERNAL: Span.SpanKind.SPAN_KIND_INTERNAL,
    SpanKind.SERVER: Span.SpanKind.SPAN_KIND_SERVER,
    SpanKind.CLIENT: Span.SpanKind.SPAN_KIND_CLIENT,
    SpanKind.PRODUCER: Span.SpanKind.SPAN_KIND_PRODUCER,
    SpanKind.CONSUMER: Span.SpanKind.SPAN_KIND_CONSUMER,
}

_STATUS_CODES = {
    StatusCode.UNSET: ProtoStatus.STATUS_CODE_UNSET,
    StatusCode.OK: ProtoStatus.STATUS_CODE_OK,
    StatusCode.ERROR: ProtoStatus.STATUS_CODE_ERROR,
}


def _any_value(value: Any) -> AnyValue:
    """A span or resource attribute value (the SDK allows these types and sequences of them, where
    an item may also be None)."""
    if value is None:
        return AnyValue()
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, Sequence):
        return AnyValue(array_value=ArrayValue(values=[_any_value(item) for item in value]))
    raise TypeError(f"attribute value of type {type(value).__name__}")


def _length_delimited(field_number: int, payload: bytes) -> bytes:
    """`payload` as one protobuf field of wire type 2: tag, length as a varint, bytes (fields
    numbered below 16 only, whose tag is one byte)."""
    assert field_number < 16
    out = bytearray([field_number << 3 | 2])
    size = len(payload)
    while size > 0x7F:
        out.append(size & 0x7F | 0x80)
        size >>= 7
    out.append(size)
    return bytes(out + payload)


SPAN_ATTRIBUTES_FIELD = Span.DESCRIPTOR.fields_by_name["attributes"].number


class SpanEncoder:
    """OTLP encoding of finished spans, equal to the SDK's `encode_spans`, but reusing the encoded
    form of attribute values that repeat from call to call.

    The SDK builds two protobuf messages per attribute in Python and copies them twice on the way
    into the request: about 70 µs for one of our spans, the largest share of this process's work
    per call. Most of our attributes (operation, provider, host, model, masked key, status, finish
    reasons) are the same on every call: their wire bytes are kept, and a span's attributes are
    merged in from the joined bytes in one call to protobuf's C parser. Values keep their type in
    the cache key (1, 1.0 and True are equal in Python, not in OTLP). Spans with events or links
    (ours have none) go to the SDK's encoder.
    """

    def __init__(self, max_cached: int = MAX_ENCODED_ATTRIBUTES) -> None:
        self.max_cached = max_cached
        self._encoded: dict[tuple[str, type, Any], bytes] = {}

    def __call__(self, spans: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
        if any(span.events or span.links for span in spans):
            return encode_spans(spans)
        # Grouped by resource and scope as the SDK does, but by identity first: a Resource hashes
        # by serializing its attributes to JSON, and all spans of a provider share one.
        by_identity: dict[int, tuple[Resource, dict[SdkScope | None, list[ReadableSpan]]]] = {}
        for span in spans:
            entry = by_identity.get(id(span.resource))
            if entry is None:
                entry = by_identity[id(span.resource)] = (span.resource, {})
            entry[1].setdefault(span.instrumentation_scope, []).append(span)
        grouped: dict[Resource, dict[SdkScope | None, list[ReadableSpan]]] = {}
        for resource, by_scope in by_identity.values():
            merged = grouped.setdefault(resource, {})
            for scope, scope_spans in by_scope.items():
                merged.setdefault(scope, []).extend(scope_spans)
        # Built in place: a message handed to a parent's constructor is copied, with all its attributes.
        request = ExportTraceServiceRequest()
        for resource, by_scope in grouped.items():
            resource_spans = request.resource_spans.add(schema_url=resource.schema_url)
            resource_spans.resource.attributes.extend(_key_values(resource.attributes))
            for scope, scope_spans in by_scope.items():
                encoded = resource_spans.scope_spans.add(schema_url=(scope.schema_url if scope else "") or "")
                if scope is not None:
                    encoded.scope.name = scope.name
                    encoded.scope.version = scope.version or ""
                    encoded.scope.attributes.extend(_key_values(scope.attributes))
                for span in scope_spans:
                    self._add_span(encoded.spans, span)
        return request

    def _add_span(self, spans: Any, span: ReadableSpan) -> None:
        context = span.get_span_context()
        assert context is not None
        parent = span.parent
        flags: int = SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
        if parent is not None and parent.is_remote:
            flags |= SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK
        encoded = spans.add(
            trace_id=context.trace_id.to_bytes(16, "big"),
            span_id=context.span_id.to_bytes(8, "big"),
            trace_state=",".join(f"{key}={value}" for key, value in context.trace_state.items()),
            parent_span_id=parent.span_id.to_bytes(8, "big") if parent else b"",
            name=span.name,
            kind=_SPAN_KINDS[span.kind],
            start_time_unix_nano=span.start_time or 0,
            end_time_unix_nano=span.end_time or 0,
            status=ProtoStatus(code=_STATUS_CODES[span.status.status_code], message=span.status.description or ""),
            dropped_attributes_count=span.dropped_attributes,
            flags=flags,
        )
        encoded.MergeFromString(self._attribute_bytes(span.attributes))

    def _attribute_bytes(self, attributes: Mapping[str, Any] | None) -> bytes:
        """The span's attributes as wire bytes of its repeated `attributes` field."""
        parts = []
        for key, value in (attributes or {}).items():
            cache_key = (key, type(value), value)
            entry = self._encoded.get(cache_key)
            if entry is None:
                pair = KeyValue(key=key, value=_any_value(value))
                entry = _length_delimited(SPAN_ATTRIBUTES_FIELD, pair.SerializeToString())
                if type(value) is not tuple or all(type(item) is str for item in value):
                    if len(self._encoded) >= self.max_cached:
                        self._encoded.clear()
                    self._encoded[cache_key] = entry
            parts.append(entry)
        return b"".join(parts)


def _key_values(attributes: Mapping[str, Any] | None) -> list[KeyValue]:
    return [KeyValue(key=key, value=_any_value(value)) for key, value in (attributes or {}).items()]


def _otlp_span_exporter() -> SpanExporter:
    """The OTLP/gRPC span exporter, with `SpanEncoder` in place of the SDK's encoding."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    class Exporter(OTLPSpanExporter):
        def __init__(self) -> None:
            super().__init__()
            self.encode = SpanEncoder()

        def _translate_data(self, data: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
            return self.encode(data)

    return Exporter()


def _span_exporters() -> list[SpanExporter]:
    exporters: list[SpanExporter] = []
    for name in _exporter_names("OTEL_TRACES_EXPORTER"):
        if name == "console":
            exporters.append(ConsoleSpanExporter())
        else:
            outage = _OutageLog("spans", _endpoint("traces"), f"up to {MAX_QUEUED_SPANS} spans wait for it")
            exporters.append(_GuardedSpanExporter(_otlp_span_exporter(), outage))
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


def _metric_readers() -> list[MetricReader]:
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

            outage = _OutageLog("metrics", _endpoint("metrics"), "metrics are cumulative and catch up when it is back")
            exporter = _GuardedMetricExporter(OTLPMetricExporter(), outage)
        readers.append(PeriodicExportingMetricReader(exporter))
    return readers


def build_resource() -> Resource:
    """Standard variables win; otherwise a default service name and a fresh instance id.

    A unique `service.instance.id` keeps the cumulative series of several proxies apart.
    """
    defaults = Resource.create({"service.name": DEFAULT_SERVICE_NAME, "service.instance.id": str(uuid.uuid4())})
    return defaults.merge(OTELResourceDetector().detect())


def _quiet_exporter_logs() -> None:
    """The gRPC exporter logs every retry and failure; `_OutageLog` says it once instead.

    Also keeps exporter ERROR records away from mitmdump, which exits on errors at start-up.
    """
    logging.getLogger("opentelemetry.exporter.otlp.proto.grpc").setLevel(logging.CRITICAL)


class BoundedValues:
    """At most `limit` distinct values per metric attribute; newcomers after that become `_OTHER`.

    Model names, error codes, glob-matched hosts and keys come from clients or upstreams: without
    a bound, a hostile client could create one time series per request.
    """

    def __init__(self, limit: int = MAX_DISTINCT_VALUES) -> None:
        self.limit = limit
        self._seen: dict[str, set[str]] = {}

    def __call__(self, key: str, value: str) -> str:
        seen = self._seen.setdefault(key, set())
        if value in seen:
            return value
        if len(seen) < self.limit:
            seen.add(value)
            return value
        if len(seen) == self.limit:
            seen.add(OVERFLOW_VALUE)
            log.warning(
                "More than %d distinct values of %s; further ones are recorded as %s.", self.limit, key, OVERFLOW_VALUE
            )
        return OVERFLOW_VALUE


def _attributes(exchange: Exchange, bounded: BoundedValues) -> dict[str, Any]:
    """The low-cardinality attributes every metric of an exchange carries."""
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": exchange.operation,
        "gen_ai.provider.name": exchange.provider,
        "server.address": bounded("server.address", exchange.server_address),
        "server.port": exchange.server_port,
    }
    if exchange.request_model:
        attributes["gen_ai.request.model"] = bounded("gen_ai.request.model", exchange.request_model)
    if exchange.result.response_model:
        attributes["gen_ai.response.model"] = bounded("gen_ai.response.model", exchange.result.response_model)
    if exchange.error_type:
        attributes["error.type"] = bounded("error.type", exchange.error_type)
    return attributes


def _span_attributes(exchange: Exchange, metric_attributes: Mapping[str, Any]) -> dict[str, Any]:
    request, result, usage = exchange.request, exchange.result, exchange.usage
    upstream, limits = exchange.upstream, exchange.upstream.rate_limits
    candidates: dict[str, Any] = {
        **metric_attributes,
        "openai.api.type": exchange.endpoint.api_type,
        "openai.api_key.masked": exchange.api_key,
        "gen_ai.request.temperature": request.temperature,
        "gen_ai.request.top_p": request.top_p,
        "gen_ai.request.max_tokens": request.max_tokens,
        "gen_ai.request.frequency_penalty": request.frequency_penalty,
        "gen_ai.request.presence_penalty": request.presence_penalty,
        "gen_ai.request.stop_sequences": request.stop_sequences,
        "gen_ai.request.seed": request.seed,
        "gen_ai.request.choice.count": request.choice_count if request.choice_count != 1 else None,
        "gen_ai.request.stream": True if request.stream else None,
        "gen_ai.request.encoding_formats": request.encoding_formats,
        "gen_ai.embeddings.dimension.count": request.dimensions,
        "gen_ai.output.type": request.output_type,
        "openai.request.service_tier": request.service_tier if request.service_tier != "auto" else None,
        "gen_ai.response.id": result.response_id,
        "gen_ai.response.finish_reasons": result.finish_reasons or None,
        "openai.response.service_tier": result.service_tier,
        "openai.response.system_fingerprint": result.system_fingerprint,
        "gen_ai.response.time_to_first_chunk": exchange.time_to_first_chunk_s,
        "http.response.status_code": exchange.status_code,
        "gen_ai.usage.cost_usd": exchange.cost_usd,
        "openai.request.id": upstream.request_id,
        "openai.response.processing_ms": upstream.processing_ms,
        "openai.ratelimit.remaining_requests": limits.remaining_requests,
        "openai.ratelimit.remaining_tokens": limits.remaining_tokens,
        "openai.ratelimit.reset_requests_s": limits.reset_requests_s,
        "openai.ratelimit.reset_tokens_s": limits.reset_tokens_s,
    }
    if exchange.content is not None:
        candidates |= {
            "gen_ai.system_instructions": exchange.content.system_instructions,
            "gen_ai.input.messages": exchange.content.input_messages,
            "gen_ai.output.messages": exchange.content.output_messages,
        }
    if usage is not None:
        candidates |= {
            "gen_ai.usage.input_tokens": usage.input_tokens,
            "gen_ai.usage.output_tokens": usage.output_tokens,
            "gen_ai.usage.cache_read.input_tokens": usage.cached_input_tokens,
            "gen_ai.usage.reasoning.output_tokens": usage.reasoning_output_tokens,
        }
    return {key: value for key, value in candidates.items() if value is not None}


Labels = tuple[tuple[str, str], ...]


class LatestValues:
    """The latest rate limits per attribute set, read by observable gauges at export time."""

    def __init__(self) -> None:
        self._latest: dict[Labels, RateLimits] = {}
        self._lock = threading.Lock()

    def set(self, attributes: Labels, limits: RateLimits) -> None:
        with self._lock:
            self._latest[attributes] = limits

    def callback(self, field: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            with self._lock:
                latest = list(self._latest.items())
            return [
                Observation(value, dict(attributes))
                for attributes, limits in latest
                if (value := getattr(limits, field)) is not None
            ]

        return observe


class CumulativeSums:
    """Monotonic sums per counter and attribute set, read by observable counters at export time."""

    def __init__(self) -> None:
        self._sums: dict[str, dict[Labels, int]] = {}
        self._lock = threading.Lock()

    def add(self, counter: str, attributes: Labels, value: int) -> None:
        with self._lock:
            sums = self._sums.setdefault(counter, {})
            sums[attributes] = sums.get(attributes, 0) + value

    def callback(self, counter: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            with self._lock:
                sums = list(self._sums.get(counter, {}).items())
            return [Observation(value, dict(attributes)) for attributes, value in sums]

        return observe


def _histogram(meter: Meter, name: str, unit: str, description: str, buckets: Sequence[float]) -> Histogram:
    """A histogram with the bucket boundaries the conventions advise."""
    return meter.create_histogram(name, unit=unit, description=description, explicit_bucket_boundaries_advisory=buckets)


def latest_experimental_opted_in() -> bool:
    """`OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental` (a comma-separated list)."""
    values = os.environ.get("OTEL_SEMCONV_STABILITY_OPT_IN", "")
    return "gen_ai_latest_experimental" in {value.strip() for value in values.split(",")}


class _LatestExperimental:
    """The unreleased GenAI metric names, emitted in addition when the user opts in.

    Counters per token kind (a subset relation, as in the convention: cache_read is part of
    input, reasoning part of output) and per-call histograms.
    """

    def __init__(self, meter: Meter) -> None:
        def duration(name: str, description: str) -> Histogram:
            return _histogram(meter, name, "s", description, DURATION_BUCKETS)

        def tokens(name: str, description: str) -> Histogram:
            return _histogram(meter, name, "{token}", description, TOKEN_BUCKETS)

        prefix = "gen_ai.client.inference"
        self.duration = duration(f"{prefix}.duration", "GenAI inference duration.")
        self.time_to_first_chunk = duration(f"{prefix}.time_to_first_chunk", "Time to the first output chunk.")
        self.time_per_output_chunk = duration(f"{prefix}.time_per_output_chunk", "Time per output chunk.")
        self.input_per_call = tokens(f"{prefix}.operation.input_tokens", "Input tokens of one call.")
        self.output_per_call = tokens(f"{prefix}.operation.output_tokens", "Output tokens of one call.")
        self.counters = {
            kind: meter.create_counter(f"{prefix}.usage.{kind}", unit="{token}", description=f"Tokens: {kind}.")
            # cache_write.input_tokens is left out: OpenAI's usage does not report cache writes.
            for kind in ("input_tokens", "output_tokens", "cache_read.input_tokens", "reasoning.output_tokens")
        }

    def record(self, exchange: Exchange, attributes: Mapping[str, Any]) -> None:
        self.duration.record(exchange.duration_s, attributes)
        if exchange.time_to_first_chunk_s is not None:
            self.time_to_first_chunk.record(exchange.time_to_first_chunk_s, attributes)
        for interval in exchange.chunk_intervals_s:
            self.time_per_output_chunk.record(interval, attributes)
        usage = exchange.usage
        if usage is None:
            return
        # The API does not say which modality the tokens were; the convention's value for that.
        counted = {**attributes, "gen_ai.token.modality": "unknown"}
        for kind, value in (
            ("input_tokens", usage.input_tokens),
            ("output_tokens", usage.output_tokens),
            ("cache_read.input_tokens", usage.cached_input_tokens),
            ("reasoning.output_tokens", usage.reasoning_output_tokens),
        ):
            if value is not None:
                self.counters[kind].add(value, counted)
        if usage.input_tokens is not None:
            self.input_per_call.record(usage.input_tokens, attributes)
        if usage.output_tokens is not None:
            self.output_per_call.record(usage.output_tokens, attributes)


class Telemetry:
    """The process's providers and instruments."""

    def __init__(
        self,
        span_exporters: Sequence[SpanExporter] | None = None,
        metric_readers: Sequence[MetricReader] | None = None,
    ) -> None:
        """Exporters and readers come from the standard OTEL_* variables unless given."""
        resource = build_resource()
        span_exporters = _span_exporters() if span_exporters is None else span_exporters
        metric_readers = _metric_readers() if metric_readers is None else metric_readers
        _quiet_exporter_logs()
        self.tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        queue_size = None if "OTEL_BSP_MAX_QUEUE_SIZE" in os.environ else DEFAULT_SPAN_QUEUE
        for exporter in span_exporters:
            self.tracer_provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=queue_size))
        self.meter_provider = MeterProvider(resource=resource, metric_readers=metric_readers, shutdown_on_exit=False)
        self._tracer = self.tracer_provider.get_tracer(SCOPE_NAME)
        self._propagator = TraceContextTextMapPropagator()
        self.bounded = BoundedValues()
        # Calls passed on unparsed are priced here; the addon sends its table (`use_prices`).
        self.prices = PriceTable.load()
        self.summary = UsageSummary()

        meter = self.meter_provider.get_meter(SCOPE_NAME)

        def histogram(name: str, unit: str, description: str, buckets: Sequence[float]) -> Histogram:
            return _histogram(meter, name, unit, description, buckets)

        self.token_usage = histogram(
            "gen_ai.client.token.usage", "{token}", "Number of input and output tokens used.", TOKEN_BUCKETS
        )
        self.cache_read_tokens = histogram(
            "gen_ai.client.token.cache_read",
            "{token}",
            "Input tokens served from the prompt cache: a part of the input tokens, not in addition to them.",
            TOKEN_BUCKETS,
        )
        self.reasoning_tokens = histogram(
            "gen_ai.client.token.reasoning",
            "{token}",
            "Reasoning tokens: a part of the output tokens, not in addition to them.",
            TOKEN_BUCKETS,
        )
        self.token_cost = histogram(
            "gen_ai.client.token.cost", "USD", "Cost of one call from the price table.", COST_BUCKETS
        )
        self.operation_duration = histogram(
            "gen_ai.client.operation.duration", "s", "GenAI operation duration.", DURATION_BUCKETS
        )
        self.time_to_first_chunk = histogram(
            "gen_ai.client.operation.time_to_first_chunk",
            "s",
            "Time to receive the first chunk in a streaming operation.",
            DURATION_BUCKETS,
        )
        self.time_per_output_chunk = histogram(
            "gen_ai.client.operation.time_per_output_chunk",
            "s",
            "Time between consecutive output chunks after the first, in a streaming operation.",
            DURATION_BUCKETS,
        )
        # Rate limits are observed at export time from the latest values: no per-call measurement.
        self.rate_limits = LatestValues()
        for field, unit, description in (
            ("remaining_requests", "{request}", "Requests left in the current rate-limit window."),
            ("remaining_tokens", "{token}", "Tokens left in the current rate-limit window."),
            ("limit_requests", "{request}", "Requests allowed per rate-limit window."),
            ("limit_tokens", "{token}", "Tokens allowed per rate-limit window."),
        ):
            meter.create_observable_gauge(
                f"openai.ratelimit.{field}",
                callbacks=[self.rate_limits.callback(field)],
                unit=unit,
                description=description,
            )
        self.latest_experimental = _LatestExperimental(meter) if latest_experimental_opted_in() else None

        # The original product's counters, summed here and observed at export time: the same
        # monotonic cumulative sums as counters, without three measurements per call.
        self.legacy = CumulativeSums()
        legacy = self.meter_provider.get_meter(LEGACY_SCOPE_NAME)
        for name, description in (
            ("tokens_counter", "The number of tokens generated by model"),
            ("prompt_tokens", "The number of prompt tokens in a chat completion"),
            ("completion_tokens", "The number of completion tokens in a chat completion"),
        ):
            legacy.create_observable_counter(
                name, callbacks=[self.legacy.callback(name)], unit="1", description=description
            )

    def record_call(self, call: FinishedCall, *, legacy_metrics: bool, legacy_completion_id: bool) -> None:
        """Parse what the proxy passed on unparsed, price and record the call (see `record`)."""
        exchange = protocol.exchange_of(call)
        exchange.cost_usd = self.prices.cost_of(exchange)
        self.record(exchange, legacy_metrics=legacy_metrics, legacy_completion_id=legacy_completion_id)

    def record(self, exchange: Exchange, *, legacy_metrics: bool, legacy_completion_id: bool) -> None:
        """Record one finished exchange as metrics, a span and a summary row. No I/O happens here."""
        self.summary.add(exchange)
        attributes = _attributes(exchange, self.bounded)
        self.operation_duration.record(exchange.duration_s, attributes)
        if exchange.time_to_first_chunk_s is not None:
            self.time_to_first_chunk.record(exchange.time_to_first_chunk_s, attributes)
        for interval in exchange.chunk_intervals_s:
            self.time_per_output_chunk.record(interval, attributes)
        usage = exchange.usage
        if usage is not None:
            for token_type, value in (("input", usage.input_tokens), ("output", usage.output_tokens)):
                if value is not None:
                    self.token_usage.record(value, attributes | {"gen_ai.token.type": token_type})
            # Zeros add nothing to these sums; skipping them saves two measurements per call.
            if usage.cached_input_tokens:
                self.cache_read_tokens.record(usage.cached_input_tokens, attributes)
            if usage.reasoning_output_tokens:
                self.reasoning_tokens.record(usage.reasoning_output_tokens, attributes)
            if legacy_metrics:
                self._record_legacy(exchange, legacy_completion_id)
        if exchange.cost_usd is not None:
            self.token_cost.record(exchange.cost_usd, attributes)
        self._record_rate_limits(exchange)
        if self.latest_experimental is not None:
            self.latest_experimental.record(exchange, attributes)
        self._record_span(exchange, attributes)

    def _record_rate_limits(self, exchange: Exchange) -> None:
        limits = exchange.upstream.rate_limits
        if not limits.known():
            return
        attributes = (
            ("gen_ai.request.model", self.bounded("gen_ai.request.model", exchange.request_model or "unknown")),
            ("gen_ai.provider.name", exchange.provider),
            ("server.address", self.bounded("server.address", exchange.server_address)),
            ("openai.api_key.masked", self.bounded("openai.api_key.masked", exchange.api_key)),
        )
        self.rate_limits.set(attributes, limits)

    def _record_legacy(self, exchange: Exchange, with_completion_id: bool) -> None:
        usage = exchange.usage
        assert usage is not None
        attributes: tuple[tuple[str, str], ...] = (
            ("model", self.bounded("gen_ai.request.model", exchange.request_model or "unknown")),
            ("api_key", self.bounded("openai.api_key.masked", exchange.api_key)),
        )
        if with_completion_id and exchange.result.response_id:
            attributes += (("chat_completion_id", exchange.result.response_id),)
        total = usage.total_tokens
        if total is None:
            total = (usage.input_tokens or 0) + (usage.output_tokens or 0)
        self.legacy.add("tokens_counter", attributes, total)
        if usage.input_tokens is not None:
            self.legacy.add("prompt_tokens", attributes, usage.input_tokens)
        if usage.output_tokens is not None:
            self.legacy.add("completion_tokens", attributes, usage.output_tokens)

    def _record_span(self, exchange: Exchange, metric_attributes: Mapping[str, Any]) -> None:
        parent: Context | None = None
        if exchange.trace_headers:
            parent = self._propagator.extract(carrier=exchange.trace_headers)
        model = exchange.request_model
        span = self._tracer.start_span(
            f"{exchange.operation} {model}" if model else exchange.operation,
            context=parent,
            kind=SpanKind.CLIENT,
            attributes=_span_attributes(exchange, metric_attributes),
            start_time=exchange.start_time_ns,
        )
        if exchange.error_type is not None:
            span.set_status(Status(StatusCode.ERROR, exchange.error_type))
        span.end(end_time=exchange.start_time_ns + int(exchange.duration_s * 1e9))

    def use_prices(self, prices: PriceTable) -> None:
        self.prices = prices

    def summary_table(self) -> str | None:
        """The usage summary, or None before the first call."""
        return self.summary.table() if self.summary.rows else None

    def reset_summary(self) -> None:
        self.summary.reset()

    def shutdown(self, budget_s: float = SHUTDOWN_BUDGET_S) -> bool:
        """Flush and close within `budget_s`, even if the collector never answers.

        Runs on a daemon thread so a hung export cannot keep the process alive; returns
        whether everything finished in time.
        """
        budget_ms = int(budget_s * 1000)

        def close() -> None:
            self.tracer_provider.force_flush(budget_ms // 2)
            self.meter_provider.force_flush(budget_ms // 2)
            self.tracer_provider.shutdown()
            self.meter_provider.shutdown(timeout_millis=budget_ms // 2)

        closer = threading.Thread(target=close, name="genai-telemetry-shutdown", daemon=True)
        closer.start()
        closer.join(budget_s)
        if closer.is_alive():
            log.warning("OpenTelemetry export did not finish within %.1fs at exit; the rest is dropped.", budget_s)
            return False
        return True


class _LineHandler(logging.Handler):
    """The child's log records, one line each ("LEVELNO message") for the parent to log."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self._stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        message = self.format(record).replace("\n", " ")
        with contextlib.suppress(OSError):  # the parent is gone: nobody to tell
            self._stream.write(f"{record.levelno} {message}\n")
            self._stream.flush()


def _run_only_when_idle() -> None:
    """Export is background work: the proxy (and the apps beside it) must never wait for it.

    SCHED_IDLE runs this process only on a core that is otherwise idle, and any other process
    preempts it at once. Nice 19 alone still took scheduler slices from the proxy's clients and
    upstreams: +2.8 ms at the p99 of calls one at a time, against +0.4 ms with SCHED_IDLE.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):  # not Linux
        os.nice(19)


def serve(batches: IO[bytes], replies: TextIO, shutdown_budget_s: float = SHUTDOWN_BUDGET_S) -> int:
    """The telemetry process (`python telemetry.py`), fed by `telemetry_process.TelemetryProcess`.

    Replies "ready" (or "error REASON" and exits 2). Then it records every call from `batches`,
    applies the control messages (prices, summary reset), and sends the usage summary back as a
    "summary JSON" line whenever it changed and the input has paused, or at least once a second.
    When the parent closes `batches`, it sends the final summary and shuts down within
    `shutdown_budget_s`. SIGINT is ignored: Ctrl-C in a terminal reaches the whole process group,
    and the parent decides when to stop.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _run_only_when_idle()
    handler = _LineHandler(replies)
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    _quiet_exporter_logs()
    try:
        instance = Telemetry()
    except ConfigurationError as error:
        replies.write(f"error {error}\n")
        replies.flush()
        return 2
    replies.write(f"{telemetry_process.READY}\n")
    replies.flush()

    def send_summary() -> None:
        with contextlib.suppress(OSError):  # the parent is gone: nobody to tell
            replies.write(f"{telemetry_process.SUMMARY} {json.dumps(instance.summary_table())}\n")
            replies.flush()

    failures: set[str] = set()
    changed_since = 0.0  # when the summary changed first since it was last sent (0: it did not)
    while True:
        paused = not select.select([batches], [], [], telemetry_process.SUMMARY_PAUSE_S)[0]
        if changed_since and (paused or time.monotonic() - changed_since > telemetry_process.SUMMARY_INTERVAL_S):
            send_summary()
            changed_since = 0.0
        if paused:
            continue
        batch = telemetry_process.read_batch(batches)
        if batch is None:
            break
        for message in batch:
            try:
                match message:
                    case ("prices", PriceTable() as prices):
                        instance.use_prices(prices)
                    case ("reset",):
                        instance.reset_summary()
                        changed_since = changed_since or time.monotonic()  # a summary sent before is stale
                    case (telemetry_process.CALL, tuple() as fields, bool(legacy_metrics), bool(legacy_completion_id)):
                        instance.record_call(
                            FinishedCall._make(fields),
                            legacy_metrics=legacy_metrics,
                            legacy_completion_id=legacy_completion_id,
                        )
                        changed_since = changed_since or time.monotonic()
            except Exception as error:  # one bad call must not end the process; say so once per kind
                if type(error).__name__ not in failures:
                    failures.add(type(error).__name__)
                    log.warning("Recording a call failed (%s: %s); others go on.", type(error).__name__, error)
    send_summary()
    return 0 if instance.shutdown(shutdown_budget_s) else 1


if __name__ == "__main__":
    budget = float(sys.argv[1]) if len(sys.argv) > 1 else SHUTDOWN_BUDGET_S
    # Unbuffered: `serve` waits for input with select(), which cannot see a read-ahead buffer.
    with open(sys.stdin.fileno(), "rb", buffering=0, closefd=False) as parent_input:
        sys.exit(serve(parent_input, sys.stdout, budget))
