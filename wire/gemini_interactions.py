"""Google's Interactions API (`POST /v1beta/interactions` on the Gemini API; Vertex AI's
`…/locations/{l}/interactions`): Google's recommended endpoint since mid-2026, plain or streamed.
`GET …/interactions/{id}` fetches a stored or background interaction (operation `fetch_response`),
plainly or as a stream (`?stream=true`).

Usage (`usage`; Vertex AI writes the same names in camelCase): `total_input_tokens` includes the
cached part (`total_cached_tokens`); `total_tool_use_tokens` (Google's own tools' prompt) is input
beside it; `total_thought_tokens` is **not** part of `total_output_tokens` (the recordings add up:
total = input + output + thought), so output = output + thought, thought the reasoning part, as for
generateContent's `thoughtsTokenCount`.

A stream is SSE whose payloads repeat their event name in `event_type`: `interaction.created`,
`interaction.status_update`, `step.start`, `step.delta` (text: an output chunk), `step.stop`,
`interaction.completed` with the usage, then `event: done` / `data: [DONE]` (older revisions:
`interaction.start`, `content.delta`, `interaction.complete`). An error arrives as `event: error`.
A background create answers `in_progress` without usage; its usage comes with the completed
interaction a later fetch streams.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wire.call import Route, WireApi
from wire.content import CapturedContent, PartsCollector, dump_messages, text_part
from wire.framing import Event
from wire.gemini_generate import GOOGLE
from wire.records import MODALITIES, NO_HEADERS, ApiRequest, ApiResult, Usage
from wire.stream import StreamAccumulator
from wire.values import (
    count,
    error_label,
    integer,
    json_members,
    label,
    load_json_object,
    member_pattern,
    number,
    obj,
    small_json,
)

_REQUEST_MEMBERS = member_pattern(
    "model", "agent", "stream", "background", "previous_interaction_id", "generation_config", "generationConfig"
)
_RESPONSE_MEMBERS = member_pattern("id", "model", "agent", "status", "usage", "error", "service_tier")
_DONE = ("interaction.completed", "interaction.complete")
_OUTPUT = ("step.delta", "content.delta")


def _field(data: dict[str, Any], name: str) -> Any:
    """A snake_case member (the Gemini API's), or its camelCase twin (Vertex AI's)."""
    if name in data:
        return data[name]
    head, *rest = name.split("_")
    return data.get(head + "".join(word.title() for word in rest))


def _modalities(details: Any) -> tuple[tuple[str, int], ...]:
    found: dict[str, int] = {}
    for item in details if isinstance(details, list) else []:
        modality, tokens = str(obj(item).get("modality", "")).lower(), count(obj(item).get("tokens"))
        if modality in MODALITIES and tokens:
            found[modality] = found.get(modality, 0) + tokens
    return tuple(found.items())


def interactions_usage(value: Any) -> Usage | None:
    usage = obj(value)
    prompt, tools = count(_field(usage, "total_input_tokens")), count(_field(usage, "total_tool_use_tokens"))
    output, thought = count(_field(usage, "total_output_tokens")), count(_field(usage, "total_thought_tokens"))
    if prompt is None and output is None and thought is None:
        return None
    return Usage(
        input_tokens=(prompt or 0) + (tools or 0),
        output_tokens=(output or 0) + (thought or 0),
        cache_read_tokens=count(_field(usage, "total_cached_tokens")),
        reasoning_tokens=thought,
        input_modalities=_modalities(_field(usage, "input_tokens_by_modality")),
        output_modalities=_modalities(_field(usage, "output_tokens_by_modality")),
    )


def update_result(result: ApiResult, interaction: dict[str, Any]) -> None:
    """Fold an interaction object (a plain answer, or a stream's created / completed one) into `result`."""
    result.response_id = label(interaction.get("id")) or result.response_id
    result.response_model = label(interaction.get("model") or interaction.get("agent")) or result.response_model
    result.service_tier = label(_field(interaction, "service_tier")) or result.service_tier
    result.usage = interactions_usage(interaction.get("usage")) or result.usage
    status = label(interaction.get("status"))
    if status in ("failed", "cancelled", "incomplete"):
        result.error_type = result.error_type or status
    elif status == "completed":
        result.finish_reasons = ["stop"]


def error_type(data: dict[str, Any]) -> str | None:
    """`{"error": {"message": …, "code": "invalid_request"}}`: the code is a string here."""
    error = data.get("error")
    if isinstance(error, dict):
        return error_label(error.get("code")) or error_label(error.get("status")) or "error"
    return None


class InteractionStreamAccumulator(StreamAccumulator):
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
        kind = event.kind or label(data.get("event_type")) or ""
        failure = error_type(data)
        if kind == "error" or failure is not None:
            self.result.error_type = failure or "error"
        elif kind in _OUTPUT:
            delta = obj(data.get("delta"))
            text, thought = delta.get("text"), delta.get("thought") or delta.get("thinking")
            if text or thought:
                self.output_chunk(now)
                if self.capture_content:
                    self._parts.add_text(thought, "reasoning")
                    self._parts.add_text(text)
        elif kind.startswith("interaction."):
            update_result(self.result, obj(data.get("interaction")))
            if kind in _DONE:
                self.done = True

    def output_messages(self) -> str | None:
        return self._parts.message(self.result.finish_reasons)


class Interactions(WireApi):
    name = "interactions"
    operation = "chat"
    vendor = GOOGLE
    routes: tuple[Route, ...] = (Route("/interactions"),)

    def parse_request(self, body: bytes | None) -> ApiRequest:
        data = json_members(body, _REQUEST_MEMBERS)
        if data is None:
            return ApiRequest()
        config = obj(_field(data, "generation_config"))
        return ApiRequest(
            model=label(data.get("model") or data.get("agent")),
            stream=data.get("stream") is True,
            temperature=number(config.get("temperature")),
            top_p=number(_field(config, "top_p")),
            max_tokens=integer(_field(config, "max_output_tokens")),
            previous_response_id=label(_field(data, "previous_interaction_id")),
        )

    def parse_response(self, body: bytes | None, headers: Mapping[str, str] = NO_HEADERS) -> ApiResult:
        data = json_members(body, _RESPONSE_MEMBERS)
        if data is None:
            return ApiResult()
        if (found := error_type(data)) is not None:
            return ApiResult(error_type=found)
        result = ApiResult()
        update_result(result, data)
        return result

    def stream_accumulator(self, started: float, capture_content: bool = False) -> StreamAccumulator:
        return InteractionStreamAccumulator(started, capture_content)

    def captured_input(self, body: bytes | None) -> CapturedContent:
        data = small_json(body)
        given = data.get("input")
        turns = given if isinstance(given, list) else [{"role": "user", "content": given}] if given else []
        inputs = []
        for turn in turns:
            content = obj(turn).get("content") if isinstance(turn, dict) else turn
            if isinstance(content, str) and content:
                inputs.append({"role": label(obj(turn).get("role")) or "user", "parts": [text_part(content)]})
        instruction = _field(data, "system_instruction")
        system = [text_part(instruction)] if isinstance(instruction, str) and instruction else []
        return CapturedContent(system_instructions=dump_messages(system), input_messages=dump_messages(inputs))

    def captured_output(self, body: bytes | None) -> str | None:
        parts = PartsCollector()
        for step in small_json(body).get("steps") or []:
            for content in obj(step).get("content") or []:
                if obj(content).get("type") == "text":
                    parts.add_text(obj(content).get("text"))
        return parts.message(["stop"])


class InteractionsFetch(Interactions):
    """`GET …/interactions/{id}` (`?stream=true` streams it): a stored or background interaction
    fetched again. Its usage is the interaction's: the telemetry layer counts it once per id."""

    name = "interactions.get"
    operation = "fetch_response"
    routes = (Route(r"/interactions/[^/:]{1,256}", method="GET"),)

    def parse_request(self, body: bytes | None) -> ApiRequest:
        return ApiRequest()


API = Interactions()
FETCH = InteractionsFetch()
