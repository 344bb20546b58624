"""Feeding recorded streams to the wire layer the way networks cut them."""

from __future__ import annotations

import random

from wire.stream import EventStream


def split_randomly(data: bytes, seed: int, largest: int = 40) -> list[bytes]:
    """`data` in pieces of 1 to `largest` bytes, the same for the same seed."""
    rng = random.Random(seed)
    pieces, position = [], 0
    while position < len(data):
        size = rng.randint(1, largest)
        pieces.append(data[position : position + size])
        position += size
    return pieces


def observed(stream: EventStream, pieces: list[bytes]) -> EventStream:
    """`stream` after observing `pieces`, the i-th at time i + 1, and the end of the body."""
    for i, piece in enumerate(pieces):
        stream.observe(piece, now=float(i + 1))
    stream.finish(now=float(len(pieces) + 1))
    return stream
