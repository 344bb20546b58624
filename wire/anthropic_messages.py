"""Anthropic's Messages API (`POST …/v1/messages`), on api.anthropic.com and compatible hosts.

Usage: Anthropic's `input_tokens` leaves out cache reads and cache writes, which it reports
beside it; the usage record's input is their sum (the conventions' rule). In a stream,
`message_start` carries the usage so far and each `message_delta` the cumulative usage: each
field takes its last value, nothing is added up. Anthropic always sends usage, so no request is
ever changed. `count_tokens` and the batches API are other routes, not inference: not metered.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from wire.agents import claude_code_session
from wire.call import Route, WireApi
from wire.content import (
    CapturedContent,
    Part,
    TextCollector,
    dump_messages,
    media_part,
    role_of,
    text_part,
    tool_call_part,
    tool_response_part,
)
from wire.framing import Event
from wire.headers import BUDGETS, RateLimits, rate_limit_headers, rate_limits_from
from wire.records import NO_HEADERS, ApiRequest, ApiResult, AttributeValue, Usage
from wire.stream import StreamAccumulator
from wire.tools import anthropic_calls, anthropic_results, merged
from wire.values import (
    count,
    error_type_from_object,
    integer,
    json_members,
    label,
    labels,
    load_json_object,
    member_pattern,
    number,
    obj,
    small_json,
)
from wire.vendor import Vendor

# Anthropic states reset times as RFC 3339 moments.
_LIMITS = {budget: f"anthropic-ratelimit-{budget.replace('_', '-')}-%s" for budget in BUDGETS}


class AnthropicVendor(Vendor):
    request_headers = ("anthropic-version", "anthropic-beta")
    request_id_headers = ("request-id", "x-request-id")
    response_headers = (*request_id_headers, *rate_limit_headers(_LIMITS))
    rate_limit_budgets = BUDGETS
    # API keys `sk-ant-api03-`, OAuth tokens `sk-ant-oat01-`, admin keys `sk-ant-admin01-`.
    key_prefixes = (r"sk-ant-[a-z]{2,8}[0-9]{2}-",)

    def request_attributes(self, headers: Mapping[str, str]) -> dict[str, AttributeValue]:
        """The API version and the beta features the client asks for."""
        attributes: dict[str, AttributeValue] = {}
        if version := label(headers.get("anthropic-version")):
            attributes["version"] = version
        beta = headers.get("anthropic-beta")
        if beta and (betas := labels([item.strip() for item in beta.split(",")], most=32)):
            attributes["beta"] = betas
        return attributes

    def rate_limits(self, headers: Mapping[str, str], now_s: float) -> RateLimits:
        return rate_limits_from(headers, now_s, _LIMITS, reset_as_moment=True)

    def price_context(self, result: ApiResult) -> dict[str, str] | None:
        """Anthropic's tiers (standard, priority) share one price, batch is half of it; `speed: fast`
        has prices of its own. (`inference_geo` is recorded, not priced: the data has no rates.)"""
        context = {"processing": "batch"} if result.service_tier == "batch" else {}
        if result.attributes.get("response.speed") == "fast":
            context["speed"] = "fast"
        return context or None


ANTHROPIC = AnthropicVendor("anthropic")

_REQUEST_MEMBERS = member_pattern(
    "model",
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "stream",
    "thinking",
    "service_tier",
    "metadata",
)
_RESPONSE_MEMBERS = member_pattern("id", "model", "type", "stop_reason", "usage")
# Delta types that carry output (a signature_delta only closes a thinking block).
_OUTPUT_DELTAS = {"text_delta": "text", "thinking_delta": "thinking", "input_json_delta": "partial_json"}


def messages_usage(value: Any) -> Usage | None:
    if not isinstance(value, dict):
        return None
    uncached = count(value.get("input_tokens"))
    cache_read = count(value.get("cache_read_input_tokens"))
    creation = obj(value.get("cache_creation"))
    write_5m = count(creation.get("ephemeral_5m_input_tokens"))
    write_1h = count(creation.get("ephemeral_1h_input_tokens"))
    cache_write = count(value.get("cache_creation_input_tokens"))
    if cache_write is None and (write_5m is not None or write_1h is not None):
        cache_write = (write_5m or 0) + (write_1h or 0)
    inputs = [n for n in (uncached, cache_read, cache_write) if n is not None]
    output = count(value.get("output_tokens"))
    if not inputs and output is None:
        return None
    return Usage(
        input_tokens=sum(inputs) if inputs else None,
        output_tokens=output,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        cache_write_5m_tokens=write_5m,
        cache_write_1h_tokens=write_1h,
    )


def _summed(usages: list[Usage]) -> Usage:
    """The usage of several passes: each count the sum of those that report it."""

    def total(name: str) -> int | None:
        values = [value for usage in usages if (value := getattr(usage, name)) is not None]
        return sum(values) if values else None

    return Usage(
        input_tokens=total("input_tokens"),
        output_tokens=total("output_tokens"),
        cache_read_tokens=total("cache_read_tokens"),
        cache_write_tokens=total("cache_write_tokens"),
        cache_write_5m_tokens=total("cache_write_5m_tokens"),
        cache_write_1h_tokens=total("cache_write_1h_tokens"),
    )


def billed_usage(usage: dict[str, Any]) -> Usage | None:
    """The usage to bill: with `iterations` (compaction and advisor passes, which the top-level
    counts leave out: one recorded compaction pass wrote 55,096 cache tokens), the sum over them;
    else the top-level counts. `output_tokens_details.thinking_tokens` is a part of the output."""
    passes = [found for item in usage.get("iterations") or [] if (found := messages_usage(item)) is not None]
    found = _summed(passes) if passes else messages_usage(usage)
    thinking = count(obj(usage.get("output_tokens_details")).get("thinking_tokens"))
    if found is not None and thinking is not None and found.reasoning_tokens is None:
        found = dataclasses.replace(found, reasoning_tokens=thinking)
    return found


def _update_result(result: ApiResult, usage: dict[str, Any]) -> None:
    """Usage, service tier, the price modifiers (`speed`, `inference_geo`) and server tool uses
    from a (cumulative) usage object."""
    result.usage = billed_usage(usage) or result.usage
    result.service_tier = label(usage.get("service_tier")) or result.service_tier
    for name in ("speed", "inference_geo"):
        if value := label(usage.get(name)):
            result.attributes[f"response.{name}"] = value
    tools = obj(usage.get("server_tool_use"))
    for name, value in tools.items():
        requests = count(value)
        if requests is not None and isinstance(name, str) and len(result.server_tool_requests) < 16:
            result.server_tool_requests[name.removesuffix("_requests")[:32]] = requests


def _block_parts(blocks: Any) -> list[Part]:
    """Content blocks (a request's or a response's) as convention parts; media by type only."""
    if isinstance(blocks, str):
        return [text_part(blocks)] if blocks else []
    parts: list[Part] = []
    for block in blocks if isinstance(blocks, list) else []:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            parts.append(text_part(block.get("text", "")))
        elif kind == "thinking":
            parts.append(text_part(block.get("thinking", ""), "reasoning"))
        elif kind == "tool_use":
            parts.append(tool_call_part(block.get("id"), block.get("name"), block.get("input", {})))
        elif kind == "tool_result":
            content = block.get("content", "")
            if isinstance(content, list):
                content = "".join(str(item.get("text", "")) for item in content if isinstance(item, dict))
            parts.append(tool_response_part(block.get("tool_use_id"), content))
        elif isinstance(kind, str):  # image, document, redacted_thinking, server tool results
            parts.append(media_part(kind))
    return parts


class _Block:
    """One streamed content block, reassembled."""

    def __init__(self, start: dict[str, Any]) -> None:
        self.kind = str(start.get("type", ""))
        self.id = start.get("id")
        self.name = start.get("name")
        self.text = TextCollector()

    def part(self) -> Part:
        if self.kind == "text":
            return text_part(self.text.text())
        if self.kind == "thinking":
            return text_part(self.text.text(), "reasoning")
        if self.kind == "tool_use":
            return tool_call_part(self.id, self.name, self.text.text())
        return media_part(self.kind or "unknown")


class MessagesStreamAccumulator(StreamAccumulator):
    """`event: message_start` … `content_block_*` … `message_delta` … `message_stop`; `ping` ignored.

    An output chunk is a content_block_delta carrying text, thinking or tool input.
    """

    def __init__(self, started: float, capture_content: bool = False) -> None:
        super().__init__(started, capture_content)
        self._usage: dict[str, Any] = {}
        self._blocks: dict[int, _Block] = {}

    def consume(self, event: Event, now: float) -> None:
        kind = event.kind
        if kind == "ping" or event.data is None:
            return
        data = event.value if isinstance(event.value, dict) else load_json_object(event.data)
        if data is None:
            return
        kind = kind or str(data.get("type"))
        result = self.result
        if kind == "content_block_delta":
            delta = obj(data.get("delta"))
            field = _OUTPUT_DELTAS.get(str(delta.get("type")))
            piece = delta.get(field) if field else None
            if isinstance(piece, str) and piece:
                self.output_chunk(now)
                block = self._blocks.get(integer(data.get("index")) or 0)
                if block is not None:
                    block.text.add(piece)
        elif kind == "content_block_start":
            started_block = obj(data.get("content_block"))
            if started_block.get("type") == "tool_use":
                result.tool_calls = merged(result.tool_calls, anthropic_calls([started_block]))
            if self.capture_content and len(self._blocks) < 256:
                self._blocks[integer(data.get("index")) or 0] = _Block(started_block)
        elif kind == "message_start":
            message = obj(data.get("message"))
            result.response_id = label(message.get("id")) or result.response_id
            result.response_model = label(message.get("model")) or result.response_model
            self._fold_usage(message.get("usage"))
        elif kind == "message_delta":
            reason = label(obj(data.get("delta")).get("stop_reason"))
            if reason:
                result.finish_reasons = [reason]
            self._fold_usage(data.get("usage"))
        elif kind == "message_stop":
            self.done = True
        elif kind == "error":
            result.error_type = error_type_from_object(data) or "error"

    def _fold_usage(self, usage: Any) -> None:
        if isinstance(usage, dict):
            self._usage.update(usage)  # cumulative: each field's last value wins
            _update_result(self.result, self._usage)

    def output_messages(self) -> str | None:
        if not self._blocks:
            return None
        parts = [self._blocks[index].part() for index in sorted(self._blocks)]
        reason = self.result.finish_reasons[0] if self.result.finish_reasons else "stop"
        return dump_messages([{"role": "assistant", "parts": parts, "finish_reason": reason}])


class Messages(WireApi):
    name = "messages"
    operation = "chat"
    vendor = ANTHROPIC
    routes = (
        Route("/v1/messages"),
        # Claude on Vertex AI: the model in the path (`claude-…@YYYYMMDD`), not in the body.
        # `count-tokens:rawPredict` counts tokens: not inference.
        Route(r"/publishers/anthropic/models/(?!count-tokens:)(?P<model>[^/:]{1,128}):rawPredict"),
        Route(r"/publishers/anthropic/models/(?P<model>[^/:]{1,128}):streamRawPredict", streamed=True),
    )

    def parse_request(self, body: bytes | None) -> ApiRequest:
        data = json_members(body, _REQUEST_MEMBERS)
        if data is None:
            return ApiRequest()
        thinking = obj(data.get("thinking"))
        budget = integer(thinking.get("budget_tokens")) if thinking.get("type") == "enabled" else None
        return ApiRequest(
            model=label(data.get("model")),
            stream=data.get("stream") is True,
            temperature=number(data.get("temperature")),
            top_p=number(data.get("top_p")),
            top_k=number(data.get("top_k")),
            max_tokens=integer(data.get("max_tokens")),
            stop_sequences=labels(data.get("stop_sequences")),
            service_tier=label(data.get("service_tier")),
            # Claude Code's session, for versions that do not send it as a header (`wire.agents`).
            agent_session=claude_code_session(obj(data.get("metadata")).get("user_id")),
            tool_results=anthropic_results(data.get("messages")),
            attributes={"request.thinking.budget_tokens": budget} if budget is not None else {},
        )

    def parse_response(self, body: bytes | None, headers: Mapping[str, str] = NO_HEADERS) -> ApiResult:
        data = json_members(body, _RESPONSE_MEMBERS)
        if data is None:
            return ApiResult()
        if data.get("type") == "error" or "error" in data:
            return ApiResult(error_type=error_type_from_object(data) or "error")
        reason = label(data.get("stop_reason"))
        result = ApiResult(
            response_id=label(data.get("id")),
            response_model=label(data.get("model")),
            finish_reasons=[reason] if reason else [],
            tool_calls=anthropic_calls(data.get("content")),
        )
        _update_result(result, obj(data.get("usage")))
        return result

    def stream_accumulator(self, started: float, capture_content: bool = False) -> StreamAccumulator:
        return MessagesStreamAccumulator(started, capture_content)

    def captured_input(self, body: bytes | None) -> CapturedContent:
        data = small_json(body)
        inputs = []
        for message in data.get("messages") or []:
            if isinstance(message, dict):
                role = role_of(message)
                inputs.append({"role": role, "parts": _block_parts(message.get("content"))})
        return CapturedContent(
            system_instructions=dump_messages(_block_parts(data.get("system"))), input_messages=dump_messages(inputs)
        )

    def captured_output(self, body: bytes | None) -> str | None:
        data = small_json(body)
        parts = _block_parts(data.get("content"))
        reason = data.get("stop_reason") or "stop"
        return dump_messages([{"role": "assistant", "parts": parts, "finish_reason": reason}] if parts else [])


API = Messages()
