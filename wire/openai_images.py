"""OpenAI's images: `POST …/images/generations` (JSON), `…/images/edits` and `…/images/variations`
(`multipart/form-data`: the model and prompt are form fields, the images file parts never read).

Usage where the model reports it (gpt-image models): `input_tokens` with `input_tokens_details`
(text and image tokens), `output_tokens` (image tokens, or `output_tokens_details` where split).
dall-e models report none. With `stream=true` the answer is SSE: `image_generation.partial_image`
(or `image_edit.partial_image`) events, each an output chunk, then `….completed` with the usage.
Image data (`b64_json`) is never parsed whole nor copied: a completed event's usage is read from
the end of its JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wire.call import WireApi
from wire.content import CapturedContent, dump_messages, text_part
from wire.form_data import form_fields
from wire.framing import Event
from wire.openai_common import OPENAI, modalities, openai_routes
from wire.records import NO_HEADERS, ApiRequest, ApiResult, Usage
from wire.stream import StreamAccumulator
from wire.values import (
    count,
    error_type_from_object,
    integer,
    json_members,
    label,
    load_json_object,
    member_pattern,
    members_near_edges,
    obj,
    small_json,
)

_REQUEST_MEMBERS = member_pattern("model", "n", "stream", "size", "quality", "output_format", "partial_images")
_RESPONSE_MEMBERS = member_pattern("usage", "error", "created")
_EVENT_MEMBERS = member_pattern("type", "usage", "error")


def images_usage(value: Any) -> Usage | None:
    usage = obj(value)
    input_tokens, output_tokens = count(usage.get("input_tokens")), count(usage.get("output_tokens"))
    if input_tokens is None and output_tokens is None:
        return None
    output_split = modalities(obj(usage.get("output_tokens_details")))
    return Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        input_modalities=modalities(obj(usage.get("input_tokens_details"))),
        output_modalities=output_split or ((("image", output_tokens),) if output_tokens else ()),
    )


def _event_data(data: str) -> dict[str, Any] | None:
    """An event's members without its image: the usage sits after the data, at the JSON's end."""
    raw = data.encode()
    return members_near_edges(raw, _EVENT_MEMBERS) if len(raw) > 4096 else load_json_object(raw)


class ImagesStreamAccumulator(StreamAccumulator):
    """`…partial_image` events (output chunks) and `…completed` with the usage; the type is in the
    event line, or in the JSON."""

    def consume(self, event: Event, now: float) -> None:
        if not event.data:
            return
        data = _event_data(event.data)
        if data is None:
            return
        kind = event.kind or str(data.get("type", ""))
        if kind.endswith(".partial_image"):
            self.output_chunk(now)
        elif kind.endswith(".completed"):
            self.output_chunk(now)
            self.result.usage = images_usage(data.get("usage")) or self.result.usage
            self.done = True
        elif kind == "error" or "error" in data:
            self.result.error_type = error_type_from_object(data) or "error"

    def output_messages(self) -> str | None:
        return None  # images: never copied


class Generations(WireApi):
    name = "images.generations"
    operation = "image_generation"
    vendor = OPENAI
    routes = openai_routes("/images/generations")

    def parse_request(self, body: bytes | None) -> ApiRequest:
        data = json_members(body, _REQUEST_MEMBERS)
        if data is None:
            return ApiRequest()
        return ApiRequest(
            model=label(data.get("model")),
            stream=data.get("stream") is True,
            choice_count=integer(data.get("n")),
            output_type="image",
        )

    def parse_response(self, body: bytes | None, headers: Mapping[str, str] = NO_HEADERS) -> ApiResult:
        data = json_members(body, _RESPONSE_MEMBERS)
        if data is None:
            return ApiResult()
        if "error" in data:
            return ApiResult(error_type=error_type_from_object(data))
        return ApiResult(usage=images_usage(data.get("usage")))

    def stream_accumulator(self, started: float, capture_content: bool = False) -> StreamAccumulator:
        return ImagesStreamAccumulator(started, capture_content)

    def captured_input(self, body: bytes | None) -> CapturedContent:
        prompt = small_json(body).get("prompt")
        return CapturedContent(
            input_messages=dump_messages([{"role": "user", "parts": [text_part(prompt)]}])
            if isinstance(prompt, str)
            else None
        )

    def captured_output(self, body: bytes | None) -> str | None:
        return None


class Edits(Generations):
    """Edits and variations: the same answers, a multipart request."""

    name = "images.edits"
    routes = openai_routes("/images/edits")

    def parse_request(self, body: bytes | None) -> ApiRequest:
        fields = form_fields(body)
        n = fields.get("n", "")
        return ApiRequest(
            model=label(fields.get("model")),
            stream=fields.get("stream", "").lower() == "true",
            choice_count=int(n) if n.isdigit() else None,
            output_type="image",
        )

    def captured_input(self, body: bytes | None) -> CapturedContent:
        prompt = form_fields(body).get("prompt")
        parts = [{"type": "image"}, *([text_part(prompt)] if prompt else [])]
        return CapturedContent(input_messages=dump_messages([{"role": "user", "parts": parts}]))


class Variations(Edits):
    name = "images.variations"
    routes = openai_routes("/images/variations")


GENERATIONS = Generations()
EDITS = Edits()
VARIATIONS = Variations()
