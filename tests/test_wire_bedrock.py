"""AWS Bedrock Runtime (Converse, ConverseStream, InvokeModel, InvokeModelWithResponseStream) and
Claude on Vertex AI: routes, every recorded exchange fed whole, byte by byte and in random pieces,
and what the recordings do not show (exception messages, 1 h cache writes, header-only usage)."""

import base64
import json

import pytest
from botocore.eventstream import EventStreamBuffer
from hypothesis import given, settings
from hypothesis import strategies as st

import wire
from harness import eventstream
from harness.pieces import observed, split_randomly
from harness.recordings import BEDROCK, BEDROCK_NAMES, Recording, load_bedrock
from wire import anthropic_messages, bedrock_converse, bedrock_invoke
from wire.call import Endpoint
from wire.records import ApiResult, Usage
from wire.stream import EventStream

CONVERSE_STREAM = "application/vnd.amazon.eventstream"


def exchanges() -> list[tuple[str, int]]:
    import yaml

    found = []
    for name in BEDROCK_NAMES:
        with open(BEDROCK / f"{name}.yaml", encoding="utf-8") as file:
            found += [(name, number) for number in range(len(yaml.safe_load(file)["interactions"]))]
    return found


EXCHANGES = exchanges()
STREAMED = [(n, i) for n, i in EXCHANGES if load_bedrock(n, i).streamed]


def endpoint_of(recording: Recording) -> Endpoint:
    endpoint = wire.endpoint_for("POST", recording.uri.split("amazonaws.com", 1)[1])
    assert endpoint is not None
    return endpoint


def streamed_result(recording: Recording, pieces: list[bytes], capture: bool = False) -> EventStream:
    endpoint = endpoint_of(recording)
    framer = endpoint.api.stream_framer(recording.response_headers["content-type"].lower(), endpoint)
    assert framer is not None
    return observed(EventStream(None, endpoint.api.stream_accumulator(0.0, capture), framer), pieces)


def oracle_usage(body: bytes) -> dict:
    """The usage in a recorded stream as botocore's own decoder reads it: ConverseStream's
    `metadata` event, or the model's events inside InvokeModel chunks."""
    buffer = EventStreamBuffer()
    buffer.add_data(body)
    found: dict = {}
    for message in buffer:
        payload = json.loads(message.payload)
        if message.headers[":event-type"] == "metadata":
            found = payload["usage"]
        elif message.headers[":event-type"] == "chunk":
            inner = json.loads(base64.b64decode(payload["bytes"]))
            if inner.get("type") == "message_start":
                found.update(inner["message"]["usage"])
            elif inner.get("type") == "message_delta":
                found.update(inner["usage"])
            elif "metadata" in inner:
                found = inner["metadata"]["usage"]
    return found


# --- routes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "api", "model", "streamed"),
    [
        (
            "/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse",
            "converse",
            "anthropic.claude-sonnet-4-5-20250929-v1:0",
            False,
        ),
        ("/model/us.amazon.nova-micro-v1%3A0/converse-stream", "converse", "us.amazon.nova-micro-v1:0", True),
        (
            "/model/global.anthropic.claude-sonnet-4-5-20250929-v1:0/invoke",
            "invoke_model",
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
            False,
        ),
        (
            "/model/eu.anthropic.claude-haiku-4-5-20251001-v1%3A0/invoke-with-response-stream",
            "invoke_model",
            "eu.anthropic.claude-haiku-4-5-20251001-v1:0",
            True,
        ),
        (
            "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aapplication-inference-profile%2Fa1b2c3d4e5f6/converse",
            "converse",
            "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3d4e5f6",
            False,
        ),
        ("/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/count-tokens", None, None, False),
        (
            "/v1/projects/p-1/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929:rawPredict",
            "messages",
            "claude-sonnet-4-5@20250929",
            False,
        ),
        (
            "/v1/projects/p-1/locations/global/publishers/anthropic/models/claude-haiku-4-5@20251001:streamRawPredict",
            "messages",
            "claude-haiku-4-5@20251001",
            True,
        ),
        ("/v1/projects/p-1/locations/us-east5/publishers/anthropic/models/count-tokens:rawPredict", None, None, False),
        ("/v1/projects/p-1/locations/us-east5/publishers/mistralai/models/mistral-large:rawPredict", None, None, False),
    ],
)
def test_bedrock_and_vertex_claude_routes_name_the_api_and_the_decoded_model(path, api, model, streamed):
    endpoint = wire.endpoint_for("POST", path)
    if api is None:
        assert endpoint is None
        return
    assert endpoint is not None
    assert (endpoint.api.name, endpoint.model, endpoint.streamed) == (api, model, streamed)


def test_an_overlong_model_id_is_cut():
    endpoint = wire.endpoint_for("POST", f"/model/{'a' * 500}/converse")
    assert endpoint is not None and endpoint.model is not None and len(endpoint.model) == 256


# --- recorded exchanges -------------------------------------------------------------------


def test_the_recordings_cover_both_apis_plain_streamed_and_failed():
    apis = {(endpoint_of(load_bedrock(n, i)).api.name, load_bedrock(n, i).streamed) for n, i in EXCHANGES}
    assert apis == {("converse", False), ("converse", True), ("invoke_model", False), ("invoke_model", True)}
    assert any(load_bedrock(n, i).status == 400 for n, i in EXCHANGES)


@pytest.mark.parametrize(("name", "number"), STREAMED)
@pytest.mark.parametrize("split", ["whole", "bytes", "random"])
def test_a_recorded_stream_gives_its_usage_however_it_is_split(name, number, split):
    recording = load_bedrock(name, number)
    body = recording.response_body
    pieces = {
        "whole": [body],
        "bytes": [body[i : i + 1] for i in range(len(body))],
        "random": split_randomly(body, seed=number + 3, largest=300),
    }[split]
    result = streamed_result(recording, pieces).accumulator.result
    usage, expected = result.usage, oracle_usage(body)
    assert usage is not None
    uncached = expected.get("inputTokens") or expected["input_tokens"]
    read = expected.get("cacheReadInputTokens", expected.get("cache_read_input_tokens")) or 0
    written = expected.get("cacheWriteInputTokens", expected.get("cache_creation_input_tokens")) or 0
    assert usage.input_tokens == uncached + read + written
    assert usage.output_tokens == expected.get("outputTokens", expected.get("output_tokens"))
    assert result.finish_reasons and result.error_type is None


def test_known_recordings_give_known_numbers():
    caching = [
        streamed_result(load_bedrock("test_converse_stream_with_prompt_caching", n), [b])
        for n, b in (
            (0, load_bedrock("test_converse_stream_with_prompt_caching", 0).response_body),
            (1, load_bedrock("test_converse_stream_with_prompt_caching", 1).response_body),
        )
    ]
    first, second = (stream.accumulator.result.usage for stream in caching)
    assert first == Usage(input_tokens=2705, output_tokens=10, cache_read_tokens=0, cache_write_tokens=2701)
    assert second == Usage(input_tokens=2705, output_tokens=10, cache_read_tokens=2701, cache_write_tokens=0)
    assert caching[0].accumulator.result.attributes == {"response.latency_ms": 454}
    tool = streamed_result(
        load_bedrock("test_invoke_model_with_response_stream_with_content_tool_call[anthropic.claude]", 0),
        [
            load_bedrock(
                "test_invoke_model_with_response_stream_with_content_tool_call[anthropic.claude]", 0
            ).response_body
        ],
    ).accumulator.result
    # The model's own count wins; the invocation metrics' differing one is kept beside it.
    assert tool.usage is not None
    assert (tool.usage.input_tokens, tool.usage.output_tokens) == (392, 134)
    assert tool.attributes["response.invocation.output_tokens"] == 90
    assert tool.attributes["response.first_byte_latency_ms"] == 779
    assert tool.response_model == "claude-3-5-sonnet-20240620" and tool.finish_reasons == ["tool_use"]


@pytest.mark.parametrize(("name", "number"), [(n, i) for n, i in EXCHANGES if not load_bedrock(n, i).streamed])
def test_a_plain_recorded_response_gives_its_usage_or_its_error(name, number):
    recording = load_bedrock(name, number)
    endpoint = endpoint_of(recording)
    # A stream route answered with plain JSON (an error) is no stream.
    assert endpoint.api.stream_framer(recording.response_headers["content-type"].lower(), endpoint) is None
    result = endpoint.api.parse_response(recording.response_body, recording.response_headers)
    if recording.status >= 400:
        assert (result.error_type, result.usage) == ("ValidationException", None)
        return
    body = json.loads(recording.response_body)
    usage = body["usage"]
    uncached = usage.get("inputTokens", usage.get("input_tokens"))
    assert result.usage is not None
    assert (result.usage.input_tokens, result.usage.output_tokens) == (
        uncached,
        usage.get("outputTokens", usage.get("output_tokens")),
    )
    header_input = recording.response_headers.get("x-amzn-bedrock-input-token-count")
    assert header_input is None or int(header_input) == result.usage.input_tokens
    assert result.finish_reasons == [body.get("stopReason") or body.get("stop_reason")]


def test_requests_of_recordings_are_read():
    converse = bedrock_converse.API.parse_request(load_bedrock("test_converse_stream_with_content").request_body)
    recorded = json.loads(load_bedrock("test_converse_stream_with_content").request_body)["inferenceConfig"]
    assert (converse.max_tokens, converse.temperature, converse.top_p) == (
        recorded["maxTokens"],
        recorded["temperature"],
        recorded["topP"],
    )
    claude = load_bedrock("test_invoke_model_with_content[anthropic.claude]").request_body
    request = bedrock_invoke.API.parse_request(claude)
    assert request.max_tokens == json.loads(claude)["max_tokens"] and request.model is None


def test_streamed_output_and_tool_calls_are_captured():
    recording = load_bedrock("test_converse_stream_tool_call_parsing_errors", 0)
    stream = streamed_result(recording, split_randomly(recording.response_body, seed=1, largest=200), capture=True)
    messages = json.loads(stream.accumulator.output_messages() or "[]")
    kinds = [part["type"] for part in messages[0]["parts"]]
    assert "tool_call" in kinds and messages[0]["finish_reason"] == "tool_use"
    call = next(part for part in messages[0]["parts"] if part["type"] == "tool_call")
    assert call["id"].startswith("tooluse_") and json.loads(call["arguments"])
    claude = load_bedrock("test_invoke_model_with_response_stream_with_content_tool_call[anthropic.claude]", 0)
    streamed = json.loads(
        streamed_result(claude, [claude.response_body], capture=True).accumulator.output_messages() or "[]"
    )
    assert any(part["type"] == "tool_call" and part["id"].startswith("toolu_bdrk_") for part in streamed[0]["parts"])
    captured = bedrock_converse.API.captured_input(recording.request_body)
    assert captured.input_messages and "user" in captured.input_messages


# --- what the recordings do not show ------------------------------------------------------


def converse_stream(*messages: bytes) -> ApiResult:
    endpoint = Endpoint(bedrock_converse.API, model="m", streamed=True)
    framer = bedrock_converse.API.stream_framer(CONVERSE_STREAM, endpoint)
    return observed(
        EventStream(None, bedrock_converse.API.stream_accumulator(0.0), framer), [b"".join(messages)]
    ).accumulator.result


def test_an_exception_message_mid_stream_is_the_calls_error():
    result = converse_stream(
        eventstream.event("messageStart", {"role": "assistant"}),
        eventstream.event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hi"}}),
        eventstream.exception("modelStreamErrorException", "the model stopped"),
    )
    assert result.error_type == "modelStreamErrorException"


def test_cache_writes_are_split_by_ttl_and_the_service_tier_is_read():
    usage = {
        "inputTokens": 10,
        "outputTokens": 5,
        "totalTokens": 1315,
        "cacheReadInputTokens": 100,
        "cacheWriteInputTokens": 1200,
        "cacheDetails": [{"inputTokens": 1000, "ttl": "1h"}, {"inputTokens": 200, "ttl": "5m"}],
    }
    result = converse_stream(
        eventstream.event("messageStop", {"stopReason": "end_turn"}),
        eventstream.event(
            "metadata", {"usage": usage, "metrics": {"latencyMs": 80}, "serviceTier": {"type": "priority"}}
        ),
    )
    assert result.usage == Usage(
        input_tokens=1310,
        output_tokens=5,
        cache_read_tokens=100,
        cache_write_tokens=1200,
        cache_write_5m_tokens=200,
        cache_write_1h_tokens=1000,
    )
    assert result.usage.total_tokens == usage["totalTokens"]
    assert (result.service_tier, result.finish_reasons) == ("priority", ["end_turn"])


def test_a_model_family_whose_body_has_no_usage_is_metered_from_the_headers():
    headers = {
        "x-amzn-bedrock-input-token-count": "31",
        "x-amzn-bedrock-output-token-count": "7",
        "x-amzn-requestid": "5c5f1a4e-0b1a-4d8e-9d7e-2b7d3c4f5a6b",
    }
    mistral = b'{"outputs": [{"text": "Bonjour", "stop_reason": "stop"}]}'
    result = bedrock_invoke.API.parse_response(mistral, headers)
    assert result.usage is not None
    assert (result.usage.input_tokens, result.usage.output_tokens) == (31, 7)
    llama = b'{"generation": "Hi", "prompt_token_count": 12, "generation_token_count": 3, "stop_reason": "stop"}'
    assert bedrock_invoke.API.parse_response(llama, {}).usage == Usage(input_tokens=12, output_tokens=3)


def test_errors_come_from_the_error_type_header_else_the_body():
    throttled = {"x-amzn-errortype": "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/"}
    assert bedrock_converse.API.parse_response(b'{"message": "Too many requests"}', throttled).error_type == (
        "ThrottlingException"
    )
    typed = b'{"__type": "com.amazon.coral.validate#ValidationException", "message": "bad"}'
    assert bedrock_invoke.API.parse_response(typed, {}).error_type == "ValidationException"
    assert bedrock_converse.API.parse_response(b'{"message": "?"}', {}).error_type is None  # the status tells


def test_request_metadata_and_the_request_id_are_read_bounded():
    vendor = bedrock_converse.API.vendor
    tags = json.dumps({"team": "platform", "project": "x" * 400})
    found = vendor.request_attributes({"x-amzn-bedrock-request-metadata": tags})
    assert found["request.metadata"] == tags[:256]
    info = vendor.upstream({"x-amzn-requestid": "5c5f1a4e-0b1a-4d8e", "x-amzn-bedrock-invocation-latency": "412"}, 0)
    assert (info.request_id, info.processing_ms) == ("5c5f1a4e-0b1a-4d8e", 412.0)


def test_claude_on_vertex_reads_anthropics_dialect_with_the_model_from_the_path():
    body = json.dumps({"anthropic_version": "vertex-2023-10-16", "max_tokens": 64, "stream": True, "messages": []})
    endpoint = wire.endpoint_for(
        "POST",
        "/v1/projects/p/locations/global/publishers/anthropic/models/claude-sonnet-4-5@20250929:streamRawPredict",
    )
    assert endpoint is not None and endpoint.api is anthropic_messages.API
    request = endpoint.api.parse_request(body.encode())
    assert (request.model, request.max_tokens, request.stream) == (None, 64, True)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(STREAMED), st.integers(0, 2**32), st.integers(1, 64))
def test_any_split_of_any_recorded_stream_gives_the_whole_streams_result(exchange, seed, largest):
    recording = load_bedrock(*exchange)
    whole = streamed_result(recording, [recording.response_body]).accumulator.result
    pieces = split_randomly(recording.response_body, seed, largest)
    split = streamed_result(recording, pieces).accumulator.result
    assert (split.usage, split.finish_reasons, split.error_type) == (
        whole.usage,
        whole.finish_reasons,
        whole.error_type,
    )
