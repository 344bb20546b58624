"""Anthropic's Messages API against every recorded exchange and hostile input."""

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.fake_anthropic import claude_code_request
from harness.fake_openai import encode_whole
from harness.pieces import observed, split_randomly
from harness.recordings import ANTHROPIC_NAMES, load_anthropic
from wire import anthropic_messages
from wire.call import Endpoint
from wire.records import Usage
from wire.stream import EventStream
from wire.values import LARGE_BODY

API = anthropic_messages.API
MESSAGES = Endpoint(API)
STREAMS = [n for n in ANTHROPIC_NAMES if load_anthropic(n).streamed]
PLAIN = [n for n in ANTHROPIC_NAMES if not load_anthropic(n).streamed]
ENCODINGS = ["gzip", "deflate", "br", "zstd"]


def data_objects(body: bytes) -> list[dict]:
    """Every `data:` JSON of a recorded stream, read with plain string handling."""
    return [json.loads(line[5:]) for line in body.decode().splitlines() if line.startswith("data:")]


def expected_of_stream(body: bytes) -> dict:
    """What the stream says, by the documented rule: each usage field's last value; input is
    input_tokens + cache reads + cache writes."""
    usage: dict = {}
    expected: dict[str, Any] = {"id": None, "model": None, "stop": []}
    for data in data_objects(body):
        if data["type"] == "message_start":
            expected["id"], expected["model"] = data["message"]["id"], data["message"]["model"]
            usage.update(data["message"]["usage"])
        elif data["type"] == "message_delta":
            usage.update(data["usage"])
            expected["stop"] = [data["delta"]["stop_reason"]]
    expected["usage"] = Usage(
        input_tokens=usage["input_tokens"] + usage["cache_read_input_tokens"] + usage["cache_creation_input_tokens"],
        output_tokens=usage["output_tokens"],
        cache_read_tokens=usage["cache_read_input_tokens"],
        cache_write_tokens=usage["cache_creation_input_tokens"],
        cache_write_5m_tokens=usage.get("cache_creation", {}).get("ephemeral_5m_input_tokens"),
        cache_write_1h_tokens=usage.get("cache_creation", {}).get("ephemeral_1h_input_tokens"),
    )
    return expected


def run_stream(pieces: list[bytes], encoding: str | None = None, capture: bool = False) -> EventStream:
    return observed(EventStream(encoding, API.stream_accumulator(0.0, capture)), pieces)


def assert_matches(stream: EventStream, body: bytes) -> None:
    expected = expected_of_stream(body)
    result = stream.accumulator.result
    assert (result.response_id, result.response_model) == (expected["id"], expected["model"])
    assert result.finish_reasons == expected["stop"]
    assert result.usage == expected["usage"]
    assert stream.accumulator.done


def with_cache(body: bytes) -> bytes:
    """A recorded stream as a cached call would send it: 1,000 read, 300 written (100 for 1 h)."""
    text = body.decode()
    text = text.replace('"cache_read_input_tokens":0', '"cache_read_input_tokens":1000')
    text = text.replace('"cache_creation_input_tokens":0', '"cache_creation_input_tokens":300')
    text = text.replace('"ephemeral_5m_input_tokens":0', '"ephemeral_5m_input_tokens":200')
    return text.replace('"ephemeral_1h_input_tokens":0', '"ephemeral_1h_input_tokens":100').encode()


# --- recorded exchanges -------------------------------------------------------------------


def test_the_recordings_cover_plain_streamed_failed_thinking_and_tool_use():
    assert len(ANTHROPIC_NAMES) == 40 and len(STREAMS) >= 20 and len(PLAIN) >= 12
    assert {load_anthropic(n).status for n in PLAIN} == {200, 404}


@pytest.mark.parametrize("name", PLAIN)
def test_plain_response_yields_its_recorded_usage_id_model_and_stop_reason(name):
    recording = load_anthropic(name)
    data = json.loads(recording.response_body)
    result = API.parse_response(recording.response_body)
    if recording.status >= 400:
        assert result.error_type == data["error"]["type"] == "not_found_error"
        assert result.usage is None
        return
    usage = data["usage"]
    assert result.usage == Usage(
        input_tokens=usage["input_tokens"] + usage["cache_read_input_tokens"] + usage["cache_creation_input_tokens"],
        output_tokens=usage["output_tokens"],
        cache_read_tokens=usage["cache_read_input_tokens"],
        cache_write_tokens=usage["cache_creation_input_tokens"],
        cache_write_5m_tokens=usage["cache_creation"]["ephemeral_5m_input_tokens"],
        cache_write_1h_tokens=usage["cache_creation"]["ephemeral_1h_input_tokens"],
    )
    assert (result.response_id, result.response_model) == (data["id"], data["model"])
    assert result.finish_reasons == [data["stop_reason"]]
    assert result.service_tier == "standard" and result.error_type is None


def test_known_recordings_give_known_numbers():
    tool_use = API.parse_response(load_anthropic("test_sync_messages_create_captures_tool_use_content").response_body)
    assert tool_use.usage == Usage(
        input_tokens=386,
        output_tokens=34,
        cache_read_tokens=0,
        cache_write_tokens=0,
        cache_write_5m_tokens=0,
        cache_write_1h_tokens=0,
    )
    assert tool_use.finish_reasons == ["tool_use"]
    stream = run_stream([load_anthropic("test_sync_messages_create_streaming").response_body])
    assert stream.accumulator.result.usage == Usage(
        input_tokens=13,
        output_tokens=5,  # message_delta's cumulative 5, not message_start's 2, nor 2 + 5
        cache_read_tokens=0,
        cache_write_tokens=0,
        cache_write_5m_tokens=0,
        cache_write_1h_tokens=0,
    )


@pytest.mark.parametrize("name", STREAMS)
@pytest.mark.parametrize("split", ["whole", "bytes", "random"])
def test_stream_yields_recorded_usage_however_it_is_split(name, split):
    body = load_anthropic(name).response_body
    pieces = {"whole": [body], "bytes": [body[i : i + 1] for i in range(len(body))], "random": split_randomly(body, 7)}
    assert_matches(run_stream(pieces[split]), body)


@pytest.mark.parametrize("name", STREAMS[:6])
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_compressed_stream_yields_recorded_usage(name, encoding):
    body = load_anthropic(name).response_body
    assert_matches(run_stream(split_randomly(encode_whole(body, encoding), 3), encoding), body)


@pytest.mark.parametrize("name", STREAMS[:6])
def test_stream_with_crlf_yields_recorded_usage(name):
    body = load_anthropic(name).response_body
    assert_matches(run_stream(split_randomly(body.replace(b"\n", b"\r\n"), 5)), body)


def test_cache_reads_and_writes_are_part_of_the_input_never_added_twice():
    body = with_cache(load_anthropic("test_sync_messages_create_streaming").response_body)
    usage = run_stream(split_randomly(body, 11)).accumulator.result.usage
    assert usage == Usage(
        input_tokens=13 + 1000 + 300,
        output_tokens=5,
        cache_read_tokens=1000,
        cache_write_tokens=300,
        cache_write_5m_tokens=200,
        cache_write_1h_tokens=100,
    )


def test_padded_json_and_the_spaced_ping_do_not_matter():
    body = load_anthropic("test_sync_messages_create_streaming").response_body
    assert b'{"type": "ping"}' in body and re.search(rb'"\}\s{4,}\}', body)  # how the real API writes them
    compact = b"\n\n".join(
        b"event: " + json.loads(line[6:])["type"].encode() + b"\ndata: " + json.dumps(json.loads(line[6:])).encode()
        for line in body.splitlines()
        if line.startswith(b"data: ")
    )
    assert run_stream([compact + b"\n\n"]).accumulator.result == run_stream([body]).accumulator.result


def test_first_chunk_is_the_first_content_delta_and_each_delta_is_a_chunk():
    body = load_anthropic("test_sync_messages_create_streaming_iteration").response_body
    events = [event + b"\n\n" for event in body.split(b"\n\n") if event.strip()]
    stream = EventStream(None, API.stream_accumulator(0.0))
    for i, event in enumerate(events):
        stream.observe(event, now=float(i + 1))
    deltas = [i for i, event in enumerate(events) if event.startswith(b"event: content_block_delta")]
    assert len(deltas) >= 2
    assert stream.accumulator.time_to_first_chunk == float(deltas[0] + 1)  # not message_start, not ping
    assert len(stream.accumulator.chunk_intervals) == len(deltas) - 1


def event(kind: str, data: dict) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()


def test_thinking_and_tool_input_deltas_count_as_output_but_a_signature_does_not():
    events = [
        event("message_start", {"type": "message_start", "message": {"id": "m", "model": "c", "usage": {}}}),
        event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta"}}),
        event(
            "content_block_delta",
            {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ""}},
        ),
        event(
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hm"}},
        ),
        event(
            "content_block_delta",
            {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{"}},
        ),
    ]
    stream = EventStream(None, API.stream_accumulator(0.0))
    for i, block in enumerate(events):
        stream.observe(block, now=float(i + 1))
    assert stream.accumulator.time_to_first_chunk == 4.0
    assert list(stream.accumulator.chunk_intervals) == [1.0]


def test_an_error_inside_a_stream_sets_the_error_type():
    body = load_anthropic("test_sync_messages_create_streaming").response_body
    overloaded = event("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    head = body[: body.index(b"event: content_block_stop")]
    result = run_stream([head + overloaded]).accumulator.result
    assert result.error_type == "overloaded_error"
    assert result.usage is not None and result.usage.input_tokens == 13  # message_start's usage is kept


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}', "rate_limit_error"),
        (b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}', "overloaded_error"),
        (b"<html>Bad gateway</html>", None),
    ],
)
def test_error_bodies_give_the_error_type(body, expected):
    assert API.parse_response(body).error_type == expected


def test_server_tool_uses_and_the_service_tier_are_read():
    usage = {
        "input_tokens": 10,
        "output_tokens": 3,
        "server_tool_use": {"web_search_requests": 2, "web_fetch_requests": 1},
        "service_tier": "priority",
    }
    result = API.parse_response(json.dumps({"id": "m", "model": "c", "usage": usage}).encode())
    assert result.server_tool_requests == {"web_search": 2, "web_fetch": 1}
    assert result.service_tier == "priority"


# --- requests -----------------------------------------------------------------------------


def test_request_parameters_of_a_recording():
    request = API.parse_request(load_anthropic("test_sync_messages_create_with_all_params").request_body)
    recorded = json.loads(load_anthropic("test_sync_messages_create_with_all_params").request_body)
    assert request.model == recorded["model"] and request.max_tokens == recorded["max_tokens"]
    assert request.temperature == recorded.get("temperature") and request.top_p == recorded.get("top_p")
    assert request.top_k == recorded.get("top_k")
    assert request.stop_sequences == recorded.get("stop_sequences")
    thinking = API.parse_request(load_anthropic("test_sync_messages_create_captures_thinking_content").request_body)
    assert thinking.attributes == {"request.thinking.budget_tokens": 10000}
    streamed = API.parse_request(load_anthropic("test_sync_messages_create_streaming").request_body)
    assert streamed.stream and not streamed.include_usage


def test_a_claude_code_request_is_read():
    """The shape Claude Code 2.1 sends: system blocks with cache_control, tools, thinking, a service tier."""
    body = {**claude_code_request("claude-sonnet-4-5-20250929"), "metadata": {"user_id": "user_abc"}}
    request = API.parse_request(json.dumps(body).encode())
    assert (request.model, request.max_tokens, request.stream) == ("claude-sonnet-4-5-20250929", 32000, True)
    assert request.attributes == {"request.thinking.budget_tokens": 31999}
    assert API.request_with_usage(json.dumps(body).encode(), request) is None  # never rewritten


def test_a_large_request_is_read_from_its_edges():
    body = json.dumps(
        {"model": "claude-opus-4-5", "messages": [{"role": "user", "content": "w " * LARGE_BODY}], "stream": True}
    ).encode()
    request = API.parse_request(body)
    assert (request.model, request.stream) == ("claude-opus-4-5", True)
    assert API.captured_input(body).input_messages is None  # too large to capture


# --- content capture ----------------------------------------------------------------------


def test_input_with_system_blocks_tool_use_tool_results_thinking_and_images():
    body = {
        "system": [{"type": "text", "text": "Be brief."}],
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "Weather?"}, {"type": "image", "source": {"data": "AAAA"}}],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "call the tool", "signature": "sig"},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "SF"}},
                ],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]},
        ],
    }
    content = API.captured_input(json.dumps(body).encode())
    assert content.system_instructions is not None and content.input_messages is not None
    assert json.loads(content.system_instructions) == [{"type": "text", "content": "Be brief."}]
    user, assistant, tool = json.loads(content.input_messages or "")
    assert user["parts"] == [{"type": "text", "content": "Weather?"}, {"type": "image"}]
    assert "AAAA" not in content.input_messages
    assert assistant["parts"] == [
        {"type": "reasoning", "content": "call the tool"},
        {"type": "tool_call", "id": "toolu_1", "name": "get_weather", "arguments": '{"city": "SF"}'},
    ]
    assert tool["parts"] == [{"type": "tool_call_response", "id": "toolu_1", "response": "sunny"}]


def test_plain_outputs_of_recordings_are_captured():
    tool = json.loads(
        API.captured_output(load_anthropic("test_sync_messages_create_captures_tool_use_content").response_body) or ""
    )
    assert tool == [
        {
            "role": "assistant",
            "parts": [
                {
                    "type": "tool_call",
                    "id": "toolu_01UAcA2APHENDob6qJ8kmoaC",
                    "name": "get_weather",
                    "arguments": '{"city": "San Francisco"}',
                }
            ],
            "finish_reason": "tool_use",
        }
    ]
    thinking = json.loads(
        API.captured_output(load_anthropic("test_sync_messages_create_captures_thinking_content").response_body) or ""
    )
    assert thinking[0]["parts"][0]["type"] == "reasoning" and "17" in thinking[0]["parts"][0]["content"]


@pytest.mark.parametrize("name", STREAMS)
def test_streamed_text_is_reassembled_from_the_deltas(name):
    body = load_anthropic(name).response_body
    expected = "".join(
        data["delta"]["text"]
        for data in data_objects(body)
        if data["type"] == "content_block_delta" and data["delta"]["type"] == "text_delta"
    )
    (message,) = json.loads(run_stream(split_randomly(body, 3), capture=True).accumulator.output_messages() or "")
    assert message["parts"] == [{"type": "text", "content": expected}]
    assert message["finish_reason"] == expected_of_stream(body)["stop"][0]


def test_a_streamed_tool_call_is_reassembled_with_its_arguments():
    events = [
        event(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "tool_use", "id": "toolu_9", "name": "f", "input": {}},
            },
        ),
        *(
            event(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "input_json_delta", "partial_json": piece},
                },
            )
            for piece in ['{"ci', 'ty": "SF"}']
        ),
        event(
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 7}},
        ),
    ]
    accumulator = run_stream([b"".join(events)], capture=True).accumulator
    assert json.loads(accumulator.output_messages() or "") == [
        {
            "role": "assistant",
            "parts": [{"type": "tool_call", "id": "toolu_9", "name": "f", "arguments": '{"city": "SF"}'}],
            "finish_reason": "tool_use",
        }
    ]


def test_without_capture_no_output_is_kept():
    body = load_anthropic("test_sync_messages_create_streaming").response_body
    assert run_stream([body]).accumulator.output_messages() is None


# --- property-based -----------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_any_split_of_a_recorded_stream_gives_the_same_result(data):
    name = data.draw(st.sampled_from(STREAMS))
    body = (
        with_cache(load_anthropic(name).response_body)
        if data.draw(st.booleans())
        else load_anthropic(name).response_body
    )
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=30)))
    pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    assert_matches(run_stream(pieces), body)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000), st.booleans())
def test_arbitrary_bytes_never_raise_out_of_the_parsers(data, capture):
    API.parse_request(data)
    API.parse_response(data)
    API.captured_input(data)
    API.captured_output(data)
    stream = run_stream([data], capture=capture)
    stream.accumulator.output_messages()


def test_iterations_are_billed_summed_and_the_2026_fields_are_read():
    """A compaction pass is left out of the top-level counts: with `iterations`, the sum over them
    is billed. `thinking_tokens` is a part of the output; `speed` and `inference_geo` go on the span."""
    usage = {
        "input_tokens": 40,
        "output_tokens": 300,
        "cache_read_input_tokens": 1000,
        "output_tokens_details": {"thinking_tokens": 120},
        "speed": "fast",
        "inference_geo": "us",
        "server_tool_use": {"web_search_requests": 1, "web_fetch_requests": 2},
        "iterations": [
            {
                "type": "compaction",
                "input_tokens": 61_000,
                "output_tokens": 2_000,
                "cache_creation_input_tokens": 55_096,
                "cache_read_input_tokens": 0,
            },
            {
                "type": "message",
                "model": "claude-opus-4-6",
                "input_tokens": 40,
                "output_tokens": 300,
                "cache_read_input_tokens": 1000,
            },
        ],
    }
    body = json.dumps(
        {"id": "msg_1", "type": "message", "model": "claude-opus-4-6", "stop_reason": "end_turn", "usage": usage}
    )
    result = API.parse_response(body.encode())
    assert result.usage == Usage(
        input_tokens=61_000 + 55_096 + 40 + 1000,
        output_tokens=2_300,
        cache_read_tokens=1000,
        cache_write_tokens=55_096,
        reasoning_tokens=120,
    )
    assert result.attributes == {"response.speed": "fast", "response.inference_geo": "us"}
    assert result.server_tool_requests == {"web_search": 1, "web_fetch": 2}
    plain = API.parse_response(json.dumps({"type": "message", "usage": {**usage, "iterations": None}}).encode())
    assert plain.usage is not None and (plain.usage.input_tokens, plain.usage.output_tokens) == (1040, 300)
