"""The small fields of a `multipart/form-data` body (model, response_format, stream, ...), read
without the boundary and never from a file part.

An upload may be 25 MB of audio or images: only the first and the last `EDGE` bytes are searched
(clients write the small fields before the files, as httpx does, or after them), so a call costs
the same whatever the file's size. A file part (one with a `filename`) is never read.
"""

from __future__ import annotations

import re

EDGE = 64 * 1024
MAX_FIELD = 16_384  # longer values (a very long prompt) are not read
_FIELD = re.compile(
    rb'content-disposition:[ \t]*form-data;[ \t]*name="([^"\r\n]{1,64})"(;[^\r\n]*)?\r?\n(?:[^\r\n]+\r?\n)*\r?\n',
    re.IGNORECASE,
)


def form_fields(body: bytes | None) -> dict[str, str]:
    """The form's text fields by name (the first of each), files left out."""
    if not body:
        return {}
    fields: dict[str, str] = {}
    edges = (body,) if len(body) <= 2 * EDGE else (body[:EDGE], body[-EDGE:])
    for edge in edges:
        for match in _FIELD.finditer(edge):
            if match.group(2) and b"filename" in match.group(2).lower():
                continue  # a file: its content is not a field
            end = edge.find(b"\r\n--", match.end(), match.end() + MAX_FIELD + 2)
            if end < 0:
                end = edge.find(b"\n--", match.end(), match.end() + MAX_FIELD + 1)
            if end < 0:
                continue
            name = match.group(1).decode("latin-1")
            fields.setdefault(name, edge[match.end() : end].decode("utf-8", "replace"))
    return fields
