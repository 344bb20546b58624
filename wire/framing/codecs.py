"""Content encodings of a streamed body, decoded and re-encoded incrementally: a compressed
stream is read as it passes (mitmproxy hands streamed chunks on still encoded), and, where the
addon rewrites a stream, encoded again with a flush after every piece so nothing is held back."""

from __future__ import annotations

import sys
import zlib
from collections.abc import Callable
from typing import Protocol

import brotli

if sys.version_info >= (3, 14):  # pragma: no cover
    from compression import zstd
else:  # pragma: no cover
    from backports import zstd


Transcoder = Callable[[bytes], bytes]


def _zlib_decoder(wbits: int) -> Transcoder:
    decompressor = zlib.decompressobj(wbits)
    return decompressor.decompress


def _deflate_decoder() -> Transcoder:
    """`deflate` is zlib-wrapped by the RFC, raw in practice: decide on the first byte."""
    inner: list[Transcoder] = []

    def decode(data: bytes) -> bytes:
        if not inner:
            if not data:
                return b""
            # A zlib header's first byte has compression method 8 in its low nibble.
            inner.append(_zlib_decoder(15 if data[0] & 0x0F == 8 else -15))
        return inner[0](data)

    return decode


def _zstd_decoder() -> Transcoder:
    """zstd bodies may hold several frames; a decompressor handles one."""
    state = [zstd.ZstdDecompressor()]

    def decode(data: bytes) -> bytes:
        out = []
        while data:
            out.append(state[0].decompress(data))
            if not state[0].eof:
                break
            data = state[0].unused_data
            state[0] = zstd.ZstdDecompressor()
        return b"".join(out)

    return decode


def _brotli_decoder() -> Transcoder:
    return brotli.Decompressor().process  # type: ignore[no-any-return]


_DECODERS: dict[str, Callable[[], Transcoder]] = {
    "identity": lambda: lambda data: data,
    "gzip": lambda: _zlib_decoder(31),
    "x-gzip": lambda: _zlib_decoder(31),
    "deflate": _deflate_decoder,
    "br": _brotli_decoder,
    "zstd": _zstd_decoder,
}


# What the decoders raise on bytes that are not valid in their encoding.
DECODE_ERRORS = (zlib.error, brotli.error, zstd.ZstdError)


def _single_encoding(content_encoding: str | None) -> str | None:
    encoding = (content_encoding or "identity").strip().lower()
    return encoding if encoding in _DECODERS else None


def incremental_decoder(content_encoding: str | None) -> Transcoder | None:
    """A stateful decoder for one body, or None for unknown or stacked encodings."""
    encoding = _single_encoding(content_encoding)
    return _DECODERS[encoding]() if encoding else None


class Encoder(Protocol):
    def encode(self, data: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


class IdentityEncoder:
    def encode(self, data: bytes) -> bytes:
        return data

    def finish(self) -> bytes:
        return b""


class _ZlibEncoder:
    def __init__(self, wbits: int) -> None:
        self._compressor = zlib.compressobj(wbits=wbits)

    def encode(self, data: bytes) -> bytes:
        return self._compressor.compress(data) + self._compressor.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        return self._compressor.flush(zlib.Z_FINISH)


class _BrotliEncoder:
    def __init__(self) -> None:
        self._compressor = brotli.Compressor()

    def encode(self, data: bytes) -> bytes:
        return self._compressor.process(data) + self._compressor.flush()  # type: ignore[no-any-return]

    def finish(self) -> bytes:
        return self._compressor.finish()  # type: ignore[no-any-return]


class _ZstdEncoder:
    def __init__(self) -> None:
        self._compressor = zstd.ZstdCompressor()

    def encode(self, data: bytes) -> bytes:
        return self._compressor.compress(data, zstd.ZstdCompressor.FLUSH_BLOCK)

    def finish(self) -> bytes:
        return self._compressor.flush(zstd.ZstdCompressor.FLUSH_FRAME)


_ENCODERS: dict[str, Callable[[], Encoder]] = {
    "identity": IdentityEncoder,
    "gzip": lambda: _ZlibEncoder(31),
    "x-gzip": lambda: _ZlibEncoder(31),
    "deflate": lambda: _ZlibEncoder(15),
    "br": _BrotliEncoder,
    "zstd": _ZstdEncoder,
}


def incremental_encoder(content_encoding: str | None) -> Encoder | None:
    """A stateful encoder that flushes after every call, so nothing is held back."""
    encoding = _single_encoding(content_encoding)
    return _ENCODERS[encoding]() if encoding else None
