"""Reading untrusted JSON: values made safe for telemetry, and large bodies read at their edges.

Every function here takes what came off the network and never raises on it.
"""

from __future__ import annotations

import json
import re
from typing import Any

# Longest client-controlled string (model names, error codes) that becomes telemetry.
MAX_LABEL_LENGTH = 128


def number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def integer(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return int(value)


def count(value: Any) -> int | None:
    """A token or request count: a non-negative integer, else None."""
    whole = integer(value)
    return whole if whole is not None and whole >= 0 else None


def label(value: Any) -> str | None:
    """A client- or server-supplied string made safe to use as a telemetry value."""
    if not isinstance(value, str) or not value:
        return None
    return value[:MAX_LABEL_LENGTH]


def labels(value: Any, most: int = 16) -> list[str] | None:
    """A list of strings (stop sequences, ...), each a `label`, at most `most` of them."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return None
    found = [text for item in value if (text := label(item))][:most]
    return found or None


def obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def load_json_object(body: bytes | str | None) -> dict[str, Any] | None:
    if not body:
        return None
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


_ERROR_LABEL = re.compile(r"[^A-Za-z0-9_.\-]")


def error_label(value: Any) -> str | None:
    """An upstream error code or type, cut down to a safe low-cardinality label."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        return None
    return _ERROR_LABEL.sub("_", value[:64])


# The error type of an error that names none (a free-text message); an HTTP error status says more.
GENERIC_ERROR = "error"


def error_type_from_object(data: dict[str, Any]) -> str | None:
    """`{"error": {"code": ..., "type": ...}}` → the code, else the type (OpenAI's and Anthropic's
    error bodies both have this shape; Anthropic's has no code)."""
    error = data.get("error")
    if isinstance(error, dict):
        return error_label(error.get("code")) or error_label(error.get("type")) or GENERIC_ERROR
    if isinstance(error, str):
        return GENERIC_ERROR
    return None


# --- large bodies -------------------------------------------------------------------------

# Above this size a JSON body is not parsed whole (that would stall mitmproxy's event loop; long
# contexts, images and batch embeddings reach many MB): its head and tail are searched for the
# few top-level members telemetry needs. Responses put `usage` last and `id`/`model` first or
# last; requests put the big `messages`/`input` in one member, the small ones before or after it.
LARGE_BODY = 1024 * 1024
_EDGE = 64 * 1024


def members_near_edges(body: bytes, members: re.Pattern[str]) -> dict[str, Any]:
    """Summary members found in the body's head and tail, JSON-decoded.

    `members` matches `"NAME":` with the name as group 1. A key's quoted name followed by a colon
    cannot occur inside a JSON string (its quotes would be escaped), so each match is a real
    member. Top-level `id` and `model` come before nested ones (tool calls have ids too), so the
    head's first match wins; `usage` is the last member, so the tail's last match wins for it.
    """
    decoder = json.JSONDecoder()
    found: dict[str, Any] = {}
    for edge, is_tail in ((body[:_EDGE], False), (body[-_EDGE:], True)):
        text = edge.decode("utf-8", "replace")
        for match in members.finditer(text):
            name = match.group(1)
            if name in found and not (is_tail and name == "usage"):
                continue
            try:
                found[name], _ = decoder.raw_decode(text, match.end())
            except ValueError:
                continue
    return found


def member_pattern(*names: str) -> re.Pattern[str]:
    """The `members` pattern of `members_near_edges` for these top-level member names."""
    return re.compile(r'"(' + "|".join(map(re.escape, names)) + r')"\s*:\s*')


def json_members(body: bytes | None, members: re.Pattern[str]) -> dict[str, Any] | None:
    """The body's top-level members: all of a small body, those `members` names of a large one."""
    if body and len(body) > LARGE_BODY:
        return members_near_edges(body, members)
    return load_json_object(body)


def small_json(body: bytes | None) -> dict[str, Any]:
    """A body parsed for content capture: nothing of one over LARGE_BODY (it would stall the proxy)."""
    return (load_json_object(body) if body and len(body) <= LARGE_BODY else None) or {}
