"""The deployment recipes in deploy/: valid YAML, only real metric names, the rules checked and
unit-tested by a real `promtool`, and the Grafana dashboard's structure.
(`tests/test_end_to_end_prometheus.py` runs every query against a real Prometheus, and
`tests/test_end_to_end_collector.py` the Collector configuration in a real Collector.)"""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from harness.prometheus import dashboard_expressions, rule_expressions
from telemetry import Telemetry
from telemetry_process import MetricOptions
from tests.builders import finished_call
from wire import anthropic_messages, openai_chat
from wire.call import Endpoint
from wire.records import ApiRequest, ApiResult, ToolCall, ToolResult, Usage

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
        call = finished_call(
            endpoint=endpoint,
            request=ApiRequest(model="gpt-4o-mini", stream=True),
            result=ApiResult(response_model="gpt-4o-mini", usage=usage),
            time_to_first_chunk_s=0.1,
            chunk_intervals_s=[0.01],
            cost_usd=0.001,
            response_headers=headers,
        )
        telemetry.record(call, MetricOptions())
    # An agent session that breaks its cache, asks for a tool and brings its result back.
    session = {"x-claude-code-session-id": "s-1"}
    for read, tools in ((5000, (ToolCall("toolu_1", "Bash"),)), (0, ())):
        broken = Usage(input_tokens=6000, output_tokens=5, cache_read_tokens=read)
        call = finished_call(
            request_headers=session,
            request=ApiRequest(model="claude-x", tool_results=() if tools else (ToolResult("toolu_1"),)),
            result=ApiResult(usage=broken, tool_calls=tools),
        )
        telemetry.record(call, MetricOptions())
    data = reader.get_metrics_data()
    assert data is not None
    return {
        metric.name.replace(".", "_")
        for resource_metrics in data.resource_metrics
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
    }


DASHBOARD = DEPLOY / "grafana" / "genai-dashboard.json"
LABELS = r"gen_ai_(request_model|response_model|provider_name|token_type|operation_name|agent_name|tool_name)"


def metric_names(expressions: list[str]) -> set[str]:
    """The addon's metric names an expression uses (not its label names)."""
    used = {name for expr in expressions for name in re.findall(r"\b((?:gen_ai|openai|anthropic)_[a-zA-Z_]+)\b", expr)}
    used -= {name for expr in expressions for name in re.findall(r"\b(gen_ai_[a-z_]+)\s*[=!~]", expr)}  # labels
    return {name for name in used if not re.fullmatch(LABELS, name)}


@pytest.mark.parametrize("source", ["rules", "dashboard"])
def test_the_rules_and_the_dashboard_use_only_metrics_the_addon_emits(source):
    used = metric_names(rule_expressions() if source == "rules" else dashboard_expressions())
    emitted = emitted_prometheus_names()
    assert used, "they should use the addon's metrics"
    for name in used:
        base = name
        while base not in emitted and base.endswith(SUFFIXES):
            base = next(base.removesuffix(s) for s in SUFFIXES if base.endswith(s))
        assert base in emitted, f"{name} is not a metric the addon emits"


def test_the_guide_names_the_files_it_explains():
    guide = (DEPLOY / "README.md").read_text()
    for name in ("otel-collector.yaml", "prometheus-rules.yaml", "prometheus-rules.test.yaml", "prometheus.yml"):
        assert name in guide
    assert "grafana/genai-dashboard.json" in guide


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is not installed: .ci/run installs Debian's prometheus (apt-get install prometheus)")
    return found


@pytest.mark.end_to_end
@pytest.mark.parametrize(
    "command",
    [
        ["check", "rules", "prometheus-rules.yaml"],
        ["check", "config", "prometheus.yml"],
        ["test", "rules", "prometheus-rules.test.yaml"],
    ],
    ids=["check-rules", "check-config", "rule-unit-tests"],
)
def test_promtool_accepts_the_rules_and_config_and_the_rule_tests_pass(command):
    finished = subprocess.run(
        [promtool(), *command], cwd=DEPLOY, capture_output=True, text=True, timeout=120, check=False
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    if command[0] == "test":
        assert "SUCCESS" in finished.stdout + finished.stderr


def test_every_rule_has_a_unit_test():
    tests = yaml.safe_load((DEPLOY / "prometheus-rules.test.yaml").read_text())["tests"]
    tested = {case["expr"] for test in tests for case in test.get("promql_expr_test", [])}
    tested |= {case["alertname"] for test in tests for case in test.get("alert_rule_test", [])}
    rules = yaml.safe_load((DEPLOY / "prometheus-rules.yaml").read_text())
    names = {rule.get("record") or rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    assert names <= tested, f"rules without a test: {sorted(names - tested)}"


def test_the_dashboard_is_well_formed():
    """Grafana cannot be installed here: the JSON model is checked for what Grafana needs."""
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {variable["name"] for variable in dashboard["templating"]["list"]}
    assert {"datasource", "provider", "model", "instance"} <= variables
    assert dashboard["uid"] and dashboard["schemaVersion"] >= 36
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)) >= 9
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["fieldConfig"]["defaults"]["unit"], panel["title"]
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"} and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"] and target["refId"], panel["title"]
            used = set(re.findall(r"\$(\w+)", target["expr"])) - {"__rate_interval"}
            assert used <= variables, f"{panel['title']} uses undefined variables {used - variables}"
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            assert set(re.findall(r"\$(\w+)", variable["query"]["query"])) <= variables
    titles = " ".join(panel["title"] for panel in dashboard["panels"]).lower()
    for topic in (
        "tokens",
        "cost per hour",
        "cost per day",
        "duration",
        "first content",
        "error",
        "cached",
        "rate-limit",
        "provider",
    ):
        assert topic in titles, topic


def test_the_provisioning_files_point_at_the_dashboard_and_a_prometheus():
    datasource = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml").read_text())
    assert datasource["datasources"][0]["type"] == "prometheus"
    provider = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "genai.yaml").read_text())
    assert provider["providers"][0]["type"] == "file" and provider["providers"][0]["options"]["path"]
