"""OpenAI's speech to text: `POST …/audio/transcriptions` and `…/audio/translations`.

The request is `multipart/form-data`: the model and options are form fields, the audio a file part
that is never read (`wire.form_data`). Usage comes in two kinds: `{"type": "tokens",
"input_tokens", "input_token_details": {"text_tokens", "audio_tokens"}, "output_tokens"}`
(gpt-4o-transcribe and later) or `{"type": "duration", "seconds"}` (whisper-1: billed per second,
kept as `ApiResult.audio_seconds`, no tokens invented). A `response_format` of text, srt or vtt
answers plain text without usage. With `stream=true` the answer is SSE: `transcript.text.delta`
events, then `transcript.text.done` with the text and the usage.
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
from wire.values import count, error_type_from_object, label, load_json_object, number, obj, small_json

_STREAMED_TEXT = ("transcript.text.delta",)
_DONE = "transcript.text.done"


def transcription_usage(value: Any, result: ApiResult) -> None:
    """Fold a transcription's `usage` (either kind) into `result`."""
    usage = obj(value)
    if usage.get("type") == "duration":
        result.audio_seconds = number(usage.get("seconds"))
        return
    input_tokens, output_tokens = count(usage.get("input_tokens")), count(usage.get("output_tokens"))
    if input_tokens is None and output_tokens is None:
        return
    result.usage = Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        input_modalities=modalities(obj(usage.get("input_token_details"))),
        output_modalities=(("text", output_tokens),) if output_tokens else (),
    )


class TranscriptionStreamAccumulator(StreamAccumulator):
    """`transcript.text.delta` … `transcript.text.done` (type in the event line or the JSON)."""

    def __init__(self, started: float, capture_content: bool = False) -> None:
        super().__init__(started, capture_content)
        self._text: str | None = None

    def consume(self, event: Event, now: float) -> None:
        data = load_json_object(event.data) if event.data else None
        if data is None:
            return
        kind = event.kind or str(data.get("type"))
        if kind in _STREAMED_TEXT:
            self.output_chunk(now)
        elif kind == _DONE:
            self.done = True
            transcription_usage(data.get("usage"), self.result)
            if self.capture_content and isinstance(data.get("text"), str):
                self._text = data["text"]
        elif kind == "error" or "error" in data:
            self.result.error_type = error_type_from_object(data) or "error"

    def output_messages(self) -> str | None:
        if self._text is None:
            return None
        return dump_messages([{"role": "assistant", "parts": [text_part(self._text)], "finish_reason": "stop"}])


class Transcriptions(WireApi):
    name = "audio.transcriptions"
    operation = "transcription"
    vendor = OPENAI
    routes = openai_routes("/audio/transcriptions")
    answers_json = False  # `response_format` text, srt or vtt answers the transcript itself

    def parse_request(self, body: bytes | None) -> ApiRequest:
        fields = form_fields(body)
        return ApiRequest(
            model=label(fields.get("model")),
            stream=fields.get("stream", "").lower() == "true",
            temperature=_float(fields.get("temperature")),
            output_type=label(fields.get("response_format")),
        )

    def parse_response(self, body: bytes | None, headers: Mapping[str, str] = NO_HEADERS) -> ApiResult:
        data = load_json_object(body) if body and body[:1] == b"{" else None
        if data is None:
            return ApiResult()  # text, srt or vtt: no usage in the answer
        if "error" in data:
            return ApiResult(error_type=error_type_from_object(data))
        result = ApiResult()
        transcription_usage(data.get("usage"), result)
        if result.audio_seconds is None and (seconds := number(data.get("duration"))) is not None:
            result.audio_seconds = seconds  # verbose_json says how long the audio was
        return result

    def stream_accumulator(self, started: float, capture_content: bool = False) -> StreamAccumulator:
        return TranscriptionStreamAccumulator(started, capture_content)

    def captured_input(self, body: bytes | None) -> CapturedContent:
        prompt = form_fields(body).get("prompt")
        messages = [{"role": "user", "parts": [{"type": "audio"}, *([text_part(prompt)] if prompt else [])]}]
        return CapturedContent(input_messages=dump_messages(messages))

    def captured_output(self, body: bytes | None) -> str | None:
        text = small_json(body).get("text") if body and body[:1] == b"{" else None
        if not isinstance(text, str):
            return None
        return dump_messages([{"role": "assistant", "parts": [text_part(text)], "finish_reason": "stop"}])


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


class Translations(Transcriptions):
    name = "audio.translations"
    routes = openai_routes("/audio/translations")
    operation = "translation"


TRANSCRIPTIONS = Transcriptions()
TRANSLATIONS = Translations()
