"""A JSON array streamed element by element, as Gemini's `streamGenerateContent` sends it without
`?alt=sse`: `[{...}\\r\\n,\\r\\n{...}]`, each element arriving in pieces.

Bytes in, each complete top-level element out as soon as its closing brace arrives. Strings are
skipped whole by one regular expression (in C), so braces inside them never count and a chunk
costs a few matches, not a Python step per byte.
"""

from __future__ import annotations

import re

from wire.sse import SSEEvent

# Everything up to the next brace, whole strings included: what is left after it is a brace,
# the opening quote of a string that ends in a later chunk, or the end of the buffer.
_NO_BRACE = re.compile(rb'(?:[^{}"]+|"[^"\\]*(?:\\.[^"\\]*)*")*')
_QUOTE, _OPEN, _BACKSLASH = ord('"'), ord("{"), ord("\\")


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


class JSONArrayFramer:
    """Cuts a streamed JSON array into the raw bytes of its top-level objects.

    Whole strings are skipped by one match; a string longer than a chunk (an inline image) is
    read on with `bytes.find`, resuming where the last chunk stopped, so it costs linear time.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._scan_from = 0  # where scanning resumes: everything before it is counted
        self._depth = 0
        self._string_from = -1  # inside a string that began at this offset, or -1
        self._start = -1  # where the current element's `{` is, or -1 between elements

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        buffer = self._buffer
        elements: list[bytes] = []
        position = self._scan_from
        while True:
            if self._string_from >= 0:
                # Resume one byte early: a backslash may have ended the last chunk.
                end = _string_end(buffer, max(position - 1, self._string_from + 1))
                if end < 0:
                    position = len(buffer)
                    break
                position, self._string_from = end, -1
            position = _NO_BRACE.match(buffer, position).end()  # type: ignore[union-attr]
            if position == len(buffer):
                break
            token = buffer[position]
            position += 1
            if token == _QUOTE:  # a string that goes on in a later chunk
                self._string_from = position - 1
            elif token == _OPEN:
                if self._depth == 0:
                    self._start = position - 1
                self._depth += 1
            elif self._depth > 0:
                self._depth -= 1
                if self._depth == 0:
                    elements.append(bytes(buffer[self._start : position]))
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

    def finish(self) -> list[bytes]:
        """An element cut off by the end of the body is not one: nothing is left to read."""
        self._buffer.clear()
        self._scan_from, self._depth, self._string_from, self._start = 0, 0, -1, -1
        return []

    @staticmethod
    def event(block: bytes) -> SSEEvent:
        """One element as the event the accumulators read: its JSON as the data."""
        return SSEEvent(None, block.decode("utf-8", "replace"))
