"""MCP over Streamable HTTP (`wire.mcp`): recognition, JSON and SSE answers, both revisions."""

import json

import pytest

from harness.pieces import observed, split_randomly
from wire import mcp
from wire.call import Endpoint
from wire.framing.sse import SSEFramer
from wire.stream import EventStream

pytestmark = pytest.mark.unit


def body(value: object) -> bytes:
    return json.dumps(value).encode()


CALL = {
    "jsonrpc": "2.0",
    "id": 7,
    "method": "tools/call",
    "params": {"name": "get_weather", "arguments": {"city": "Oslo"}},
}


@pytest.mark.parametrize(
    ("headers", "content", "expected"),
    [
        ({"mcp-protocol-version": "2025-06-18"}, b"", True),
        ({"mcp-session-id": "abc"}, None, True),
        ({"mcp-method": "tools/call"}, b"{}", True),  # 2026-07-28: on every request
        ({}, b'  {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}', True),
        ({}, body({"model": "gpt-4o", "messages": []}), False),
        ({}, b'{"messages": [{"content": "jsonrpc"}]}' + b" " * 100, False),  # not in its opening
        ({}, None, False),
    ],
)
def test_mcp_requests_are_recognised_by_their_headers_or_a_json_rpc_body(headers, content, expected):
    assert mcp.is_mcp_request(headers, content) is expected


def test_a_tool_call_request_names_its_method_tool_and_id():
    request = mcp.API.parse_request(body(CALL))
    assert request.attributes == {
        "mcp.method.name": "tools/call",
        "jsonrpc.request.id": "7",
        "gen_ai.tool.name": "get_weather",
    }
    prompt = mcp.API.parse_request(
        body({"jsonrpc": "2.0", "id": "a", "method": "prompts/get", "params": {"name": "p"}})
    )
    assert prompt.attributes["gen_ai.prompt.name"] == "p" and "gen_ai.tool.name" not in prompt.attributes
    read = mcp.API.parse_request(
        body({"jsonrpc": "2.0", "id": 2, "method": "resources/read", "params": {"uri": "file:///a"}})
    )
    assert read.attributes["mcp.resource.uri"] == "file:///a"
    notification = mcp.API.parse_request(body({"jsonrpc": "2.0", "method": "notifications/initialized"}))
    assert notification.attributes == {"mcp.method.name": "notifications/initialized"}  # no id: none recorded
    assert mcp.API.parse_request(body([CALL])).attributes["gen_ai.tool.name"] == "get_weather"  # a 2025-03-26 batch


@pytest.mark.parametrize(
    ("answer", "error_type"),
    [
        (
            {"jsonrpc": "2.0", "id": 7, "result": {"content": [{"type": "text", "text": "12°C"}], "isError": False}},
            None,
        ),
        (
            {"jsonrpc": "2.0", "id": 7, "result": {"content": [{"type": "text", "text": "no city"}], "isError": True}},
            "tool_error",
        ),
        ({"jsonrpc": "2.0", "id": 7, "error": {"code": -32602, "message": "Unknown tool: x"}}, "-32602"),
    ],
)
def test_a_json_answer_gives_the_tool_error_or_the_json_rpc_code(answer, error_type):
    result = mcp.API.parse_response(body(answer))
    assert (result.response_id, result.error_type) == ("7", error_type)
    if error_type == "-32602":
        assert result.attributes["rpc.response.status_code"] == "-32602"


@pytest.mark.parametrize("seed", range(5))
def test_an_sse_answer_is_read_up_to_its_response_past_notifications(seed):
    events = [
        {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progress": 1}},
        {"jsonrpc": "2.0", "id": 99, "method": "sampling/createMessage", "params": {}},  # a server's request
        {"jsonrpc": "2.0", "id": 7, "result": {"content": [], "isError": True}},
    ]
    raw = b"".join(b"event: message\ndata: " + body(event) + b"\n\n" for event in events)
    stream = observed(EventStream(None, mcp.API.stream_accumulator(0.0), SSEFramer()), split_randomly(raw, seed))
    result = stream.accumulator.result
    assert stream.accumulator.done and (result.response_id, result.error_type) == ("7", "tool_error")


def test_malformed_bodies_give_empty_records():
    for junk in (b"", b"{", b"[1, 2]", b'{"jsonrpc": "2.0", "result": 5}', b"\xff\xfe"):
        assert mcp.API.parse_request(junk).attributes.keys() <= {"mcp.method.name", "jsonrpc.request.id"}
        assert mcp.API.parse_response(junk).error_type in (None, "error")
    assert Endpoint(mcp.API).operation == "execute_tool" and not mcp.API.reports_usage


def test_the_session_is_the_requests_or_the_one_an_initialize_answer_opens():
    versioned = {"mcp-protocol-version": "2025-06-18"}
    opened = mcp.MCP.exchange_attributes(versioned, {"mcp-session-id": "s-new"})
    assert opened == {"mcp.protocol.version": "2025-06-18", "mcp.session.id": "s-new"}
    named = mcp.MCP.exchange_attributes({**versioned, "mcp-session-id": "s-1"}, {})
    assert named["mcp.session.id"] == "s-1"
    assert mcp.MCP.exchange_attributes({"mcp-protocol-version": "2026-07-28"}, {}) == {
        "mcp.protocol.version": "2026-07-28"
    }
