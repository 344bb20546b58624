"""AWS event-stream messages as Bedrock writes them (for the fake upstream, the tests and the fuzz
run): string headers, a JSON payload, both CRC32s."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from typing import Any


def message(headers: dict[str, str], payload: bytes) -> bytes:
    encoded = b"".join(
        struct.pack(">B", len(name.encode()))
        + name.encode()
        + b"\x07"
        + struct.pack(">H", len(value.encode()))
        + value.encode()
        for name, value in headers.items()
    )
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + encoded + payload
    return body + struct.pack(">I", zlib.crc32(body))


def event(kind: str, payload: dict[str, Any]) -> bytes:
    """A ConverseStream event (`:event-type` messageStart, contentBlockDelta, metadata, ...)."""
    headers = {":event-type": kind, ":content-type": "application/json", ":message-type": "event"}
    return message(headers, json.dumps(payload, separators=(",", ":")).encode())


def chunk(inner: dict[str, Any]) -> bytes:
    """An InvokeModelWithResponseStream chunk: one event of the model's own stream, base64'd."""
    encoded = base64.b64encode(json.dumps(inner, separators=(",", ":")).encode()).decode()
    return event("chunk", {"bytes": encoded, "p": "abcdefgh"})


def exception(name: str, text: str) -> bytes:
    headers = {":exception-type": name, ":content-type": "application/json", ":message-type": "exception"}
    return message(headers, json.dumps({"message": text}).encode())


def payload(encoded: bytes) -> bytes:
    """The payload of one encoded message."""
    headers_length = struct.unpack_from(">I", encoded, 4)[0]
    return encoded[12 + headers_length : -4]
