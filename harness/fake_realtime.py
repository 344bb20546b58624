"""A local WebSocket server (TLS) that answers like OpenAI's Realtime API (`/v1/realtime?model=…`)
and the Responses API's WebSocket mode (`/v1/responses`), for tests and the benchmark.

Realtime: `session.created` on connect (GA shapes: `output_modalities`, `audio.input.transcription`,
`audio.output.voice`), `session.updated` for `session.update`; `input_audio_buffer.commit` →
`input_audio_buffer.committed` and the item's transcription with its own usage; `response.create`
→ `response.created`, paced deltas (text, or audio with its transcript: the audio base64 of
kilobytes, as real frames are), `response.done` with the usage split by modality and cache. The
numbers are deterministic: each test can compute them (`realtime_usage`). Responses WebSocket mode:
each `response.create` answered with the events the HTTP stream has (`ResponsesScript`).

Knobs come in the events themselves: `response.create`'s `metadata` may set `chunks`,
`delay_ms`, `cached` (see `RealtimeAnswer`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, serve

from harness.fake_openai import ResponsesScript

WORDS = ["Hello", " from", " a", " fake", " voice", "."]
AUDIO_FRAME = base64.b64encode(bytes(range(256)) * 12).decode()  # 3 KB of audio, as base64
TRANSCRIPTION_MODEL = "gpt-4o-mini-transcribe"


@dataclass
class RealtimeAnswer:
    """One response: `chunks` deltas `delay_ms` apart, text or audio; deterministic usage."""

    number: int
    audio: bool
    chunks: int = 4
    delay_ms: int = 20
    cached: int = 0

    @property
    def response_id(self) -> str:
        return f"resp_fake{self.number:06d}"

    def usage(self) -> dict[str, Any]:
        text_in, audio_in = 20 + self.number, 30 if self.audio else 0
        text_out, audio_out = self.chunks, (10 * self.chunks if self.audio else 0)
        cached_text, cached_audio = min(self.cached, text_in), 0
        return {
            "total_tokens": text_in + audio_in + text_out + audio_out,
            "input_tokens": text_in + audio_in,
            "output_tokens": text_out + audio_out,
            "input_token_details": {
                "text_tokens": text_in,
                "audio_tokens": audio_in,
                "image_tokens": 0,
                "cached_tokens": cached_text + cached_audio,
                "cached_tokens_details": {"text_tokens": cached_text, "audio_tokens": cached_audio, "image_tokens": 0},
            },
            "output_token_details": {"text_tokens": text_out, "audio_tokens": audio_out},
        }

    def events(self) -> list[dict[str, Any]]:
        response = {"object": "realtime.response", "id": self.response_id, "status": "in_progress", "usage": None}
        events: list[dict[str, Any]] = [{"type": "response.created", "response": response}]
        for i in range(self.chunks):
            ids = {"response_id": self.response_id, "item_id": "item_fake", "output_index": 0, "content_index": 0}
            if self.audio:
                events.append({"type": "response.output_audio.delta", **ids, "delta": AUDIO_FRAME})
                events.append({"type": "response.output_audio_transcript.delta", **ids, "delta": WORDS[i % 6]})
            else:
                events.append({"type": "response.output_text.delta", **ids, "delta": WORDS[i % 6]})
        done = {**response, "status": "completed", "usage": self.usage()}
        events.append({"type": "response.done", "response": done})
        return events


LIVE_DELAY_S = 0.1


def live_answer(prompt_tokens: int, chunks: int = 4) -> dict[str, Any]:
    """A Live API turn: `chunks` text parts, and the turn's usage in the Live API's names."""
    return {
        "parts": [{"text": WORDS[i % len(WORDS)]} for i in range(chunks)],
        "usage": {
            "promptTokenCount": prompt_tokens,
            "responseTokenCount": chunks,
            "totalTokenCount": prompt_tokens + chunks,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}],
            "responseTokensDetails": [{"modality": "TEXT", "tokenCount": chunks}],
        },
    }


def transcription_usage(number: int) -> dict[str, Any]:
    return {
        "type": "tokens",
        "input_tokens": 12 + number,
        "input_token_details": {"text_tokens": 0, "audio_tokens": 12 + number},
        "output_tokens": 5,
        "total_tokens": 17 + number,
    }


@dataclass
class SessionLog:
    path: str
    headers: dict[str, str]
    received: list[str] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    sent_at: list[float] = field(default_factory=list)  # time.monotonic() of each sent frame


class FakeSockets:
    """`with FakeSockets(cert, key) as fake:` serves wss://127.0.0.1:`fake.port` until the block ends
    (ws:// without a certificate, as the benchmark's upstream)."""

    def __init__(self, cert: Path | None = None, key: Path | None = None) -> None:
        self._context: ssl.SSLContext | None = None
        if cert is not None and key is not None:
            self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._context.load_cert_chain(cert, key)
        self.sessions: list[SessionLog] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="fake-sockets", daemon=True)

    def __enter__(self) -> FakeSockets:
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the fake WebSocket server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with serve(self._session, "127.0.0.1", 0, ssl=self._context, max_size=None) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._started.set()
            await self._stop.wait()

    async def _session(self, connection: ServerConnection) -> None:
        request = connection.request
        assert request is not None
        log = SessionLog(request.path, {name.lower(): value for name, value in request.headers.raw_items()})
        self.sessions.append(log)

        async def send(event: dict[str, Any]) -> None:
            text = json.dumps(event)
            log.sent.append(text)
            log.sent_at.append(time.monotonic())
            await connection.send(text)

        route = urlsplit(request.path)
        if "BidiGenerateContent" in route.path:
            await self._live(connection, log)
        elif route.path.endswith("/responses"):
            await self._responses(connection, log, send)
        else:
            await self._realtime(connection, log, send, (parse_qs(route.query).get("model") or ["gpt-realtime"])[0])

    async def _live(self, connection: ServerConnection, log: SessionLog) -> None:
        """Gemini's Live API: `setupComplete` for the `setup`, then per client turn paced
        `serverContent.modelTurn` text parts and `turnComplete` with the turn's `usageMetadata`,
        each message a binary frame of JSON as the real server writes them."""

        async def send(message: dict[str, Any]) -> None:
            payload = json.dumps(message).encode()
            log.sent.append(payload.decode())
            log.sent_at.append(time.monotonic())
            await connection.send(payload)

        async for raw in connection:
            text = raw.decode() if isinstance(raw, bytes) else raw
            log.received.append(text)
            message = json.loads(text)
            if "setup" in message:
                await send({"setupComplete": {}})
                continue
            content = message.get("clientContent") or message.get("client_content") or {}
            if not (content.get("turnComplete") or content.get("turn_complete")):
                continue
            words = sum(
                len(str(part.get("text", "")).split())
                for turn in content.get("turns") or []
                for part in turn.get("parts") or []
            )
            answer = live_answer(10 + words)
            for position, part in enumerate(answer["parts"]):
                if position:
                    await asyncio.sleep(LIVE_DELAY_S)
                await send({"serverContent": {"modelTurn": {"parts": [part]}}})
            await send({"serverContent": {"turnComplete": True}, "usageMetadata": answer["usage"]})

    async def _realtime(self, connection: ServerConnection, log: SessionLog, send: Any, model: str) -> None:
        number = len(self.sessions) * 100
        session = {
            "type": "realtime",
            "object": "realtime.session",
            "id": f"sess_fake{number:06d}",
            "model": model,
            "output_modalities": ["audio"],
            "audio": {"input": {"transcription": {"model": TRANSCRIPTION_MODEL}}, "output": {"voice": "alloy"}},
        }
        await send({"type": "session.created", "event_id": "event_1", "session": session})
        async for message in connection:
            text = message if isinstance(message, str) else message.decode()
            log.received.append(text)
            event = json.loads(text)
            kind = event.get("type")
            if kind == "session.update":
                session = {**session, **event.get("session", {})}
                await send({"type": "session.updated", "session": session})
            elif kind == "input_audio_buffer.commit":
                number += 1
                item = f"item_audio{number:06d}"
                await send({"type": "input_audio_buffer.committed", "item_id": item, "previous_item_id": None})
                await send(
                    {
                        "type": "conversation.item.input_audio_transcription.completed",
                        "item_id": item,
                        "content_index": 0,
                        "transcript": "Hello there.",
                        "usage": transcription_usage(number),
                    }
                )
            elif kind == "response.create":
                number += 1
                response = event.get("response") or {}
                knobs = response.get("metadata") or {}
                modalities = response.get("output_modalities") or session.get("output_modalities") or ["audio"]
                answer = RealtimeAnswer(
                    number,
                    audio="audio" in modalities,
                    chunks=int(knobs.get("chunks", 4)),
                    delay_ms=int(knobs.get("delay_ms", 20)),
                    cached=int(knobs.get("cached", 0)),
                )
                for position, answer_event in enumerate(answer.events()):
                    if position and answer_event["type"].endswith(".delta"):
                        await asyncio.sleep(answer.delay_ms / 1000)
                    await send(answer_event)

    async def _responses(self, connection: ServerConnection, log: SessionLog, send: Any) -> None:
        async for message in connection:
            text = message if isinstance(message, str) else message.decode()
            log.received.append(text)
            event = json.loads(text)
            if event.get("type") != "response.create":
                continue
            request = {key: value for key, value in event.items() if key != "type"}
            knobs = request.get("metadata") or {}
            chunks, cached = int(knobs.get("chunks", 4)), int(knobs.get("cached", 0))
            script = ResponsesScript(request, chunks=chunks, cached_tokens=cached)
            for position, sse in enumerate(script.stream_events()):
                if position:
                    await asyncio.sleep(int(knobs.get("delay_ms", 10)) / 1000)
                await send(json.loads(sse.split("data: ", 1)[1]))
