"""AWS's binary event stream (`application/vnd.amazon.eventstream`): Bedrock's streamed responses.

A message is: total length (u32), headers length (u32), the prelude's CRC32, the headers, the
payload, the CRC32 of everything before it; integers big-endian. A header is a name (u8 length),
a type (u8) and a value whose size the type gives. Messages do not line up with network chunks:
bytes are buffered until a message is whole, then both CRCs are checked.

A message whose CRC does not match is skipped; a prelude whose lengths cannot be right (or whose
CRC fails: the lengths cannot be trusted then) leaves nothing to resynchronise on, so the rest of
the stream is not read. Neither ever raises, and the bytes the client gets are never touched.
"""

from __future__ import annotations

import json
import struct
import zlib

from wire.framing import Event

PRELUDE = 12  # total length, headers length, prelude CRC
OVERHEAD = PRELUDE + 4  # and the message CRC
# Bedrock's messages are a few KB; the format allows 16 MiB.
MAX_MESSAGE = 16 * 1024 * 1024
_PRELUDE = struct.Struct(">III")
_DECODER = json.JSONDecoder()
# Value sizes of the fixed-size header types: true, false, byte, short, int, long, timestamp, uuid.
_FIXED_SIZES = {0: 0, 1: 0, 2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16}
_BYTES, _STRING = 6, 7


def string_headers(block: bytes) -> dict[str, str] | None:
    """The headers of string type (all Bedrock sends), or None if the block does not parse."""
    headers: dict[str, str] = {}
    position, end = 0, len(block)
    while position < end:
        size = block[position]
        name = block[position + 1 : position + 1 + size]
        position += 1 + size
        if position >= end:
            return None
        kind = block[position]
        position += 1
        if kind in (_BYTES, _STRING):
            if position + 2 > end:
                return None
            (length,) = struct.unpack_from(">H", block, position)
            value = block[position + 2 : position + 2 + length]
            position += 2 + length
            if kind == _STRING and len(headers) < 32:
                headers[name.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
        elif kind in _FIXED_SIZES:
            position += _FIXED_SIZES[kind]
        else:
            return None
    return headers if position == end else None


def message_event(message: bytes) -> Event | None:
    """One whole message (CRCs checked) as an event: `kind` is its `:event-type`, or `exception`
    for an exception message, whose `value` then has the exception's name as `type` beside the
    payload's members; an `error` message (`:error-code`) reads likewise."""
    _, headers_length, _ = _PRELUDE.unpack_from(message)
    headers = string_headers(message[PRELUDE : PRELUDE + headers_length])
    if headers is None:
        return None
    payload = message[PRELUDE + headers_length : -4]
    text = payload.decode("utf-8", "replace")
    try:
        value = _DECODER.decode(text) if payload else None
    except (ValueError, RecursionError):
        value = None
    message_type = headers.get(":message-type", "event")
    if message_type == "event":
        return Event(headers.get(":event-type"), text, value, message)
    name = headers.get(":exception-type") or headers.get(":error-code") or message_type
    details = value if isinstance(value, dict) else {}
    if ":error-message" in headers:
        details = {"message": headers[":error-message"], **details}
    return Event("exception", text, {**details, "type": name}, message)


class EventStreamFramer:
    def __init__(self) -> None:
        self._buffer = bytearray()
        self.broken = False  # a prelude that cannot be right: the rest is not read
        self.skipped = 0  # messages whose CRC did not match

    def feed(self, data: bytes) -> list[Event]:
        if self.broken:
            return []
        self._buffer += data
        buffer = self._buffer
        events: list[Event] = []
        start = 0
        while len(buffer) - start >= PRELUDE:
            total, headers_length, prelude_crc = _PRELUDE.unpack_from(buffer, start)
            if (
                not OVERHEAD <= total <= MAX_MESSAGE
                or headers_length > total - OVERHEAD
                or zlib.crc32(buffer[start : start + 8]) != prelude_crc
            ):
                self.broken = True
                buffer.clear()
                return events
            if len(buffer) - start < total:
                break
            message = bytes(buffer[start : start + total])
            start += total
            (message_crc,) = struct.unpack_from(">I", message, total - 4)
            event = message_event(message) if zlib.crc32(message[:-4]) == message_crc else None
            if event is None:
                self.skipped += 1
            else:
                events.append(event)
        if start:
            del buffer[:start]
        return events

    def finish(self) -> list[Event]:
        """A message cut off by the end of the body is not one."""
        self._buffer.clear()
        return []
