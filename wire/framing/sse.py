"""Server-Sent Events (`text/event-stream`): a byte stream cut into event blocks as they complete.

Works on bytes, so a line, an event or a UTF-8 character split across network chunks is handled
wherever the split falls.
"""

from __future__ import annotations

import re

from wire.framing import Event

# A blank line: two line terminators in a row. A lone CR counts only when no LF follows it.
_EVENT_END = re.compile(rb"(?:\r\n|\n|\r(?!\n))(?:\r\n|\n|\r(?!\n))")


class SSEFramer:
    """Cuts a byte stream into SSE events; each event's `raw` is its block with the closing blank line."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._scan_from = 0

    def feed(self, data: bytes) -> list[Event]:
        self._buffer += data
        events: list[Event] = []
        start = 0
        # A trailing CR may be the first half of CRLF: decide when the next byte comes.
        end = len(self._buffer) - 1 if self._buffer.endswith(b"\r") else len(self._buffer)
        position = max(self._scan_from, 0)
        while True:
            match = _EVENT_END.search(self._buffer, position, end)
            if match is None:
                break
            events.append(parse_sse_event(bytes(self._buffer[start : match.end()])))
            start = position = match.end()
        if start:
            del self._buffer[:start]
        # Resume just before the unscanned tail: a terminator pair may straddle the boundary.
        self._scan_from = max(len(self._buffer) - 3, 0)
        return events

    def finish(self) -> list[Event]:
        """The unterminated remainder at the end of the body, if any."""
        rest = bytes(self._buffer)
        self._buffer.clear()
        self._scan_from = 0
        return [parse_sse_event(rest)] if rest else []


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def parse_sse_event(block: bytes) -> Event:
    """Fields of one event block; comments and unknown fields are ignored."""
    event: str | None = None
    data_lines: list[str] = []
    for line in _LINE_BREAK.split(block.decode("utf-8", "replace")):
        if not line or line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data_lines.append(value)
        elif name == "event":
            event = value
    return Event(event, "\n".join(data_lines) if data_lines else None, raw=block)
