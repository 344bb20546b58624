"""Streamed responses: the accumulator interface each API implements, the stream that decodes,
frames (`wire.framing`) and accumulates a body, and the record of a body as it passed
(`ReceivedStream`), read later in the telemetry process."""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from wire.framing import Event, Framer
from wire.framing.codecs import Encoder, IdentityEncoder, Transcoder, incremental_decoder, incremental_encoder
from wire.framing.sse import SSEFramer
from wire.records import ApiResult, pickled_by_name


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

    def output_messages(self) -> str | None:
        raise NotImplementedError


class EventStream:
    """One streamed response, fed the raw body chunks as they pass, read into its accumulator."""

    def __init__(
        self, content_encoding: str | None, accumulator: StreamAccumulator, framer: Framer | None = None
    ) -> None:
        self.accumulator = accumulator
        self._framer = framer or SSEFramer()
        decoder = incremental_decoder(content_encoding)
        self.decodable = decoder is not None  # the encoders cover the same encodings
        self._decode: Transcoder = decoder or (lambda data: b"")

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


class FilteredStream:
    """What the client gets of a stream whose request the addon changed (`WireApi.request_with_usage`):
    each event as `keep` returns it (b"": nothing), re-encoded as it came.

    Events are released as soon as they are complete; nothing else is held back. It reads nothing
    for telemetry: the stream goes to the telemetry process as it was received. Only a filtered
    stream holds an encoder (a compressor's state is hundreds of KB).
    """

    def __init__(
        self, content_encoding: str | None, keep: Callable[[Event], bytes], framer: Framer | None = None
    ) -> None:
        self._keep = keep
        self._framer = framer or SSEFramer()
        decoder = incremental_decoder(content_encoding)
        self._decode: Transcoder = decoder or (lambda data: b"")
        self._encoder: Encoder = incremental_encoder(content_encoding) or IdentityEncoder()
        self._passthrough = decoder is None

    def filter(self, chunk: bytes) -> list[bytes]:
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
            return [piece for piece in (self._encoder.encode(held) if held else b"", chunk) if piece]
        kept = b"".join(self._keep(event) for event in events)
        out = self._encoder.encode(kept) if kept else b""
        if not chunk:
            out += self._encoder.finish()
        return [out] if out else []


@pickled_by_name
@dataclass(slots=True)
class ReceivedStream:
    """A streamed body as it passed the proxy, still content-encoded, with the time each chunk came.

    The proxy only appends to it (a copy and two numbers a chunk); the telemetry process reads it
    (`replay`) into the same result and chunk timings as reading it on the way would have given.
    Times are seconds after the request went upstream.
    """

    content_type: str  # lower case: the API's `stream_framer` chooses its framing by it
    content_encoding: str | None
    body: bytearray = field(default_factory=bytearray)
    chunk_ends: array[int] = field(default_factory=lambda: array("q"))  # where each chunk ends in `body`
    chunk_times: array[float] = field(default_factory=lambda: array("d"))
    ended_s: float | None = None  # when the body ended (or the flow failed)

    def add(self, chunk: bytes, at_s: float) -> None:
        self.body += chunk
        self.chunk_ends.append(len(self.body))
        self.chunk_times.append(at_s)

    def chunks(self) -> Iterator[tuple[bytes, float]]:
        view, start = memoryview(self.body), 0
        for end, at_s in zip(self.chunk_ends, self.chunk_times, strict=True):
            yield bytes(view[start:end]), at_s
            start = end

    def replay(self, stream: EventStream) -> None:
        """Feed `stream` (its times counted from the request) every chunk at its time, then the end."""
        last_s = 0.0
        for chunk, last_s in self.chunks():
            stream.observe(chunk, last_s)
        stream.finish(self.ended_s if self.ended_s is not None else last_s)
