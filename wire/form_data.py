"""The small fields of a `multipart/form-data` body (model, response_format, stream, ...); never
a file part.

The boundary is the body's first line. Parts are cut at the delimiter (`CRLF--boundary`), which a
part's content cannot contain, so a file that holds text like a field's header is never read as
one. An upload may be 25 MB of audio or images: only parts that lie within the first or the last
`EDGE` bytes are looked at (clients write the small fields before the files, as httpx does, or
after them), so a call costs the same whatever the file's size.
"""

from __future__ import annotations

import re

EDGE = 64 * 1024
MAX_FIELD = 16_384  # longer values (a very long prompt) are not read
_NAME = re.compile(rb'^content-disposition:[ \t]*form-data;[ \t]*name="([^"\r\n]{1,64})"(.*)$', re.I | re.M)


def _field(part: bytes) -> tuple[str, str] | None:
    """A part's name and value, or None for a file (it has a `filename`) or a long value."""
    head, separator, value = part.partition(b"\r\n\r\n")
    found = _NAME.search(head)
    if not separator or found is None or b"filename" in found.group(2).lower() or len(value) > MAX_FIELD:
        return None
    return found.group(1).decode("latin-1"), value.decode("utf-8", "replace")


def form_fields(body: bytes | None) -> dict[str, str]:
    """The form's text fields by name (the first of each), files left out."""
    if not body or not body.startswith(b"--"):
        return {}
    first_line = body.find(b"\r\n", 0, 256)
    if first_line < 3:
        return {}
    delimiter = b"\r\n" + body[:first_line]
    fields: dict[str, str] = {}
    starts = [first_line + 2]
    if len(body) > 2 * EDGE:  # the tail's parts begin after the first delimiter in it
        tail = body.find(delimiter, len(body) - EDGE)
        if tail >= 0:
            starts.append(tail + len(delimiter) + 2)
    for position in starts:
        limit = min(len(body), position + EDGE)
        while position < limit:
            end = body.find(delimiter, position, limit)
            if end < 0:
                break
            if (field := _field(body[position:end])) is not None:
                fields.setdefault(*field)
            position = end + len(delimiter) + 2  # past CRLF, or the closing "--"
    return fields
