"""Calls told for people: the summary line and mitmweb's stream view."""

import json

import wire
from harness.fake_google import GenerateScript, array_chunks
from harness.fake_openai import load_fixture
from harness.recordings import load_anthropic, load_bedrock
from tests.builders import CHAT, finished_call
from wire import anthropic_messages, gemini_generate, openai_responses
from wire.call import Endpoint
from wire.describe import describe_stream, format_usd, summarize
from wire.records import ApiRequest, ApiResult, Usage


def body_of(name: str) -> bytes:
    return load_fixture(name)["response"]["body"]["string"].encode()


def test_summary_line_names_model_tokens_timing_and_errors():
    call = finished_call(
        request=ApiRequest(model="gpt-4o-mini", stream=True),
        duration_s=1.2345,
        result=ApiResult(
            response_model="gpt-4o-mini-2024-07-18",
            usage=Usage(input_tokens=100, output_tokens=20, cache_read_tokens=64, reasoning_tokens=8),
        ),
        time_to_first_chunk_s=0.25,
    )
    assert summarize(call) == (
        "100→20 tok (64 cached, 8 reasoning) · 1.234s · first content 0.250s · chat gpt-4o-mini-2024-07-18"
    )
    call.cost_usd = 0.0011
    # mitmweb's comment column shows about 20 characters: the cost and the tokens fit.
    assert summarize(call)[:20] == "$0.001100 · 100→20 t"
    call.result = ApiResult(usage=Usage(input_tokens=1100, output_tokens=5, cache_write_tokens=1000))
    assert "1100→5 tok (1000 cache write)" in summarize(call)
    call.result = ApiResult(usage=Usage(input_tokens=None, output_tokens=5))
    assert "?→5 tok" in summarize(call)  # an unknown input (Ollama's fully cached prompt) is not 0
    call.cost_usd = None
    call.result, call.status_code = ApiResult(error_type="rate_limit_exceeded"), 429
    assert summarize(call).startswith("error rate_limit_exceeded (429) · 1.234s")  # what matters first


def test_the_line_of_an_agents_call_ends_with_its_session():
    headers = {"x-claude-code-session-id": "3f2b8c1e-7d4a-4e5b-9c6f-0a1b2c3d4e5f"}
    line = summarize(finished_call(request_headers=headers, request=ApiRequest(model="claude-x"), status_code=200))
    assert line.endswith("· chat claude-x · session 3f2b8c1e")
    assert "session" not in summarize(finished_call(request=ApiRequest(model="claude-x"), status_code=200))


def test_small_costs_keep_their_digits_and_no_price_is_not_zero():
    assert [format_usd(cost) for cost in (0.0123, 0.000123, 0.0000042, 4.2e-8, 0.0, None)] == [
        "0.012300",
        "0.000123",
        "0.0000042",
        "0.000000042",
        "0.000000",
        "–",
    ]


def test_a_recorded_stream_is_described_for_people():
    text = describe_stream(
        CHAT, body_of("test_chat_completion_multiple_tools_streaming_with_content"), "text/event-stream"
    )
    assert text.startswith("chat (chat_completions) · model gpt-4o-mini")
    assert "usage: " in text and "output" in text
    assert "finish: tool_calls" in text
    assert text.count("→ tool call get_current_weather(") == 2
    responses = describe_stream(
        Endpoint(openai_responses.API), body_of("test_responses_create_streaming[content_mode0]"), "text/event-stream"
    )
    assert "This is a test." in responses and "usage: 22 input (0 cached), 6 output (0 reasoning)" in responses


def test_an_anthropic_stream_is_described_with_its_text_and_usage():
    text = describe_stream(
        Endpoint(anthropic_messages.API),
        load_anthropic("test_sync_messages_create_streaming").response_body,
        "text/event-stream",
    )
    assert text.startswith("chat (messages) · model claude-sonnet-4-20250514")
    assert "id msg_01VY8H3oPFs4WWVnJXFDxNhU" in text
    assert "usage: 13 input (0 cached), 5 output (0 reasoning)" in text
    assert "finish: end_turn" in text and "\nHello.\n" in text + "\n"


def test_a_gemini_stream_is_described_in_both_forms():
    chunks = GenerateScript("gemini-2.5-flash", {"contents": []}, thoughts=2).stream_chunks()
    endpoint = Endpoint(gemini_generate.API, model="gemini-2.5-flash", streamed=True)
    sse = "".join(f"data: {json.dumps(chunk)}\r\n\r\n" for chunk in chunks).encode()
    array = "".join(array_chunks(chunks)).encode()
    for body, content_type in ((sse, "text/event-stream"), (array, "application/json; charset=UTF-8")):
        text = describe_stream(endpoint, body, content_type)
        assert text.startswith("generate_content (generate_content) · model gemini-2.5-flash")
        assert "usage: 4 input (0 cached), 8 output (2 reasoning)" in text
        assert "finish: stop" in text and "\nHello from a fake Gemini.\n" in text + "\n"


def test_a_bedrock_event_stream_is_described_with_its_tool_call_and_usage():
    recording = load_bedrock("test_converse_stream_tool_call_parsing_errors", 0)
    endpoint = wire.endpoint_for("POST", recording.uri.split("amazonaws.com", 1)[1])
    assert endpoint is not None
    text = describe_stream(endpoint, recording.response_body, recording.response_headers["content-type"])
    assert text.startswith("chat (converse) · model anthropic.claude-3-sonnet-20240229-v1:0")
    assert "usage: 295 input (0 cached), 43 output (0 reasoning)" in text and "finish: tool_use" in text
    assert '→ tool call get_cities_list({"cities": ["Tokyo"' in text
