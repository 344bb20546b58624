"""OpenAI's Responses API (`POST …/responses`): typed events, usage in the terminal event."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from wire.call import Route, WireApi
from wire.content import (
    CapturedContent,
    Part,
    dump_messages,
    openai_content_parts,
    openai_tool_call_part,
    role_of,
    text_part,
    tool_response_part,
)
from wire.framing import Event
from wire.openai_common import OPENAI, RESPONSE_MEMBERS, openai_request, openai_routes, openai_usage
from wire.records import NO_HEADERS, ApiRequest, ApiResult, Usage
from wire.socket import Operation, SessionInfo, SocketSession, frame_type
from wire.stream import StreamAccumulator
from wire.tools import responses_calls
from wire.values import (
    count,
    error_label,
    error_type_from_object,
    json_members,
    label,
    load_json_object,
    obj,
    small_json,
)

_LIFECYCLE = {"response.created", "response.in_progress", "response.queued"}
_TERMINAL = {"response.completed", "response.incomplete", "response.failed"}


def responses_usage(value: Any) -> Usage | None:
    return openai_usage(value, "input_tokens", "output_tokens")


def tool_usage(value: Any, most: int = 16) -> dict[str, int]:
    """The counts in Responses usage's `tool_usage` (the hosted tools' uses), by their names.

    Its shape is not documented in the API reference nor typed in the openai SDK (3.60), so any
    count is taken, directly (`{"web_search": 2}`) or one level down
    (`{"web_search": {"requests": 2}}` → `web_search.requests`); at most `most`, names cut to 64.
    """
    counts: dict[str, int] = {}
    for name, member in obj(value).items():
        inner = {"": member} if count(member) is not None else obj(member)
        for detail, uses in inner.items():
            if (number := count(uses)) is not None and len(counts) < most:
                counts[f"{name}.{detail}".strip(".")[:64]] = number
    return counts


def finish_reason(response: dict[str, Any]) -> str | None:
    """A Responses API status as a chat-style finish reason."""
    status = response.get("status")
    if status == "completed":
        output = response.get("output")
        calls_tools = isinstance(output, list) and any(
            isinstance(item, dict) and str(item.get("type", "")).endswith("_call") for item in output
        )
        return "tool_calls" if calls_tools else "stop"
    if status == "incomplete":
        return label(obj(response.get("incomplete_details")).get("reason")) or "incomplete"
    return label(status) if status in ("failed", "cancelled") else None


def update_result(response: dict[str, Any], result: ApiResult) -> ApiResult:
    """Fold a response object (whole, or as a lifecycle event carries it) into `result`."""
    result.response_id = label(response.get("id")) or result.response_id
    result.response_model = label(response.get("model")) or result.response_model
    result.service_tier = label(response.get("service_tier")) or result.service_tier
    result.usage = responses_usage(response.get("usage")) or result.usage
    for name, uses in tool_usage(obj(response.get("usage")).get("tool_usage")).items():
        result.attributes[f"usage.tool_usage.{name}"] = uses
    reason = finish_reason(response)
    if reason:
        result.finish_reasons = [reason]
    if calls := responses_calls(response.get("output")):  # the terminal event's output is whole
        result.tool_calls = calls
    error = response.get("error")
    if isinstance(error, dict):
        result.error_type = error_label(error.get("code")) or error_label(error.get("type")) or "error"
    return result


def output_messages(response: dict[str, Any]) -> list[dict[str, Any]]:
    parts: list[Part] = []
    for item in response.get("output") or []:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "message":
            parts += openai_content_parts(item.get("content"))
        elif str(item.get("type", "")).endswith("_call"):
            parts.append(openai_tool_call_part(item))
    reason = finish_reason(response)
    return [{"role": "assistant", "parts": parts, "finish_reason": reason or "stop"}] if parts else []


def input_messages(data: dict[str, Any]) -> tuple[list[Part], list[dict[str, Any]]]:
    system = openai_content_parts(data.get("instructions"))
    items = data.get("input")
    if isinstance(items, str):
        return system, [{"role": "user", "parts": [text_part(items)]}]
    inputs: list[dict[str, Any]] = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        kind = item.get("type", "message")
        if kind == "function_call_output":
            inputs.append({"role": "tool", "parts": [tool_response_part(item.get("call_id"), item.get("output", ""))]})
        elif kind == "function_call":
            inputs.append({"role": "assistant", "parts": [openai_tool_call_part(item)]})
        elif kind == "message":
            role = role_of(item)
            if role in ("system", "developer"):
                system += openai_content_parts(item.get("content"))
            else:
                inputs.append({"role": role, "parts": openai_content_parts(item.get("content"))})
    return system, inputs


class ResponsesStreamAccumulator(StreamAccumulator):
    """Responses API streams: `event: <type>` / `data: {json}` pairs; usage in the terminal event.

    Only lifecycle, terminal and error events are parsed as JSON; a delta is known by its type.
    The terminal event carries the whole response, so captured output is read from it.
    """

    def __init__(self, started: float, capture_content: bool = False) -> None:
        super().__init__(started, capture_content)
        self._final_output: str | None = None

    def output_messages(self) -> str | None:
        return self._final_output

    def consume(self, event: Event, now: float) -> None:
        kind = event.kind
        if kind is None and event.data:  # servers that put the type only in the JSON
            kind = str(obj(load_json_object(event.data)).get("type"))
        if not kind:
            return
        if kind.endswith(".delta"):
            self.output_chunk(now)
        elif kind in _LIFECYCLE or kind in _TERMINAL:
            response = obj(obj(load_json_object(event.data)).get("response"))
            update_result(response, self.result)
            if kind in _TERMINAL:
                self.done = True
                if self.capture_content:
                    self._final_output = dump_messages(output_messages(response))
        elif kind == "error":
            data = obj(load_json_object(event.data))
            self.result.error_type = (
                error_label(data.get("code"))
                or error_type_from_object(data)
                or error_label(data.get("type"))
                or "error"
            )


class Responses(WireApi):
    name = "responses"
    operation = "chat"
    vendor = OPENAI
    # Over HTTP, and in the WebSocket mode (`GET /v1/responses` upgraded).
    routes = (*openai_routes("/responses"), Route("/responses", method="GET", socket=True))

    def parse_request(self, body: bytes | None) -> ApiRequest:
        return openai_request(body, responses_api=True)

    def parse_response(self, body: bytes | None, headers: Mapping[str, str] = NO_HEADERS) -> ApiResult:
        data = json_members(body, RESPONSE_MEMBERS)
        if data is None:
            return ApiResult()
        if set(data) - {"error"}:  # a response object, not an error envelope
            return update_result(data, ApiResult())
        return ApiResult(error_type=error_type_from_object(data))

    def stream_accumulator(self, started: float, capture_content: bool = False) -> StreamAccumulator:
        return ResponsesStreamAccumulator(started, capture_content)

    def socket_session(self, url_model: str | None, capture_content: bool = False) -> SocketSession:
        return ResponsesSocketSession(url_model, capture_content)

    def captured_input(self, body: bytes | None) -> CapturedContent:
        system, inputs = input_messages(small_json(body))
        return CapturedContent(system_instructions=dump_messages(system), input_messages=dump_messages(inputs))

    def captured_output(self, body: bytes | None) -> str | None:
        return dump_messages(output_messages(small_json(body)))


class _Waiting:
    """A `response.create` sent, its answer not finished yet."""

    def __init__(self, now: float, now_ns: int, content: bytes, capture_content: bool) -> None:
        self.started_ns = now_ns
        self.request = API.parse_request(content)
        self.request.stream = True  # its events come as a stream's do
        self.accumulator = ResponsesStreamAccumulator(now, capture_content)
        self.captured = API.captured_input(content) if capture_content else None


class ResponsesSocketSession(SocketSession):
    """The Responses API's WebSocket mode (the `openai` SDK's `responses.connect`, Codex): each
    client `response.create` (the create parameters beside its type) and the server's events up
    to `response.completed` / `.incomplete` / `.failed` (or an `error`) is one call, read as a
    streamed HTTP call is. Responses are answered in the order they were asked for."""

    MAX_WAITING = 64

    def __init__(self, url_model: str | None, capture_content: bool) -> None:
        self.info = SessionInfo(model=url_model)
        self._capture = capture_content
        self._waiting: deque[_Waiting] = deque()

    def message(self, from_client: bool, content: bytes, now: float, now_ns: int) -> list[Operation]:
        kind = frame_type(content)
        if from_client:
            if kind == "response.create" and len(self._waiting) < self.MAX_WAITING:
                waiting = _Waiting(now, now_ns, content, self._capture)
                self.info.model = waiting.request.model or self.info.model
                self._waiting.append(waiting)
            return []
        if not self._waiting:
            return []
        current = self._waiting[0]
        current.accumulator.consume(Event(kind, content.decode("utf-8", "replace")), now)
        if not (current.accumulator.done or kind == "error"):
            return []
        self._waiting.popleft()
        return [self._operation(current, now)]

    def close(self, now: float, now_ns: int) -> list[Operation]:
        cut_off = []
        for waiting in self._waiting:
            waiting.accumulator.result.error_type = waiting.accumulator.result.error_type or "socket_closed"
            cut_off.append(self._operation(waiting, now))
        self._waiting.clear()
        return cut_off

    def _operation(self, waiting: _Waiting, now: float) -> Operation:
        accumulator = waiting.accumulator
        content = waiting.captured
        if content is not None:
            content.output_messages = accumulator.output_messages()
        return Operation(
            api=API,
            request=waiting.request,
            result=accumulator.result,
            started_ns=waiting.started_ns,
            duration_s=now - accumulator.started,
            time_to_first_chunk_s=accumulator.time_to_first_chunk,
            chunk_intervals_s=tuple(accumulator.chunk_intervals),
            content=content,
        )


class ResponsesCompact(Responses):
    """`POST /v1/responses/compact`: a billed compaction pass over a conversation, answered with a
    `response.compaction` object whose usage is the Responses API's. Never streamed. Marked
    `gen_ai.conversation.compacted` (semantic-conventions-genai, after v0.1.0)."""

    name = "responses.compact"
    routes = openai_routes("/responses/compact")

    def parse_response(self, body: bytes | None, headers: Mapping[str, str] = NO_HEADERS) -> ApiResult:
        result = super().parse_response(body, headers)
        if result.error_type is None:
            result.attributes["gen_ai.conversation.compacted"] = True
        return result


API = Responses()
COMPACT = ResponsesCompact()
