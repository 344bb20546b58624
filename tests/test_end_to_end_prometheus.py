"""Every query the project hands users, against a real Prometheus scraping a real mitmdump.

A regular-mode mitmdump with the addon serves its metrics itself (`OTEL_METRICS_EXPORTER=
prometheus`); a real Prometheus (Debian's package; `.ci/run` installs it) scrapes it every second
and evaluates `deploy/prometheus-rules.yaml`. Real `openai` and `anthropic` SDK traffic (plain,
streamed, failed) goes through the proxy to the fake upstream. Then every PromQL expression in the
README, in the rules and in every dashboard panel is run through Prometheus's HTTP API: each must
parse, and those the traffic feeds must return what the traffic implies.
"""

import re
import ssl
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from harness.collector import free_port
from harness.e2e import KEY, World
from harness.mitmdump import Mitmdump
from harness.prometheus import (
    Prometheus,
    dashboard_expressions,
    readme_expressions,
    rule_expressions,
    wait_until,
)

ANTHROPIC_KEY = "sk-ant-api03-" + "Prom" * 20


@pytest.fixture(scope="module")
def scraped(world: World) -> Iterator[tuple[Prometheus, dict[str, Any]]]:
    """The proxy and Prometheus, after the traffic; with what the SDKs were told about usage."""
    metrics_port = free_port()
    env = {
        **world.env,
        "OTEL_METRICS_EXPORTER": "prometheus",
        "OTEL_EXPORTER_PROMETHEUS_PORT": str(metrics_port),
        "OTEL_TRACES_EXPORTER": "none",
    }
    args = ["--mode", f"upstream:http://127.0.0.1:{world.forwarder.port}"]
    args += ["--set", f"ssl_verify_upstream_trusted_ca={world.pki.ca_cert}"]
    args += ["--set", "genai_metric_attribution=client"]  # the cost-by-client panel and query
    with Mitmdump(args, env, world.tmp / "conf-prometheus") as proxy:
        prometheus = Prometheus(world.tmp, metrics_port)
        try:
            # Twice: a series Prometheus first sees at its final value has no rate (it never saw the
            # increase), so the rates, shares and quantiles come from the second round.
            first = traffic(world, proxy)
            wait_until(lambda: prometheus.query("gen_ai_client_token_cache_read_sum"))
            time.sleep(2.5)  # two more scrapes of the first round's values
            second = traffic(world, proxy)
            assert first == second  # the fake answers the same every time: one round's numbers
            total = {kind: {model: 2 * value for model, value in first[kind].items()} for kind in first}
            yield prometheus, {"round": first, "total": total}
        finally:
            prometheus.stop()


def traffic(world: World, proxy: Mitmdump) -> dict[str, Any]:
    """Regular mode: api.openai.com and api.anthropic.com through the proxy, as their SDKs call them."""
    trusting_mitmproxy = ssl.create_default_context(cafile=str(proxy.ca_cert))
    gpt = openai.OpenAI(
        api_key=KEY, max_retries=0, http_client=openai.DefaultHttpxClient(proxy=proxy.url, verify=trusting_mitmproxy)
    )
    claude = anthropic.Anthropic(
        api_key=ANTHROPIC_KEY,
        max_retries=0,
        http_client=anthropic.DefaultHttpxClient(proxy=proxy.url, verify=trusting_mitmproxy),
    )
    question: Any = [{"role": "user", "content": "Say this is a test"}]
    expected: dict[str, Any] = {"input": {}, "output": {}}

    def count(model: str, input_tokens: int, output_tokens: int) -> None:
        expected["input"][model] = expected["input"].get(model, 0) + input_tokens
        expected["output"][model] = expected["output"].get(model, 0) + output_tokens

    for number in range(3):
        knobs = {"x-fake-reasoning-tokens": "4"} if number == 0 else {}
        reply = gpt.chat.completions.create(model="e2e-prom-gpt", messages=question, extra_headers=knobs)
        assert reply.usage is not None
        count(reply.model, reply.usage.prompt_tokens, reply.usage.completion_tokens)
    for _ in range(2):
        chunks = list(
            gpt.chat.completions.create(
                model="e2e-prom-gpt",
                messages=question,
                stream=True,
                stream_options={"include_usage": True},
                extra_headers={"x-fake-chunks": "3", "x-fake-chunk-delay-ms": "100"},
            )
        )
        usage = chunks[-1].usage
        assert usage is not None
        count(chunks[-1].model, usage.prompt_tokens, usage.completion_tokens)
    with pytest.raises(openai.RateLimitError):
        gpt.chat.completions.create(
            model="e2e-prom-gpt", messages=question, extra_headers={"x-fake-error": "429:rate_limit_exceeded"}
        )
    for _ in range(2):
        message = claude.messages.create(model="claude-sonnet-4-6", max_tokens=32, messages=question)
        count(message.model, message.usage.input_tokens, message.usage.output_tokens)
    cache = {"x-fake-cache-read": "500", "x-fake-cache-write-5m": "100"}
    with claude.messages.stream(
        model="claude-sonnet-4-6", max_tokens=32, messages=question, extra_headers=cache
    ) as stream:
        final = stream.get_final_message()
    count(final.model, final.usage.input_tokens + 500 + 100, final.usage.output_tokens)
    # An agent session whose second call finds its cache gone (written again): a cache break a round.
    for cache_headers in ({"x-fake-cache-read": "5000"}, {"x-fake-cache-write-5m": "5000"}):
        message = claude.messages.create(
            model="claude-sonnet-4-6",
            max_tokens=32,
            messages=question,
            extra_headers={"x-claude-code-session-id": "e2e-prom-session", **cache_headers},
        )
        count(message.model, message.usage.input_tokens + 5000, message.usage.output_tokens)
    with pytest.raises(anthropic.APIStatusError):
        claude.messages.create(
            model="claude-sonnet-4-6",
            max_tokens=32,
            messages=question,
            extra_headers={"x-fake-error": "529:overloaded_error"},
        )
    return expected


def test_exported_token_sums_are_exactly_what_the_sdks_were_told(scraped):
    prometheus, told = scraped
    expected = told["total"]
    for token_type in ("input", "output"):
        expr = f'sum by (gen_ai_response_model) (gen_ai_client_token_usage_sum{{gen_ai_token_type="{token_type}"}})'
        want = expected[token_type]
        assert wait_until(lambda expr=expr, want=want: prometheus.values(expr, "gen_ai_response_model") == want)
    errors = 'sum by (error_type) (gen_ai_client_operation_duration_seconds_count{error_type!=""})'
    want_errors = {"rate_limit_exceeded": 2, "overloaded_error": 2}
    assert wait_until(lambda: prometheus.values(errors, "error_type") == want_errors), prometheus.values(
        errors, "error_type"
    )
    providers = "sum by (gen_ai_provider_name) (gen_ai_client_operation_duration_seconds_count)"
    want_providers = {"openai": 12, "anthropic": 12}
    assert wait_until(lambda: prometheus.values(providers, "gen_ai_provider_name") == want_providers)


def test_who_spent_it_is_the_sdk_that_made_the_call(scraped):
    prometheus, _ = scraped
    sdks = {
        f"openai-python/{openai.__version__.split('.')[0]}",
        f"anthropic-python/{anthropic.__version__.split('.')[0]}",
    }
    calls = prometheus.values("sum by (genai_client) (gen_ai_client_token_usage_count)", "genai_client")
    assert set(calls) == sdks
    costs = prometheus.values("sum by (genai_client) (gen_ai_client_token_cost_USD_sum)", "genai_client")
    assert costs and set(costs) <= sdks and all(cost > 0 for cost in costs.values())


@pytest.mark.parametrize("source", ["README", "rules", "dashboard"])
def test_every_query_parses_and_the_ones_the_traffic_feeds_return_data(scraped, source):
    prometheus, _ = scraped
    expressions = {"README": readme_expressions, "rules": rule_expressions, "dashboard": dashboard_expressions}[
        source
    ]()
    assert len(expressions) >= 5
    empty = []
    for expr in expressions:
        if not wait_until(lambda expr=expr: prometheus.query(expr), timeout=8):
            empty.append(expr)
    # What this traffic cannot feed: the headroom, spend and cache-break alerts, whose thresholds it
    # stays clear of.
    fed_elsewhere = [expr for expr in empty if not re.search(r"< 0\.1$|> 50$|> 5$", expr)]
    assert not fed_elsewhere, f"no data for: {fed_elsewhere}"


def test_each_rounds_cache_break_is_counted_once_by_agent_and_model(scraped):
    prometheus, _ = scraped

    def counted() -> float | None:
        return prometheus.values("gen_ai_client_cache_breaks_total", "gen_ai_request_model").get("claude-sonnet-4-6")

    # Both rounds' breaks: a scrape may come between them, and the telemetry process may be late.
    wait_until(lambda: counted() == 2, timeout=40)
    assert counted() == 2
    (sample,) = prometheus.query("gen_ai_client_cache_breaks_total")
    assert sample["metric"]["gen_ai_agent_name"] == "anthropic-python"  # the SDK the calls came from


def test_rates_cache_share_latency_and_headroom_have_the_values_the_traffic_implies(scraped):
    prometheus, told = scraped
    expected = told["round"]  # what the rates see: the second round's increase
    panels = dashboard_expressions()
    tokens = next(expr for expr in panels if "gen_ai_token_type)" in expr)
    rates = wait_until(lambda: prometheus.query(tokens))
    models = {sample["metric"]["gen_ai_request_model"] for sample in rates}
    assert {"e2e-prom-gpt", "claude-sonnet-4-6"} <= models
    assert all(float(sample["value"][1]) > 0 for sample in rates)
    cached = next(expr for expr in panels if "token_cache_read_sum" in expr)
    share = wait_until(lambda: prometheus.values(cached, "gen_ai_request_model").get("claude-sonnet-4-6"))
    claude_input = expected["input"]["claude-sonnet-4-6"]
    assert share == pytest.approx((500 + 5000) / claude_input, rel=0.05)  # the same window for both rates
    # Time to first content chunk of the two paced streams (100 ms apart; the first content after
    # one pause): in the (0.08, 0.16] s bucket, so its median is interpolated inside it.
    ttfc = 'gen_ai_client_operation_time_to_first_chunk_seconds_bucket{gen_ai_request_model="e2e-prom-gpt"}'
    quantile = prometheus.query(f"histogram_quantile(0.5, sum by (le) (rate({ttfc}[1m])))")
    assert 0.08 <= float(quantile[0]["value"][1]) <= 0.16
    headroom = next(expr for expr in panels if "openai_ratelimit_remaining_tokens" in expr)
    assert 0 < prometheus.values(headroom, "gen_ai_request_model")["e2e-prom-gpt"] <= 1
    anthropic_headroom = next(expr for expr in panels if "anthropic_ratelimit_remaining_input_tokens" in expr)
    assert prometheus.values(anthropic_headroom, "gen_ai_request_model")["claude-sonnet-4-6"] == pytest.approx(
        449000 / 450000
    )


def test_the_recording_rules_are_evaluated_by_prometheus(scraped):
    prometheus, _ = scraped
    recorded = wait_until(lambda: prometheus.values("genai:input_tokens:rate5m", "gen_ai_request_model"))
    assert {"e2e-prom-gpt", "claude-sonnet-4-6"} <= set(recorded)
    p95 = wait_until(lambda: prometheus.values("genai:time_to_first_chunk_seconds:p95_5m", "gen_ai_request_model"))
    assert 0.08 <= p95["e2e-prom-gpt"] <= 0.16
