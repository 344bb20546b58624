"""Google's Code Assist API (`cloudcode-pa.googleapis.com/v1internal:generateContent` and
`:streamGenerateContent`), what Gemini CLI calls when its user logs in with Google (facts:
tests/fixtures/agents/agents-on-the-wire.md, "Gemini CLI").

It wraps the generateContent dialect: a request `{"model", "project", "user_prompt_id",
"request": {GenerateContentRequest, "session_id"}}`, a response (and each streamed chunk)
`{"response": {GenerateContentResponse}, "traceId"}`. The model is in the body, and so is Gemini
CLI's session: `request.session_id`, else the part of `user_prompt_id` before `########`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from wire.agents import conversation_id
from wire.call import Route
from wire.content import CapturedContent
from wire.framing import Event
from wire.gemini_generate import GenerateContent, GenerateContentStreamAccumulator, generate_request, generate_result
from wire.records import NO_HEADERS, ApiRequest, ApiResult
from wire.stream import StreamAccumulator
from wire.values import json_members, label, load_json_object, member_pattern, obj, small_json

# What a body too large to parse whole is read for (the wrapped request is most of it).
_REQUEST_MEMBERS = member_pattern("model", "user_prompt_id")
PROMPT_ID_SEPARATOR = "########"


def session_of(data: dict[str, Any]) -> str | None:
    """Gemini CLI's session: `request.session_id`, else `user_prompt_id`'s part before its count."""
    session = obj(data.get("request")).get("session_id")
    if not isinstance(session, str) or not session.strip():
        prompt_id = data.get("user_prompt_id")
        session = prompt_id.partition(PROMPT_ID_SEPARATOR)[0] if isinstance(prompt_id, str) else None
    return conversation_id(session.strip()) if session and session.strip() else None


class CodeAssistStreamAccumulator(GenerateContentStreamAccumulator):
    """Each chunk is `{"response": {GenerateContentResponse}}`: read as generateContent's chunk."""

    def consume(self, event: Event, now: float) -> None:
        data = event.value if isinstance(event.value, dict) else load_json_object(event.data)
        if data is not None:
            super().consume(Event(event.kind, event.data, obj(data.get("response"))), now)


class CodeAssist(GenerateContent):
    name = "code_assist_generate_content"
    routes = (
        Route(r"/v1internal:generateContent"),
        Route(r"/v1internal:streamGenerateContent", streamed=True),
    )

    def parse_request(self, body: bytes | None) -> ApiRequest:
        data = json_members(body, _REQUEST_MEMBERS)
        if data is None:
            return ApiRequest()
        request = generate_request(obj(data.get("request")))
        request.model = label(data.get("model"))
        request.agent_session = session_of(data)
        return request

    def parse_response(self, body: bytes | None, headers: Mapping[str, str] = NO_HEADERS) -> ApiResult:
        data = load_json_object(body)
        return generate_result(obj(data.get("response"))) if data is not None else ApiResult()

    def stream_accumulator(self, started: float, capture_content: bool = False) -> StreamAccumulator:
        return CodeAssistStreamAccumulator(started, capture_content)

    def captured_input(self, body: bytes | None) -> CapturedContent:
        data = small_json(body)
        return super().captured_input(_json(obj(data.get("request"))))

    def captured_output(self, body: bytes | None) -> str | None:
        data = small_json(body)
        return super().captured_output(_json(obj(data.get("response"))))


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value).encode()


API = CodeAssist()
