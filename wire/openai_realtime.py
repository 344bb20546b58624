"""OpenAI's Realtime API over WebSocket: `wss://…/v1/realtime?model=…` (Azure:
`/openai/realtime?api-version=…&deployment=…`). Both the GA event names and the beta ones.

Each model response is one operation: from the client's `response.create` (or, without one, the
server's `response.created`) to the server's `response.done`, whose `response.usage` has
`input_token_details` (text, audio, image, `cached_tokens` and their split) and
`output_token_details` (text, audio). Its first chunk is the first output delta (text, audio,
transcript or function-call arguments). A `response.done` whose status is `failed` gives the
error's type; `cancelled` and `incomplete` are finish reasons. A transcription of the input audio
(`conversation.item.input_audio_transcription.completed`, with its own usage) is an operation of
its own, billed to the transcription model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wire.call import Route, WireApi
from wire.content import CapturedContent
from wire.openai_common import OPENAI, modalities
from wire.openai_transcriptions import transcription_usage
from wire.records import NO_HEADERS, ApiRequest, ApiResult, ToolResult, Usage
from wire.socket import MAX_PARSED, Operation, SessionInfo, SocketSession, frame_response_id, frame_type, merged
from wire.stream import StreamAccumulator
from wire.tools import MAX_TOOLS, responses_calls, responses_results
from wire.values import count, error_label, integer, label, labels, load_json_object, number, obj

_OUTPUT_DELTAS = frozenset(
    f"response.{kind}.delta"
    for kind in (
        "output_text",
        "text",
        "output_audio",
        "audio",
        "output_audio_transcript",
        "audio_transcript",
        "function_call_arguments",
    )
)
MAX_OPEN = 64  # responses open at once (out-of-band ones run beside the conversation's)


def realtime_usage(value: Any) -> Usage | None:
    usage = obj(value)
    input_tokens, output_tokens = count(usage.get("input_tokens")), count(usage.get("output_tokens"))
    if input_tokens is None and output_tokens is None:
        return None
    details = obj(usage.get("input_token_details"))
    return Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=count(details.get("cached_tokens")),
        input_modalities=modalities(details),
        output_modalities=modalities(obj(usage.get("output_token_details"))),
        cache_read_modalities=modalities(obj(details.get("cached_tokens_details"))),
    )


class _Response:
    """One response in progress: its timing (a `StreamAccumulator`'s) and the request it answers."""

    def __init__(self, started: float, started_ns: int, request: ApiRequest) -> None:
        self.timing = StreamAccumulator(started)
        self.started_ns = started_ns
        self.request = request


class RealtimeSession(SocketSession):
    def __init__(self, url_model: str | None) -> None:
        self.info = SessionInfo(model=url_model)
        self._session: dict[str, Any] = {}
        self._pending: tuple[float, int, ApiRequest] | None = None  # a response.create not answered yet
        self._open: dict[str, _Response] = {}
        self._committed: dict[str, tuple[float, int]] = {}  # audio items waiting for their transcript
        self._tool_results: tuple[ToolResult, ...] = ()  # sent since the last response.create

    def message(self, from_client: bool, content: bytes, now: float, now_ns: int) -> list[Operation]:
        kind = frame_type(content)
        if from_client:  # a response.create and a session.update matter: appended audio is never parsed
            if kind == "response.create":
                self._pending = (now, now_ns, self._response_request(load_json_object(content)))
            elif kind == "conversation.item.create" and len(content) <= MAX_PARSED:
                # A tool's result: the next response.create carries it (`wire.tools`).
                found = responses_results([obj(load_json_object(content)).get("item")])
                self._tool_results = (*self._tool_results, *found)[:MAX_TOOLS]
            elif kind == "session.update":
                asked = label(obj(obj(load_json_object(content)).get("session")).get("model"))
                self.info.model = asked or self.info.model
            return []
        if kind in _OUTPUT_DELTAS:
            response = self._open.get(frame_response_id(content) or "")
            if response is None and len(self._open) == 1:
                response = next(iter(self._open.values()))
            if response is not None:
                response.timing.output_chunk(now)
            return []
        if (kind is None and len(content) > MAX_PARSED) or (kind is not None and kind.endswith(".delta")):
            return []  # other deltas (the input's transcript, ...) carry nothing metered
        data = load_json_object(content)
        if data is None:
            return []
        kind = kind or str(data.get("type", ""))
        if kind in ("session.created", "session.updated"):
            self._update_session(data.get("session"))
        elif kind == "response.created":
            self._open_response(label(obj(data.get("response")).get("id")) or "", now, now_ns)
        elif kind == "response.done":
            return self._finish(obj(data.get("response")), now)
        elif kind == "input_audio_buffer.committed" and (item := label(data.get("item_id"))):
            if len(self._committed) < MAX_OPEN:
                self._committed[item] = (now, now_ns)
        elif kind == "conversation.item.input_audio_transcription.completed":
            return [self._transcription(data, now, now_ns)]
        elif kind == "error":
            self._error(data)
        return []

    def close(self, now: float, now_ns: int) -> list[Operation]:
        cut_off = [
            self._operation(response, ApiResult(error_type="socket_closed"), now) for response in self._open.values()
        ]
        self._open.clear()
        return cut_off

    def _response_request(self, data: dict[str, Any] | None) -> ApiRequest:
        response = obj(obj(data).get("response"))
        max_tokens = response.get("max_output_tokens", response.get("max_response_output_tokens"))
        tool_results, self._tool_results = self._tool_results, ()
        return ApiRequest(
            model=self.info.model,
            stream=True,
            temperature=number(response.get("temperature")),
            max_tokens=integer(max_tokens),
            tool_results=tool_results,
        )

    def _update_session(self, update: Any) -> None:
        self._session = session = merged(self._session, update)
        info = self.info
        info.session_id = label(session.get("id")) or info.session_id
        # The server's (dated) model answers; the model asked for stays the URL's or the client's own.
        info.response_model = label(session.get("model")) or info.response_model
        info.model = info.model or info.response_model
        audio = obj(session.get("audio"))
        info.voice = label(obj(audio.get("output")).get("voice") or session.get("voice")) or info.voice
        info.output_modalities = labels(session.get("output_modalities") or session.get("modalities")) or []
        transcription = obj(obj(audio.get("input")).get("transcription")) or obj(
            session.get("input_audio_transcription")
        )
        info.transcription_model = label(transcription.get("model")) or info.transcription_model

    def _open_response(self, response_id: str, now: float, now_ns: int) -> None:
        started, started_ns, request = self._pending or (now, now_ns, ApiRequest(model=self.info.model, stream=True))
        self._pending = None
        if len(self._open) < MAX_OPEN:
            self._open[response_id] = _Response(started, started_ns, request)

    def _finish(self, response: dict[str, Any], now: float) -> list[Operation]:
        opened = self._open.pop(label(response.get("id")) or "", None)
        if opened is None:  # a response.done whose start was not seen (the addon was loaded mid-session)
            return []
        result = ApiResult(
            response_id=label(response.get("id")),
            usage=realtime_usage(response.get("usage")),
            tool_calls=responses_calls(response.get("output")),  # Realtime's items are the Responses API's
        )
        status, details = response.get("status"), obj(response.get("status_details"))
        if status == "failed":
            error = obj(details.get("error"))
            result.error_type = error_label(error.get("code")) or error_label(error.get("type")) or "failed"
        elif status == "incomplete":
            result.finish_reasons = [label(details.get("reason")) or "incomplete"]
        elif status == "cancelled":
            result.finish_reasons = ["cancelled"]
        elif status == "completed":
            result.finish_reasons = ["stop"]
        return [self._operation(opened, result, now)]

    def _operation(self, response: _Response, result: ApiResult, now: float) -> Operation:
        timing = response.timing
        result.response_model = result.response_model or self.info.response_model or self.info.model
        return Operation(
            api=API,
            request=response.request,
            result=result,
            started_ns=response.started_ns,
            duration_s=now - timing.started,
            time_to_first_chunk_s=timing.time_to_first_chunk,
            chunk_intervals_s=tuple(timing.chunk_intervals),
        )

    def _transcription(self, data: dict[str, Any], now: float, now_ns: int) -> Operation:
        started, started_ns = self._committed.pop(label(data.get("item_id")) or "", (now, now_ns))
        result = ApiResult(response_model=self.info.transcription_model)
        transcription_usage(data.get("usage"), result)
        return Operation(
            api=TRANSCRIPTION,
            request=ApiRequest(model=self.info.transcription_model),
            result=result,
            started_ns=started_ns,
            duration_s=now - started,
        )

    def _error(self, data: dict[str, Any]) -> None:
        error = obj(data.get("error"))
        self.info.error_type = error_label(error.get("code")) or error_label(error.get("type")) or "error"


class Realtime(WireApi):
    """The Realtime API: a WebSocket session (`socket_session`), no HTTP request of its own."""

    name = "realtime"
    operation = "chat"
    vendor = OPENAI
    # OpenAI's (and Azure's `/openai/realtime`) WebSocket sessions.
    routes: tuple[Route, ...] = (Route("/realtime", method="GET", socket=True),)

    def socket_session(self, url_model: str | None, capture_content: bool = False) -> SocketSession:
        return RealtimeSession(url_model)

    def parse_request(self, body: bytes | None) -> ApiRequest:
        return ApiRequest()

    def parse_response(self, body: bytes | None, headers: Mapping[str, str] = NO_HEADERS) -> ApiResult:
        return ApiResult()

    def captured_input(self, body: bytes | None) -> CapturedContent:
        return CapturedContent()

    def captured_output(self, body: bytes | None) -> str | None:
        return None


class RealtimeTranscription(Realtime):
    """A transcription of the session's input audio, billed to the transcription model."""

    name = "realtime.transcription"
    routes = ()  # an operation of a Realtime session, never a route of its own
    operation = "transcription"


API = Realtime()
TRANSCRIPTION = RealtimeTranscription()
