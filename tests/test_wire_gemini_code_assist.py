"""Google's Code Assist API, what Gemini CLI calls when logged in with Google (`wire.gemini_code_assist`):
the wrapped generateContent dialect, the model and Gemini CLI's session from the body."""

import json
from typing import Any

import pytest

import wire
from harness.pieces import observed, split_randomly
from wire.agents import agent_session
from wire.framing.sse import SSEFramer
from wire.gemini_code_assist import API
from wire.records import ToolResult
from wire.stream import EventStream

pytestmark = pytest.mark.unit

SESSION = "5b1f9c2e-0d3a-4c8e-9f7b-2a6d4e8c1b3f"
# The shape of Gemini CLI's converter.ts (tests/fixtures/agents/agents-on-the-wire.md, "Gemini CLI").
REQUEST: dict[str, Any] = {
    "model": "gemini-2.5-pro",
    "project": "e2e-project",
    "user_prompt_id": f"{SESSION}########3",
    "request": {
        "contents": [
            {"role": "user", "parts": [{"text": "list the files"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "list_directory", "args": {"path": "."}}}]},
            {
                "role": "user",
                "parts": [
                    {
                        "functionResponse": {
                            "id": "list_directory-1764900000000-ab12",
                            "name": "list_directory",
                            "response": {"output": "a.txt"},
                        }
                    }
                ],
            },
        ],
        "generationConfig": {"temperature": 0, "thinkingConfig": {"thinkingBudget": 8192}},
        "session_id": SESSION,
    },
}
USAGE = {"promptTokenCount": 120, "candidatesTokenCount": 8, "thoughtsTokenCount": 30, "totalTokenCount": 158}


def test_the_routes_are_code_assists():
    for path, streamed in (("/v1internal:generateContent", False), ("/v1internal:streamGenerateContent?alt=sse", True)):
        endpoint = wire.endpoint_for("POST", path)
        assert endpoint is not None and endpoint.api is API and endpoint.streamed is streamed


def test_the_request_names_the_model_the_session_and_the_tools_results():
    request = API.parse_request(json.dumps(REQUEST).encode())
    assert request.model == "gemini-2.5-pro" and request.temperature == 0
    assert request.attributes == {"request.thinking.budget_tokens": 8192}
    assert request.agent_session == SESSION
    assert request.tool_results == (ToolResult("list_directory-1764900000000-ab12", "list_directory"),)
    assert agent_session({}, request.agent_session) is not None  # what the telemetry side then reads
    without = {**REQUEST, "request": {**REQUEST["request"], "session_id": None}}
    assert API.parse_request(json.dumps(without).encode()).agent_session == SESSION  # from user_prompt_id


def test_the_wrapped_response_and_stream_give_the_usage():
    answer = {
        "response": {
            "candidates": [{"finishReason": "STOP"}],
            "usageMetadata": USAGE,
            "modelVersion": "gemini-2.5-pro",
        },
        "traceId": "t1",
    }
    result = API.parse_response(json.dumps(answer).encode())
    assert result.usage is not None and (result.usage.input_tokens, result.usage.output_tokens) == (120, 38)
    assert result.response_model == "gemini-2.5-pro" and result.finish_reasons == ["stop"]
    chunks = [
        {"response": {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hi"}]}}]}, "traceId": "t1"},
        {
            "response": {
                "candidates": [
                    {
                        "content": {"role": "model", "parts": [{"functionCall": {"name": "read_file", "args": {}}}]},
                        "finishReason": "STOP",
                    }
                ],
                "usageMetadata": USAGE,
            },
            "traceId": "t1",
        },
    ]
    raw = b"".join(b"data: " + json.dumps(chunk).encode() + b"\r\n\r\n" for chunk in chunks)
    stream = observed(EventStream(None, API.stream_accumulator(0.0), SSEFramer()), split_randomly(raw, 3))
    streamed = stream.accumulator.result
    assert streamed.usage is not None and streamed.usage.output_tokens == 38
    assert [call.name for call in streamed.tool_calls] == ["read_file"]
    assert stream.accumulator.time_to_first_chunk is not None
