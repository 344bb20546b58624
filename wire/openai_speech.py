"""OpenAI's text to speech: `POST …/audio/speech`, JSON in, audio out.

The answer is binary audio without usage, so such a call records its duration, model, voice and
the input's length in characters (what tts-1 and tts-1-hd bill), never tokens. With
`stream_format: "sse"` (gpt-4o-mini-tts and later) the audio comes as `speech.audio.delta` events
and `speech.audio.done` carries the usage in tokens. Audio is never copied anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping

from wire.call import WireApi
from wire.content import CapturedContent, dump_messages, text_part
from wire.framing import Event
from wire.openai_common import OPENAI, openai_routes
from wire.records import NO_HEADERS, ApiRequest, ApiResult, Usage
from wire.stream import StreamAccumulator
from wire.values import (
    count,
    error_type_from_object,
    json_members,
    label,
    load_json_object,
    member_pattern,
    obj,
    small_json,
)

_REQUEST_MEMBERS = member_pattern("model", "voice", "input", "response_format", "speed", "stream_format")


def speech_usage(value: object) -> Usage | None:
    usage = obj(value)
    input_tokens, output_tokens = count(usage.get("input_tokens")), count(usage.get("output_tokens"))
    if input_tokens is None and output_tokens is None:
        return None
    return Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        input_modalities=(("text", input_tokens),) if input_tokens else (),
        output_modalities=(("audio", output_tokens),) if output_tokens else (),
    )


class SpeechStreamAccumulator(StreamAccumulator):
    """`speech.audio.delta` (each one an output chunk) … `speech.audio.done` with the usage."""

    def consume(self, event: Event, now: float) -> None:
        kind = event.kind
        if kind == "speech.audio.delta" or (kind is None and event.data and '"speech.audio.delta"' in event.data[:64]):
            self.output_chunk(now)  # the audio itself is not parsed
            return
        data = load_json_object(event.data) if event.data else None
        if data is None:
            return
        kind = kind or str(data.get("type"))
        if kind == "speech.audio.done":
            self.done = True
            self.result.usage = speech_usage(data.get("usage")) or self.result.usage
        elif kind == "speech.audio.delta":
            self.output_chunk(now)
        elif kind == "error" or "error" in data:
            self.result.error_type = error_type_from_object(data) or "error"

    def output_messages(self) -> str | None:
        return None


class Speech(WireApi):
    name = "audio.speech"
    operation = "speech"
    vendor = OPENAI
    routes = openai_routes("/audio/speech")
    answers_json = False  # the audio itself

    def parse_request(self, body: bytes | None) -> ApiRequest:
        data = json_members(body, _REQUEST_MEMBERS)
        if data is None:
            return ApiRequest()
        text = data.get("input")
        voice = label(data.get("voice") if isinstance(data.get("voice"), str) else obj(data.get("voice")).get("id"))
        return ApiRequest(
            model=label(data.get("model")),
            stream=data.get("stream_format") == "sse",
            attributes={"request.voice": voice} if voice else {},
            input_characters=len(text) if isinstance(text, str) else None,
            output_type=label(data.get("response_format")),
        )

    def parse_response(self, body: bytes | None, headers: Mapping[str, str] = NO_HEADERS) -> ApiResult:
        if not body or body[:1] != b"{":
            return ApiResult()  # the audio
        data = load_json_object(body)
        return ApiResult(error_type=error_type_from_object(data)) if data and "error" in data else ApiResult()

    def stream_accumulator(self, started: float, capture_content: bool = False) -> StreamAccumulator:
        return SpeechStreamAccumulator(started, capture_content)

    def captured_input(self, body: bytes | None) -> CapturedContent:
        data = small_json(body)
        text = data.get("input")
        instructions = data.get("instructions")
        return CapturedContent(
            system_instructions=dump_messages([text_part(instructions)]) if isinstance(instructions, str) else None,
            input_messages=dump_messages([{"role": "user", "parts": [text_part(text)]}])
            if isinstance(text, str)
            else None,
        )

    def captured_output(self, body: bytes | None) -> str | None:
        return None  # audio: named, never copied


API = Speech()
