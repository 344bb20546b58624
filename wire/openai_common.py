"""What OpenAI's HTTP APIs share: the vendor (headers, keys), their routes (Azure's too), request
fields, and usage in the chat-completions shape."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from wire.call import Route
from wire.headers import RateLimits, UpstreamInfo, rate_limit_headers, rate_limits_from
from wire.records import MODALITIES, ApiRequest, AttributeValue, Usage
from wire.tools import openai_chat_results, responses_results
from wire.values import count, integer, json_members, label, labels, member_pattern, number, obj
from wire.vendor import Vendor

# OpenAI and its compatible servers state reset times as durations (`6ms`, `1m3s`).
_LIMITS = {"requests": "x-ratelimit-%s-requests", "tokens": "x-ratelimit-%s-tokens"}


class OpenAIVendor(Vendor):
    request_id_headers = ("x-request-id", "apim-request-id")  # Azure's API Management: apim-request-id
    response_headers = (*request_id_headers, "openai-processing-ms", *rate_limit_headers(_LIMITS))
    rate_limit_budgets = ("requests", "tokens")
    # `sk-`, `sk-proj-`, `sk-svcacct-`, ...
    key_prefixes = (r"sk-(?:[a-z]{1,10}-)?",)

    def rate_limits(self, headers: Mapping[str, str], now_s: float) -> RateLimits:
        return rate_limits_from(headers, now_s, _LIMITS, reset_as_moment=False)

    def upstream(self, headers: Mapping[str, str], now_s: float) -> UpstreamInfo:
        info = super().upstream(headers, now_s)
        processing = headers.get("openai-processing-ms")
        try:
            info.processing_ms = float(processing) if processing else None
        except ValueError:
            info.processing_ms = None
        return info


OPENAI = OpenAIVendor("openai")


def openai_routes(*endings: str) -> tuple[Route, ...]:
    """Routes by their ending, under any prefix (`/v1`, `/openai/v1`, a gateway's own), with
    Azure OpenAI's deployment (`/openai/deployments/{deployment}/...`) or v1 path (`/openai/v1/...`)."""
    azure = r"(?:(?P<azure_v1>/openai/v1)|/openai/deployments/(?P<deployment>[^/]{1,128}))?"
    return tuple(Route(azure + ending.replace(".", r"\.")) for ending in endings)


# Request members that are plain values and whose names do not also occur nested in messages.
REQUEST_MEMBERS = member_pattern(
    "model",
    "stream",
    "stream_options",
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "frequency_penalty",
    "presence_penalty",
    "seed",
    "n",
    "service_tier",
    "dimensions",
    "encoding_format",
    "conversation",
    "previous_response_id",
    "prompt_cache_retention",
)
RESPONSE_MEMBERS = member_pattern("id", "model", "usage", "system_fingerprint", "service_tier", "status")
_OUTPUT_TYPES = {"text": "text", "json_object": "json", "json_schema": "json"}


def openai_request(body: bytes | None, *, responses_api: bool = False) -> ApiRequest:
    """A request of any of OpenAI's HTTP APIs; the Responses API names two members its own way."""
    data = json_members(body, REQUEST_MEMBERS)
    if data is None:
        return ApiRequest()
    conversation = previous_response = None
    if responses_api:
        output_format = obj(obj(data.get("text")).get("format")).get("type")
        max_tokens = data.get("max_output_tokens")
        conversation = data.get("conversation")  # an id, or {"id": ...}
        conversation = label(obj(conversation).get("id") if isinstance(conversation, dict) else conversation)
        previous_response = label(data.get("previous_response_id"))
        tool_results = responses_results(data.get("input"))
    else:
        output_format = obj(data.get("response_format")).get("type")
        max_tokens = data.get("max_completion_tokens", data.get("max_tokens"))
        tool_results = openai_chat_results(data.get("messages"))
    encoding_format = label(data.get("encoding_format"))
    retention = label(data.get("prompt_cache_retention"))  # in_memory | 24h: how long a cache write lives
    return ApiRequest(
        model=label(data.get("model")),
        stream=data.get("stream") is True,
        include_usage=obj(data.get("stream_options")).get("include_usage") is True,
        temperature=number(data.get("temperature")),
        top_p=number(data.get("top_p")),
        max_tokens=integer(max_tokens),
        frequency_penalty=number(data.get("frequency_penalty")),
        presence_penalty=number(data.get("presence_penalty")),
        stop_sequences=labels(data.get("stop")),
        seed=integer(data.get("seed")),
        choice_count=integer(data.get("n")),
        service_tier=label(data.get("service_tier")),
        output_type=_OUTPUT_TYPES.get(str(output_format)),
        encoding_formats=[encoding_format] if encoding_format else None,
        dimensions=integer(data.get("dimensions")),
        conversation_id=conversation,
        previous_response_id=previous_response,
        tool_results=tool_results,
        attributes={"request.prompt_cache_retention": retention} if retention else {},
    )


def modalities(details: dict[str, Any]) -> tuple[tuple[str, int], ...]:
    """`{"text_tokens": 5, "audio_tokens": 3}` → (("text", 5), ("audio", 3)); zeros are left out."""
    return tuple((kind, value) for kind in MODALITIES if (value := count(details.get(f"{kind}_tokens"))))


def openai_usage(value: Any, input_name: str, output_name: str) -> Usage | None:
    """OpenAI's usage: input already includes cached tokens and cache writes, output reasoning.

    Chat completions, completions and embeddings name the totals `prompt_tokens` /
    `completion_tokens` with `*_tokens_details`; the Responses API `input_tokens` / `output_tokens`.
    """
    if not isinstance(value, dict):
        return None
    input_details = obj(value.get(f"{input_name}_details"))
    output_details = obj(value.get(f"{output_name}_details"))
    usage = Usage(
        input_tokens=count(value.get(input_name)),
        output_tokens=count(value.get(output_name)),
        cache_read_tokens=count(input_details.get("cached_tokens")),
        cache_write_tokens=count(input_details.get("cache_write_tokens")),
        reasoning_tokens=count(output_details.get("reasoning_tokens")),
        input_modalities=modalities(input_details),
        output_modalities=modalities(output_details),
    )
    return None if usage.input_tokens is None and usage.output_tokens is None else usage


# Where compatible hosts report the cached part of `prompt_tokens` in the chat-completions shape
# (OpenAI's own `prompt_tokens_details.cached_tokens` comes first): Mistral, DeepSeek's prompt cache
# hits, Together's and the Hugging Face router's top-level count, Databricks' Anthropic-style name.
_CACHED_ELSEWHERE = ("num_cached_tokens", "prompt_cache_hit_tokens", "cached_tokens", "cache_read_input_tokens")


def chat_usage(value: Any) -> Usage | None:
    """The chat-completions usage, with the cached input where a compatible host names it its own
    way. `prompt_tokens` is all input there too (DeepSeek's hits plus misses), so the cached count
    is a part of it, never added to it."""
    usage = openai_usage(value, "prompt_tokens", "completion_tokens")
    if usage is None or usage.cache_read_tokens is not None:
        return usage
    cached = next((found for name in _CACHED_ELSEWHERE if (found := count(value.get(name))) is not None), None)
    if cached is None:
        return usage
    return dataclasses.replace(usage, cache_read_tokens=min(cached, usage.input_tokens or cached))


def reported_cost(value: Any) -> dict[str, AttributeValue]:
    """The cost a host reports itself (OpenRouter's `usage.cost`, in USD), for the span beside ours."""
    cost = number(obj(value).get("cost"))
    return {"usage.reported_cost_usd": cost} if cost is not None else {}
