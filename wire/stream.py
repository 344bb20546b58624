"""Streamed responses: the accumulator interface each API implements, and the stream that
decodes, frames (`wire.framing`) and accumulates a body as it passes."""

from __future__ import annotations

from array import array

from wire.framing import Event, Framer
from wire.framing.codecs import Encoder, IdentityEncoder, Transcoder, incremental_decoder, incremental_encoder
from wire.framing.sse import SSEFramer
from wire.records import ApiResult


class StreamAccumulator:
    """Folds the events of one stream into an ApiResult and chunk timings.

    With `capture_content`, it also keeps the output (`output_messages()`). Each wire API
    subclasses it and says what an output chunk is (`output_chunk(now)` on each).
    """

    def __init__(self, started: float, capture_content: bool = False) -> None:
        self.capture_content = capture_content
        self.result = ApiResult()
        self.started = started
        # Seconds from the start to the first chunk that carries output (content, reasoning or
        # a tool call: not a role-only opener, a ping or lifecycle event).
        self.time_to_first_chunk: float | None = None
        # Seconds between consecutive output chunks after the first; compact for long streams.
        self.chunk_intervals = array("d")
        self.done = False
        self._last_output_at: float | None = None

    def output_chunk(self, now: float) -> None:
        if self._last_output_at is None:
            self.time_to_first_chunk = now - self.started
        else:
            self.chunk_intervals.append(now - self._last_output_at)
        self._last_output_at = now

    def consume(self, event: Event, now: float) -> None:
        """Record one event."""
        raise NotImplementedError

    def for_client(self, event: Event, now: float) -> bytes:
        """Record one event and return what the client gets of it (b"": nothing).

        Only used when the addon asked the upstream for more than the client did (OpenAI's
        include_usage); the API that asks overrides it to take the extra out again.
        """
        self.consume(event, now)
        return event.raw

    def output_messages(self) -> str | None:
        raise NotImplementedError


class EventStream:
    """One streamed response, fed the raw body chunks as they pass.

    `observe` only watches. `filter` also returns what the client should get instead of the
    chunk (`StreamAccumulator.for_client`). Events are released as soon as they are complete;
    nothing else is held back.
    """

    def __init__(
        self, content_encoding: str | None, accumulator: StreamAccumulator, framer: Framer | None = None
    ) -> None:
        self.accumulator = accumulator
        self._framer = framer or SSEFramer()
        self._content_encoding = content_encoding
        decoder = incremental_decoder(content_encoding)
        self.decodable = decoder is not None  # the encoders cover the same encodings
        self._decode: Transcoder = decoder or (lambda data: b"")
        self._encoder: Encoder | None = None  # made on the first `filter`: observe mode needs none
        self._passthrough = False

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            self._encoder = incremental_encoder(self._content_encoding) or IdentityEncoder()
        return self._encoder

    def observe(self, chunk: bytes, now: float) -> None:
        """Read `chunk`. Compressed data that does not decode (an upstream fault, not a bug) ends
        the reading: the rest of the stream is not read."""
        if self.decodable and chunk:
            try:
                data = self._decode(chunk)
            except Exception:
                self.decodable = False
                return
            for event in self._framer.feed(data):
                self.accumulator.consume(event, now)

    def finish(self, now: float) -> None:
        """The body has ended: read an unterminated last event, if any (observe mode)."""
        if self.decodable:
            for event in self._framer.finish():
                self.accumulator.consume(event, now)

    def filter(self, chunk: bytes, now: float) -> list[bytes]:
        """What to send on in place of `chunk` (b"" marks the end of the body).

        Compressed data that does not decode switches the stream to plain pass-through: what
        was held back goes out, then the upstream's bytes as they come.
        """
        if self._passthrough:
            return [chunk] if chunk else []
        try:
            events = self._framer.feed(self._decode(chunk)) if chunk else self._framer.finish()
        except Exception:
            self._passthrough = True
            held = b"".join(event.raw for event in self._framer.finish())
            return [piece for piece in (self.encoder.encode(held) if held else b"", chunk) if piece]
        kept = b"".join(self.accumulator.for_client(event, now) for event in events)
        out = self.encoder.encode(kept) if kept else b""
        if not chunk:
            out += self.encoder.finish()
        return [out] if out else []
