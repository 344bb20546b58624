"""OpenTelemetry side: providers, instruments, exporters, and `record` for a finished call.

This runs in the telemetry process (`telemetry_child.py`, started by `telemetry_process`), so
neither the SDK's per-measurement work nor span encoding competes with mitmproxy's event loop
for the GIL. Exports run on the SDK's background threads; `record` only updates in-memory state.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from genai_prices import UpdatePrices
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Histogram, Meter, Observation
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
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    set_span_in_context,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

import telemetry_process
from pricing import Prices
from summary import UsageSummary
from telemetry_process import MetricOptions
from wire import REGISTRY
from wire.call import Call, SocketRecord
from wire.describe import Description
from wire.headers import BUDGETS, RateLimits, RequestInfo, UpstreamInfo, parse_request_headers

log = logging.getLogger("genai")

DEFAULT_SERVICE_NAME = "mitmproxy-genai"
SCOPE_NAME = "mitmproxy-genai"
LEGACY_SCOPE_NAME = "openai.meter"
# A bounded shutdown: flush what is pending, then close the exporters.
SHUTDOWN_BUDGET_S = telemetry_process.SHUTDOWN_BUDGET_S

TOKEN_BUCKETS = [4**i for i in range(14)]  # 1, 4, 16, ... 67108864
DURATION_BUCKETS = [0.01 * 2**i for i in range(14)]  # 0.01 ... 81.92
COST_BUCKETS = [0.00001 * 4**i for i in range(13)]  # $0.00001 ... $167
MAX_DISTINCT_VALUES = 500
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
OVERFLOW_VALUE = "_OTHER"
# The bounded client label (`wire.headers.Client.label`, e.g. openai-python/3) as a metric attribute.
CLIENT_ATTRIBUTE = "genai.client"
# An API's own span attribute with a conventions' name (`gen_ai.conversation.compacted`) is not namespaced.
CONVENTION_NAMESPACE = "gen_ai."
# `gen_ai.operation.name` of a response fetched again, and how many response ids are remembered
# so that its usage is counted once.
FETCH_RESPONSE = "fetch_response"
MAX_COUNTED_RESPONSES = 10_000
# The rate-limit budgets each vendor's headers state, each a pair of gauges.
RATE_LIMIT_BUDGETS = {
    vendor.name: vendor.rate_limit_budgets for vendor in REGISTRY.vendors if vendor.rate_limit_budgets
}

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


class _OutageLog:
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


class _ExportErrorLog:
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


class _GuardedSpanExporter(SpanExporter):
    """Turns export failures into `_OutageLog` reports, and keeps failed spans for the next try.

    At most `kept` wait (the newest); they go out in requests of `slice_size` spans, as the SDK's
    own batches do, however many waited. After a failure, batches wait without trying for
    `retry_after_s`: a dead collector then costs one slow attempt now and then, not one per batch,
    and the SDK's own queue keeps draining instead of dropping spans. The waiting spans are tried
    again after that pause (`later` schedules it) even when no new span comes, so they reach a
    collector that is back without waiting for traffic: a short outage loses no span. A batch
    whose export raises is dropped (see `_ExportErrorLog`): it would fail again. `dropped` counts
    the spans lost either way; the note on recovery and the exit line say it.
    """

    def __init__(
        self,
        inner: SpanExporter,
        outage: _OutageLog,
        kept: int = MAX_QUEUED_SPANS,
        retry_after_s: float = RETRY_AFTER_S,
        clock: Callable[[], float] = time.monotonic,
        later: Callable[[float, Callable[[], None]], None] = _later,
        slice_size: int = SPANS_PER_EXPORT,
    ) -> None:
        self._inner = inner
        self._outage = outage
        self._kept = kept
        self._slice = slice_size
        self._retry_after_s = retry_after_s
        self._clock = clock
        self._later = later
        self._lock = threading.Lock()  # the SDK's worker and the retry of waiting spans
        self._retry_scheduled = False
        self.export_errors = _ExportErrorLog("spans")
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
                result = self._inner.export(chunk)
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
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class _GuardedMetricExporter(MetricExporter):
    """Turns export failures into `_OutageLog` reports, exceptions into `_ExportErrorLog` ones."""

    def __init__(self, inner: MetricExporter, outage: _OutageLog) -> None:
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self._inner = inner
        self._outage = outage
        self.export_errors = _ExportErrorLog("metrics")

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        try:
            result = self._inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        except Exception:
            self.export_errors.report("the next export sends the totals again")
            return MetricExportResult.FAILURE
        self._outage.report(result == MetricExportResult.SUCCESS)
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)


def _span_exporters() -> list[SpanExporter]:
    exporters: list[SpanExporter] = []
    queue = os.environ.get("OTEL_BSP_MAX_QUEUE_SIZE", "")
    kept = int(queue) if queue.isdigit() and int(queue) > 0 else MAX_QUEUED_SPANS
    for name in _exporter_names("OTEL_TRACES_EXPORTER"):
        if name == "console":
            exporters.append(ConsoleSpanExporter())
        else:
            outage = _OutageLog("spans", _endpoint("traces"), f"up to {kept} spans wait for it")
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            exporters.append(_GuardedSpanExporter(OTLPSpanExporter(), outage, kept))
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


def quiet_exporter_logs() -> None:
    """The gRPC exporter logs every retry and failure; `_OutageLog` says it once instead.

    Also keeps exporter ERROR records away from mitmdump, which exits on errors at start-up.
    """
    logging.getLogger("opentelemetry.exporter.otlp.proto.grpc").setLevel(logging.CRITICAL)


class PresetIds(RandomIdGenerator):
    """Random ids, except for a WebSocket session's span: it gets the ids the proxy gave its
    operations as their parent when the socket opened (they were recorded before it closed)."""

    def __init__(self) -> None:
        self.next_ids: tuple[int, int] | None = None  # (trace id, span id) of the next span started

    def generate_trace_id(self) -> int:
        return self.next_ids[0] if self.next_ids else super().generate_trace_id()

    def generate_span_id(self) -> int:
        if self.next_ids is None:
            return super().generate_span_id()
        span_id, self.next_ids = self.next_ids[1], None
        return span_id


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


def _attributes(call: Call, bounded: BoundedValues) -> dict[str, Any]:
    """The low-cardinality attributes every metric of a call carries."""
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": call.operation,
        "gen_ai.provider.name": call.provider,
        "server.address": bounded("server.address", call.server_address),
        "server.port": call.server_port,
    }
    if call.request_model:
        attributes["gen_ai.request.model"] = bounded("gen_ai.request.model", call.request_model)
    if call.result.response_model:
        attributes["gen_ai.response.model"] = bounded("gen_ai.response.model", call.result.response_model)
    if error_type := call.error_type:
        attributes["error.type"] = bounded("error.type", error_type)
    return attributes


def _span_attributes(
    call: Call, upstream: UpstreamInfo, headers: RequestInfo, metric_attributes: Mapping[str, Any], cache_write: str
) -> dict[str, Any]:
    """The span's attributes. The conventions' names where they have one (`cache_write`: the cache
    write count's, which differs between versions); the API's own (service tier, request id, rate
    limits, ...) under its vendor's namespace: `openai.*`, `anthropic.*`, `aws.bedrock.*`."""
    request, result, usage, limits = call.request, call.result, call.usage, upstream.rate_limits
    api_vendor = call.endpoint.api.vendor
    vendor = api_vendor.name
    candidates: dict[str, Any] = {
        **metric_attributes,
        f"{vendor}.api.type": call.endpoint.api.name,
        f"{vendor}.api_key.masked": call.api_key,
        "gen_ai.request.temperature": request.temperature,
        "gen_ai.request.top_p": request.top_p,
        "gen_ai.request.top_k": request.top_k,
        "gen_ai.request.max_tokens": request.max_tokens,
        "gen_ai.request.frequency_penalty": request.frequency_penalty,
        "gen_ai.request.presence_penalty": request.presence_penalty,
        "gen_ai.request.stop_sequences": request.stop_sequences,
        "gen_ai.request.seed": request.seed,
        "gen_ai.request.choice.count": request.choice_count if request.choice_count != 1 else None,
        "gen_ai.request.stream": True if call.streamed else None,
        "gen_ai.request.encoding_formats": request.encoding_formats,
        "gen_ai.embeddings.dimension.count": request.dimensions,
        "gen_ai.output.type": request.output_type,
        "gen_ai.conversation.id": request.conversation_id,
        "gen_ai.request.previous_response.id": request.previous_response_id,
        f"{vendor}.request.service_tier": request.service_tier if request.service_tier != "auto" else None,
        f"{vendor}.request.input_characters": request.input_characters,
        f"{vendor}.usage.audio_seconds": result.audio_seconds,
        "user_agent.original": headers.user_agent,
        "user_agent.name": headers.client.name if headers.user_agent else None,
        "user_agent.version": headers.client.version,
        "gen_ai.response.id": result.response_id,
        "gen_ai.response.finish_reasons": result.finish_reasons or None,
        f"{vendor}.response.service_tier": result.service_tier,
        "gen_ai.response.time_to_first_chunk": call.time_to_first_chunk_s,
        "http.response.status_code": call.status_code,
        "gen_ai.usage.cost_usd": call.cost_usd,
        # A number that is missing is shown, never silent: a stream without usage, an unreadable answer.
        "genai.usage.unavailable": True if call.usage_unavailable else None,
        "genai.usage.counted_before": True if call.usage_counted_before else None,
        f"{vendor}.request.id": upstream.request_id,
        f"{vendor}.response.processing_ms": upstream.processing_ms,
    }
    for budget in BUDGETS:
        candidates[f"{vendor}.ratelimit.remaining_{budget}"] = getattr(limits, f"remaining_{budget}")
        candidates[f"{vendor}.ratelimit.reset_{budget}_s"] = getattr(limits, f"reset_{budget}_s")
    for attributes in (api_vendor.request_attributes(call.request_headers), request.attributes, result.attributes):
        # An API's own names go under its vendor's namespace; a conventions' name stays as it is.
        candidates |= {
            name if name.startswith(CONVENTION_NAMESPACE) else f"{vendor}.{name}": value
            for name, value in attributes.items()
        }
    for tool, requests in result.server_tool_requests.items():
        candidates[f"{vendor}.usage.server_tool_use.{tool}_requests"] = requests
    if call.content is not None:
        candidates |= {
            "gen_ai.system_instructions": call.content.system_instructions,
            "gen_ai.input.messages": call.content.input_messages,
            "gen_ai.output.messages": call.content.output_messages,
        }
    if usage is not None:
        candidates |= {
            "gen_ai.usage.input_tokens": usage.input_tokens,
            "gen_ai.usage.output_tokens": usage.output_tokens,
            "gen_ai.usage.cache_read.input_tokens": usage.cache_read_tokens,
            cache_write: usage.cache_write_tokens,
            cache_write.replace(".input_tokens", ".5m.input_tokens"): usage.cache_write_5m_tokens,
            cache_write.replace(".input_tokens", ".1h.input_tokens"): usage.cache_write_1h_tokens,
            "gen_ai.usage.reasoning.output_tokens": usage.reasoning_tokens,
        }
        for direction, counts in (("input", usage.input_modalities), ("output", usage.output_modalities)):
            for modality, tokens in counts:
                candidates[f"gen_ai.usage.{modality}.{direction}_tokens"] = tokens
        for modality, tokens in usage.cache_read_modalities:
            candidates[f"gen_ai.usage.{modality}.cache_read.input_tokens"] = tokens
    return {key: value for key, value in candidates.items() if value is not None}


Labels = tuple[tuple[str, str | int], ...]


class LatestValues:
    """The latest rate limits per vendor and attribute set, read by observable gauges at export time."""

    def __init__(self) -> None:
        self._latest: dict[tuple[str, Labels], RateLimits] = {}
        self._lock = threading.Lock()

    def set(self, vendor: str, attributes: Labels, limits: RateLimits) -> None:
        with self._lock:
            self._latest[vendor, attributes] = limits

    def callback(self, vendor: str, field: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            with self._lock:
                latest = [(attributes, limits) for (of, attributes), limits in self._latest.items() if of == vendor]
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


class Conventions:
    """The GenAI conventions' own metrics in one version, chosen once: `V1_41` by default,
    `V0_1_0` under the opt-in. The project's other metrics (cache and reasoning parts, cost,
    rate limits, legacy counters) are the same under both."""

    schema_url: str
    # The span attribute of cache writes (and the prefix of their 5 m / 1 h split).
    cache_write_attribute: str

    def __init__(self, meter: Meter) -> None:
        self._meter = meter

    def _histogram(self, name: str, unit: str, description: str) -> Histogram:
        buckets = DURATION_BUCKETS if unit == "s" else TOKEN_BUCKETS
        return _histogram(self._meter, name, unit, description, buckets)

    def record(self, call: Call, attributes: Mapping[str, Any], spend: Mapping[str, Any]) -> None:
        """`spend` is `attributes` and who spent it (genai_metric_attribution), for token usage."""
        raise NotImplementedError


class V1_41(Conventions):  # noqa: N801 (the version's name)
    """semantic-conventions v1.41: `gen_ai.client.operation.*` and `gen_ai.client.token.usage`."""

    schema_url = "https://opentelemetry.io/schemas/1.41.0"
    cache_write_attribute = "gen_ai.usage.cache_creation.input_tokens"

    def __init__(self, meter: Meter) -> None:
        super().__init__(meter)
        self.token_usage = self._histogram(
            "gen_ai.client.token.usage", "{token}", "Number of input and output tokens used."
        )
        self.duration = self._histogram("gen_ai.client.operation.duration", "s", "GenAI operation duration.")
        self.time_to_first_chunk = self._histogram(
            "gen_ai.client.operation.time_to_first_chunk",
            "s",
            "Time to receive the first chunk with content (text, reasoning or a tool call; not a role-only "
            "opener or a lifecycle event) in a streaming operation.",
        )
        self.time_per_output_chunk = self._histogram(
            "gen_ai.client.operation.time_per_output_chunk",
            "s",
            "Time between consecutive output chunks after the first, in a streaming operation.",
        )

    def record(self, call: Call, attributes: Mapping[str, Any], spend: Mapping[str, Any]) -> None:
        self.duration.record(call.duration_s, attributes)
        if call.time_to_first_chunk_s is not None:
            self.time_to_first_chunk.record(call.time_to_first_chunk_s, attributes)
        for interval in call.chunk_intervals_s:
            self.time_per_output_chunk.record(interval, attributes)
        if (usage := call.usage) is not None:
            for token_type, value in (("input", usage.input_tokens), ("output", usage.output_tokens)):
                if value is not None:
                    self.token_usage.record(value, {**spend, "gen_ai.token.type": token_type})


def _by_modality(total: int, parts: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    """A token count split by the modality counts the API reported; the rest is `unknown`."""
    split = [(modality, tokens) for modality, tokens in parts if tokens]
    rest = total - sum(tokens for _, tokens in split)
    return [*split, ("unknown", rest)] if rest > 0 or not split else split


class V0_1_0(Conventions):  # noqa: N801
    """semantic-conventions-genai v0.1.0 (`tests/fixtures/semconv-genai-v0.1.0/` holds what the
    test compares against): inference and embeddings metrics apart, token counters by modality."""

    schema_url = "https://opentelemetry.io/schemas/gen-ai/0.1.0"
    cache_write_attribute = "gen_ai.usage.cache_write.input_tokens"
    USAGE_COUNTERS = (
        "input_tokens",
        "output_tokens",
        "cache_read.input_tokens",
        "cache_write.input_tokens",
        "reasoning.output_tokens",
    )

    def __init__(self, meter: Meter) -> None:
        super().__init__(meter)
        inference = "gen_ai.client.inference"
        self.duration = self._histogram(f"{inference}.duration", "s", "GenAI inference duration.")
        self.time_to_first_chunk = self._histogram(
            f"{inference}.time_to_first_chunk",
            "s",
            "Time to the first output chunk that carries content (text, reasoning or a tool call).",
        )
        self.time_per_output_chunk = self._histogram(
            f"{inference}.time_per_output_chunk", "s", "Time between consecutive output chunks after the first."
        )
        self.input_per_call = self._histogram(
            f"{inference}.operation.input_tokens", "{token}", "Input tokens of one inference operation."
        )
        self.output_per_call = self._histogram(
            f"{inference}.operation.output_tokens", "{token}", "Output tokens of one inference operation."
        )
        self.counters = {
            kind: meter.create_counter(f"{inference}.usage.{kind}", unit="{token}", description=f"Tokens: {kind}.")
            for kind in self.USAGE_COUNTERS
        }
        self.embeddings_duration = self._histogram(
            "gen_ai.client.embeddings.duration", "s", "GenAI embeddings operation duration."
        )
        self.embeddings_input = self._histogram(
            "gen_ai.client.embeddings.operation.input_tokens", "{token}", "Input tokens of one embeddings operation."
        )

    def record(self, call: Call, attributes: Mapping[str, Any], spend: Mapping[str, Any]) -> None:
        usage = call.usage
        if call.operation == "embeddings":
            self.embeddings_duration.record(call.duration_s, attributes)
            if usage is not None and usage.input_tokens is not None:
                self.embeddings_input.record(usage.input_tokens, spend)
            return
        self.duration.record(call.duration_s, attributes)
        if call.time_to_first_chunk_s is not None:
            self.time_to_first_chunk.record(call.time_to_first_chunk_s, attributes)
        for interval in call.chunk_intervals_s:
            self.time_per_output_chunk.record(interval, attributes)
        if usage is None:
            return
        for kind, total, parts in (
            ("input_tokens", usage.input_tokens, usage.input_modalities),
            ("output_tokens", usage.output_tokens, usage.output_modalities),
            ("cache_read.input_tokens", usage.cache_read_tokens, usage.cache_read_modalities),
            ("cache_write.input_tokens", usage.cache_write_tokens, ()),
            ("reasoning.output_tokens", usage.reasoning_tokens, ()),
        ):
            if total is not None:
                for modality, tokens in _by_modality(total, parts):
                    self.counters[kind].add(tokens, {**spend, "gen_ai.token.modality": modality})
        if usage.input_tokens is not None:
            self.input_per_call.record(usage.input_tokens, spend)
        if usage.output_tokens is not None:
            self.output_per_call.record(usage.output_tokens, spend)


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
        quiet_exporter_logs()
        self._ids = PresetIds()
        self.tracer_provider = TracerProvider(resource=resource, id_generator=self._ids, shutdown_on_exit=False)
        queue_size = None if "OTEL_BSP_MAX_QUEUE_SIZE" in os.environ else DEFAULT_SPAN_QUEUE
        self._span_exporters = list(span_exporters)
        for exporter in span_exporters:
            self.tracer_provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=queue_size))
        self.meter_provider = MeterProvider(resource=resource, metric_readers=metric_readers, shutdown_on_exit=False)
        # Each signal declares the conventions it follows: a backend tells v1.41 from v0.1.0 names.
        conventions = V0_1_0 if latest_experimental_opted_in() else V1_41
        self._tracer = self.tracer_provider.get_tracer(SCOPE_NAME, schema_url=conventions.schema_url)
        self._propagator = TraceContextTextMapPropagator()
        self.bounded = BoundedValues()
        # Calls passed on unparsed are priced here; the addon sends its table (`use_prices`).
        self.prices = Prices()
        self._price_updates: UpdatePrices | None = None
        self.summary = UsageSummary()
        # Where descriptions of shown calls go: the reply pipe in the telemetry process.
        self.on_description: Callable[[Description], None] | None = None
        # The response ids whose usage was counted (bounded): a response fetched again is not counted twice.
        self._counted_responses: OrderedDict[str, None] = OrderedDict()

        meter = self.meter_provider.get_meter(SCOPE_NAME, schema_url=conventions.schema_url)
        self.conventions = conventions(meter)

        def histogram(name: str, unit: str, description: str, buckets: Sequence[float]) -> Histogram:
            return _histogram(meter, name, unit, description, buckets)

        self.cache_read_tokens = histogram(
            "gen_ai.client.token.cache_read",
            "{token}",
            "Input tokens served from the prompt cache: a part of the input tokens, not in addition to them.",
            TOKEN_BUCKETS,
        )
        self.cache_write_tokens = histogram(
            "gen_ai.client.token.cache_write",
            "{token}",
            "Input tokens written to the prompt cache: a part of the input tokens, not in addition to them.",
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
        # Rate limits are observed at export time from the latest values: no per-call measurement.
        self.rate_limits = LatestValues()
        for vendor, budgets in RATE_LIMIT_BUDGETS.items():
            for budget in budgets:
                unit = "{request}" if budget == "requests" else "{token}"
                what = budget.replace("_", " ").capitalize()
                for field, description in (
                    (f"remaining_{budget}", f"{what} left in the current rate-limit window."),
                    (f"limit_{budget}", f"{what} allowed per rate-limit window."),
                ):
                    meter.create_observable_gauge(
                        f"{vendor}.ratelimit.{field}",
                        callbacks=[self.rate_limits.callback(vendor, field)],
                        unit=unit,
                        description=description,
                    )

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

    def record_call(self, call: Call, options: MetricOptions) -> None:
        """The one pipeline of a finished call: parse what the proxy passed on unparsed, price,
        record (summary, metrics, span; see `record`), and describe it back if the proxy shows it."""
        call.parse_bodies()
        self._count_usage_once(call)
        call.cost_usd = self.prices.cost_of(call)
        self.record(call, options)
        if call.description_id is not None and self.on_description is not None:
            self.on_description(Description.of(call))

    def _count_usage_once(self, call: Call) -> None:
        """A response fetched again (`fetch_response`: a stored or background Gemini interaction)
        carries the usage of the call that made it: the usage of a response id is counted once (in
        this process; a background interaction's usage comes only with its first fetch). A repeated
        fetch keeps its span, without the usage, marked `genai.usage.counted_before`."""
        response_id = call.result.response_id
        if call.usage is None or not response_id:
            return
        counted = self._counted_responses
        if call.operation == FETCH_RESPONSE and response_id in counted:
            call.result.usage = None
            call.usage_counted_before = True
            return
        counted[response_id] = None
        if len(counted) > MAX_COUNTED_RESPONSES:
            counted.popitem(last=False)

    def record(self, call: Call, options: MetricOptions) -> None:
        """Record one finished, parsed call as metrics, a span and a summary row. No I/O happens here."""
        headers = parse_request_headers(call.request_headers)
        self.summary.add(call, headers.client.label)
        attributes = _attributes(call, self.bounded)
        spend = attributes | self._attribution(call, headers, options.attribution)
        self.conventions.record(call, attributes, spend)
        usage = call.usage
        if usage is not None:
            # Zeros add nothing to these sums; skipping them saves measurements per call.
            for histogram, part in (
                (self.cache_read_tokens, usage.cache_read_tokens),
                (self.cache_write_tokens, usage.cache_write_tokens),
                (self.reasoning_tokens, usage.reasoning_tokens),
            ):
                if part:
                    histogram.record(part, attributes)
            if options.legacy_metrics:
                self._record_legacy(call, options.legacy_completion_id)
        if call.cost_usd is not None:
            self.token_cost.record(call.cost_usd, spend)
        upstream = call.upstream()
        self._record_rate_limits(call, upstream.rate_limits)
        self._record_span(call, upstream, headers, attributes)

    def _attribution(self, call: Call, headers: RequestInfo, attribution: str) -> dict[str, str]:
        """Who spent it, as attributes of the token-usage and cost metrics (genai_metric_attribution):
        the client label, and the masked key; each bounded like every client-chosen value."""
        if attribution == "none":
            return {}
        labels = {CLIENT_ATTRIBUTE: self.bounded(CLIENT_ATTRIBUTE, headers.client.label)}
        if attribution == "client+key":
            labels[f"{call.endpoint.api.vendor.name}.api_key.masked"] = self.bounded("api_key.masked", call.api_key)
        return labels

    def _record_rate_limits(self, call: Call, limits: RateLimits) -> None:
        if not limits.known():
            return
        vendor = call.endpoint.api.vendor.name
        attributes = (
            ("gen_ai.request.model", self.bounded("gen_ai.request.model", call.request_model or "unknown")),
            ("gen_ai.provider.name", call.provider),
            ("server.address", self.bounded("server.address", call.server_address)),
            ("server.port", call.server_port),
            (f"{vendor}.api_key.masked", self.bounded("api_key.masked", call.api_key)),
        )
        self.rate_limits.set(vendor, attributes, limits)

    def _record_legacy(self, call: Call, with_completion_id: bool) -> None:
        usage = call.usage
        assert usage is not None
        attributes: tuple[tuple[str, str], ...] = (
            ("model", self.bounded("gen_ai.request.model", call.request_model or "unknown")),
            ("api_key", self.bounded("api_key.masked", call.api_key)),
        )
        if with_completion_id and call.result.response_id:
            attributes += (("chat_completion_id", call.result.response_id),)
        self.legacy.add("tokens_counter", attributes, usage.total_tokens)
        if usage.input_tokens is not None:
            self.legacy.add("prompt_tokens", attributes, usage.input_tokens)
        if usage.output_tokens is not None:
            self.legacy.add("completion_tokens", attributes, usage.output_tokens)

    def _record_span(
        self, call: Call, upstream: UpstreamInfo, headers: RequestInfo, metric_attributes: Mapping[str, Any]
    ) -> None:
        parent: Context | None = None
        if call.session_span is not None:  # an operation of a WebSocket session: its child
            trace_id, span_id = call.session_span
            session = SpanContext(trace_id, span_id, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))
            parent = set_span_in_context(NonRecordingSpan(session))
        elif "traceparent" in call.request_headers:
            parent = self._propagator.extract(carrier=call.request_headers)
        model = call.request_model
        span = self._tracer.start_span(
            f"{call.operation} {model}" if model else call.operation,
            context=parent,
            kind=SpanKind.CLIENT,
            attributes=_span_attributes(
                call, upstream, headers, metric_attributes, self.conventions.cache_write_attribute
            ),
            start_time=call.start_time_ns,
        )
        if (error_type := call.error_type) is not None:
            span.set_status(Status(StatusCode.ERROR, error_type))
        span.end(end_time=call.start_time_ns + int(call.duration_s * 1e9))

    def record_session(self, record: SocketRecord) -> None:
        """A closed WebSocket session's span, with the ids its operations named as their parent."""
        parent = self._propagator.extract(carrier=record.request_headers) if record.parent_span_id else None
        vendor, info = record.endpoint.api.vendor.name, record.info
        candidates: dict[str, Any] = {
            "gen_ai.provider.name": record.provider,
            "gen_ai.request.model": info.model,
            "gen_ai.response.model": info.response_model,
            "gen_ai.conversation.id": info.session_id,
            "server.address": record.server_address,
            "server.port": record.server_port,
            f"{vendor}.api.type": record.endpoint.api.name,
            f"{vendor}.api_key.masked": record.api_key,
            f"{vendor}.realtime.voice": info.voice,
            f"{vendor}.realtime.output_modalities": info.output_modalities or None,
            f"{vendor}.realtime.transcription_model": info.transcription_model,
            "genai.session.operations": record.operations,
            "error.type": info.error_type,
        }
        self._ids.next_ids = (record.trace_id, record.span_id)
        try:
            span = self._tracer.start_span(
                f"{record.endpoint.api.name} {info.model}" if info.model else record.endpoint.api.name,
                context=parent,
                kind=SpanKind.CLIENT,
                attributes={key: value for key, value in candidates.items() if value is not None},
                start_time=record.start_time_ns,
            )
        finally:
            self._ids.next_ids = None
        if info.error_type is not None:
            span.set_status(Status(StatusCode.ERROR, info.error_type))
        span.end(end_time=record.start_time_ns + int(record.duration_s * 1e9))

    def use_prices(self, prices: Prices) -> None:
        """Price calls with `prices`, fetching its updates (if it has a URL) instead of the last's."""
        if self._price_updates is not None:
            self._price_updates.stop()  # type: ignore[no-untyped-call]
        self.prices = prices
        self._price_updates = prices.updates()
        if self._price_updates is not None:
            self._price_updates.start()

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
        finished = not closer.is_alive()
        if not finished:
            log.warning("OpenTelemetry export did not finish within %.1fs at exit; the rest is dropped.", budget_s)
        # If the exit budget ran out, the spans still waiting are lost as well.
        guards = [e for e in self._span_exporters if isinstance(e, _GuardedSpanExporter)]
        dropped = sum(guard.dropped + (0 if finished else guard.waiting) for guard in guards)
        if dropped:
            log.warning(
                "%d spans were dropped while the collector did not accept them (OTEL_BSP_MAX_QUEUE_SIZE sets how "
                "many may wait).",
                dropped,
            )
        return finished
