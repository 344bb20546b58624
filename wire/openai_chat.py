"""OpenAI chat completions (`POST …/chat/completions`), on OpenAI, Azure and compatible hosts.

The one API the addon may change a request of: a streamed request that did not ask for usage
gets `stream_options.include_usage` upstream (toward servers known to accept it), and the extra
usage chunk and `"usage":null` members are taken out of the stream before the client sees it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from wire.call import Endpoint, WireApi
from wire.content import (
    CapturedContent,
    Part,
    TextCollector,
    dump_messages,
    openai_content_parts,
    openai_tool_call_part,
    role_of,
    tool_response_part,
)
from wire.framing import Event
from wire.hosts import HostRule
from wire.openai_common import OPENAI, RESPONSE_MEMBERS, chat_usage, openai_request, openai_routes, reported_cost
from wire.records import NO_HEADERS, ApiRequest, ApiResult, AttributeValue, Usage
from wire.stream import StreamAccumulator
from wire.tools import merged, openai_chat_calls
from wire.values import (
    LARGE_BODY,
    MAX_LABEL_LENGTH,
    error_type_from_object,
    integer,
    json_members,
    label,
    load_json_object,
    obj,
    small_json,
)

# The built-in hosts known to accept `stream_options.include_usage`; Azure OpenAI's from this
# api-version on (and on its /openai/v1/ paths). Any other host only with `;stream_usage=on`.
USAGE_REWRITE_HOSTS = {"api.openai.com"}
AZURE_HOSTS = {"*.openai.azure.com", "*.cognitiveservices.azure.com"}
AZURE_STREAM_OPTIONS_SINCE = "2024-09-01"
INCLUDE_USAGE_MEMBER = b'"stream_options":{"include_usage":true},'
# `"usage":null`, which include_usage adds to every chunk: where it stands (OpenAI puts it before
# `"obfuscation"`, others last or before `"choices"`), with the comma that joins it to the rest.
_USAGE_NULL = re.compile(rb'"usage"\s*:\s*null')
_USAGE_NULL_AFTER = re.compile(rb',\s*"usage"\s*:\s*null(?=\s*[,}])')
_USAGE_NULL_FIRST = re.compile(rb'(?<={)\s*"usage"\s*:\s*null\s*,')
# A usage object (also Groq's `x_groq.usage`): only a chunk with one may be the usage-only chunk.
_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')


def _depth_at(data: bytes, end: int) -> int:
    """How deep in objects and arrays `data[end]` stands (a slow scan, for the rare chunk that has
    a nested `"usage"` member too)."""
    depth, in_string, escaped = 0, False, False
    for byte in data[:end]:
        if in_string:
            escaped, in_string = (not escaped and byte == 0x5C), in_string and (escaped or byte != 0x22)
        elif byte == 0x22:
            in_string = True
        elif byte in b"{[":
            depth += 1
        elif byte in b"}]":
            depth -= 1
    return depth


def without_usage_null(block: bytes) -> bytes:
    """The event block without its top-level `"usage":null` member; no other byte changes."""
    matches = list(_USAGE_NULL.finditer(block))
    if len(matches) > 1:  # a nested "usage" too: find the top-level one
        data_start = block.find(b"{")
        matches = [m for m in matches if _depth_at(block[data_start:], m.start() - data_start) == 1]
    if len(matches) != 1:
        return block
    start = matches[0].start()
    after = _USAGE_NULL_AFTER.search(block, max(start - 64, 0))
    if after is not None and after.end() == matches[0].end():
        return block[: after.start()] + block[after.end() :]
    first = _USAGE_NULL_FIRST.search(block, max(start - 64, 0))
    if first is not None and first.start() <= start:
        return block[: first.start()] + block[first.end() :]
    return block


def finish_reasons(choices: Any) -> dict[int, str]:
    """The finish reason of each choice, by its index."""
    reasons: dict[int, str] = {}
    if isinstance(choices, list):
        for position, choice in enumerate(choices):
            if isinstance(choice, dict) and isinstance(choice.get("finish_reason"), str):
                index = integer(choice.get("index"))
                reasons[position if index is None else index] = choice["finish_reason"][:MAX_LABEL_LENGTH]
    return reasons


FINGERPRINT = "response.system_fingerprint"


def chat_result(body: bytes | None) -> ApiResult:
    """A chat or legacy completion (or an embeddings answer, which has no choices)."""
    data = json_members(body, RESPONSE_MEMBERS)
    if data is None:
        return ApiResult()
    choices = data.get("choices")
    reasons = finish_reasons(choices)
    first_choice = choices[0] if isinstance(choices, list) and choices else None
    fingerprint = label(data.get("system_fingerprint"))
    attributes: dict[str, AttributeValue] = {FINGERPRINT: fingerprint} if fingerprint else {}
    return ApiResult(
        response_id=label(data.get("id")),
        response_model=label(data.get("model")),
        finish_reasons=[reasons[i] for i in sorted(reasons)],
        usage=chat_usage(data.get("usage")),
        service_tier=label(data.get("service_tier")),
        error_type=error_type_from_object(data),
        tool_calls=openai_chat_calls(obj(first_choice).get("message")),
        attributes=attributes | reported_cost(data.get("usage")),
    )


def request_with_include_usage(body: bytes, request: ApiRequest) -> bytes | None:
    """The request body with `stream_options.include_usage` set, or None when unsafe to touch.

    `request` is the parsed request of the same body. Unsafe: not a JSON object or `stream` not
    literally true (then `request.stream` is false), or `stream_options` present but not an object
    (or present in a body too large to parse). Without `stream_options`, one member is inserted at
    the front and the client's bytes are otherwise kept; with it, its other fields are kept.
    """
    if not request.stream:
        return None
    if b'"stream_options"' not in body:
        opening = body.find(b"{")
        rest = body[opening + 1 :].lstrip()
        if opening < 0 or body[:opening].strip() or rest[:1] in (b"}", b""):
            return None
        return body[: opening + 1] + INCLUDE_USAGE_MEMBER + body[opening + 1 :]
    data = load_json_object(body) if len(body) <= LARGE_BODY else None
    stream_options = data.setdefault("stream_options", {}) if data is not None else None
    if not isinstance(stream_options, dict):
        return None
    stream_options["include_usage"] = True
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


class StreamedOutput:
    """Reassembles streamed output from chat/completion deltas, within the part size cap."""

    def __init__(self) -> None:
        self._texts: dict[int, TextCollector] = {}
        self._calls: dict[tuple[int, int], dict[str, Any]] = {}
        self._reasons: dict[int, str] = {}

    def add(self, choices: list[Any]) -> None:
        for position, choice in enumerate(choices):
            if not isinstance(choice, dict):
                continue
            index = integer(choice.get("index"))
            index = position if index is None else index
            delta = obj(choice.get("delta"))
            text = delta.get("content", choice.get("text"))
            if isinstance(text, str) and text:
                self._texts.setdefault(index, TextCollector()).add(text)
            for call in delta.get("tool_calls") or []:
                if isinstance(call, dict):
                    slot = self._calls.setdefault((index, integer(call.get("index")) or 0), {"arguments": ""})
                    function = obj(call.get("function"))
                    slot["id"] = slot.get("id") or call.get("id")
                    slot["name"] = slot.get("name") or function.get("name")
                    slot["arguments"] += str(function.get("arguments") or "")
            if reason := label(choice.get("finish_reason")):
                self._reasons[index] = reason

    def messages(self) -> str | None:
        indexes = sorted(set(self._texts) | {i for i, _ in self._calls} | set(self._reasons))
        messages = []
        for index in indexes:
            collected = self._texts.get(index)
            parts = openai_content_parts(collected.text() if collected else "")
            calls = sorted((k, v) for k, v in self._calls.items() if k[0] == index)
            parts += [openai_tool_call_part(call) for _, call in calls]
            messages.append({"role": "assistant", "parts": parts, "finish_reason": self._reasons.get(index, "stop")})
        return dump_messages(messages)


def _delta_has_output(choice: dict[str, Any]) -> bool:
    """Content, a tool call or reasoning: what counts as an output chunk (not the role opener)."""
    if choice.get("text"):  # legacy completions
        return True
    delta = choice.get("delta")
    if not isinstance(delta, dict):
        return False
    return bool(
        delta.get("content")
        or delta.get("tool_calls")
        or delta.get("function_call")
        or delta.get("reasoning_content")
        or delta.get("reasoning")
        or delta.get("refusal")
    )


class ChatStreamAccumulator(StreamAccumulator):
    """Chat completion and legacy completion streams: `data: {chunk}` … `data: [DONE]`."""

    def __init__(self, started: float, capture_content: bool = False) -> None:
        super().__init__(started, capture_content)
        self._reasons: dict[int, str] = {}
        self._output = StreamedOutput() if capture_content else None

    def output_messages(self) -> str | None:
        return self._output.messages() if self._output else None

    def consume(self, event: Event, now: float) -> None:
        data = event.data
        if data is None:
            return
        if data == "[DONE]":
            self.done = True
            return
        chunk = load_json_object(data)
        if chunk is None:
            return
        result = self.result
        error_type = error_type_from_object(chunk)
        if error_type:
            result.error_type = error_type
            # OpenRouter: a chunk with an `error` may still carry the usage of what was generated.
            result.usage = chat_usage(chunk.get("usage")) or result.usage
            return
        if result.response_id is None:
            result.response_id = label(chunk.get("id"))
        if result.response_model is None:
            result.response_model = label(chunk.get("model"))
        if FINGERPRINT not in result.attributes and (fingerprint := label(chunk.get("system_fingerprint"))):
            result.attributes[FINGERPRINT] = fingerprint
        if result.service_tier is None:
            result.service_tier = label(chunk.get("service_tier"))
        usage = chunk_usage(chunk)
        if usage is not None:
            result.usage = usage
            result.attributes.update(reported_cost(chunk.get("usage")))
            # The stream's last chunk (a server that never sends `[DONE]`, as the Hugging Face router).
            self.done = True
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            return
        if self._output is not None:
            self._output.add(choices)
        has_output = reason_added = False
        for position, choice in enumerate(choices):
            if not isinstance(choice, dict):
                continue
            has_output = has_output or _delta_has_output(choice)
            if position == 0 and (calls := obj(choice.get("delta")).get("tool_calls")):
                # The first delta of each call carries its id and name; the rest, arguments.
                result.tool_calls = merged(result.tool_calls, openai_chat_calls({"tool_calls": calls}))
            reason = choice.get("finish_reason")
            if isinstance(reason, str):
                index = integer(choice.get("index"))
                self._reasons[position if index is None else index] = reason[:MAX_LABEL_LENGTH]
                reason_added = True
        if reason_added:
            result.finish_reasons = [self._reasons[i] for i in sorted(self._reasons)]
        if has_output:
            self.output_chunk(now)


def chunk_usage(chunk: dict[str, Any]) -> Usage | None:
    """A chunk's usage; Groq streams its usage only in the last chunk's `x_groq.usage`."""
    return chat_usage(chunk.get("usage")) or chat_usage(obj(chunk.get("x_groq")).get("usage"))


def added_usage_only(chunk: dict[str, Any]) -> bool:
    """Is this the chunk that include_usage adds: no choices, a usage, no error?"""
    choices = chunk.get("choices")
    return (
        isinstance(choices, list)
        and not choices
        and not error_type_from_object(chunk)
        and chunk_usage(chunk) is not None
    )


def chat_input(messages: Any) -> tuple[list[Part], list[dict[str, Any]]]:
    system: list[Part] = []
    inputs: list[dict[str, Any]] = []
    for message in messages if isinstance(messages, list) else []:
        if not isinstance(message, dict):
            continue
        role = role_of(message)
        if role in ("system", "developer"):
            system += openai_content_parts(message.get("content"))
            continue
        if role == "tool":
            parts = [tool_response_part(message.get("tool_call_id"), message.get("content", ""))]
        else:
            parts = openai_content_parts(message.get("content"))
            parts += [openai_tool_call_part(c) for c in message.get("tool_calls") or [] if isinstance(c, dict)]
        inputs.append({"role": role, "parts": parts})
    return system, inputs


def choices_output(data: dict[str, Any]) -> str | None:
    """The output messages of a chat or legacy completion."""
    messages = []
    for choice in data.get("choices") or []:
        if not isinstance(choice, dict):
            continue
        message = obj(choice.get("message"))
        parts = openai_content_parts(message.get("content") if message else choice.get("text"))
        parts += [openai_tool_call_part(c) for c in message.get("tool_calls") or [] if isinstance(c, dict)]
        messages.append({"role": "assistant", "parts": parts, "finish_reason": choice.get("finish_reason") or "stop"})
    return dump_messages(messages)


class ChatCompletions(WireApi):
    name = "chat_completions"
    operation = "chat"
    vendor = OPENAI
    routes = openai_routes("/chat/completions")

    def parse_request(self, body: bytes | None) -> ApiRequest:
        return openai_request(body)

    def parse_response(self, body: bytes | None, headers: Mapping[str, str] = NO_HEADERS) -> ApiResult:
        return chat_result(body)

    def stream_accumulator(self, started: float, capture_content: bool = False) -> StreamAccumulator:
        return ChatStreamAccumulator(started, capture_content)

    def captured_input(self, body: bytes | None) -> CapturedContent:
        system, inputs = chat_input(small_json(body).get("messages"))
        return CapturedContent(system_instructions=dump_messages(system), input_messages=dump_messages(inputs))

    def captured_output(self, body: bytes | None) -> str | None:
        return choices_output(small_json(body))

    def may_request_usage(self, rule: HostRule, endpoint: Endpoint) -> bool:
        """Only toward servers known to accept it: some (older Azure api-versions, some compatible
        servers) answer an unknown `stream_options` with 400, and a server that sends `"usage":null`
        in every chunk unasked would lose those bytes. A host entry's `stream_usage` wins."""
        if rule.stream_usage is not None:
            return rule.stream_usage
        if rule.host_pattern in AZURE_HOSTS:
            return endpoint.azure_v1 or (endpoint.api_version or "") >= AZURE_STREAM_OPTIONS_SINCE
        return rule.host_pattern in USAGE_REWRITE_HOSTS

    def request_with_usage(self, body: bytes, request: ApiRequest) -> bytes | None:
        return request_with_include_usage(body, request)

    def usage_removed(self, event: Event) -> bytes:
        """The usage-only chunk goes; so does the `"usage":null` member of every other chunk. Only
        a chunk with a usage object is parsed (the last one or two of a stream)."""
        if _USAGE_OBJECT.search(event.raw) is None:
            return without_usage_null(event.raw)
        chunk = load_json_object(event.data) if event.data is not None else None
        return b"" if chunk is not None and added_usage_only(chunk) else event.raw


API = ChatCompletions()
