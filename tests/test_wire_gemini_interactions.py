"""Google's Interactions API: every recorded exchange (tests/fixtures/recorded-interactions: a create,
a background create fetched as a stream, a stream that ends in an error, an unknown id), streams fed
whole, byte by byte and in random pieces; Vertex AI's camelCase; the older event names."""

import json

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import wire
from harness.pieces import observed, split_randomly
from harness.recordings import FIXTURES
from wire import gemini_interactions
from wire.call import Endpoint
from wire.framing.sse import SSEFramer
from wire.records import ApiResult, Usage
from wire.stream import EventStream

FOLDER = FIXTURES / "recorded-interactions"


def exchange(name: str, number: int = 0) -> tuple[str, str, int, str, bytes]:
    """Method, path, status, content type and body of one recorded exchange."""
    interaction = yaml.safe_load((FOLDER / f"{name}.yaml").read_text())["interactions"][number]
    request, response = interaction["request"], interaction["response"]
    headers = {k.lower(): v[0] for k, v in response["headers"].items()}
    return (
        request["method"],
        request["uri"].split("googleapis.com", 1)[1],
        response["status"]["code"],
        headers["content-type"],
        response["body"]["string"].encode(),
    )


def read(name: str, number: int = 0, pieces: list[bytes] | None = None, capture: bool = False) -> ApiResult:
    method, path, _, content_type, body = exchange(name, number)
    endpoint = wire.endpoint_for(method, path)
    assert endpoint is not None
    framer = endpoint.api.stream_framer(content_type.lower(), endpoint)
    if framer is None:
        return endpoint.api.parse_response(body)
    stream = EventStream(None, endpoint.api.stream_accumulator(0.0, capture), framer)
    return observed(stream, pieces if pieces is not None else [body]).accumulator.result


@pytest.mark.parametrize(
    ("method", "path", "api", "operation"),
    [
        ("POST", "/v1beta/interactions", "interactions", "chat"),
        ("POST", "/v1beta1/projects/p/locations/global/interactions", "interactions", "chat"),
        ("GET", "/v1beta/interactions/v1_abc?stream=true", "interactions.get", "fetch_response"),
        ("POST", "/v1beta/interactions/v1_abc:cancel", None, None),
        ("GET", "/v1beta/interactions", None, None),
    ],
)
def test_routes(method, path, api, operation):
    endpoint = wire.endpoint_for(method, path)
    assert (endpoint.api.name, endpoint.operation) == (api, operation) if endpoint else api is None


def test_a_create_counts_thought_tokens_as_output_beside_the_output():
    result = read("test_async_interactions_create")
    # total 978 = input 10 + output 133 + thought 835: thought is not a part of total_output_tokens.
    assert result.usage == Usage(
        input_tokens=10,
        output_tokens=133 + 835,
        cache_read_tokens=0,
        reasoning_tokens=835,
        input_modalities=(("text", 10),),
    )
    assert (result.response_model, result.finish_reasons, result.service_tier) == (
        "gemini-2.5-flash",
        ["stop"],
        "standard",
    )


@pytest.mark.parametrize("split", ["whole", "bytes", "random"])
def test_a_background_interaction_has_its_usage_in_the_stream_a_fetch_reads(split):
    background = read("test_sync_interactions_get_streaming", 0)
    assert background.usage is None and background.response_id  # `in_progress`, no usage yet
    body = exchange("test_sync_interactions_get_streaming", 1)[4]
    pieces = {"whole": [body], "bytes": [body[i : i + 1] for i in range(len(body))], "random": split_randomly(body, 5)}[
        split
    ]
    fetched = read("test_sync_interactions_get_streaming", 1, pieces)
    assert fetched.usage == Usage(
        input_tokens=9,
        output_tokens=820 + 838,
        cache_read_tokens=0,
        reasoning_tokens=838,
        input_modalities=(("text", 9),),
    )
    assert fetched.response_id == background.response_id and fetched.error_type is None


def test_an_error_event_inside_a_200_stream_and_an_error_body():
    assert read("test_sync_interactions_get_stream_error", 1).error_type == "service_unavailable"
    assert read("test_sync_interactions_get_invalid_id").error_type == "invalid_request"


def test_a_stream_is_timed_at_its_first_text_and_its_text_captured():
    body = exchange("test_sync_interactions_get_streaming", 1)[4]
    events = [event + b"\n\n" for event in body.split(b"\n\n") if event.strip()]
    endpoint = Endpoint(gemini_interactions.FETCH)
    stream = observed(EventStream(None, gemini_interactions.FETCH.stream_accumulator(0.0, True), SSEFramer()), events)
    assert stream.accumulator.time_to_first_chunk == float(
        next(i for i, event in enumerate(events) if b'"text"' in event) + 1
    )
    (message,) = json.loads(stream.accumulator.output_messages() or "[]")
    assert message["parts"][0]["content"].startswith("# Venturing into the Void")
    assert endpoint.operation == "fetch_response"


def test_vertex_ai_camel_case_and_the_older_event_names():
    usage = {"totalInputTokens": 20, "totalCachedTokens": 12, "totalOutputTokens": 5, "totalThoughtTokens": 3}
    events = [
        ("interaction.start", {"interaction": {"id": "v1_x", "model": "gemini-3-pro", "status": "in_progress"}}),
        ("content.delta", {"delta": {"type": "text", "text": "Hi"}}),
        ("interaction.complete", {"interaction": {"id": "v1_x", "status": "completed", "usage": usage}}),
    ]
    body = "".join(f"event: {kind}\ndata: {json.dumps(data)}\n\n" for kind, data in events).encode()
    stream = observed(EventStream(None, gemini_interactions.API.stream_accumulator(0.0), SSEFramer()), [body])
    result = stream.accumulator.result
    assert result.usage == Usage(input_tokens=20, output_tokens=8, cache_read_tokens=12, reasoning_tokens=3)
    assert stream.accumulator.done and stream.accumulator.time_to_first_chunk == 1.0


def test_requests_are_read():
    body = {"model": "gemini-3-flash", "input": "hi", "stream": True, "previous_interaction_id": "v1_prev"}
    body["generation_config"] = {"temperature": 0.3, "max_output_tokens": 256}
    request = gemini_interactions.API.parse_request(json.dumps(body).encode())
    assert (request.model, request.stream, request.temperature, request.max_tokens, request.previous_response_id) == (
        "gemini-3-flash",
        True,
        0.3,
        256,
        "v1_prev",
    )


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 80))
def test_any_split_gives_the_whole_streams_result(seed, largest):
    body = exchange("test_sync_interactions_get_streaming", 1)[4]
    assert read("test_sync_interactions_get_streaming", 1, split_randomly(body, seed, largest)) == read(
        "test_sync_interactions_get_streaming", 1
    )
