"""Telemetry: instruments, attributes, spans, configuration and bounded shutdown."""

import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.sdk.metrics.export import Histogram, InMemoryMetricReader
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import telemetry
from otel.sessions import Sessions, session_trace
from telemetry import Telemetry
from telemetry_process import MetricOptions
from tests.builders import finished_call, origin
from tests.test_otel_export import RecordingExporter, guard
from wire import anthropic_messages, gemini_interactions, mcp, openai_chat, openai_embeddings, openai_responses
from wire.call import Call, Endpoint
from wire.records import ApiRequest, ApiResult, ToolCall, ToolResult, Usage

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


def make_call(**overrides: Any) -> Call:
    values: dict[str, Any] = {
        "request": ApiRequest(model="gpt-4o-mini", temperature=0.2, max_tokens=50, seed=7),
        "api_key": "sk-proj-...abcd",
        "start_time_ns": 1_700_000_000_000_000_000,
        "result": ApiResult(
            response_id="chatcmpl-123",
            response_model="gpt-4o-mini-2024-07-18",
            finish_reasons=["stop"],
            usage=Usage(input_tokens=100, output_tokens=20, cache_read_tokens=64),
            attributes={"response.system_fingerprint": "fp_1"},
            service_tier="default",
        ),
        "status_code": 200,
    }
    return finished_call(**(values | overrides))


@pytest.fixture
def sink():
    spans = InMemorySpanExporter()
    reader = InMemoryMetricReader()
    instance = Telemetry(span_exporters=[spans], metric_readers=[reader])
    yield instance, spans, reader
    instance.shutdown(1)


def points(reader: InMemoryMetricReader) -> dict[str, list[tuple[str, str, dict, Any]]]:
    """metric name → [(scope, unit, attributes, data point)]."""
    found: dict[str, list] = {}
    data = reader.get_metrics_data()
    for resource_metrics in data.resource_metrics if data else []:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                for point in metric.data.data_points:
                    found.setdefault(metric.name, []).append(
                        (scope_metrics.scope.name, metric.unit, dict(point.attributes or {}), point)
                    )
    return found


def record(
    instance: Telemetry, call: Call, legacy: bool = True, completion_id: bool = False, attribution: str = "none"
) -> None:
    instance.record(
        call, MetricOptions(legacy_metrics=legacy, legacy_completion_id=completion_id, attribution=attribution)
    )


def test_token_usage_and_duration_follow_the_conventions(sink):
    instance, _, reader = sink
    record(instance, make_call())
    found = points(reader)
    tokens = {attrs["gen_ai.token.type"]: (unit, point) for _, unit, attrs, point in found["gen_ai.client.token.usage"]}
    assert tokens["input"][1].sum == 100 and tokens["output"][1].sum == 20
    assert tokens["input"][0] == "{token}"
    assert list(tokens["input"][1].explicit_bounds) == [float(4**i) for i in range(14)]
    ((scope, unit, attrs, duration),) = found["gen_ai.client.operation.duration"]
    assert (scope, unit, duration.sum, duration.count) == ("mitmproxy-genai", "s", 0.5, 1)
    assert list(duration.explicit_bounds) == pytest.approx([0.01 * 2**i for i in range(14)])
    assert attrs == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "server.address": "api.openai.com",
        "server.port": 443,
    }
    assert "gen_ai.client.operation.time_to_first_chunk" not in found


def test_metrics_carry_no_per_request_values(sink):
    instance, _, reader = sink
    for i in range(5):
        result = make_call().result
        result.response_id = f"chatcmpl-{i}"
        record(instance, make_call(result=result, api_key=f"sk-...{i:04d}"))
    for name, rows in points(reader).items():
        if name.startswith("gen_ai."):
            assert all("chatcmpl" not in str(attrs) and "sk-" not in str(attrs) for _, _, attrs, _ in rows)
            assert len({str(sorted(attrs.items())) for _, _, attrs, _ in rows}) <= 2  # input/output at most


def test_streams_record_time_to_first_chunk_and_every_chunk_interval(sink):
    instance, _, reader = sink
    call = make_call(
        request=ApiRequest(model="gpt-4o-mini", stream=True),
        time_to_first_chunk_s=0.3,
        chunk_intervals_s=[0.01, 0.02, 0.03],
    )
    record(instance, call)
    found = points(reader)
    ((_, _, _, first),) = found["gen_ai.client.operation.time_to_first_chunk"]
    ((_, _, _, per_chunk),) = found["gen_ai.client.operation.time_per_output_chunk"]
    assert first.sum == pytest.approx(0.3) and first.count == 1
    assert per_chunk.count == 3 and per_chunk.sum == pytest.approx(0.06)


def test_failed_calls_record_duration_with_error_type_and_no_tokens(sink):
    instance, spans, reader = sink
    record(instance, make_call(result=ApiResult(error_type="rate_limit_exceeded"), status_code=429))
    found = points(reader)
    assert "gen_ai.client.token.usage" not in found and "tokens_counter" not in found
    ((_, _, attrs, _),) = found["gen_ai.client.operation.duration"]
    assert attrs["error.type"] == "rate_limit_exceeded"
    instance.tracer_provider.force_flush()
    (span,) = spans.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes is not None and span.attributes["error.type"] == "rate_limit_exceeded"


def test_legacy_counters_keep_the_original_contract(sink):
    instance, _, reader = sink
    record(instance, make_call())
    record(instance, make_call())
    found = points(reader)
    for name, expected in [("tokens_counter", 240), ("prompt_tokens", 200), ("completion_tokens", 40)]:
        ((scope, unit, attrs, point),) = found[name]
        assert (scope, unit, point.value) == ("openai.meter", "1", expected)
        assert attrs == {"model": "gpt-4o-mini", "api_key": "sk-proj-...abcd"}


def test_legacy_completion_id_is_opt_in(sink):
    instance, _, reader = sink
    record(instance, make_call(), completion_id=True)
    ((_, _, attrs, _),) = points(reader)["tokens_counter"]
    assert attrs["chat_completion_id"] == "chatcmpl-123"


def test_legacy_counters_can_be_turned_off(sink):
    instance, _, reader = sink
    record(instance, make_call(), legacy=False)
    found = points(reader)
    assert "tokens_counter" not in found and "gen_ai.client.token.usage" in found


def test_legacy_total_falls_back_to_input_plus_output():
    usage = Usage(input_tokens=3, output_tokens=4)
    reader = InMemoryMetricReader()
    instance = Telemetry(span_exporters=[], metric_readers=[reader])
    record(instance, make_call(result=ApiResult(usage=usage)))
    ((_, _, attrs, point),) = points(reader)["tokens_counter"]
    assert point.value == 7 and attrs["model"] == "gpt-4o-mini"


def test_span_has_the_genai_attributes_and_follows_the_clients_trace(sink):
    instance, spans, _ = sink
    call = make_call(
        request=ApiRequest(model="gpt-4o-mini", stream=True, temperature=0.2, choice_count=2, service_tier="auto"),
        request_headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"},
        time_to_first_chunk_s=0.25,
    )
    record(instance, call)
    instance.tracer_provider.force_flush()
    (span,) = spans.get_finished_spans()
    assert span.name == "chat gpt-4o-mini"
    assert span.kind == SpanKind.CLIENT
    assert span.parent is not None and format(span.parent.span_id, "016x") == PARENT_ID
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.start_time == call.start_time_ns
    assert span.end_time == call.start_time_ns + 500_000_000
    attributes = dict(span.attributes or {})
    assert attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "server.address": "api.openai.com",
        "server.port": 443,
        "openai.api.type": "chat_completions",
        "openai.api_key.masked": "sk-proj-...abcd",
        "gen_ai.request.temperature": 0.2,
        "gen_ai.request.choice.count": 2,
        "gen_ai.request.stream": True,
        "gen_ai.response.id": "chatcmpl-123",
        "gen_ai.response.finish_reasons": ("stop",),
        "openai.response.service_tier": "default",
        "openai.response.system_fingerprint": "fp_1",
        "gen_ai.response.time_to_first_chunk": 0.25,
        "http.response.status_code": 200,
        "gen_ai.usage.input_tokens": 100,
        "gen_ai.usage.output_tokens": 20,
        "gen_ai.usage.cache_read.input_tokens": 64,
    }


def test_a_malformed_traceparent_starts_a_new_trace(sink):
    instance, spans, _ = sink
    record(instance, make_call(request_headers={"traceparent": "00-zzzz-1234-01"}))
    instance.tracer_provider.force_flush()
    (span,) = spans.get_finished_spans()
    assert span.parent is None


class HangingExporter(SpanExporter):
    """A collector that accepts the connection and never answers."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def export(self, spans: Any) -> SpanExportResult:
        self.release.wait(30)
        return SpanExportResult.SUCCESS


def test_shutdown_is_bounded_when_the_collector_never_answers():
    hanging = HangingExporter()
    instance = Telemetry(span_exporters=[hanging], metric_readers=[])
    record(instance, make_call())
    started = time.monotonic()
    finished = instance.shutdown(budget_s=0.5)
    elapsed = time.monotonic() - started
    hanging.release.set()
    assert finished is False
    assert elapsed < 2.0  # the budget plus scheduling slack; without the bound this blocks 30 s


def test_cost_cached_and_reasoning_are_recorded_next_to_tokens(sink):
    instance, spans, reader = sink
    result = make_call().result
    result.usage = Usage(input_tokens=100, output_tokens=20, cache_read_tokens=64, reasoning_tokens=8)
    record(instance, make_call(result=result, cost_usd=0.0123))
    found = points(reader)
    ((_, unit, _, cost),) = found["gen_ai.client.token.cost"]
    assert unit == "USD" and cost.sum == pytest.approx(0.0123)
    ((_, _, _, cached),) = found["gen_ai.client.token.cache_read"]
    ((_, _, _, reasoning),) = found["gen_ai.client.token.reasoning"]
    assert (cached.sum, reasoning.sum) == (64, 8)
    instance.tracer_provider.force_flush()
    (span,) = spans.get_finished_spans()
    assert span.attributes is not None and span.attributes["gen_ai.usage.cost_usd"] == pytest.approx(0.0123)


def test_unknown_cost_is_not_recorded_as_zero(sink):
    instance, _, reader = sink
    record(instance, make_call(cost_usd=None))
    assert "gen_ai.client.token.cost" not in points(reader)


def test_rate_limit_headroom_becomes_gauges_and_span_attributes(sink):
    instance, spans, reader = sink
    headers = {
        "x-request-id": "req_abc",
        "openai-processing-ms": "207",
        "x-ratelimit-limit-requests": "10000",
        "x-ratelimit-remaining-requests": "9999",
        "x-ratelimit-reset-requests": "8.64s",
        "x-ratelimit-limit-tokens": "30000",
        "x-ratelimit-remaining-tokens": "29000",
        "x-ratelimit-reset-tokens": "132ms",
    }
    record(instance, make_call(response_headers=headers))
    found = points(reader)
    expected = {"remaining_requests": 9999, "remaining_tokens": 29000, "limit_requests": 10000, "limit_tokens": 30000}
    for name, value in expected.items():
        ((_, _, attrs, point),) = found[f"openai.ratelimit.{name}"]
        assert point.value == value
        assert attrs == {  # server.port as on every histogram
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.provider.name": "openai",
            "server.address": "api.openai.com",
            "server.port": 443,
            "openai.api_key.masked": "sk-proj-...abcd",
        }
    instance.tracer_provider.force_flush()
    (span,) = spans.get_finished_spans()
    attributes = dict(span.attributes or {})
    assert attributes["openai.request.id"] == "req_abc"
    assert attributes["openai.response.processing_ms"] == 207.0
    assert attributes["openai.ratelimit.reset_tokens_s"] == 0.132


V0_1_0_MODEL = Path(__file__).parent / "fixtures" / "semconv-genai-v0.1.0" / "model.yaml"
# This project's own metrics, under both versions: not the conventions' (which define no cost).
EXTENSIONS = {
    "gen_ai.client.token.cache_read",
    "gen_ai.client.token.cache_write",
    "gen_ai.client.token.reasoning",
    "gen_ai.client.token.cost",
}


def required_attributes(model: dict[str, Any], attributes: list[dict[str, Any]]) -> set[str]:
    """The required attributes of a model entry, following its attribute groups."""
    groups = {group["id"]: group for group in model["attribute_groups"]}
    required: set[str] = set()
    for attribute in attributes:
        if "ref_group" in attribute:
            required |= required_attributes(model, groups[attribute["ref_group"]]["attributes"])
        elif attribute.get("requirement_level") == "required":
            required.add(attribute["ref"])
    return required


@pytest.fixture
def opted_in(monkeypatch):
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "http, gen_ai_latest_experimental")
    spans = InMemorySpanExporter()
    reader = InMemoryMetricReader()
    instance = Telemetry(span_exporters=[spans], metric_readers=[reader])
    yield instance, spans, reader
    instance.shutdown(1)


def test_the_opt_in_emits_exactly_the_v0_1_0_metrics(opted_in):
    """Names, instruments, units and required attributes as the v0.1.0 model has them; none of
    v1.41's names."""
    instance, _, reader = opted_in
    model = yaml.safe_load(V0_1_0_MODEL.read_text())
    usage = Usage(
        input_tokens=100,
        output_tokens=20,
        cache_read_tokens=64,
        cache_write_tokens=16,
        reasoning_tokens=8,
        input_modalities=(("text", 70), ("audio", 30)),
    )
    streamed = make_call(result=ApiResult(usage=usage), time_to_first_chunk_s=0.2, chunk_intervals_s=[0.1])
    record(instance, streamed)
    realtime = Usage(input_tokens=10, output_tokens=1, cache_read_tokens=6, cache_read_modalities=(("audio", 4),))
    record(instance, make_call(request=ApiRequest(model="voice"), result=ApiResult(usage=realtime)))
    embeddings = make_call(
        endpoint=Endpoint(openai_embeddings.API),
        request=ApiRequest(model="text-embedding-3-small"),
        result=ApiResult(usage=Usage(input_tokens=9)),
    )
    record(instance, embeddings)
    data = reader.get_metrics_data()
    emitted = {
        metric.name: metric
        for resource_metrics in data.resource_metrics
        for scope_metrics in resource_metrics.scope_metrics
        if scope_metrics.scope.name == telemetry.SCOPE_NAME
        for metric in scope_metrics.metrics
    }
    modalities = {
        member["value"]
        for group in model["attribute_groups"]
        for attribute in group.get("attributes", [])
        if attribute.get("id") == "gen_ai.token.modality"
        for member in attribute["type"]["members"]
    }
    for definition in model["metrics"]:
        metric = emitted[definition["name"]]
        assert metric.unit == definition["unit"], definition["name"]
        kind = "histogram" if isinstance(metric.data, Histogram) else "counter" if metric.data.is_monotonic else "?"
        assert kind == definition["instrument"], definition["name"]
        required = required_attributes(model, definition["attributes"])
        for point in metric.data.data_points:
            assert required <= set(point.attributes), (definition["name"], required - set(point.attributes))
            if "gen_ai.token.modality" in required:
                assert point.attributes["gen_ai.token.modality"] in modalities
    assert set(emitted) - EXTENSIONS == {definition["name"] for definition in model["metrics"]}

    def by_modality(name: str) -> dict[str, int]:
        points = emitted[name].data.data_points
        return {
            p.attributes["gen_ai.token.modality"]: p.value
            for p in points
            if p.attributes["gen_ai.request.model"] == "gpt-4o-mini"
        }

    assert by_modality("gen_ai.client.inference.usage.input_tokens") == {"text": 70, "audio": 30}
    assert by_modality("gen_ai.client.inference.usage.output_tokens") == {"unknown": 20}  # no split reported
    assert by_modality("gen_ai.client.inference.usage.cache_write.input_tokens") == {"unknown": 16}
    cached = {
        (p.attributes["gen_ai.request.model"], p.attributes["gen_ai.token.modality"]): p.value
        for p in emitted["gen_ai.client.inference.usage.cache_read.input_tokens"].data.data_points
    }
    assert cached == {("gpt-4o-mini", "unknown"): 64, ("voice", "audio"): 4, ("voice", "unknown"): 2}
    (embedded,) = emitted["gen_ai.client.embeddings.operation.input_tokens"].data.data_points
    assert embedded.sum == 9 and embedded.attributes["gen_ai.operation.name"] == "embeddings"
    inference = emitted["gen_ai.client.inference.duration"].data.data_points
    assert {p.attributes["gen_ai.operation.name"] for p in inference} == {"chat"}  # embeddings are not inference


def test_the_opt_in_spans_use_the_v0_1_0_usage_names(opted_in):
    instance, spans, _ = opted_in
    model = yaml.safe_load(V0_1_0_MODEL.read_text())
    (span_group,) = [group for group in model["attribute_groups"] if group.get("type") == "span"]
    defined = {attribute["ref"] for attribute in span_group["attributes"]}
    usage = Usage(
        input_tokens=100,
        output_tokens=20,
        cache_write_tokens=16,
        input_modalities=(("text", 70), ("image", 30)),
        output_modalities=(("audio", 20),),
    )
    record(instance, make_call(result=ApiResult(usage=usage)))
    instance.tracer_provider.force_flush()
    (span,) = spans.get_finished_spans()
    usage_attributes = {name for name in span.attributes if name.startswith("gen_ai.usage.") and "cost" not in name}
    assert usage_attributes <= defined
    assert span.attributes["gen_ai.usage.cache_write.input_tokens"] == 16
    assert span.attributes["gen_ai.usage.image.input_tokens"] == 30
    assert span.attributes["gen_ai.usage.audio.output_tokens"] == 20


def test_each_signal_declares_the_conventions_it_follows(sink, opted_in):
    for (instance, spans, reader), schema_url in (
        (sink, "https://opentelemetry.io/schemas/1.41.0"),
        (opted_in, "https://opentelemetry.io/schemas/gen-ai/0.1.0"),
    ):
        record(instance, make_call())
        instance.tracer_provider.force_flush()
        (span,) = spans.get_finished_spans()
        assert span.instrumentation_scope.schema_url == schema_url
        scopes = {
            scope_metrics.scope.name: scope_metrics.scope.schema_url
            for resource_metrics in reader.get_metrics_data().resource_metrics
            for scope_metrics in resource_metrics.scope_metrics
        }
        assert scopes[telemetry.SCOPE_NAME] == schema_url
        assert not scopes[telemetry.LEGACY_SCOPE_NAME]  # the original product's counters follow none


def test_the_default_keeps_the_v1_41_names(sink):
    instance, spans, reader = sink
    record(instance, make_call(result=ApiResult(usage=Usage(input_tokens=10, output_tokens=2, cache_write_tokens=4))))
    found = points(reader)
    assert {"gen_ai.client.token.usage", "gen_ai.client.operation.duration"} <= set(found)
    instance.tracer_provider.force_flush()
    (span,) = spans.get_finished_spans()
    assert span.attributes["gen_ai.usage.cache_creation.input_tokens"] == 4
    assert "gen_ai.usage.cache_write.input_tokens" not in span.attributes


def test_without_opt_in_no_unreleased_names(sink):
    instance, _, reader = sink
    record(instance, make_call())
    assert not [name for name in points(reader) if name.startswith("gen_ai.client.inference")]


def test_azure_request_without_a_model_takes_the_response_model(sink):
    instance, spans, reader = sink
    call = make_call(
        endpoint=Endpoint(openai_chat.API, deployment="prod-gpt", api_version="2024-10-21"),
        provider="azure.ai.openai",
        request=ApiRequest(model=None),
    )
    record(instance, call)
    instance.tracer_provider.force_flush()
    (span,) = spans.get_finished_spans()
    assert span.name == "chat gpt-4o-mini-2024-07-18"
    ((_, _, attrs, _),) = points(reader)["gen_ai.client.operation.duration"]
    assert attrs["gen_ai.request.model"] == "gpt-4o-mini-2024-07-18"
    assert attrs["gen_ai.provider.name"] == "azure.ai.openai"


def test_embeddings_spans_carry_their_parameters(sink):
    instance, spans, reader = sink
    call = make_call(
        endpoint=Endpoint(openai_embeddings.API),
        request=ApiRequest(model="text-embedding-3-small", dimensions=256, encoding_formats=["base64"]),
        result=ApiResult(response_model="text-embedding-3-small", usage=Usage(input_tokens=9)),
    )
    record(instance, call)
    instance.tracer_provider.force_flush()
    (span,) = spans.get_finished_spans()
    assert span.name == "embeddings text-embedding-3-small"
    assert span.attributes is not None and span.attributes["gen_ai.embeddings.dimension.count"] == 256
    assert span.attributes["gen_ai.request.encoding_formats"] == ("base64",)
    tokens = {attrs["gen_ai.token.type"] for _, _, attrs, _ in points(reader)["gen_ai.client.token.usage"]}
    assert tokens == {"input"}


def test_hostile_model_names_cannot_create_unbounded_series(caplog):
    reader = InMemoryMetricReader()
    instance = Telemetry(span_exporters=[], metric_readers=[reader])
    instance.bounded.limit = 5
    for i in range(50):
        result = ApiResult(response_model=f"resp-{i}", usage=Usage(input_tokens=1, output_tokens=1))
        record(instance, make_call(request=ApiRequest(model=f"random-{i}"), result=result, api_key=f"sk-...{i:04d}"))
    found = points(reader)
    models = {attrs["gen_ai.request.model"] for _, _, attrs, _ in found["gen_ai.client.operation.duration"]}
    assert models == {f"random-{i}" for i in range(5)} | {"_OTHER"}
    legacy_keys = {attrs["api_key"] for _, _, attrs, _ in found["tokens_counter"]}
    assert len(legacy_keys) == 6
    assert sum(point.count for _, _, _, point in found["gen_ai.client.operation.duration"]) == 50  # nothing lost
    assert caplog.text.count("distinct values of gen_ai.request.model") == 1


def test_spans_still_waiting_at_exit_are_counted_and_the_exit_line_says_so(caplog):
    inner = RecordingExporter()
    inner.up = False
    guarded = guard(inner, 5)
    instance = Telemetry(span_exporters=[guarded], metric_readers=[])
    instance.record(make_call(), MetricOptions())
    with caplog.at_level(logging.WARNING, logger="genai"):
        assert instance.shutdown(5)
    assert guarded.dropped == 1 and inner.received == []
    assert any("1 spans were dropped while the collector did not accept them" in r.getMessage() for r in caplog.records)


def anthropic_call(**overrides: Any) -> Call:
    values: dict[str, Any] = {
        "endpoint": Endpoint(anthropic_messages.API),
        "provider": "anthropic",
        "server_address": "api.anthropic.com",
        "request": ApiRequest(
            model="claude-sonnet-4-5",
            max_tokens=1024,
            top_k=5,
            attributes={"request.thinking.budget_tokens": 2048},
            stream=True,
        ),
        "api_key": "sk-ant-api03-...abcd",
        "result": ApiResult(
            response_id="msg_1",
            response_model="claude-sonnet-4-5-20250929",
            finish_reasons=["end_turn"],
            usage=Usage(
                input_tokens=1313,
                output_tokens=50,
                cache_read_tokens=1000,
                cache_write_tokens=300,
                cache_write_5m_tokens=200,
                cache_write_1h_tokens=100,
            ),
            service_tier="standard",
            server_tool_requests={"web_search": 2},
        ),
        "request_headers": {
            "anthropic-version": "2023-06-01",
            "anthropic-beta": "claude-code-20250219,oauth-2025-04-20",
            "user-agent": "claude-cli/2.1.197 (external, sdk-cli)",
        },
        "response_headers": {
            "request-id": "req_011CYf",
            "anthropic-ratelimit-requests-limit": "1000",
            "anthropic-ratelimit-requests-remaining": "999",
            "anthropic-ratelimit-input-tokens-limit": "450000",
            "anthropic-ratelimit-input-tokens-remaining": "448000",
            "anthropic-ratelimit-output-tokens-remaining": "89950",
            "anthropic-ratelimit-tokens-reset": "2023-11-14T22:13:25Z",  # 4.5 s after the call's end
        },
    }
    return make_call(**(values | overrides))


def test_an_anthropic_call_records_its_cache_split_and_its_own_attributes(sink):
    instance, spans, reader = sink
    record(instance, anthropic_call())
    found = points(reader)
    tokens = {attrs["gen_ai.token.type"]: point.sum for _, _, attrs, point in found["gen_ai.client.token.usage"]}
    assert tokens == {"input": 1313, "output": 50}
    ((_, _, attrs, read),) = found["gen_ai.client.token.cache_read"]
    ((_, _, _, write),) = found["gen_ai.client.token.cache_write"]
    assert (read.sum, write.sum, attrs["gen_ai.provider.name"]) == (1000, 300, "anthropic")
    legacy = {name: rows[0][3].value for name, rows in found.items() if name in ("tokens_counter", "prompt_tokens")}
    assert legacy == {"tokens_counter": 1363, "prompt_tokens": 1313}  # total = input (cache included) + output
    instance.tracer_provider.force_flush()
    (span,) = spans.get_finished_spans()
    attributes = dict(span.attributes)
    assert span.name == "chat claude-sonnet-4-5"
    assert {key: attributes[key] for key in attributes if key.startswith("gen_ai.usage.")} == {
        "gen_ai.usage.input_tokens": 1313,
        "gen_ai.usage.output_tokens": 50,
        "gen_ai.usage.cache_read.input_tokens": 1000,
        "gen_ai.usage.cache_creation.input_tokens": 300,
        "gen_ai.usage.cache_creation.5m.input_tokens": 200,
        "gen_ai.usage.cache_creation.1h.input_tokens": 100,
    }
    assert attributes["gen_ai.request.top_k"] == 5 and attributes["anthropic.request.thinking.budget_tokens"] == 2048
    assert attributes["anthropic.version"] == "2023-06-01"
    assert attributes["user_agent.original"] == "claude-cli/2.1.197 (external, sdk-cli)"
    assert (attributes["user_agent.name"], attributes["user_agent.version"]) == ("claude-cli", "2.1.197")
    table = instance.summary_table()
    assert table is not None and "claude-cli/2" in table and "sk-ant-api03-...abcd" in table  # who spent it
    assert attributes["anthropic.beta"] == ("claude-code-20250219", "oauth-2025-04-20")
    assert attributes["anthropic.request.id"] == "req_011CYf"
    assert attributes["anthropic.response.service_tier"] == "standard"
    assert attributes["anthropic.usage.server_tool_use.web_search_requests"] == 2
    assert attributes["anthropic.api_key.masked"] == "sk-ant-api03-...abcd"
    assert attributes["anthropic.ratelimit.remaining_input_tokens"] == 448000
    assert attributes["anthropic.ratelimit.reset_tokens_s"] == pytest.approx(4.5)
    assert not any(key.startswith("openai.") for key in attributes)


def test_anthropic_rate_limits_become_their_own_gauges(sink):
    instance, _, reader = sink
    record(instance, anthropic_call())
    found = points(reader)
    for name, value in (
        ("remaining_requests", 999),
        ("limit_requests", 1000),
        ("remaining_input_tokens", 448000),
        ("limit_input_tokens", 450000),
        ("remaining_output_tokens", 89950),
    ):
        ((_, _, attrs, point),) = found[f"anthropic.ratelimit.{name}"]
        assert point.value == value and attrs["gen_ai.provider.name"] == "anthropic"
    assert "anthropic.ratelimit.limit_output_tokens" not in found  # not sent: nothing made up
    assert not any(name.startswith("openai.ratelimit") for name in found)


@pytest.mark.parametrize(
    ("attribution", "expected"),
    [
        ("none", {}),
        ("client", {"genai.client": "claude-cli/2"}),
        ("client+key", {"genai.client": "claude-cli/2", "openai.api_key.masked": "sk-proj-...abcd"}),
    ],
)
def test_who_spent_it_goes_on_the_token_and_cost_metrics_only_when_asked(sink, attribution, expected):
    instance, _, reader = sink
    call = make_call(request_headers={"user-agent": "claude-cli/2.0.14 (external, cli)"}, cost_usd=0.001)
    record(instance, call, attribution=attribution)
    found = points(reader)
    for name in ("gen_ai.client.token.usage", "gen_ai.client.token.cost"):
        for _, _, attributes, _ in found[name]:
            assert {key: attributes.get(key) for key in expected} == expected
            assert "genai.client" in attributes or not expected
            assert "openai.api_key.masked" not in attributes or attribution == "client+key"
    for name in ("gen_ai.client.operation.duration", "gen_ai.client.token.cache_read"):  # never on the others
        ((_, _, attributes, _),) = found[name]
        assert "genai.client" not in attributes and "openai.api_key.masked" not in attributes


def test_the_client_label_is_bounded_like_every_client_chosen_value(sink, monkeypatch):
    instance, _, reader = sink
    monkeypatch.setattr(instance.bounded, "limit", 2)
    for number in range(4):
        record(instance, make_call(request_headers={"user-agent": f"tool{number}/1.0"}), attribution="client")
    clients = {attributes["genai.client"] for _, _, attributes, _ in points(reader)["gen_ai.client.token.usage"]}
    assert clients == {"tool0/1", "tool1/1", "_OTHER"}


def test_a_conversation_and_the_previous_response_go_on_the_span_when_the_api_names_them(sink):
    instance, spans, _ = sink
    asked = ApiRequest(model="gpt-5", conversation_id="conv_689", previous_response_id="resp_0a1")
    record(instance, make_call(endpoint=Endpoint(openai_responses.API), request=asked))
    record(instance, make_call(endpoint=Endpoint(anthropic_messages.API), provider="anthropic"))
    instance.tracer_provider.force_flush()
    responses, messages = spans.get_finished_spans()
    assert responses.attributes["gen_ai.conversation.id"] == "conv_689"
    assert responses.attributes["gen_ai.request.previous_response.id"] == "resp_0a1"
    assert "gen_ai.conversation.id" not in messages.attributes  # Anthropic's API has none: left out


def test_a_websocket_session_is_one_span_and_its_operations_are_its_children(sink):
    from wire import openai_realtime
    from wire.call import SocketRecord
    from wire.socket import SessionInfo

    instance, spans, _ = sink
    trace_id, span_id = int(TRACE_ID, 16), int("1122334455667788", 16)
    for number in range(2):
        operation = make_call(
            endpoint=Endpoint(openai_realtime.API),
            request=ApiRequest(model="gpt-realtime", stream=True),
            result=ApiResult(
                response_id=f"resp_{number}",
                usage=Usage(input_tokens=10, output_tokens=5, cache_read_modalities=(("audio", 4),)),
            ),
            session_span=(trace_id, span_id),
        )
        record(instance, operation)
    info = SessionInfo(session_id="sess_1", model="gpt-realtime", voice="alloy", output_modalities=["audio"])
    instance.record_session(
        SocketRecord(
            endpoint=Endpoint(openai_realtime.API),
            origin=origin(request_headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}),
            start_time_ns=1_700_000_000_000_000_000,
            duration_s=9.0,
            info=info,
            operations=2,
            trace_id=trace_id,
            span_id=span_id,
            parent_span_id=int(PARENT_ID, 16),
        )
    )
    instance.tracer_provider.force_flush()
    *children, session = spans.get_finished_spans()
    assert session.name == "realtime gpt-realtime"
    assert (session.context.trace_id, session.context.span_id) == (trace_id, span_id)
    assert session.parent is not None and session.parent.span_id == int(PARENT_ID, 16)  # the upgrade's traceparent
    assert session.attributes["gen_ai.conversation.id"] == "sess_1"
    assert session.attributes["openai.realtime.voice"] == "alloy"
    assert session.attributes["genai.session.operations"] == 2
    assert [child.parent.span_id for child in children] == [span_id, span_id]
    assert {child.context.trace_id for child in children} == {trace_id}
    assert children[0].attributes["gen_ai.usage.audio.cache_read.input_tokens"] == 4
    assert session.end_time - session.start_time == 9_000_000_000
    record(instance, make_call())  # the next span's ids are random again
    instance.tracer_provider.force_flush()
    assert spans.get_finished_spans()[-1].context.span_id != span_id


def test_a_response_fetched_again_is_counted_once(sink):
    """A Gemini interaction created in the background is counted when a fetch first reads its usage;
    fetched again, its usage is not counted a second time (the span stays, marked)."""
    instance, spans, reader = sink
    interaction = Usage(input_tokens=9, output_tokens=1658, reasoning_tokens=838)
    fetch = Endpoint(gemini_interactions.FETCH)
    for _ in range(2):
        call = make_call(endpoint=fetch, provider="gcp.gemini", request=ApiRequest())
        call.result = ApiResult(response_id="v1_abc", response_model="gemini-3.8-flash", usage=interaction)
        instance.record_call(call, MetricOptions())
    instance.tracer_provider.force_flush()
    first, second = spans.get_finished_spans()
    assert first.attributes["gen_ai.usage.input_tokens"] == 9 and "genai.usage.counted_before" not in first.attributes
    assert "gen_ai.usage.input_tokens" not in second.attributes and second.attributes["genai.usage.counted_before"]
    assert second.attributes["gen_ai.operation.name"] == "fetch_response"
    usage_points = [p for p in points(reader)["gen_ai.client.token.usage"] if p[2]["gen_ai.token.type"] == "input"]
    assert sum(p[3].sum for p in usage_points) == 9


def test_an_apis_own_attributes_are_namespaced_and_a_conventions_name_is_not(sink):
    instance, spans, _ = sink
    call = make_call(
        endpoint=Endpoint(openai_responses.COMPACT),
        request=ApiRequest(model="gpt-5.6", attributes={"request.prompt_cache_retention": "24h"}),
    )
    call.result.attributes = {"gen_ai.conversation.compacted": True}
    record(instance, call)
    instance.tracer_provider.force_flush()
    (span,) = spans.get_finished_spans()
    assert span.attributes["openai.request.prompt_cache_retention"] == "24h"
    assert span.attributes["gen_ai.conversation.compacted"] is True
    assert span.attributes["openai.api.type"] == "responses.compact"


def test_a_shown_call_is_described_back_after_it_is_parsed_and_priced():
    """The one pipeline: parse, price, record, then the description (with the same price)."""
    instance = Telemetry(span_exporters=[], metric_readers=[])
    described: list[Any] = []
    instance.on_description = described.extend
    body = b'{"model": "gpt-4o-mini", "usage": {"prompt_tokens": 1000, "completion_tokens": 100}}'
    shown = finished_call(response_body=body, status_code=200, description_id=41)
    instance.record_call(shown, MetricOptions())
    instance.record_call(finished_call(response_body=body, status_code=200), MetricOptions())  # not shown
    (description,) = described
    assert description.call_id == 41 and not description.failed
    assert shown.cost_usd and f"${shown.cost_usd:.6f}" in description.text and "1000→100 tok" in description.text
    instance.shutdown(1)


def test_the_calls_of_an_agent_session_share_a_trace_under_its_invoke_agent_span(sink):
    instance, spans, _ = sink
    clock = [0.0]
    instance.sessions = Sessions(clock=lambda: clock[0])  # idle for genai_session_idle: 300 s
    headers = {"user-agent": "claude-cli/2.1.332 (external, sdk-cli)", "x-claude-code-session-id": "s-42"}
    for number in range(2):
        record(instance, make_call(request_headers=headers, start_time_ns=(1_700_000_000 + number) * 10**9))
    traced = {**headers, "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}
    record(instance, make_call(request_headers=traced))  # the client's own trace wins
    instance.tracer_provider.force_flush()
    assert not [s for s in spans.get_finished_spans() if s.name.startswith("invoke_agent")]  # still open
    clock[0] = 301.0
    instance.end_idle_sessions()
    instance.tracer_provider.force_flush()
    finished = spans.get_finished_spans()
    (agent,) = [s for s in finished if s.name == "invoke_agent claude-cli"]
    calls = [s for s in finished if s.name.startswith("chat")]
    trace_id, span_id = session_trace("s-42")
    assert (agent.context.trace_id, agent.context.span_id) == (trace_id, span_id)
    assert [(s.context.trace_id, s.parent.span_id) for s in calls[:2]] == [(trace_id, span_id)] * 2
    assert calls[2].context.trace_id == int(TRACE_ID, 16)
    assert agent.attributes["genai.session.calls"] == 3  # counted, whichever trace it is in
    assert agent.attributes["gen_ai.usage.input_tokens"] == 300
    assert agent.attributes["gen_ai.conversation.id"] == "s-42"
    assert agent.attributes["gen_ai.operation.name"] == "invoke_agent"


def test_sessions_still_open_at_shutdown_are_recorded():
    spans = InMemorySpanExporter()
    instance = Telemetry(span_exporters=[spans], metric_readers=[])
    headers = {"user-agent": "codex_exec/0.171.0", "session-id": "s-7"}
    instance.record(make_call(request_headers=headers), MetricOptions())
    assert instance.shutdown(5)
    assert [s.name for s in spans.get_finished_spans() if s.name.startswith("invoke_agent")] == [
        "invoke_agent codex_exec"
    ]


def test_a_tool_between_two_calls_is_an_execute_tool_span_and_a_duration(sink):
    """The response asks for two tools; the next request of the session answers them 2.5 s after it
    ended, one failed: two spans over that gap in the session's trace, its tool time counted once."""
    instance, spans, reader = sink
    headers = {"user-agent": "claude-cli/2.1.332 (external, sdk-cli)", "x-claude-code-session-id": "s-tools"}
    asking = make_call(
        request_headers=headers,
        start_time_ns=10 * 10**9,
        duration_s=1.5,
        result=ApiResult(
            response_model="claude-x",
            tool_calls=(ToolCall("toolu_1", "Bash"), ToolCall("toolu_2", "Read")),
            usage=Usage(input_tokens=10, output_tokens=5),
        ),
    )
    answering = make_call(
        request_headers=headers,
        start_time_ns=14 * 10**9,
        request=ApiRequest(model="claude-x", tool_results=(ToolResult("toolu_1", error=True), ToolResult("toolu_2"))),
    )
    for finished in (asking, answering):
        record(instance, finished)
    assert instance.shutdown(5)
    finished_spans = spans.get_finished_spans()
    tools = sorted((s for s in finished_spans if s.name.startswith("execute_tool")), key=lambda s: s.name)
    trace_id, session_span_id = session_trace("s-tools")
    assert [s.name for s in tools] == ["execute_tool Bash", "execute_tool Read"]
    bash, read = tools
    assert (bash.start_time, bash.end_time) == (11_500_000_000, 14_000_000_000)
    assert (bash.context.trace_id, bash.parent.span_id) == (trace_id, session_span_id)
    assert bash.kind == SpanKind.INTERNAL
    assert bash.attributes["gen_ai.operation.name"] == "execute_tool"
    assert bash.attributes["gen_ai.tool.call.id"] == "toolu_1" and bash.attributes["gen_ai.tool.type"] == "function"
    assert bash.attributes["gen_ai.conversation.id"] == "s-tools"
    assert bash.attributes["error.type"] == "tool_error" and bash.status.status_code == StatusCode.ERROR
    assert "error.type" not in read.attributes
    (agent,) = [s for s in finished_spans if s.name.startswith("invoke_agent")]
    assert agent.attributes["genai.session.tool_time_s"] == 2.5  # one gap, two tools
    durations = {p[2]["gen_ai.tool.name"]: p for p in points(reader)["gen_ai.execute_tool.duration"]}
    assert durations["Bash"][1] == "s" and durations["Bash"][3].sum == 2.5
    assert durations["Bash"][2]["error.type"] == "tool_error"
    assert durations["Read"][2] == {
        "gen_ai.tool.name": "Read",
        "gen_ai.tool.type": "function",
        "gen_ai.agent.name": "claude-cli",
    }


def test_without_a_session_a_tool_span_is_the_child_of_the_call_that_asked_for_it(sink):
    """An app's own loop: the same key at the same server is the scope; another key is not."""
    instance, spans, _ = sink
    asking = make_call(result=ApiResult(tool_calls=(ToolCall("call_1", "lookup"),)))
    other_key = make_call(api_key="sk-proj-...zzzz", request=ApiRequest(tool_results=(ToolResult("call_1"),)))
    answering = make_call(
        start_time_ns=asking.start_time_ns + 3 * 10**9, request=ApiRequest(tool_results=(ToolResult("call_1"),))
    )
    for finished in (asking, other_key, answering):
        record(instance, finished)
    instance.tracer_provider.force_flush()
    finished_spans = spans.get_finished_spans()
    (tool,) = [s for s in finished_spans if s.name == "execute_tool lookup"]
    asking_span = finished_spans[0]
    assert (tool.context.trace_id, tool.parent.span_id) == (asking_span.context.trace_id, asking_span.context.span_id)
    assert "gen_ai.conversation.id" not in tool.attributes and "gen_ai.agent.name" not in tool.attributes


def test_a_cache_break_is_counted_by_agent_and_model_and_marks_the_span(sink):
    instance, spans, reader = sink
    headers = {"user-agent": "claude-cli/2.1.332 (external, sdk-cli)", "x-claude-code-session-id": "s-cache"}
    for read in (30_000, 1_000):
        usage = Usage(input_tokens=32_000, output_tokens=10, cache_read_tokens=read)
        record(instance, make_call(request_headers=headers, result=ApiResult(response_model="claude-x", usage=usage)))
    assert instance.shutdown(5)
    (breaks,) = points(reader)["gen_ai.client.cache_breaks"]
    assert breaks[3].value == 1 and breaks[2]["gen_ai.agent.name"] == "claude-cli"
    assert breaks[2]["gen_ai.request.model"] == "gpt-4o-mini"
    first, second = [s for s in spans.get_finished_spans() if s.name.startswith("chat")]
    assert "genai.cache.break" not in first.attributes
    assert second.attributes["genai.cache.break"] is True
    assert second.attributes["genai.cache.previous_read_tokens"] == 30_000
    (agent,) = [s for s in spans.get_finished_spans() if s.name.startswith("invoke_agent")]
    assert agent.attributes["genai.session.cache_breaks"] == 1


def test_responses_chained_by_previous_response_id_are_one_session():
    """Calls that continue a response (`previous_response_id`) share the chain's trace and session,
    named by the first response id; the call that starts the chain has none to be named by."""
    spans = InMemorySpanExporter()
    instance = Telemetry(span_exporters=[spans], metric_readers=[])
    responses = Endpoint(openai_responses.API)
    previous = None
    for number in range(3):
        request = ApiRequest(model="gpt-5", previous_response_id=previous)
        result = ApiResult(response_id=f"resp_{number}", usage=Usage(input_tokens=10, output_tokens=1))
        instance.record(make_call(endpoint=responses, request=request, result=result), MetricOptions())
        previous = f"resp_{number}"
    assert instance.shutdown(5)
    chats = [s for s in spans.get_finished_spans() if s.name.startswith("chat")]
    (agent,) = [s for s in spans.get_finished_spans() if s.name.startswith("invoke_agent")]
    trace_id, span_id = session_trace("resp_0")
    assert [(s.attributes or {}).get("gen_ai.conversation.id") for s in chats] == [None, "resp_0", "resp_0"]
    assert [s.context.trace_id == trace_id for s in chats] == [False, True, True]
    assert (agent.attributes or {})["genai.session.calls"] == 2 and agent.context.span_id == span_id


def test_an_mcp_tools_call_made_for_an_agents_tool_call_is_linked_both_ways(sink):
    instance, spans, _ = sink
    headers = {"user-agent": "claude-cli/2.1.332 (external, sdk-cli)", "x-claude-code-session-id": "s-mcp"}
    asked = ToolCall("toolu_9", "mcp__weather__get_weather")
    instance.record(make_call(request_headers=headers, result=ApiResult(tool_calls=(asked,))), MetricOptions())
    mcp_call = finished_call(
        endpoint=Endpoint(mcp.API),
        start_time_ns=1_700_000_002_000_000_000,
        request=ApiRequest(attributes={"mcp.method.name": "tools/call", "gen_ai.tool.name": "get_weather"}),
        status_code=200,
    )
    instance.record_call(mcp_call, MetricOptions())
    answering = ApiRequest(model="gpt-4o-mini", tool_results=(ToolResult("toolu_9"),))
    instance.record(
        make_call(request_headers=headers, start_time_ns=1_700_000_003_000_000_000, request=answering), MetricOptions()
    )
    instance.tracer_provider.force_flush()
    finished = spans.get_finished_spans()
    (mcp_span,) = [s for s in finished if s.name == "tools/call get_weather"]
    (tool_span,) = [s for s in finished if s.name.startswith("execute_tool")]
    assert mcp_span.attributes["gen_ai.tool.call.id"] == "toolu_9"
    assert [link.context.span_id for link in mcp_span.links] == [session_trace("s-mcp")[1]]  # under the session
    assert [link.context.span_id for link in tool_span.links] == [mcp_span.context.span_id]
