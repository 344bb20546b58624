"""Google's `generateContent` dialect: the Gemini API (`generativelanguage.googleapis.com`) and
Vertex AI (`{region}-aiplatform.googleapis.com`), `…/models/{model}:generateContent` and
`:streamGenerateContent`. The model is in the path (`wire.endpoint_for` reads it), not the body.

Usage from `usageMetadata`: `promptTokenCount` includes `cachedContentTokenCount`; tool-use prompt
tokens (`toolUsePromptTokenCount`) are input beside it; `candidatesTokenCount` leaves out the
thinking (`thoughtsTokenCount`), which is billed as output. So input = prompt + tool-use prompt,
output = candidates + thoughts, and nothing is counted twice. A stream is an SSE stream with
`?alt=sse` (what the SDKs ask for), else a JSON array of the same objects; each carries the usage
so far (some chunks only `trafficType`): the last counts win, nothing is added up.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wire.call import Endpoint, Route, WireApi
from wire.content import (
    CapturedContent,
    Part,
    PartsCollector,
    dump_messages,
    media_part,
    role_of,
    text_part,
    tool_call_part,
    tool_response_part,
)
from wire.framing import Event, Framer
from wire.framing.json_array import JSONArrayFramer
from wire.records import MODALITIES, NO_HEADERS, ApiRequest, ApiResult, Usage
from wire.stream import StreamAccumulator
from wire.tools import MAX_TOOLS, gemini_calls, gemini_results
from wire.values import (
    count,
    error_label,
    integer,
    json_members,
    label,
    labels,
    load_json_object,
    member_pattern,
    number,
    obj,
    small_json,
)
from wire.vendor import Vendor


class GoogleVendor(Vendor):
    # The Gemini API's keys (`AIza`), and OAuth access tokens (`ya29.`: Vertex AI).
    key_prefixes = ("AIza", r"ya29\.")


GOOGLE = GoogleVendor("gcp")

_REQUEST_MEMBERS = member_pattern("generationConfig")
_RESPONSE_MEMBERS = member_pattern(
    "candidates", "usageMetadata", "modelVersion", "responseId", "promptFeedback", "error"
)
_OUTPUT_TYPES = {"application/json": "json", "text/plain": "text", "text/x.enum": "text"}


def _modalities(details: Any) -> tuple[tuple[str, int], ...]:
    """`[{"modality": "TEXT", "tokenCount": 8}, …]` → (("text", 8), …); video and documents are left
    to the rest of the total (no modality of this record's)."""
    found: dict[str, int] = {}
    for item in details if isinstance(details, list) else []:
        modality = str(obj(item).get("modality", "")).lower()
        tokens = count(obj(item).get("tokenCount"))
        if modality in MODALITIES and tokens:
            found[modality] = found.get(modality, 0) + tokens
    return tuple(found.items())


def gemini_usage(value: Any) -> Usage | None:
    """`usageMetadata` as the usage record, or None if it has no counts (`{"trafficType": ...}`)."""
    if not isinstance(value, dict):
        return None
    prompt = count(value.get("promptTokenCount"))
    tool_prompt = count(value.get("toolUsePromptTokenCount"))
    candidates = count(value.get("candidatesTokenCount"))
    thoughts = count(value.get("thoughtsTokenCount"))
    if prompt is None and candidates is None and thoughts is None:
        return None
    return Usage(
        input_tokens=(prompt or 0) + (tool_prompt or 0) if prompt is not None or tool_prompt is not None else None,
        output_tokens=(candidates or 0) + (thoughts or 0),
        cache_read_tokens=count(value.get("cachedContentTokenCount")),
        reasoning_tokens=thoughts,
        input_modalities=_modalities(value.get("promptTokensDetails")),
        output_modalities=_modalities(value.get("candidatesTokensDetails")),
    )


def google_error_type(data: dict[str, Any]) -> str | None:
    """Google's error body `{"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", …}}` → the status."""
    error = data.get("error")
    if isinstance(error, dict):
        return error_label(error.get("status")) or error_label(error.get("code")) or "error"
    return None


def update_result(data: dict[str, Any], result: ApiResult) -> ApiResult:
    """Fold one response object (whole, or one chunk of a stream) into `result`."""
    if (error := google_error_type(data)) is not None:
        result.error_type = error
        return result
    result.response_id = label(data.get("responseId")) or result.response_id
    result.response_model = label(data.get("modelVersion")) or result.response_model
    result.usage = gemini_usage(data.get("usageMetadata")) or result.usage
    # Google's own tools' prompt (search, URL fetch): a part of the input, on the span to explain it.
    if tool_prompt := count(obj(data.get("usageMetadata")).get("toolUsePromptTokenCount")):
        result.attributes["usage.tool_use_prompt_tokens"] = tool_prompt
    reasons = [
        reason.lower()
        for candidate in data.get("candidates") or []
        if isinstance(reason := obj(candidate).get("finishReason"), str) and reason
    ]
    if reasons:
        result.finish_reasons = labels(reasons) or []
    blocked = label(obj(data.get("promptFeedback")).get("blockReason"))
    if blocked:  # the prompt was refused: no candidates, a failed call
        result.error_type = error_label(blocked)
    return result


def _parts(content: Any) -> list[Part]:
    """A `Content`'s parts as convention parts; inline and file data by type only."""
    parts: list[Part] = []
    for part in obj(content).get("parts") or []:
        if not isinstance(part, dict):
            continue
        if isinstance(text := part.get("text"), str):
            parts.append(text_part(text, "reasoning" if part.get("thought") is True else "text"))
        elif isinstance(call := part.get("functionCall"), dict):
            parts.append(tool_call_part(call.get("id"), call.get("name"), call.get("args", {})))
        elif isinstance(response := part.get("functionResponse"), dict):
            parts.append(tool_response_part(response.get("id") or response.get("name"), response.get("response")))
        elif isinstance(data := part.get("inlineData") or part.get("fileData"), dict):
            parts.append(media_part(obj(data).get("mimeType") or "blob"))
        elif part:
            parts.append(media_part(next(iter(part))))  # executableCode, codeExecutionResult, ...
    return parts


def _role(content: Any) -> str:
    role = role_of(content)
    return "assistant" if role == "model" else role


def _output_messages(candidates: list[tuple[list[Part], str]]) -> str | None:
    return dump_messages(
        [{"role": "assistant", "parts": parts, "finish_reason": reason} for parts, reason in candidates if parts]
    )


def _carries_output(data: dict[str, Any]) -> bool:
    """A chunk with text, a thought or a function call (not usage alone)."""
    for candidate in data.get("candidates") or []:
        for part in obj(obj(candidate).get("content")).get("parts") or []:
            if isinstance(part, dict) and (part.get("text") or part.get("functionCall")):
                return True
    return False


def generate_result(data: dict[str, Any] | None) -> ApiResult:
    """A whole `GenerateContentResponse` (also the one Code Assist wraps), with its tool calls."""
    if data is None:
        return ApiResult()
    result = update_result(data, ApiResult())
    result.tool_calls = gemini_calls(data.get("candidates"))
    return result


def generate_request(data: dict[str, Any]) -> ApiRequest:
    """A `GenerateContentRequest`'s parameters (also the one Code Assist wraps)."""
    config = obj(data.get("generationConfig"))
    budget = integer(obj(config.get("thinkingConfig")).get("thinkingBudget"))
    return ApiRequest(
        temperature=number(config.get("temperature")),
        top_p=number(config.get("topP")),
        top_k=number(config.get("topK")),
        max_tokens=integer(config.get("maxOutputTokens")),
        stop_sequences=labels(config.get("stopSequences")),
        seed=integer(config.get("seed")),
        choice_count=integer(config.get("candidateCount")),
        output_type=_OUTPUT_TYPES.get(str(config.get("responseMimeType"))),
        tool_results=gemini_results(data.get("contents")),
        attributes={"request.thinking.budget_tokens": budget} if budget is not None else {},
    )


class GenerateContentStreamAccumulator(StreamAccumulator):
    """Each element (SSE event or array element) is a whole `GenerateContentResponse`."""

    def __init__(self, started: float, capture_content: bool = False) -> None:
        super().__init__(started, capture_content)
        self._candidates: dict[int, PartsCollector] = {}
        self._reasons: dict[int, str] = {}  # each candidate's own finish reason

    def consume(self, event: Event, now: float) -> None:
        data = event.value if isinstance(event.value, dict) else load_json_object(event.data)
        if data is None:
            return
        if _carries_output(data):
            self.output_chunk(now)
        update_result(data, self.result)
        # A chunk carries its calls whole, each once; most chunks carry text only, told by their text.
        if event.data is None or '"functionCall"' in event.data:
            self.result.tool_calls = (*self.result.tool_calls, *gemini_calls(data.get("candidates")))[:MAX_TOOLS]
        if self.capture_content:
            self._collect(data)

    def _collect(self, data: dict[str, Any]) -> None:
        for position, candidate in enumerate(data.get("candidates") or []):
            index = integer(obj(candidate).get("index"))
            index = position if index is None else index  # candidate 0 is a candidate, not a missing index
            if isinstance(reason := obj(candidate).get("finishReason"), str) and reason:
                self._reasons[index] = label(reason.lower()) or "stop"
            kept = self._candidates.setdefault(index, PartsCollector())
            for part in _parts(obj(candidate).get("content")):
                if part["type"] in ("text", "reasoning"):
                    kept.add_text(part["content"], part["type"])
                else:
                    kept.add(part)

    def output_messages(self) -> str | None:
        candidates = [
            (self._candidates[index].parts(), self._reasons.get(index, "stop")) for index in sorted(self._candidates)
        ]
        return _output_messages(candidates)


class GenerateContent(WireApi):
    name = "generate_content"
    operation = "generate_content"
    vendor = GOOGLE
    routes = (
        Route(r"/models/(?P<model>[^/:]{1,128}):generateContent"),
        Route(r"/models/(?P<model>[^/:]{1,128}):streamGenerateContent", streamed=True),
    )

    def parse_request(self, body: bytes | None) -> ApiRequest:
        data = json_members(body, _REQUEST_MEMBERS)
        return generate_request(data) if data is not None else ApiRequest()

    def parse_response(self, body: bytes | None, headers: Mapping[str, str] = NO_HEADERS) -> ApiResult:
        return generate_result(json_members(body, _RESPONSE_MEMBERS))

    def stream_framer(self, content_type: str, endpoint: Endpoint) -> Framer | None:
        """SSE with `?alt=sse`; without it, `:streamGenerateContent` answers a JSON array."""
        if endpoint.streamed and content_type.startswith("application/json"):
            return JSONArrayFramer()
        return super().stream_framer(content_type, endpoint)

    def stream_accumulator(self, started: float, capture_content: bool = False) -> StreamAccumulator:
        return GenerateContentStreamAccumulator(started, capture_content)

    def captured_input(self, body: bytes | None) -> CapturedContent:
        data = small_json(body)
        inputs = [
            {"role": _role(content), "parts": _parts(content)}
            for content in data.get("contents") or []
            if isinstance(content, dict)
        ]
        return CapturedContent(
            system_instructions=dump_messages(_parts(data.get("systemInstruction"))),
            input_messages=dump_messages(inputs),
        )

    def captured_output(self, body: bytes | None) -> str | None:
        data = small_json(body)
        return _output_messages(
            [
                (_parts(obj(candidate).get("content")), str(obj(candidate).get("finishReason", "stop")).lower())
                for candidate in data.get("candidates") or []
            ]
        )


API = GenerateContent()
