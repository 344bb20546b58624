"""Exporter configuration (`otel.export`): the exporters and readers the environment names, the
resource, and the guards that turn a collector outage into one warning and keep spans waiting."""

import io
import json
import logging
import math
import time
from typing import Any

import pytest
from opentelemetry.sdk.metrics import Counter, MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    ConsoleMetricExporter,
    MetricExportResult,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel import export
from telemetry import Telemetry


@pytest.mark.parametrize("variable", ["OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER"])
def test_unsupported_exporter_names_are_a_clear_configuration_error(monkeypatch, variable):
    monkeypatch.setenv(variable, "zipkin")
    with pytest.raises(export.ConfigurationError, match=f"{variable}='zipkin' is not supported"):
        Telemetry()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "htp://localhost:4317"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:43l7"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "collector"),
    ],
)
def test_a_malformed_collector_url_is_refused_at_start(monkeypatch, variable, value):
    """Found only at the first export, seconds later, it read as a collector that does not answer."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(export.ConfigurationError, match=f"{variable}={value!r} is not a collector URL"):
        Telemetry()


@pytest.mark.parametrize("value", ["http://localhost:4317", "https://otel.example.com", "localhost:4317"])
def test_collector_urls_the_exporter_takes_are_accepted(monkeypatch, value):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", value)
    Telemetry().shutdown(1)


def test_none_and_console_exporters_are_accepted(monkeypatch):
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "console")
    instance = Telemetry()
    assert instance.shutdown(2)


def test_resource_gets_a_default_name_and_a_unique_instance_id(monkeypatch):
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    first, second = export.build_resource(), export.build_resource()
    assert first.attributes["service.name"] == "mitmproxy-genai"
    assert first.attributes["service.instance.id"] != second.attributes["service.instance.id"]


def test_standard_resource_variables_win(monkeypatch):
    monkeypatch.setenv("OTEL_SERVICE_NAME", "llm-gateway")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.instance.id=proxy-a,deployment.environment=prod")
    resource = export.build_resource()
    assert resource.attributes["service.name"] == "llm-gateway"
    assert resource.attributes["service.instance.id"] == "proxy-a"
    assert resource.attributes["deployment.environment"] == "prod"


class FailingExporter(SpanExporter):
    def __init__(self) -> None:
        self.ok = False
        self.calls = 0

    def export(self, spans: Any) -> SpanExportResult:
        self.calls += 1
        return SpanExportResult.SUCCESS if self.ok else SpanExportResult.FAILURE


def test_an_outage_is_one_warning_and_recovery_one_note(caplog):
    inner = FailingExporter()
    outage = export.OutageLog("spans", "http://collector:4317", "kept")
    guarded = export.GuardedSpanExporter(inner, outage, retry_after_s=0.0, later=lambda delay, action: None)
    span = type("S", (), {"name": "s"})()
    with caplog.at_level(logging.INFO, logger="genai"):
        results = [guarded.export([span]) for _ in range(4)]
        inner.ok = True
        results.append(guarded.export([span]))
    assert results == [SpanExportResult.FAILURE] * 4 + [SpanExportResult.SUCCESS]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "http://collector:4317" in warnings[0].getMessage()
    assert "accepts spans again; 5 spans sent, 0 dropped in outages so far" in caplog.records[-1].getMessage()


def test_the_metric_guard_keeps_the_inner_exporters_preferences():
    """A delta exporter stays one behind the guard: the reader asks the guard which temporality."""
    out = io.StringIO()
    inner = ConsoleMetricExporter(
        out=out,
        preferred_temporality={Counter: AggregationTemporality.DELTA},
        formatter=lambda data: data.to_json(indent=None) + "\n",
    )
    guarded = export.GuardedMetricExporter(inner, export.OutageLog("metrics", "x", "kept"))
    reader = PeriodicExportingMetricReader(guarded, export_interval_millis=math.inf)
    provider = MeterProvider(metric_readers=[reader])
    counter = provider.get_meter("test").create_counter("calls")
    for _ in range(2):
        counter.add(3)
        reader.collect()
    provider.shutdown()
    points = [
        (metric["data"]["aggregation_temporality"], point["value"])
        for line in out.getvalue().splitlines()
        for resource in json.loads(line)["resource_metrics"]
        for scope in resource["scope_metrics"]
        for metric in scope["metrics"]
        for point in metric["data"]["data_points"]
    ]
    assert points == [(AggregationTemporality.DELTA, 3), (AggregationTemporality.DELTA, 3)]  # not 3, then 6


class RaisingExporter(SpanExporter):
    """An exporter with a local bug: it raises instead of returning FAILURE."""

    def __init__(self) -> None:
        self.batches = 0

    def export(self, spans: Any) -> SpanExportResult:
        self.batches += 1
        raise TypeError("an attribute value the encoder cannot encode")


def test_an_exporter_that_raises_is_a_local_error_not_an_outage(caplog):
    guarded = export.GuardedSpanExporter(RaisingExporter(), export.OutageLog("spans", "http://collector:4317", "kept"))
    spans = [type("S", (), {"name": f"s{i}"})() for i in range(3)]
    with caplog.at_level(logging.DEBUG, logger="genai"):
        results = [guarded.export(spans[:2]), guarded.export(spans[2:])]
    assert results == [SpanExportResult.FAILURE] * 2
    assert guarded.dropped == 3 and guarded.export_errors.errors == 2  # dropped, not kept to fail again
    messages = [record.getMessage() for record in caplog.records]
    assert not any("does not accept" in message for message in messages)
    first, second = [record for record in caplog.records if "failed here, not at the collector" in record.getMessage()]
    assert first.levelno == logging.ERROR and first.exc_info is not None and "a batch of 2 spans" in first.getMessage()
    assert second.levelno == logging.DEBUG and not second.exc_info


def test_a_metric_exporter_that_raises_is_a_local_error_not_an_outage(caplog):
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

    inner = OTLPMetricExporter(endpoint="http://127.0.0.1:9")
    guarded = export.GuardedMetricExporter(inner, export.OutageLog("metrics", "http://collector:4317", "kept"))
    try:
        with caplog.at_level(logging.INFO, logger="genai"):  # the SDK's encoder raises on it
            assert guarded.export("not metrics data") == MetricExportResult.FAILURE  # type: ignore[arg-type]
    finally:
        inner.shutdown()
    assert guarded.export_errors.errors == 1
    assert not any("does not accept" in record.getMessage() for record in caplog.records)


class RecordingExporter(SpanExporter):
    """A collector that is up or down: what it received, and the size of every request tried."""

    def __init__(self) -> None:
        self.up = True
        self.received: list[str] = []
        self.requests: list[int] = []

    def export(self, spans: Any) -> SpanExportResult:
        self.requests.append(len(spans))
        if not self.up:
            return SpanExportResult.FAILURE
        self.received += [span.name for span in spans]
        return SpanExportResult.SUCCESS


class Later:
    """The retries a guarded exporter scheduled, run when the test says."""

    def __init__(self) -> None:
        self.scheduled: list[tuple[float, Any]] = []

    def __call__(self, delay_s: float, action: Any) -> None:
        self.scheduled.append((delay_s, action))

    def run(self) -> None:
        scheduled, self.scheduled = self.scheduled, []
        for _, action in scheduled:
            action()


def guard(inner: SpanExporter, kept: int = 2048, clock: Any = time.monotonic, later: Any = None) -> Any:
    outage = export.OutageLog("spans", "x", "kept")
    return export.GuardedSpanExporter(inner, outage, kept, 2.0, clock, later or Later())


def test_spans_of_failed_exports_are_sent_when_the_collector_is_back():
    inner = RecordingExporter()
    clock = [100.0]
    guarded = guard(inner, 3, lambda: clock[0])
    spans = [type("S", (), {"name": f"s{i}"})() for i in range(6)]
    guarded.export(spans[:1])
    inner.up = False
    guarded.export(spans[1:3])
    clock[0] += 2.0
    guarded.export(spans[3:5])  # 4 waiting, only the newest 3 are kept
    inner.up = True
    clock[0] += 2.0
    guarded.export(spans[5:])
    assert inner.received == ["s0", "s2", "s3", "s4", "s5"]
    assert guarded.dropped == 1


def test_otel_bsp_max_queue_size_sets_how_many_spans_wait_for_the_collector(monkeypatch):
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "20000")
    (guarded,) = export.span_exporters()
    assert isinstance(guarded, export.GuardedSpanExporter)
    assert guarded.kept == 20_000
    monkeypatch.delenv("OTEL_BSP_MAX_QUEUE_SIZE")
    (default,) = export.span_exporters()
    assert isinstance(default, export.GuardedSpanExporter) and default.kept == export.MAX_QUEUED_SPANS


def test_after_a_failure_batches_wait_without_trying_the_collector():
    clock = [100.0]
    inner = RecordingExporter()
    inner.up = False
    later = Later()
    guarded = guard(inner, clock=lambda: clock[0], later=later)
    spans = [type("S", (), {"name": f"s{i}"})() for i in range(4)]
    guarded.export(spans[:1])  # fails: the collector is down
    clock[0] += 1.0
    guarded.export(spans[1:2])  # within the pause: kept, collector not tried
    inner.up = True
    clock[0] += 2.0
    guarded.export(spans[2:])  # the pause is over: everything goes out
    assert inner.requests == [1, 4]
    assert inner.received == ["s0", "s1", "s2", "s3"]
    assert [delay for delay, _ in later.scheduled] == [2.0]  # one retry was scheduled, not one per batch
    later.run()
    assert inner.requests == [1, 4]  # nothing waits any more: the retry has nothing to send


def test_spans_that_waited_go_out_in_requests_of_the_sdks_batch_size():
    """1,300 spans that waited through an outage are three requests, not one a Collector refuses
    for its size (4 MB by default)."""
    inner = RecordingExporter()
    inner.up = False
    clock = [100.0]
    guarded = guard(inner, clock=lambda: clock[0])
    spans = [type("S", (), {"name": f"s{i}"})() for i in range(1300)]
    guarded.export(spans[:500])
    clock[0] += 2.0
    guarded.export(spans[500:1299])  # 1,299 wait
    inner.up, inner.requests = True, []
    clock[0] += 2.0
    assert guarded.export(spans[1299:]) == SpanExportResult.SUCCESS
    assert inner.requests == [512, 512, 276] and len(inner.received) == 1300 and guarded.waiting == 0


def test_a_slice_the_collector_refuses_keeps_it_and_the_rest_waiting():
    class Once(RecordingExporter):
        def export(self, spans: Any) -> SpanExportResult:
            result = super().export(spans)
            self.up = False  # the collector goes away after the first request
            return result

    inner = Once()
    guarded = guard(inner)
    assert guarded.export([type("S", (), {"name": f"s{i}"})() for i in range(600)]) == SpanExportResult.FAILURE
    assert len(inner.received) == 512 and guarded.waiting == 88 and guarded.dropped == 0


def test_waiting_spans_are_retried_after_the_pause_without_new_traffic():
    """A collector back after an outage gets the spans that waited even if no call follows."""
    inner = RecordingExporter()
    inner.up = False
    clock, later = [100.0], Later()
    guarded = guard(inner, clock=lambda: clock[0], later=later)
    guarded.export([type("S", (), {"name": "s0"})()])
    clock[0] += 2.0
    later.run()  # still down: tried, failed, scheduled again
    assert inner.received == [] and [delay for delay, _ in later.scheduled] == [2.0]
    inner.up = True
    clock[0] += 2.0
    later.run()
    assert inner.received == ["s0"] and not later.scheduled and guarded.dropped == 0


def test_the_default_retry_runs_on_a_timer_thread():
    inner = RecordingExporter()
    inner.up = False
    guarded = export.GuardedSpanExporter(inner, export.OutageLog("spans", "x", "kept"), retry_after_s=0.05)
    guarded.export([type("S", (), {"name": "s0"})()])
    inner.up = True
    deadline = time.monotonic() + 5
    while not inner.received and time.monotonic() < deadline:
        time.sleep(0.01)
    assert inner.received == ["s0"]


def test_the_otlp_span_exporter_is_the_sdks_own(monkeypatch):
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    (guarded,) = export.span_exporters()
    try:
        assert isinstance(guarded, export.GuardedSpanExporter) and type(guarded.inner) is OTLPSpanExporter
    finally:
        guarded.shutdown()
