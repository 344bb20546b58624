"""WebSocket APIs: a session fed every message as it passes, which yields the operations that
finished (a model response, a transcription). The mitmproxy glue turns each into a `Call`.

Messages are only read, never changed or held. Most of a voice session's frames are audio (client
`input_audio_buffer.append`, server `response.output_audio.delta`) of many kilobytes: their type
and response id are read from the head of the JSON, where OpenAI writes them, so such a frame costs
a few microseconds whatever its size; other events are parsed whole.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from wire.content import CapturedContent
from wire.records import ApiRequest, ApiResult, pickled_by_name

if TYPE_CHECKING:
    from wire.call import WireApi

# Where a frame's type and response id are looked for before parsing it whole.
HEAD = 256
_TYPE = re.compile(rb'"type"\s*:\s*"([^"\\]{1,64})"')
_RESPONSE_ID = re.compile(rb'"response_id"\s*:\s*"([^"\\]{1,64})"')
# Frames larger than this are not parsed whole unless their type needs it.
MAX_PARSED = 1 << 20


def frame_type(content: bytes) -> str | None:
    found = _TYPE.search(content, 0, HEAD)
    return found.group(1).decode("latin-1") if found else None


def frame_response_id(content: bytes) -> str | None:
    found = _RESPONSE_ID.search(content, 0, HEAD)
    return found.group(1).decode("latin-1") if found else None


@dataclass(slots=True)
class Operation:
    """One finished operation of a session: a model response, or an input transcription."""

    api: WireApi
    request: ApiRequest
    result: ApiResult
    started_ns: int
    duration_s: float
    time_to_first_chunk_s: float | None = None
    chunk_intervals_s: tuple[float, ...] = ()
    content: CapturedContent | None = None


@pickled_by_name
@dataclass(slots=True)
class SessionInfo:
    """What a session says about itself, for its span: the id, model, voice, modalities."""

    session_id: str | None = None
    model: str | None = None  # the model asked for: the URL's, or the client's own `session.update`
    response_model: str | None = None  # the model the server says answers (`session.created`)
    voice: str | None = None
    output_modalities: list[str] = field(default_factory=list)
    transcription_model: str | None = None
    error_type: str | None = None


class SocketSession:
    """The interface each WebSocket API's session implements."""

    info: SessionInfo

    def message(self, from_client: bool, content: bytes, now: float, now_ns: int) -> list[Operation]:
        """Read one text message (binary ones carry no events); the operations it finished."""
        raise NotImplementedError

    def close(self, now: float, now_ns: int) -> list[Operation]:
        """The socket closed: the operations still open, finished as cut off."""
        raise NotImplementedError


def merged(current: dict[str, Any], update: Any) -> dict[str, Any]:
    """A session object updated by a `session.updated` (nested objects merged)."""
    if not isinstance(update, dict):
        return current
    out = dict(current)
    for key, value in update.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out
