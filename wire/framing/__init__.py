"""How a streamed body is cut into events: one framer per framing, one neutral event type.

A framer is fed the decoded body as it arrives, in pieces that may split anything anywhere, and
returns the events completed so far. Every framer is byte-exact (`Event.raw` is what the event
was on the wire, so a rewriting stream sends on exactly what it keeps) and never raises on the
bytes it is fed: what it cannot read, it skips.

- `sse`: Server-Sent Events (OpenAI, Anthropic, Gemini with `?alt=sse`, most others);
- `json_array`: a streamed JSON array (Gemini's `streamGenerateContent` without `?alt=sse`);
- `ndjson`: newline-delimited JSON (`application/x-ndjson`: Ollama);
- `eventstream`: AWS's binary `application/vnd.amazon.eventstream` (Bedrock).

Content encodings (gzip, br, zstd, ...) are undone before framing: `codecs`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(slots=True)
class Event:
    """One event of a stream, whatever its framing.

    `kind`: what the framing names the event (SSE `event:`, an event stream's `:event-type`, or
    `exception` for an event stream's exception message); None where it names none. `data`: the
    payload as text. `value`: the payload parsed as JSON, where the framer parsed it already (the
    accumulators then do not parse it again). `raw`: the event's bytes as they came.
    """

    kind: str | None
    data: str | None
    value: Any = None
    raw: bytes = b""


class Framer(Protocol):
    """Cuts a decoded body into events as they complete."""

    def feed(self, data: bytes) -> list[Event]: ...

    def finish(self) -> list[Event]:
        """The body has ended: what is left that reads as an event, if anything."""
        ...
