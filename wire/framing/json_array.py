"""A JSON array streamed element by element, as Gemini's `streamGenerateContent` sends it without
`?alt=sse`: `[{...}\\r\\n,\\r\\n{...}]`, each element arriving in pieces.

Bytes in, each complete top-level element out as soon as its closing brace arrives. Google writes
an element per network write, so the fast path parses a whole element with the `json` module's C
decoder at once, and hands the parsed value on as the event's `value` (the accumulator does not
parse it again). An
element that is not complete yet (or not JSON) is read on by a scanner that counts braces and
skips strings, resuming where it stopped, so an element in many pieces costs linear time.
"""

from __future__ import annotations

import json
import re

from wire.framing import Event

# Everything up to the next brace, whole strings included: what is left after it is a brace,
# the opening quote of a string that ends in a later chunk, or the end of the buffer.
_NO_BRACE = re.compile(rb'(?:[^{}"]+|"[^"\\]*(?:\\.[^"\\]*)*")*')
_QUOTE, _OPEN, _BACKSLASH = ord('"'), ord("{"), ord("\\")
_DECODER = json.JSONDecoder()


def _string_end(buffer: bytearray, position: int) -> int:
    """Where the string being read (its opening quote already behind) ends, past its closing
    quote; or -1 if it goes on in a later chunk."""
    while True:
        quote = buffer.find(b'"', position)
        if quote < 0:
            return -1
        backslashes = 0
        while buffer[quote - 1 - backslashes] == _BACKSLASH:
            backslashes += 1
        if backslashes % 2 == 0:
            return quote + 1
        position = quote + 1


def _whole_element(buffer: bytearray, start: int) -> Event | None:
    """The complete object that begins at `start`, or None: it is not complete yet, or not a JSON object."""
    last = buffer.rfind(b"}", start)
    if last < 0:
        return None
    raw = bytes(buffer[start : last + 1])
    try:
        text = raw.decode()
        value, end = _DECODER.raw_decode(text)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None
    if not isinstance(value, dict):
        return None
    size = end if len(text) == len(raw) else len(text[:end].encode())
    return Event(None, text[:end], value, raw[:size])


class JSONArrayFramer:
    """Cuts a streamed JSON array into its top-level objects, one event each."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._scan_from = 0  # where scanning resumes: everything before it is counted
        self._depth = 0
        self._string_from = -1  # inside a string that began at this offset, or -1
        self._start = -1  # where the current element's `{` is, or -1 between elements

    def feed(self, data: bytes) -> list[Event]:
        self._buffer += data
        buffer = self._buffer
        elements: list[Event] = []
        position = self._scan_from
        while True:
            if self._string_from >= 0:
                end = _string_end(buffer, max(position, self._string_from + 1))
                if end < 0:
                    position = len(buffer)
                    break
                position, self._string_from = end, -1
            position = _NO_BRACE.match(buffer, position).end()  # type: ignore[union-attr]
            if position == len(buffer):
                break
            token = buffer[position]
            if token == _QUOTE:  # a string that goes on in a later chunk
                self._string_from = position
                position += 1
                continue
            if token == _OPEN and self._depth == 0:
                whole = _whole_element(buffer, position)
                if whole is not None:
                    elements.append(whole)
                    position += len(whole.raw)
                    continue
                self._start = position
            position += 1
            if token == _OPEN:
                self._depth += 1
            elif self._depth > 0:
                self._depth -= 1
                if self._depth == 0:
                    raw = bytes(buffer[self._start : position])
                    elements.append(Event(None, raw.decode("utf-8", "replace"), raw=raw))
                    self._start = -1
        # Keep only the element in progress: between elements, nothing scanned is needed again.
        keep_from = self._start if self._start >= 0 else (self._string_from if self._string_from >= 0 else position)
        if keep_from:
            del buffer[:keep_from]
            position -= keep_from
            if self._start >= 0:
                self._start -= keep_from
            if self._string_from >= 0:
                self._string_from -= keep_from
        self._scan_from = position
        return elements

    def finish(self) -> list[Event]:
        """An element cut off by the end of the body is not one: nothing is left to read."""
        self._buffer.clear()
        self._scan_from, self._depth, self._string_from, self._start = 0, 0, -1, -1
        return []
