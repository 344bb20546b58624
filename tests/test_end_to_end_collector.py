"""A fleet of proxies through the project's real OpenTelemetry Collector (deploy/collector/), and
what `deploy/README.md` promises of it, shown on the Collector's own output.

Three mitmdumps with the addon (regular mode, one `OTEL_SERVICE_NAME`, distinct
`service.instance.id`) each get their own known traffic from the real `openai`, `anthropic` and
`google-genai` SDKs, plain and streamed, with two API keys. They export over OTLP/gRPC to one
Collector running `deploy/otel-collector.yaml` (re-pointed to loopback by an overlay, see
`harness/collector.py`), whose Prometheus exporter a real Prometheus scrapes with `honor_labels`
as `deploy/prometheus.yml` does, and whose trace exporter sends on to a real OTLP receiver.
Then the faults: the Collector killed and restarted mid-traffic, and a Collector that refuses all.
"""

from __future__ import annotations

import contextlib
import json
import re
import ssl
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anthropic
import openai
import pytest
from google import genai

from harness.collector import Collector, validate
from harness.e2e import KEY, World
from harness.mitmdump import Mitmdump
from harness.otlp_receiver import OTLPReceiver
from harness.prometheus import Prometheus, dashboard_expressions, rule_expressions, wait_until

SERVICE = "genai-fleet"
SECOND_KEY = "sk-proj-" + "Fleet2ndKey" * 3
ANTHROPIC_KEY = "sk-ant-api03-" + "Fleet" * 16
QUESTION: Any = [{"role": "user", "content": "Say this is a test"}]
# Who spent it, key included, on the token and cost metrics: the Collector must drop the key there too.
ATTRIBUTION = ("--set", "genai_metric_attribution=client+key")


@dataclass
class Told:
    """What the SDKs were told: tokens by (token type, model), and how many calls were made."""

    tokens: Counter[tuple[str, str]] = field(default_factory=Counter)
    calls: int = 0

    def count(self, model: str, input_tokens: int, output_tokens: int) -> None:
        self.tokens["input", model] += input_tokens
        self.tokens["output", model] += output_tokens
        self.calls += 1

    def by_model(self, token_type: str) -> dict[str, float]:
        return {model: float(n) for (kind, model), n in self.tokens.items() if kind == token_type}


def proxy_env(world: World, collector: Collector, instance: str) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
        "OTEL_SERVICE_NAME": SERVICE,
        "OTEL_RESOURCE_ATTRIBUTES": f"service.instance.id={instance}",
        "OTEL_METRIC_EXPORT_INTERVAL": "300",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }


def regular_proxy(
    world: World, collector: Collector, instance: str, *extra: str, env: dict[str, str] | None = None
) -> Mitmdump:
    """A regular-mode proxy whose tunnels the world's forwarder ends at the fake upstream."""
    args = ["--mode", f"upstream:http://127.0.0.1:{world.forwarder.port}"]
    args += ["--set", f"ssl_verify_upstream_trusted_ca={world.pki.ca_cert}", *extra]
    return Mitmdump(args, {**proxy_env(world, collector, instance), **(env or {})}, world.tmp / f"conf-{instance}")


def openai_client(proxy: Mitmdump, key: str = KEY) -> openai.OpenAI:
    trusting = ssl.create_default_context(cafile=str(proxy.ca_cert))
    return openai.OpenAI(
        api_key=key, max_retries=0, http_client=openai.DefaultHttpxClient(proxy=proxy.url, verify=trusting)
    )


def chat(told: Told, proxy: Mitmdump, model: str, key: str = KEY, stream: bool = False) -> None:
    client = openai_client(proxy, key)
    if stream:
        chunks = list(
            client.chat.completions.create(
                model=model, messages=QUESTION, stream=True, stream_options={"include_usage": True}
            )
        )
        usage = chunks[-1].usage
    else:
        usage = client.chat.completions.create(model=model, messages=QUESTION).usage
    assert usage is not None
    told.count(model, usage.prompt_tokens, usage.completion_tokens)


def claude(told: Told, proxy: Mitmdump, model: str, stream: bool = False, cache: bool = False) -> None:
    """`cache`: the fake reports 500 tokens read from the cache and 100 written (input, too)."""
    trusting = ssl.create_default_context(cafile=str(proxy.ca_cert))
    client = anthropic.Anthropic(
        api_key=ANTHROPIC_KEY,
        max_retries=0,
        http_client=anthropic.DefaultHttpxClient(proxy=proxy.url, verify=trusting),
    )
    knobs = {"x-fake-cache-read": "500", "x-fake-cache-write-5m": "100"} if cache else {}
    message: anthropic.types.Message
    if stream:
        with client.messages.stream(model=model, max_tokens=32, messages=QUESTION, extra_headers=knobs) as streamed:
            message = streamed.get_final_message()
    else:
        message = client.messages.create(model=model, max_tokens=32, messages=QUESTION, extra_headers=knobs)
    cached = (message.usage.cache_read_input_tokens or 0) + (message.usage.cache_creation_input_tokens or 0)
    told.count(model, message.usage.input_tokens + cached, message.usage.output_tokens)


def gemini(told: Told, proxy: Mitmdump, model: str, stream: bool = False) -> None:
    """google-genai as users run it behind a proxy: HTTPS_PROXY, and the CA in SSL_CERT_FILE."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HTTPS_PROXY", proxy.url)
        env.setenv("SSL_CERT_FILE", str(proxy.ca_cert))
        env.delenv("NO_PROXY", raising=False)
        client = genai.Client(api_key=KEY)
        if stream:
            usage = list(client.models.generate_content_stream(model=model, contents="Hi"))[-1].usage_metadata
        else:
            usage = client.models.generate_content(model=model, contents="Hi").usage_metadata
    assert usage is not None and usage.prompt_token_count is not None and usage.candidates_token_count is not None
    told.count(model, usage.prompt_token_count, usage.candidates_token_count)


def traffic(told: Told, one: Mitmdump, two: Mitmdump, three: Mitmdump) -> None:
    """The same OpenAI model through all three proxies (the sums must add them up), two keys on
    the first (points that differ only by key must add up once the Collector drops the key)."""
    chat(told, one, "gpt-4o-mini")
    chat(told, one, "gpt-4o-mini", key=SECOND_KEY)
    chat(told, one, "gpt-4o-mini", stream=True)
    chat(told, two, "gpt-4o-mini")
    chat(told, three, "gpt-4o-mini", key=SECOND_KEY, stream=True)
    with pytest.raises(openai.RateLimitError):
        openai_client(two).chat.completions.create(
            model="gpt-4o-mini", messages=QUESTION, extra_headers={"x-fake-error": "429:rate_limit_exceeded"}
        )
    told.calls += 1
    claude(told, two, "claude-sonnet-4-6")
    claude(told, two, "claude-sonnet-4-6", stream=True, cache=True)
    gemini(told, three, "gemini-2.5-flash")
    gemini(told, three, "gemini-2.5-flash", stream=True)


@dataclass
class Fleet:
    collector: Collector
    prometheus: Prometheus
    traces: OTLPReceiver  # where the Collector's otlp/traces exporter sends
    instances: list[str]
    told: Told


@pytest.fixture(scope="module")
def fleet(world: World) -> Iterator[Fleet]:
    traces = OTLPReceiver().start()
    told = Told()
    instances = ["fleet-proxy-1", "fleet-proxy-2", "fleet-proxy-3"]
    with contextlib.ExitStack() as stack:
        collector = stack.enter_context(Collector(world.tmp / "collector-fleet", traces.endpoint))
        prometheus = Prometheus(world.tmp / "prometheus-fleet", collector.prometheus_port, honor_labels=True)
        stack.callback(prometheus.stop)
        stack.callback(traces.stop)
        proxies = [stack.enter_context(regular_proxy(world, collector, name, *ATTRIBUTION)) for name in instances]
        # Twice: a series Prometheus first sees at its final value has no rate (it never saw the
        # increase), so the rules' and the dashboard's rates come from the second round.
        traffic(told, *proxies)
        wait_until(lambda: prometheus.query("gen_ai_client_token_cache_read_sum"))
        time.sleep(2.5)  # two more scrapes of the first round's values
        traffic(told, *proxies)
        yield Fleet(collector, prometheus, traces, instances, told)


def test_the_deploy_configuration_is_valid_for_the_collector():
    checked = validate()
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_fleets_totals_per_model_and_token_type_are_exact_in_promql(fleet: Fleet):
    for token_type in ("input", "output"):
        expr = f'sum by (gen_ai_request_model) (gen_ai_client_token_usage_sum{{gen_ai_token_type="{token_type}"}})'
        want = fleet.told.by_model(token_type)
        got = wait_until(
            lambda expr=expr, want=want: (v := fleet.prometheus.values(expr, "gen_ai_request_model")) == want and v
        )
        assert got == want, fleet.prometheus.values(expr, "gen_ai_request_model")
    calls = fleet.prometheus.query("sum(gen_ai_client_operation_duration_seconds_count)")
    assert float(calls[0]["value"][1]) == fleet.told.calls


def test_each_proxys_series_stay_apart_with_job_and_instance_from_its_resource(fleet: Fleet):
    """The Collector's Prometheus exporter turns service.name into `job` and service.instance.id
    into `instance` (Prometheus keeps them with honor_labels); no other resource attribute."""
    expr = 'sum by (job, instance) (gen_ai_client_token_usage_sum{gen_ai_request_model="gpt-4o-mini"})'
    series = wait_until(lambda: len(fleet.prometheus.query(expr)) == 3 and fleet.prometheus.query(expr))
    assert {(s["metric"]["job"], s["metric"]["instance"]) for s in series} == {
        (SERVICE, instance) for instance in fleet.instances
    }
    labels = set().union(*(s["metric"] for s in fleet.prometheus.query("gen_ai_client_token_usage_count")))
    assert not {label for label in labels if label.startswith(("service_", "telemetry_", "process_"))}
    # The other resource attributes are on `target_info`, one series per proxy.
    described = fleet.prometheus.query(f'target_info{{job="{SERVICE}"}}')
    assert {s["metric"]["instance"] for s in described} == set(fleet.instances)
    assert all("telemetry_sdk_version" in s["metric"] for s in described)


def test_no_key_on_the_collectors_metrics_and_the_key_on_every_span(fleet: Fleet):
    """Every key attribute is dropped from metrics (OpenAI's and Anthropic's masked key on the
    rate-limit gauges, the legacy counters' `api_key`, the attribution key), and the points that
    differed only by key are added up, not overwritten: the legacy total is exact."""
    total = sum(fleet.told.tokens.values())
    wait_until(lambda: fleet.prometheus.query("sum(tokens_counter_total)"))
    legacy = wait_until(lambda: float(fleet.prometheus.query("sum(tokens_counter_total)")[0]["value"][1]) == total)
    assert legacy, fleet.prometheus.query("sum(tokens_counter_total)")
    scraped = fleet.collector.scrape()
    assert "anthropic_ratelimit_remaining_tokens" in scraped and "openai_ratelimit_remaining_tokens" in scraped
    assert "api_key" not in scraped and "sk-" not in scraped
    written = json.dumps(list(fleet.collector.exported(fleet.collector.metrics_file)))
    assert "tokens_counter" in written and "api_key" not in written
    spans = wait_until(lambda: len(fleet.traces.spans()) >= fleet.told.calls and fleet.traces.spans())
    vendors = {
        "openai": "openai.api_key.masked",
        "anthropic": "anthropic.api_key.masked",
        "gcp.gemini": "gcp.api_key.masked",
    }
    keys = {
        (span.attributes["gen_ai.provider.name"], span.attributes.get(vendors[span.attributes["gen_ai.provider.name"]]))
        for span in spans
    }
    assert all(masked and masked.endswith(("...", ".")) is False for _, masked in keys)
    assert len({masked for provider, masked in keys if provider == "openai"}) == 2  # both keys, told apart


def test_every_span_arrives_once_at_the_collectors_trace_output(fleet: Fleet):
    def written() -> list[str]:
        return [
            span["spanId"]
            for request in fleet.collector.exported(fleet.collector.traces_file)
            for resource in request["resourceSpans"]
            for scope in resource["scopeSpans"]
            for span in scope["spans"]
        ]

    assert wait_until(lambda: len(written()) >= fleet.told.calls)
    time.sleep(1)  # anything sent twice would have arrived by now
    assert len(written()) == len(set(written())) == fleet.told.calls
    forwarded = [span.span_id for span in fleet.traces.spans()]
    assert sorted(forwarded) == sorted({*forwarded}) and len(forwarded) == fleet.told.calls


@pytest.mark.parametrize("source", ["rules", "dashboard"])
def test_the_rules_and_dashboard_queries_return_data_against_the_collector(fleet: Fleet, source: str):
    """The same queries as against a proxy scraped directly (test_end_to_end_prometheus), now
    through the Collector: each parses, and each the fleet's traffic feeds has data."""
    expressions = rule_expressions() if source == "rules" else dashboard_expressions()
    # What this traffic cannot feed: the headroom and spend alerts, whose thresholds it stays clear of,
    # and the cache breaks, which need an agent session (test_end_to_end_prometheus feeds them; here
    # a session's invoke_agent span would be one more span than calls, at exit).
    fed = [expr for expr in expressions if not re.search(r"< 0\.1$|> 50$", expr) and "cache_breaks" not in expr]
    assert len(fed) >= 5
    for expr in expressions:
        fleet.prometheus.query(expr)  # raises with Prometheus's error for what does not parse
    empty = [expr for expr in fed if not wait_until(lambda expr=expr: fleet.prometheus.query(expr), timeout=8)]
    assert not empty, f"no data through the Collector for: {empty}"


def spans_of(receiver: OTLPReceiver, model: str) -> list[str]:
    return [span.span_id for span in receiver.spans() if span.attributes.get("gen_ai.request.model") == model]


def test_a_collector_killed_and_restarted_mid_traffic_loses_and_doubles_no_call(world: World):
    """SIGKILL the Collector between two rounds of calls, send a round while it is down, start it
    again on the same ports, send a last round: the totals in Prometheus are exact (the metrics
    are cumulative: the first export after the restart carries everything), and each span of the
    calls made during the outage arrives once (they waited in the addon) or is counted dropped.

    An outage shorter than OTEL_EXPORTER_OTLP_TIMEOUT (10 s) is bridged by the SDK's own retries
    and never seen as one; this proxy's timeout is 2 s, so the 4 s outage is one."""
    model, told, rounds = "gpt-4o-mini", Told(), 4
    traces = OTLPReceiver().start()
    with contextlib.ExitStack() as stack:
        stack.callback(traces.stop)
        collector = stack.enter_context(Collector(world.tmp / "collector-crash", traces.endpoint))
        prometheus = Prometheus(world.tmp / "prometheus-crash", collector.prometheus_port, honor_labels=True)
        stack.callback(prometheus.stop)
        timeout = {"OTEL_EXPORTER_OTLP_TIMEOUT": "2"}
        proxy = stack.enter_context(regular_proxy(world, collector, "crash-proxy", env=timeout))
        tokens = 'sum(gen_ai_client_token_usage_sum{gen_ai_token_type="input"})'

        def total() -> float:
            found = prometheus.query(tokens)
            return float(found[0]["value"][1]) if found else 0.0

        for _ in range(rounds):
            chat(told, proxy, model)
        assert wait_until(lambda: total() == told.tokens["input", model])
        assert wait_until(lambda: len(spans_of(traces, model)) == rounds)  # none left inside the Collector
        collector.kill()
        outage = time.monotonic()
        for number in range(rounds):
            chat(told, proxy, model, stream=number % 2 == 1)
        proxy.wait_for_line("does not accept spans", timeout=10)
        collector.start()
        for _ in range(rounds):
            chat(told, proxy, model)
        assert wait_until(lambda: total() == told.tokens["input", model], timeout=30), (total(), told.tokens)
        # The addon retries a failed export after a pause, and the SDK's own retries take up to
        # OTEL_EXPORTER_OTLP_TIMEOUT (10 s): give the waiting spans that long to come.
        wait_until(lambda: len(spans_of(traces, model)) == 3 * rounds, timeout=30)
        recovered = time.monotonic() - outage
        delivered = spans_of(traces, model)
    assert len(delivered) == len(set(delivered))  # none twice
    said = proxy.wait_for_line("accepts spans again", timeout=1)
    print(f"outage to all spans delivered: {recovered:.1f} s; {said}")
    dropped = int(re.search(r"(\d+) dropped in outages", said).group(1))  # type: ignore[union-attr]
    assert len(delivered) + dropped == 3 * rounds, (len(delivered), dropped, said)
    assert dropped == 0, f"{dropped} spans dropped; delivered {len(delivered)} after {recovered:.1f} s"
    assert prometheus.process.poll() is not None  # stopped with the block


def test_a_collector_whose_memory_limiter_refuses_everything_leaves_traffic_alone(world: World):
    """The memory limiter set below what the Collector already uses refuses every export (as it
    does under memory pressure): calls still get exactly what the upstream sent, the addon says
    once that the collector does not accept data, and mitmdump still exits within 3 s."""
    refusing = {"processors": {"memory_limiter": {"limit_mib": 2, "spike_limit_mib": 1, "limit_percentage": 0}}}
    refusing["processors"]["memory_limiter"]["spike_limit_percentage"] = 0
    traces = OTLPReceiver().start()
    try:
        with Collector(world.tmp / "collector-refusing", traces.endpoint, refusing) as collector:
            proxy = regular_proxy(world, collector, "refused-proxy").start()
            try:
                told = Told()
                for number in range(6):
                    chat(told, proxy, "gpt-4o-mini", stream=number % 2 == 1)
                streamed = b"".join(
                    openai_client(proxy)
                    .chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=QUESTION)
                    .http_response.iter_bytes()
                )
                direct = world.direct_client().chat.completions.with_raw_response.create(
                    model="gpt-4o-mini", messages=QUESTION
                )
                assert streamed == direct.http_response.read()  # the same bytes as without the proxy
                proxy.wait_for_line("does not accept (metrics|spans)", timeout=30)
            finally:
                exit_s = proxy.stop()
            assert "Refusing data" in collector.log.read_text()  # it was the memory limiter that said no
    finally:
        traces.stop()
    assert told.calls == 6 and not spans_of(traces, "gpt-4o-mini")
    assert exit_s < 3, f"mitmdump took {exit_s:.1f} s to exit"
