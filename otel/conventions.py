"""The instruments: the GenAI conventions' metrics in the version chosen (`V1_41`, `V0_1_0`), and
the project's own (cache and reasoning parts, cost, rate-limit gauges, the legacy counters)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.metrics import CallbackOptions, Histogram, Meter, Observation

from wire import REGISTRY
from wire.call import Call
from wire.headers import RateLimits

TOKEN_BUCKETS = [4**i for i in range(14)]  # 1, 4, 16, ... 67108864
DURATION_BUCKETS = [0.01 * 2**i for i in range(14)]  # 0.01 ... 81.92
COST_BUCKETS = [0.00001 * 4**i for i in range(13)]  # $0.00001 ... $167
# The rate-limit budgets each vendor's headers state, each a pair of gauges.
RATE_LIMIT_BUDGETS = {
    vendor.name: vendor.rate_limit_budgets for vendor in REGISTRY.vendors if vendor.rate_limit_budgets
}


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


class Instruments:
    """Every instrument a call is recorded with: the conventions' (`conventions`, in the version
    chosen) and the project's own, made once per meter provider."""

    def __init__(self, meter: Meter, legacy_meter: Meter, conventions: type[Conventions]) -> None:
        """`legacy_meter`: the original product's meter (scope `openai.meter`), for its counters."""
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
        self.cache_breaks = meter.create_counter(
            "gen_ai.client.cache_breaks",
            unit="{call}",
            description="Calls of an agent session that read far less from the prompt cache than the session's "
            "previous call (a prefix changed): its input was written to the cache again, at full price.",
        )
        self.mcp_duration = histogram(
            "mcp.client.operation.duration",
            "s",
            "An MCP request over Streamable HTTP, from the request to its JSON-RPC response.",
            DURATION_BUCKETS,
        )
        self.tool_duration = histogram(
            "gen_ai.execute_tool.duration",
            "s",
            "A client tool's run, seen from the wire: from the response that asked for it to the request "
            "that brought its result (the agent's own overhead between the two included).",
            DURATION_BUCKETS,
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
        for name, description in (
            ("tokens_counter", "The number of tokens generated by model"),
            ("prompt_tokens", "The number of prompt tokens in a chat completion"),
            ("completion_tokens", "The number of completion tokens in a chat completion"),
        ):
            legacy_meter.create_observable_counter(
                name, callbacks=[self.legacy.callback(name)], unit="1", description=description
            )
