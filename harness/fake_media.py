"""What the fake upstream answers to OpenAI's audio and images APIs, as api.openai.com does.

Transcriptions and translations read the multipart form (model, response_format, stream) and
the WAV file's length: whisper-1 answers `{"type": "duration", "seconds"}` usage, the
gpt-4o-*-transcribe models token usage (10 audio tokens a second of audio), streamed as
`transcript.text.delta` … `transcript.text.done` with `stream=true`. Speech answers binary audio
(`audio/mpeg`), or with `stream_format: "sse"` `speech.audio.delta` events and a `speech.audio.done`
with its usage. Image generations answer `b64_json` images and gpt-image usage, or with
`stream=true` `image_generation.partial_image` events and `image_generation.completed`.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import io
import json
import wave
from typing import Any

TRANSCRIPT = ["Hello", " there", ",", " proxy", "."]
SPEECH_AUDIO = b"ID3\x04\x00\x00" + bytes(range(256)) * 40  # 10 KB standing for an MP3
IMAGE = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 400).decode()


def form(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, bytes]]:
    """A multipart form's text fields and files."""
    message = email.parser.BytesParser(policy=email.policy.default).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    fields: dict[str, str] = {}
    files: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        if part.get_filename():
            files[str(name)] = payload
        else:
            fields[str(name)] = payload.decode()
    return fields, files


def wav_seconds(data: bytes) -> float:
    with wave.open(io.BytesIO(data)) as audio:
        return audio.getnframes() / audio.getframerate()


def transcription(fields: dict[str, str], files: dict[str, bytes]) -> tuple[str, list[str] | bytes]:
    """(content type, the SSE events or the body) of a transcription or translation."""
    seconds = wav_seconds(files["file"])
    text = "".join(TRANSCRIPT)
    model = fields.get("model", "whisper-1")
    if model == "whisper-1":
        if fields.get("response_format") == "text":
            return "text/plain", text.encode()
        answer = {"text": text, "usage": {"type": "duration", "seconds": seconds}}
        return "application/json", json.dumps(answer).encode()
    audio_tokens = round(seconds * 10)
    usage: dict[str, Any] = {
        "type": "tokens",
        "input_tokens": audio_tokens,
        "input_token_details": {"text_tokens": 0, "audio_tokens": audio_tokens},
        "output_tokens": len(TRANSCRIPT),
        "total_tokens": audio_tokens + len(TRANSCRIPT),
    }
    if fields.get("stream") == "true":
        events: list[dict[str, Any]] = [{"type": "transcript.text.delta", "delta": word} for word in TRANSCRIPT]
        events.append({"type": "transcript.text.done", "text": text, "usage": usage})
        return "text/event-stream", [f"data: {json.dumps(event)}\n\n" for event in events]
    return "application/json", json.dumps({"text": text, "usage": usage}).encode()


def speech_usage(request: dict[str, Any]) -> dict[str, int]:
    characters = len(str(request.get("input", "")))
    return {"input_tokens": characters // 4 + 1, "output_tokens": 120, "total_tokens": characters // 4 + 121}


def speech(request: dict[str, Any]) -> tuple[str, list[str] | bytes]:
    if request.get("stream_format") == "sse":
        chunk = base64.b64encode(SPEECH_AUDIO[:3000]).decode()
        events: list[dict[str, Any]] = [{"type": "speech.audio.delta", "audio": chunk} for _ in range(4)]
        events.append({"type": "speech.audio.done", "usage": speech_usage(request)})
        return "text/event-stream", [f"data: {json.dumps(event)}\n\n" for event in events]
    return "audio/mpeg", SPEECH_AUDIO


def image_usage(request: dict[str, Any]) -> dict[str, Any]:
    text = len(str(request.get("prompt", "")).split()) + 5
    output = 1056 * int(request.get("n") or 1)
    return {
        "total_tokens": text + output,
        "input_tokens": text,
        "output_tokens": output,
        "input_tokens_details": {"text_tokens": text, "image_tokens": 0},
    }


def images(request: dict[str, Any]) -> tuple[str, list[str] | bytes]:
    if request.get("stream") is True:
        events = [
            ("image_generation.partial_image", {"b64_json": IMAGE[: len(IMAGE) // 2], "partial_image_index": index})
            for index in range(int(request.get("partial_images") or 2))
        ]
        events.append(("image_generation.completed", {"b64_json": IMAGE, "usage": image_usage(request)}))
        return "text/event-stream", [
            f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n" for kind, data in events
        ]
    answer = {
        "created": 1_764_000_000,
        "data": [{"b64_json": IMAGE} for _ in range(int(request.get("n") or 1))],
        "usage": image_usage(request),
    }
    return "application/json", json.dumps(answer).encode()
