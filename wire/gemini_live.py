"""Gemini's Live API: `BidiGenerateContent` over a WebSocket (the Gemini API's
`wss://…/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent`, its
`…Constrained` variant for ephemeral tokens, and Vertex AI's `…/ws/google.cloud.aiplatform.v1.
LlmBidiService/BidiGenerateContent`). A session of turns, metered like OpenAI's Realtime API: each
model turn is one operation under the session's span.

The client's first message is the `setup` (the model, `generationConfig`); then `clientContent`,
`realtimeInput` and `toolResponse`. The server answers `setupComplete`, then per turn
`serverContent.modelTurn` parts (text, or audio as inline data: output chunks), `toolCall`,
`serverContent.turnComplete`, and a top-level `usageMetadata`: generateContent's names but
`responseTokenCount` / `responseTokensDetails` for the candidates'. The usage is read as the turn's
own (the sources read here do not say whether it is cumulative over the session; the tests' fake
sends it per turn). The server writes its messages as binary frames of JSON.
"""

from __future__ import annotations

from typing import Any

from wire.call import Route, WireApi
from wire.gemini_generate import GOOGLE, gemini_usage
from wire.records import ApiRequest, ApiResult
from wire.socket import MAX_PARSED, Operation, SessionInfo, SocketSession
from wire.stream import StreamAccumulator
from wire.values import integer, label, load_json_object, number, obj

_GEMINI_API = r"/ws/google\.ai\.generativelanguage\.v1(?:alpha|beta)?\.GenerativeService\.BidiGenerateContent"
_VERTEX_AI = r"/ws/google\.cloud\.aiplatform\.v1(?:beta1)?\.LlmBidiService/BidiGenerateContent"


# What opens a turn: the client's content, audio or tool results (in the protocol's JSON both
# camelCase, as the reference writes it, and snake_case, as the google-genai SDK sends it).
_CLIENT_TURNS = frozenset(
    {"clientContent", "client_content", "realtimeInput", "realtime_input", "toolResponse", "tool_response"}
)


def live_usage(value: Any) -> Any:
    """`usageMetadata` in generateContent's names (`responseTokenCount` is its `candidatesTokenCount`)."""
    usage = obj(value)
    return gemini_usage(
        {
            **usage,
            "candidatesTokenCount": usage.get("responseTokenCount", usage.get("candidatesTokenCount")),
            "candidatesTokensDetails": usage.get("responseTokensDetails", usage.get("candidatesTokensDetails")),
        }
    )


def _model(value: Any) -> str | None:
    """`models/gemini-live-2.5-flash` (or Vertex AI's `projects/…/models/…`) → the model's name."""
    name = label(value)
    return name.rpartition("/")[2] if name else None


class _Turn:
    def __init__(self, started: float, started_ns: int) -> None:
        self.timing = StreamAccumulator(started)
        self.started_ns = started_ns
        self.result = ApiResult()
        self.complete = False


class LiveSession(SocketSession):
    def __init__(self, url_model: str | None) -> None:
        self.info = SessionInfo(model=url_model)
        self._request = ApiRequest(model=url_model, stream=True)
        self._turn: _Turn | None = None

    def message(self, from_client: bool, content: bytes, now: float, now_ns: int) -> list[Operation]:
        if len(content) > MAX_PARSED:  # audio sent or received: nothing metered is that large
            if not from_client and self._turn is not None:
                self._turn.timing.output_chunk(now)
            return []
        data = load_json_object(content)
        if data is None:
            return []
        if from_client:
            self._client_message(data, now, now_ns)
            return []
        return self._server_message(data, now, now_ns)

    def close(self, now: float, now_ns: int) -> list[Operation]:
        turn, self._turn = self._turn, None
        if turn is None:
            return []
        if not turn.complete:
            turn.result.error_type = turn.result.error_type or "socket_closed"
        return [self._operation(turn, now)]

    def _client_message(self, data: dict[str, Any], now: float, now_ns: int) -> None:
        setup = data.get("setup") or data.get("config")
        if isinstance(setup, dict):
            config = obj(setup.get("generationConfig") or setup.get("generation_config"))
            self.info.model = _model(setup.get("model")) or self.info.model
            self._request = ApiRequest(
                model=self.info.model,
                stream=True,
                temperature=number(config.get("temperature")),
                top_p=number(config.get("topP", config.get("top_p"))),
                max_tokens=integer(config.get("maxOutputTokens", config.get("max_output_tokens"))),
            )
            modalities = config.get("responseModalities") or config.get("response_modalities") or []
            self.info.output_modalities = [str(m).lower() for m in modalities][:4]
        elif self._turn is None and _CLIENT_TURNS & data.keys():
            self._turn = _Turn(now, now_ns)

    def _server_message(self, data: dict[str, Any], now: float, now_ns: int) -> list[Operation]:
        finished: list[Operation] = []
        served = obj(data.get("serverContent"))
        if (served.get("modelTurn") or data.get("toolCall")) and (self._turn is None or self._turn.complete):
            if self._turn is not None:  # a complete turn whose usage never came
                finished.append(self._operation(self._turn, now))
            self._turn = _Turn(now, now_ns)  # the server spoke first (audio input, no client turn seen)
        turn = self._turn
        if turn is not None:
            if any(isinstance(part, dict) and part for part in obj(served.get("modelTurn")).get("parts") or []):
                turn.timing.output_chunk(now)
            if data.get("toolCall"):
                turn.timing.output_chunk(now)
                turn.result.finish_reasons = ["tool_calls"]
            if served.get("interrupted"):
                turn.result.finish_reasons = ["interrupted"]
            if served.get("turnComplete"):
                turn.complete = True
                turn.result.finish_reasons = turn.result.finish_reasons or ["stop"]
            if (usage := live_usage(data.get("usageMetadata"))) is not None:
                turn.result.usage = usage
            if turn.complete and turn.result.usage is not None:
                finished.append(self._operation(turn, now))
                self._turn = None
        if isinstance(error := data.get("error"), dict):
            self.info.error_type = label(error.get("status")) or "error"
        return finished

    def _operation(self, turn: _Turn, now: float) -> Operation:
        turn.result.response_model = turn.result.response_model or self.info.model
        return Operation(
            api=API,
            request=self._request,
            result=turn.result,
            started_ns=turn.started_ns,
            duration_s=now - turn.timing.started,
            time_to_first_chunk_s=turn.timing.time_to_first_chunk,
            chunk_intervals_s=tuple(turn.timing.chunk_intervals),
        )


class Live(WireApi):
    name = "live"
    operation = "chat"
    vendor = GOOGLE
    routes = (
        Route(_GEMINI_API + r"(?:Constrained)?", method="GET", socket=True),
        Route(_VERTEX_AI, method="GET", socket=True),
    )

    def socket_session(self, url_model: str | None, capture_content: bool = False) -> SocketSession:
        return LiveSession(url_model)


API = Live()
