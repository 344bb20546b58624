"""Ollama's native API: every recorded exchange (tests/fixtures/recorded-ollama, httprr traces) fed
whole, byte by byte and in random pieces, and what the recordings do not show (a fully cached
prompt, the cached count, thinking, tool calls, an error line mid-stream)."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import wire
from harness.pieces import observed, split_randomly
from harness.recordings import OLLAMA_NAMES, HttprrExchange, load_ollama
from wire import ollama
from wire.framing.ndjson import NDJSONFramer
from wire.records import ApiResult, Usage
from wire.stream import EventStream


def path_of(exchange: HttprrExchange) -> str:
    return "/" + exchange.uri.split("/", 3)[3]


def read(exchange: HttprrExchange, pieces: list[bytes] | None = None, capture: bool = False) -> EventStream | ApiResult:
    endpoint = wire.endpoint_for("POST", path_of(exchange))
    assert endpoint is not None
    framer = endpoint.api.stream_framer(exchange.response_headers["content-type"].lower(), endpoint)
    if framer is None:
        return endpoint.api.parse_response(exchange.response_body, exchange.response_headers)
    stream = EventStream(None, endpoint.api.stream_accumulator(0.0, capture), framer)
    return observed(stream, pieces if pieces is not None else [exchange.response_body])


def last_line(exchange: HttprrExchange) -> dict:
    return json.loads(exchange.response_body.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("path", "api", "operation"),
    [
        ("/api/chat", "ollama_chat", "chat"),
        ("/api/generate", "ollama_generate", "text_completion"),
        ("/api/embed", "ollama_embed", "embeddings"),
        ("/api/embeddings", "ollama_embed", "embeddings"),
        ("/v1/chat/completions", "chat_completions", "chat"),  # Ollama's OpenAI-compatible surface
        ("/api/pull", None, None),
        ("/api/tags", None, None),
    ],
)
def test_routes(path, api, operation):
    endpoint = wire.endpoint_for("POST", path)
    assert (endpoint.api.name, endpoint.operation) == (api, operation) if endpoint else api is None


STREAMED = [n for n in OLLAMA_NAMES if load_ollama(n).status == 200 and "embed" not in load_ollama(n).uri]


@pytest.mark.parametrize("name", STREAMED)
@pytest.mark.parametrize("split", ["whole", "bytes", "random"])
def test_a_recorded_answer_gives_its_last_lines_counts_however_it_is_split(name, split):
    exchange = load_ollama(name)
    body = exchange.response_body
    pieces = {
        "whole": [body],
        "bytes": [body[i : i + 1] for i in range(len(body))],
        "random": split_randomly(body, seed=len(name), largest=60),
    }[split]
    stream = read(exchange, pieces)
    assert isinstance(stream, EventStream)
    result, final = stream.accumulator.result, last_line(exchange)
    assert result.usage == Usage(input_tokens=final["prompt_eval_count"], output_tokens=final["eval_count"])
    assert result.finish_reasons == [final["done_reason"]] and result.response_model == final["model"]
    assert result.error_type is None and stream.accumulator.done


def test_known_recordings_give_known_numbers_and_server_timings():
    cold = read(load_ollama("TestGenerateContent"))
    assert isinstance(cold, EventStream)
    attributes = cold.accumulator.result.attributes
    assert attributes["response.load_duration_s"] == pytest.approx(14.269781625)  # a cold model load
    assert attributes["response.time_to_first_token_s"] == pytest.approx(14.269781625 + 0.048032166)
    assert attributes["response.output_tokens_per_s"] == pytest.approx(203 / 1.062915917, rel=1e-9)
    cloud = read(load_ollama("TestCloudStreaming"), capture=True)
    assert isinstance(cloud, EventStream)
    assert cloud.accumulator.result.usage == Usage(input_tokens=74, output_tokens=57)
    assert set(cloud.accumulator.result.attributes) == {"response.total_duration_s"}  # the cloud sends no more
    messages = json.loads(cloud.accumulator.output_messages() or "[]")
    assert [part["type"] for part in messages[0]["parts"]] == ["reasoning", "text"]  # message.thinking first


def test_a_plain_answer_is_one_line_and_times_no_first_chunk():
    stream = read(load_ollama("TestClient_Generate"))
    assert isinstance(stream, EventStream)
    assert stream.accumulator.result.usage == Usage(input_tokens=15, output_tokens=65)
    assert stream.accumulator.time_to_first_chunk is None
    assert not ollama.GENERATE.parse_request(load_ollama("TestClient_Generate").request_body).stream


def test_streaming_is_the_default_and_a_stream_times_its_first_chunk():
    exchange = load_ollama("TestGenerateContent")
    assert b'"stream"' not in exchange.request_body
    request = ollama.CHAT.parse_request(exchange.request_body)
    assert request.stream and request.model == "gemma3:1b"
    lines = exchange.response_body.splitlines(keepends=True)
    stream = observed(EventStream(None, ollama.CHAT.stream_accumulator(0.0), NDJSONFramer()), lines)
    assert stream.accumulator.time_to_first_chunk == 1.0 and len(stream.accumulator.chunk_intervals) > 100


def test_embeddings_count_their_input_and_an_error_body_is_an_error():
    result = read(load_ollama("TestClient_CreateEmbedding"))
    assert isinstance(result, ApiResult)
    assert result.usage == Usage(input_tokens=last_line(load_ollama("TestClient_CreateEmbedding"))["prompt_eval_count"])
    refused = read(load_ollama("TestToolCall"))
    assert isinstance(refused, EventStream) and refused.accumulator.result.error_type == "error"


def lines(*objects: dict) -> bytes:
    return b"".join(json.dumps(item).encode() + b"\n" for item in objects)


def run(body: bytes, capture: bool = False) -> EventStream:
    return observed(EventStream(None, ollama.CHAT.stream_accumulator(0.0, capture), NDJSONFramer()), [body])


def test_a_fully_cached_prompt_has_no_input_count_and_is_not_zero():
    done = {"model": "m", "done": True, "done_reason": "stop", "eval_count": 5}
    assert run(lines(done)).accumulator.result.usage == Usage(input_tokens=None, output_tokens=5)
    cached = {**done, "prompt_eval_cached_count": 40}
    assert run(lines(cached)).accumulator.result.usage == Usage(input_tokens=40, output_tokens=5, cache_read_tokens=40)
    both = {**cached, "prompt_eval_count": 50}
    assert run(lines(both)).accumulator.result.usage == Usage(input_tokens=50, output_tokens=5, cache_read_tokens=40)


def test_tool_calls_thinking_and_an_error_line_mid_stream():
    body = lines(
        {"model": "m", "message": {"role": "assistant", "content": "", "thinking": "Let me"}, "done": False},
        {
            "model": "m",
            "message": {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"id": "call_1", "function": {"index": 0, "name": "now", "arguments": {"tz": "UTC"}}}],
            },
            "done": False,
        },
        {"error": "an error was encountered while running the model"},
    )
    stream = run(body, capture=True)
    assert stream.accumulator.result.error_type == "error"
    parts = json.loads(stream.accumulator.output_messages() or "[]")[0]["parts"]
    assert parts[0] == {"type": "reasoning", "content": "Let me"}
    assert (
        parts[1]["type"] == "tool_call"
        and parts[1]["name"] == "now"
        and json.loads(parts[1]["arguments"]) == {"tz": "UTC"}
    )


def test_request_options_are_read():
    body = {"model": "llama3.2", "options": {"num_predict": 50, "temperature": 0.2, "top_k": 3, "seed": 7, "stop": "x"}}
    request = ollama.CHAT.parse_request(json.dumps(body).encode())
    assert (request.max_tokens, request.temperature, request.top_k, request.seed, request.stop_sequences) == (
        50,
        0.2,
        3,
        7,
        ["x"],
    )


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(STREAMED), st.integers(0, 2**32), st.integers(1, 80))
def test_any_split_gives_the_whole_answers_result(name, seed, largest):
    exchange = load_ollama(name)
    whole, split = read(exchange), read(exchange, split_randomly(exchange.response_body, seed, largest))
    assert isinstance(whole, EventStream) and isinstance(split, EventStream)
    assert split.accumulator.result == whole.accumulator.result
