"""The deployment recipes in deploy/: valid YAML, consistent pipelines, and only real metric names."""

import re
from pathlib import Path

import yaml
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from telemetry import Telemetry
from wire import anthropic_messages, openai_chat
from wire.call import Call, Endpoint
from wire.records import ApiRequest, ApiResult, Usage

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
# What Prometheus adds to an OpenTelemetry metric name: unit and type suffixes.
SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_seconds", "_USD", "_ratio")


def emitted_prometheus_names() -> set[str]:
    """Every metric the addon emits (one rich call of each vendor, opt-in names too), as Prometheus spells the base."""
    reader = InMemoryMetricReader()
    telemetry = Telemetry(span_exporters=[], metric_readers=[reader])
    usage = Usage(input_tokens=10, output_tokens=5, cache_read_tokens=4, cache_write_tokens=1, reasoning_tokens=2)
    for endpoint, headers in (
        (
            Endpoint(openai_chat.API),
            {
                f"x-ratelimit-{kind}-{unit}": "1s" if kind == "reset" else "1"
                for kind in ("limit", "remaining", "reset")
                for unit in ("requests", "tokens")
            },
        ),
        (
            Endpoint(anthropic_messages.API),
            {
                f"anthropic-ratelimit-{unit}-{kind}": "1"
                for kind in ("limit", "remaining")
                for unit in ("requests", "tokens", "input-tokens", "output-tokens")
            },
        ),
    ):
        call = Call(
            endpoint=endpoint,
            provider="openai",
            server_address="api.openai.com",
            server_port=443,
            request=ApiRequest(model="gpt-4o-mini", stream=True),
            api_key="sk-...abcd",
            start_time_ns=0,
            duration_s=0.5,
            result=ApiResult(response_model="gpt-4o-mini", usage=usage),
            time_to_first_chunk_s=0.1,
            chunk_intervals_s=[0.01],
            cost_usd=0.001,
            response_headers=headers,
        )
        telemetry.record(call, legacy_metrics=True, legacy_completion_id=False)
    data = reader.get_metrics_data()
    assert data is not None
    return {
        metric.name.replace(".", "_")
        for resource_metrics in data.resource_metrics
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
    }


def test_collector_config_is_valid_and_its_pipelines_name_defined_components():
    config = yaml.safe_load((DEPLOY / "otel-collector.yaml").read_text())
    pipelines = config["service"]["pipelines"]
    assert set(pipelines) == {"metrics", "traces"}
    for pipeline in pipelines.values():
        for kind in ("receivers", "processors", "exporters"):
            for name in pipeline.get(kind, []):
                assert name in config[kind], f"{name} is used but not defined under {kind}"
    assert config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].endswith(":4317")


def test_prometheus_rules_use_only_metrics_the_addon_emits():
    rules = yaml.safe_load((DEPLOY / "prometheus-rules.yaml").read_text())
    expressions = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    used = {name for expr in expressions for name in re.findall(r"\b((?:gen_ai|openai)_[a-zA-Z_]+)\b", expr)}
    used -= {name for expr in expressions for name in re.findall(r"\b(gen_ai_[a-z_]+)\s*[=!~]", expr)}  # labels
    used = {name for name in used if not re.fullmatch(r"gen_ai_(request_model|provider_name|token_type)", name)}
    emitted = emitted_prometheus_names()
    assert used, "the rules should use the addon's metrics"
    for name in used:
        base = name
        while base not in emitted and base.endswith(SUFFIXES):
            base = next(base.removesuffix(s) for s in SUFFIXES if base.endswith(s))
        assert base in emitted, f"{name} is not a metric the addon emits"


def test_the_guide_names_the_files_it_explains():
    guide = (DEPLOY / "README.md").read_text()
    assert "otel-collector.yaml" in guide and "prometheus-rules.yaml" in guide
