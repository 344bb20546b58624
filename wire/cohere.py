"""Cohere's v2 API (`api.cohere.com`): chat (`POST /v2/chat`, plain or streamed) and embeddings
(`POST /v2/embed`).

Two usages: `tokens` (what the model processed, Cohere's own preamble and tool definitions
included) and `billed_units` (what is billed: a 4-word prompt of a recording is 70 processed
tokens and 4 billed ones). The usage record is the processed tokens; the cost is the billed units
(`ApiResult.billed_usage`), and both are on the span where they differ. `cached_tokens`, beside
them, is read as the cached part of the processed input.

A stream is SSE: `message-start`, `content-delta` (text, or `thinking` on reasoning models),
`tool-plan-delta`, `tool-call-start` / `-delta` / `-end`, `citation-*`, `message-end` with the
finish reason and usage, then a bare `data: [DONE]`. A `message-end` may carry an error inside an
HTTP 200 (`finish_reason: ERROR`, `error_type`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wire.call import Route, WireApi
from wire.content import (
    CapturedContent,
    Part,
    PartsCollector,
    dump_messages,
    role_of,
    text_part,
    tool_call_part,
    tool_response_part,
)
from wire.framing import Event
from wire.records import NO_HEADERS, ApiRequest, ApiResult, AttributeValue, Usage
from wire.stream import StreamAccumulator
from wire.values import (
    count,
    error_label,
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

COHERE = Vendor("cohere")
_REQUEST_MEMBERS = member_pattern(
    "model", "stream", "max_tokens", "temperature", "p", "k", "stop_sequences", "seed", "response_format"
)
_RESPONSE_MEMBERS = member_pattern("id", "finish_reason", "usage", "meta", "message", "error_type")
_OUTPUT_TYPES = {"json_object": "json", "text": "text"}


def _usage_of(counts: Any, cached: Any = None) -> Usage | None:
    counts = obj(counts)
    inputs, output = count(counts.get("input_tokens")), count(counts.get("output_tokens"))
    if inputs is None and output is None:
        return None
    cache_read = count(cached)
    return Usage(
        input_tokens=inputs,
        output_tokens=output,
        cache_read_tokens=min(cache_read, inputs) if cache_read is not None and inputs is not None else None,
    )


def update_usage(result: ApiResult, usage: Any) -> None:
    """`usage` (chat) or `meta` (embed): processed `tokens`, else the billed units, and the billed
    units for the price; both on the span when they differ."""
    usage = obj(usage)
    billed = _usage_of(usage.get("billed_units"))
    processed = _usage_of(usage.get("tokens"), usage.get("cached_tokens")) or billed
    result.usage = processed or result.usage
    result.billed_usage = billed or result.billed_usage
    if billed is not None and processed is not None and billed != processed:
        found: dict[str, AttributeValue | None] = {
            "usage.billed_units.input_tokens": billed.input_tokens,
            "usage.billed_units.output_tokens": billed.output_tokens,
        }
        result.attributes.update({name: value for name, value in found.items() if value is not None})


def _finish(result: ApiResult, reason: Any, error_type: Any) -> None:
    found = label(reason)
    if found:
        result.finish_reasons = [found.lower()]
    if found == "ERROR":
        result.error_type = error_label(error_type) or "ERROR"


def _content_parts(content: Any) -> list[Part]:
    if isinstance(content, str):
        return [text_part(content)] if content else []
    parts: list[Part] = []
    for block in content if isinstance(content, list) else []:
        block = obj(block)
        if block.get("type") == "thinking":
            parts.append(text_part(block.get("thinking", ""), "reasoning"))
        elif block.get("type") == "text":
            parts.append(text_part(block.get("text", "")))
    return parts


def _message_parts(message: Any) -> list[Part]:
    message = obj(message)
    parts = _content_parts(message.get("content"))
    for call in message.get("tool_calls") or []:
        function = obj(obj(call).get("function"))
        parts.append(tool_call_part(obj(call).get("id"), function.get("name"), function.get("arguments", "")))
    return parts


class CohereStreamAccumulator(StreamAccumulator):
    """An output chunk is a `content-delta`, `tool-plan-delta`, `tool-call-start` or `tool-call-delta`."""

    _OUTPUT = frozenset({"content-delta", "tool-plan-delta", "tool-call-start", "tool-call-delta"})

    def __init__(self, started: float, capture_content: bool = False) -> None:
        super().__init__(started, capture_content)
        self._parts = PartsCollector()

    def consume(self, event: Event, now: float) -> None:
        if event.data == "[DONE]":
            self.done = True
            return
        data = event.value if isinstance(event.value, dict) else load_json_object(event.data)
        if data is None:
            return
        kind, result = event.kind or str(data.get("type")), self.result
        delta = obj(data.get("delta"))
        if kind in self._OUTPUT:
            self.output_chunk(now)
            if self.capture_content:
                self._collect(kind, obj(delta.get("message")))
        elif kind == "message-start":
            result.response_id = label(data.get("id")) or result.response_id
        elif kind == "message-end":
            _finish(result, delta.get("finish_reason"), delta.get("error_type") or data.get("error_type"))
            update_usage(result, delta.get("usage"))

    def _collect(self, kind: str, message: dict[str, Any]) -> None:
        content = obj(message.get("content"))
        call = obj(message.get("tool_calls"))
        if kind == "content-delta":
            reasoning = isinstance(content.get("thinking"), str)
            self._parts.add_text(content.get("thinking" if reasoning else "text"), "reasoning" if reasoning else "text")
        elif kind == "tool-call-start":
            self._parts.add(tool_call_part(call.get("id"), obj(call.get("function")).get("name"), ""))
        elif kind == "tool-call-delta":
            self._parts.add_tool_arguments(obj(call.get("function")).get("arguments"))

    def output_messages(self) -> str | None:
        return self._parts.message(self.result.finish_reasons)


class CohereChat(WireApi):
    name = "cohere_chat"
    operation = "chat"
    vendor = COHERE
    routes: tuple[Route, ...] = (Route("/v2/chat"),)

    def parse_request(self, body: bytes | None) -> ApiRequest:
        data = json_members(body, _REQUEST_MEMBERS)
        if data is None:
            return ApiRequest()
        return ApiRequest(
            model=label(data.get("model")),
            stream=data.get("stream") is True,
            max_tokens=integer(data.get("max_tokens")),
            temperature=number(data.get("temperature")),
            top_p=number(data.get("p")),
            top_k=number(data.get("k")),
            stop_sequences=labels(data.get("stop_sequences")),
            seed=integer(data.get("seed")),
            output_type=_OUTPUT_TYPES.get(str(obj(data.get("response_format")).get("type"))),
        )

    def parse_response(self, body: bytes | None, headers: Mapping[str, str] = NO_HEADERS) -> ApiResult:
        data = json_members(body, _RESPONSE_MEMBERS)
        if data is None:
            return ApiResult()
        result = ApiResult(response_id=label(data.get("id")))
        _finish(result, data.get("finish_reason"), data.get("error_type"))
        update_usage(result, data.get("usage") or data.get("meta"))
        return result

    def stream_accumulator(self, started: float, capture_content: bool = False) -> StreamAccumulator:
        return CohereStreamAccumulator(started, capture_content)

    def captured_input(self, body: bytes | None) -> CapturedContent:
        data = small_json(body)
        system, inputs = [], []
        for message in data.get("messages") or []:
            message = obj(message)
            role = role_of(message)
            if role == "system":
                system += _content_parts(message.get("content"))
            elif role == "tool":
                response = tool_response_part(message.get("tool_call_id"), message.get("content"))
                inputs.append({"role": role, "parts": [response]})
            else:
                inputs.append({"role": role, "parts": _message_parts(message)})
        return CapturedContent(system_instructions=dump_messages(system), input_messages=dump_messages(inputs))

    def captured_output(self, body: bytes | None) -> str | None:
        data = small_json(body)
        parts = _message_parts(data.get("message"))
        reason = str(data.get("finish_reason") or "stop").lower()
        return dump_messages([{"role": "assistant", "parts": parts, "finish_reason": reason}] if parts else [])


class CohereEmbed(CohereChat):
    """`/v2/embed`: the counts in `meta` (`billed_units`, and `tokens` where sent)."""

    name = "cohere_embed"
    operation = "embeddings"
    routes = (Route("/v2/embed"),)

    def captured_input(self, body: bytes | None) -> CapturedContent:
        return CapturedContent()

    def captured_output(self, body: bytes | None) -> str | None:
        return None


CHAT = CohereChat()
EMBED = CohereEmbed()
