"""Newline-delimited JSON (`application/x-ndjson`, Ollama's streams): one JSON value a line.

A line ends at LF (a CR before it is part of the line ending); blank lines are skipped; a line that
is not JSON is an event with no value. The last line may come without a newline: `finish` reads it.
"""

from __future__ import annotations

import json

from wire.framing import Event

_DECODER = json.JSONDecoder()


def _line_event(raw: bytes) -> Event | None:
    line = raw.rstrip(b"\r\n")
    if not line.strip():
        return None
    text = line.decode("utf-8", "replace")
    try:
        value = _DECODER.decode(text)
    except (ValueError, RecursionError):
        value = None
    return Event(None, text, value, raw)


class NDJSONFramer:
    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Event]:
        self._buffer += data
        end = self._buffer.rfind(b"\n")
        if end < 0:
            return []
        complete = bytes(self._buffer[: end + 1])
        del self._buffer[: end + 1]
        lines = complete.split(b"\n")[:-1]
        return [event for line in lines if (event := _line_event(line + b"\n")) is not None]

    def finish(self) -> list[Event]:
        rest = bytes(self._buffer)
        self._buffer.clear()
        event = _line_event(rest)
        return [event] if event is not None else []
