"""Tool calls and their results in each dialect: recorded round trips (the ids a response asks
for are those the next request answers), streams split anywhere, and the rules of `wire.tools`."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.fake_openai import load_fixture
from harness.pieces import split_randomly
from harness.recordings import FIXTURES as RECORDINGS
from harness.recordings import load, load_bedrock
from tests.test_wire_bedrock import endpoint_of, streamed_result
from tests.test_wire_openai import body_of, run_stream
from wire import anthropic_messages, bedrock_converse, gemini_generate, openai_chat, openai_responses
from wire.framing import Event
from wire.records import ToolCall, ToolResult
from wire.tools import MAX_TOOLS, merged, openai_chat_results

pytestmark = pytest.mark.unit

WEATHER = "get_current_weather"


def _json(value: object) -> bytes:
    return json.dumps(value).encode()


# --- recorded round trips -----------------------------------------------------------------------


def test_openai_chat_recorded_round_trip_answers_both_parallel_calls():
    first, second = (load(RECORDINGS / "recorded", "test_chat_completion_tool_calls_no_content", n) for n in (0, 1))
    asked = openai_chat.API.parse_response(first.response_body).tool_calls
    answered = openai_chat.API.parse_request(second.request_body).tool_results
    assert [call.name for call in asked] == [WEATHER, WEATHER]
    assert [call.tool_type for call in asked] == ["function", "function"]
    assert [result.call_id for result in answered] == [call.call_id for call in asked]
    assert all(call.call_id.startswith("call_") for call in asked)
    # The first request replays no results: it answers nothing.
    assert openai_chat.API.parse_request(first.request_body).tool_results == ()


@given(st.integers(min_value=0, max_value=2**32))
@settings(max_examples=25, deadline=None)
def test_openai_chat_stream_names_each_call_once_however_it_is_split(seed):
    body = body_of("test_chat_completion_multiple_tools_streaming_no_content")
    result = run_stream(split_randomly(body, seed)).accumulator.result
    expected = [
        (call["id"], call["function"]["name"])
        for line in body.decode().splitlines()
        if line.startswith("data: {")
        for choice in json.loads(line[6:])["choices"]
        for call in choice["delta"].get("tool_calls") or []
        if call.get("id")
    ]
    assert len(expected) == 2
    assert [(call.call_id, call.name) for call in result.tool_calls] == expected


@pytest.mark.parametrize(
    "name",
    ["test_converse_tool_call_with_content", "test_invoke_model_with_content_tool_call[anthropic.claude]"],
)
def test_bedrock_recorded_round_trip(name):
    asking, answering = load_bedrock(name, 0), load_bedrock(name, 1)
    api = endpoint_of(asking).api
    asked = api.parse_response(asking.response_body, asking.response_headers).tool_calls
    answered = api.parse_request(answering.request_body).tool_results
    assert [call.name for call in asked] == [WEATHER, WEATHER]
    assert [result.call_id for result in answered] == [call.call_id for call in asked]
    assert not any(result.error for result in answered)


def test_anthropic_on_bedrock_stream_round_trip():
    name = "test_invoke_model_with_response_stream_with_content_tool_call[anthropic.claude]"
    asking, answering = load_bedrock(name, 0), load_bedrock(name, 1)
    asked = streamed_result(asking, [asking.response_body]).accumulator.result.tool_calls
    answered = endpoint_of(answering).api.parse_request(answering.request_body).tool_results
    assert [call.name for call in asked] == [WEATHER, WEATHER]
    assert all(call.call_id.startswith("toolu_bdrk_") for call in asked)
    assert [result.call_id for result in answered] == [call.call_id for call in asked]


def test_responses_recorded_function_call():
    body = load_fixture("test_responses_create_captures_tool_call_content[content_mode0]")["response"]["body"]["string"]
    (call,) = openai_responses.API.parse_response(body.encode()).tool_calls
    output = next(item for item in json.loads(body)["output"] if item["type"] == "function_call")
    assert (call.call_id, call.name, call.tool_type) == (output["call_id"], output["name"], "function")


# --- the rules, per dialect ---------------------------------------------------------------------


def test_only_the_newest_turn_is_read_older_results_were_answered_before():
    messages = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "tool_calls": [{"id": "call_old", "type": "function", "function": {"name": "a"}}]},
        {"role": "tool", "tool_call_id": "call_old", "content": "1"},
        {"role": "assistant", "tool_calls": [{"id": "call_new", "type": "function", "function": {"name": "b"}}]},
        {"role": "tool", "tool_call_id": "call_new", "content": "2"},
    ]
    assert openai_chat_results(messages) == (ToolResult("call_new", None),)
    assert openai_chat_results([*messages, {"role": "user", "content": "thanks"}]) == ()


def test_anthropic_results_of_the_last_user_message_with_the_error_flag():
    body = {
        "model": "claude-x",
        "messages": [
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_old", "content": "x"}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {}}]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "boom", "is_error": True},
                    {"type": "text", "text": "and go on"},
                ],
            },
        ],
    }
    request = anthropic_messages.API.parse_request(_json(body))
    assert request.tool_results == (ToolResult("toolu_1", None, error=True),)


def test_anthropic_server_tools_are_not_client_calls():
    body = {
        "id": "msg_1",
        "type": "message",
        "model": "claude-x",
        "content": [
            {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}},
            {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
            {"type": "tool_use", "id": "toolu_2", "name": "Read", "input": {}},
        ],
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    assert anthropic_messages.API.parse_response(_json(body)).tool_calls == (ToolCall("toolu_2", "Read"),)


def test_anthropic_stream_calls_come_with_their_block_start():
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {"id": "msg_1", "model": "m", "usage": {"input_tokens": 3}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "toolu_a", "name": "Grep"},
        },
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{}"}},
        {"type": "message_stop"},
    ]
    accumulator = anthropic_messages.API.stream_accumulator(0.0)
    for event in events:
        accumulator.consume(Event(event["type"], json.dumps(event), event), 1.0)
    assert accumulator.result.tool_calls == (ToolCall("toolu_a", "Grep"),)


def test_responses_results_are_the_trailing_outputs_and_each_kind_of_client_call():
    request = {
        "model": "gpt-5",
        "input": [
            {"type": "message", "role": "user", "content": "hi"},
            {"type": "function_call", "call_id": "call_1", "name": "shell", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "ok"},
            {"type": "custom_tool_call_output", "call_id": "call_2", "output": "patched"},
        ],
    }
    assert openai_responses.API.parse_request(_json(request)).tool_results == (
        ToolResult("call_1"),
        ToolResult("call_2"),
    )
    response = {
        "id": "resp_1",
        "status": "completed",
        "output": [
            {"type": "web_search_call", "id": "ws_1"},  # hosted: not the client's
            {"type": "function_call", "call_id": "call_3", "name": "shell"},
            {"type": "custom_tool_call", "call_id": "call_4", "name": "apply_patch"},
            {"type": "local_shell_call", "call_id": "call_5"},
        ],
    }
    assert openai_responses.API.parse_response(_json(response)).tool_calls == (
        ToolCall("call_3", "shell"),
        ToolCall("call_4", "apply_patch", "custom"),
        ToolCall("call_5", "local_shell", "local_shell"),
    )


def test_gemini_calls_without_ids_are_known_by_name_and_an_error_response_fails():
    response = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"functionCall": {"name": "read_file", "args": {"path": "a"}}},
                        {"functionCall": {"id": "fc-2", "name": "glob", "args": {}}},
                    ],
                }
            }
        ]
    }
    assert gemini_generate.API.parse_response(_json(response)).tool_calls == (
        ToolCall("read_file", "read_file"),
        ToolCall("fc-2", "glob"),
    )
    request = {
        "contents": [
            {"role": "user", "parts": [{"text": "list"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "read_file", "args": {}}}]},
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"id": "read_file-1764900000000-ab12", "name": "read_file", "response": {}}},
                    {"functionResponse": {"id": "fc-2", "name": "glob", "response": {"error": "no such dir"}}},
                ],
            },
        ]
    }
    assert gemini_generate.API.parse_request(_json(request)).tool_results == (
        ToolResult("read_file-1764900000000-ab12", "read_file"),
        ToolResult("fc-2", "glob", error=True),
    )


def test_converse_error_status_and_stream_block_start():
    request = {
        "messages": [
            {"role": "assistant", "content": [{"toolUse": {"toolUseId": "tooluse_1", "name": "calc", "input": {}}}]},
            {"role": "user", "content": [{"toolResult": {"toolUseId": "tooluse_1", "content": [], "status": "error"}}]},
        ]
    }
    assert bedrock_converse.API.parse_request(_json(request)).tool_results == (ToolResult("tooluse_1", error=True),)
    accumulator = bedrock_converse.API.stream_accumulator(0.0)
    start = {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tooluse_9", "name": "calc"}}}
    accumulator.consume(Event("contentBlockStart", None, start), 1.0)
    assert accumulator.result.tool_calls == (ToolCall("tooluse_9", "calc"),)


def test_a_stream_that_names_a_call_again_keeps_it_once_and_calls_are_bounded():
    first = (ToolCall("call_1", "a"),)
    assert merged(first, [ToolCall("call_1", "a"), ToolCall("call_2", "b")]) == (*first, ToolCall("call_2", "b"))
    many = tuple(ToolCall(f"call_{n}", "a") for n in range(MAX_TOOLS + 10))
    assert len(merged((), many)) == MAX_TOOLS


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
        max_leaves=30,
    )
)
@settings(max_examples=200, deadline=None)
def test_any_json_shape_gives_records_or_nothing_never_an_exception(value):
    body = _json({"messages": value, "contents": value, "input": value, "content": value, "choices": value})
    for api in (
        openai_chat.API,
        anthropic_messages.API,
        openai_responses.API,
        gemini_generate.API,
        bedrock_converse.API,
    ):
        assert all(isinstance(result, ToolResult) for result in api.parse_request(body).tool_results)
        assert all(isinstance(call, ToolCall) for call in api.parse_response(body).tool_calls)
