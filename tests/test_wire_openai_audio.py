"""OpenAI's audio APIs (transcriptions, translations, speech) and the multipart form fields they
are sent with."""

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import wire
from harness.pieces import observed, split_randomly
from wire import openai_speech, openai_transcriptions
from wire.form_data import EDGE, form_fields
from wire.records import Usage
from wire.stream import EventStream

TRANSCRIPTIONS = openai_transcriptions.TRANSCRIPTIONS
SPEECH = openai_speech.API


def multipart(fields: dict[str, str], audio: bytes, boundary: str = "b0undary") -> bytes:
    """A form as httpx writes it: the text fields, then the file."""
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        f"Content-Type: audio/wav\r\n\r\n".encode()
        + audio
        + b"\r\n"
    )
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


# A file part that looks like fields inside: it must never be read as one.
TRICKY_AUDIO = b'RIFF\x00\x00Content-Disposition: form-data; name="model"\r\n\r\nwhisper-evil\r\n--x' * 3


def test_form_fields_are_read_and_files_never():
    body = multipart({"model": "gpt-4o-transcribe", "stream": "true", "response_format": "json"}, TRICKY_AUDIO)
    assert form_fields(body) == {"model": "gpt-4o-transcribe", "stream": "true", "response_format": "json"}
    # Fields after a large file (some clients write them last) are found at the body's end.
    late = multipart({}, b"\x00" * (3 * EDGE))[: -len(b"--b0undary--\r\n")]
    late += b'--b0undary\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n--b0undary--\r\n'
    assert form_fields(late) == {"model": "whisper-1"}
    assert form_fields(b"") == {} and form_fields(b"not a form") == {}


def test_the_file_part_is_skipped_even_when_it_comes_first():
    body = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.wav"\r\n\r\n'
        + TRICKY_AUDIO
        + b'\r\n--b\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n--b--\r\n'
    )
    assert form_fields(body) == {"model": "whisper-1"}  # the file's look-alike header is content


def test_transcription_routes_and_request():
    for path, api in (
        ("/v1/audio/transcriptions", TRANSCRIPTIONS),
        ("/v1/audio/translations", openai_transcriptions.TRANSLATIONS),
        ("/v1/audio/speech", SPEECH),
    ):
        endpoint = wire.endpoint_for("POST", path)
        assert endpoint is not None and endpoint.api is api
    request = TRANSCRIPTIONS.parse_request(multipart({"model": "gpt-4o-transcribe", "stream": "true"}, b"RIFF"))
    assert (request.model, request.stream) == ("gpt-4o-transcribe", True)
    assert openai_transcriptions.TRANSLATIONS.operation == "translation" and TRANSCRIPTIONS.operation == "transcription"


def test_token_usage_and_duration_usage():
    tokens = {
        "text": "Hello.",
        "usage": {
            "type": "tokens",
            "input_tokens": 14,
            "input_token_details": {"text_tokens": 2, "audio_tokens": 12},
            "output_tokens": 45,
            "total_tokens": 59,
        },
    }
    result = TRANSCRIPTIONS.parse_response(json.dumps(tokens).encode())
    assert result.usage == Usage(
        input_tokens=14,
        output_tokens=45,
        input_modalities=(("text", 2), ("audio", 12)),
        output_modalities=(("text", 45),),
    )
    duration = TRANSCRIPTIONS.parse_response(b'{"text": "Hello.", "usage": {"type": "duration", "seconds": 9}}')
    assert duration.usage is None and duration.audio_seconds == 9.0  # no tokens invented
    verbose = TRANSCRIPTIONS.parse_response(b'{"task": "transcribe", "duration": 8.47, "text": "Hi"}')
    assert verbose.audio_seconds == pytest.approx(8.47)
    assert TRANSCRIPTIONS.parse_response(b"1\n00:00:00,000 --> 00:00:01,000\nHi\n").usage is None  # srt
    error = TRANSCRIPTIONS.parse_response(
        b'{"error": {"code": "invalid_file_format", "type": "invalid_request_error"}}'
    )
    assert error.error_type == "invalid_file_format"


def transcript_stream(words: list[str]) -> bytes:
    events: list[dict[str, Any]] = [{"type": "transcript.text.delta", "delta": word} for word in words]
    usage = {"type": "tokens", "input_tokens": 20, "input_token_details": {"audio_tokens": 20}, "output_tokens": 5}
    events.append({"type": "transcript.text.done", "text": "".join(words), "usage": usage})
    return "".join(f"data: {json.dumps(event)}\n\n" for event in events).encode()


@pytest.mark.parametrize("seed", range(3))
def test_a_streamed_transcription_in_any_pieces(seed):
    body = transcript_stream(["He", "llo", " there", "."])
    stream = observed(EventStream(None, TRANSCRIPTIONS.stream_accumulator(0.0, True)), split_randomly(body, seed))
    accumulator = stream.accumulator
    assert accumulator.result.usage == Usage(
        input_tokens=20, output_tokens=5, input_modalities=(("audio", 20),), output_modalities=(("text", 5),)
    )
    assert accumulator.done and accumulator.time_to_first_chunk is not None
    assert len(accumulator.chunk_intervals) == 3
    assert json.loads(accumulator.output_messages() or "")[0]["parts"][0]["content"] == "Hello there."


def test_speech_records_voice_and_characters_and_never_the_audio():
    body = json.dumps({"model": "tts-1", "input": "Hello, world!", "voice": "alloy", "response_format": "mp3"})
    request = SPEECH.parse_request(body.encode())
    assert (request.model, request.attributes, request.input_characters) == ("tts-1", {"request.voice": "alloy"}, 13)
    assert not request.stream
    audio = b"ID3\x04\x00" + bytes(range(256)) * 50
    assert SPEECH.parse_response(audio).usage is None and SPEECH.captured_output(audio) is None
    custom_voice = SPEECH.parse_request(b'{"model": "gpt-4o-mini-tts", "input": "x", "voice": {"id": "voice_1"}}')
    assert custom_voice.attributes == {"request.voice": "voice_1"}


def test_speech_over_sse_reports_usage_in_tokens():
    events: list[dict[str, Any]] = [{"type": "speech.audio.delta", "audio": "AAAA" * 500} for _ in range(3)]
    events.append({"type": "speech.audio.done", "usage": {"input_tokens": 7, "output_tokens": 90, "total_tokens": 97}})
    body = "".join(f"data: {json.dumps(event)}\n\n" for event in events).encode()
    stream = observed(EventStream(None, SPEECH.stream_accumulator(0.0)), split_randomly(body, 1, largest=700))
    result = stream.accumulator.result
    assert result.usage == Usage(
        input_tokens=7, output_tokens=90, input_modalities=(("text", 7),), output_modalities=(("audio", 90),)
    )
    assert len(stream.accumulator.chunk_intervals) == 2  # three audio deltas
    request = SPEECH.parse_request(
        b'{"model": "gpt-4o-mini-tts", "input": "Hi", "voice": "ash", "stream_format": "sse"}'
    )
    assert request.stream


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000))
def test_arbitrary_bytes_never_raise(data):
    for api in (TRANSCRIPTIONS, SPEECH):
        api.parse_request(data)
        api.parse_response(data)
        api.captured_input(data)
    form_fields(data)
