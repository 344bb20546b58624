"""A finished call's attributes: the few every metric carries, and its span's. Pure functions of
the call (and of the bound on client-chosen values), testable without the SDK."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from wire import mcp
from wire.call import Call
from wire.headers import BUDGETS, RequestInfo, UpstreamInfo

log = logging.getLogger("genai")

MAX_DISTINCT_VALUES = 500
OVERFLOW_VALUE = "_OTHER"
# The bounded client label (`wire.headers.Client.label`, e.g. openai-python/3) as a metric attribute.
CLIENT_ATTRIBUTE = "genai.client"
# An API's own span attribute with a conventions' name (`gen_ai.conversation.compacted`) is not namespaced.
CONVENTION_NAMESPACE = "gen_ai."


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


def metric_attributes(call: Call, bounded: BoundedValues) -> dict[str, Any]:
    """The low-cardinality attributes every metric of a call carries."""
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": call.operation,
        "gen_ai.provider.name": call.origin.provider,
        "server.address": bounded("server.address", call.origin.server_address),
        "server.port": call.origin.server_port,
    }
    if call.request_model:
        attributes["gen_ai.request.model"] = bounded("gen_ai.request.model", call.request_model)
    if call.result.response_model:
        attributes["gen_ai.response.model"] = bounded("gen_ai.response.model", call.result.response_model)
    if error_type := call.error_type:
        attributes["error.type"] = bounded("error.type", error_type)
    return attributes


def span_attributes(
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
        f"{vendor}.api_key.masked": call.origin.api_key,
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
        # The API's own conversation (a Responses `conversation`), else the agent's session.
        "gen_ai.conversation.id": request.conversation_id or (headers.session and headers.session.session_id),
        # The agent that made the call, as its User-Agent names it, when it said which session.
        "gen_ai.agent.name": headers.client.name if headers.session else None,
        "gen_ai.agent.id": headers.session.subagent_id if headers.session else None,
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
    for attributes in (
        api_vendor.request_attributes(call.origin.request_headers),
        request.attributes,
        result.attributes,
    ):
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


def mcp_attributes(call: Call, bounded: BoundedValues) -> dict[str, Any]:
    """An MCP call's span attributes, by the MCP conventions (`wire.mcp`); the tool's name bounded,
    as it goes on a metric too."""
    request_attributes = call.request.attributes
    candidates: dict[str, Any] = {
        **request_attributes,
        **mcp.MCP.exchange_attributes(call.origin.request_headers, call.response_headers),
        **call.result.attributes,
        "gen_ai.operation.name": "execute_tool" if request_attributes.get("mcp.method.name") == "tools/call" else None,
        "error.type": call.error_type,
        "network.protocol.name": "http",
        "server.address": call.origin.server_address,
        "server.port": call.origin.server_port,
        "http.response.status_code": call.status_code,
    }
    if isinstance(tool := request_attributes.get("gen_ai.tool.name"), str):
        candidates["gen_ai.tool.name"] = bounded("gen_ai.tool.name", tool)
    return {name: value for name, value in candidates.items() if value is not None}
