"""Cohere's v2 chat and embed: every recorded exchange (tests/fixtures/recorded-cohere), streams fed
whole, byte by byte and in random pieces, gzip bodies too; processed tokens against billed units;
the error inside a 200 stream."""

import gzip
import json
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import wire
from harness.pieces import observed, split_randomly
from wire import cohere
from wire.framing.sse import SSEFramer
from wire.records import ApiResult, Usage
from wire.stream import EventStream

FOLDER = Path(__file__).parent / "fixtures" / "recorded-cohere"


def exchanges() -> list[tuple[str, int, dict]]:
    found = []
    for path in sorted(FOLDER.glob("*.yaml")):
        interactions = yaml.safe_load(path.read_text())["interactions"]
        found += [(path.stem, number, interaction) for number, interaction in enumerate(interactions)]
    return found


EXCHANGES = exchanges()


def body_of(interaction: dict) -> tuple[bytes, str | None, str]:
    response = interaction["response"]
    body = response["body"]["string"]
    encoding = (response["headers"].get("content-encoding") or [None])[0]
    return (body if isinstance(body, bytes) else body.encode()), encoding, response["headers"]["content-type"][0]


def result_of(interaction: dict, pieces: int | None = None) -> ApiResult:
    body, encoding, content_type = body_of(interaction)
    if content_type.startswith("text/event-stream"):
        stream = EventStream(encoding, cohere.CHAT.stream_accumulator(0.0), SSEFramer())
        chunks = [body] if pieces is None else split_randomly(body, seed=pieces, largest=pieces)
        return observed(stream, chunks).accumulator.result
    return cohere.CHAT.parse_response(gzip.decompress(body) if encoding == "gzip" else body)


def recorded_usage(interaction: dict) -> dict:
    body, encoding, content_type = body_of(interaction)
    text = (gzip.decompress(body) if encoding == "gzip" else body).decode()
    if content_type.startswith("text/event-stream"):
        end = next(line for line in text.splitlines() if '"type":"message-end"' in line)
        return json.loads(end.removeprefix("data: "))["delta"]["usage"]
    return json.loads(text)["usage"]


def test_routes():
    chat, embed = wire.endpoint_for("POST", "/v2/chat"), wire.endpoint_for("POST", "/v2/embed")
    assert chat is not None and chat.api is cohere.CHAT
    assert embed is not None and embed.api is cohere.EMBED
    assert wire.endpoint_for("POST", "/v2/rerank") is None


@pytest.mark.parametrize(("name", "number", "interaction"), EXCHANGES, ids=[f"{n}-{i}" for n, i, _ in EXCHANGES])
@pytest.mark.parametrize("pieces", [None, 1, 37])
def test_every_recording_gives_its_processed_tokens_and_billed_units(name, number, interaction, pieces):
    result = result_of(interaction, pieces)
    usage = recorded_usage(interaction)
    if not usage:  # the error inside a 200 stream
        assert (result.usage, result.error_type, result.finish_reasons) == (None, "INVALID_TOOL_GENERATION", ["error"])
        return
    tokens, billed = usage["tokens"], usage["billed_units"]
    assert result.usage is not None and result.billed_usage is not None
    assert (result.usage.input_tokens, result.usage.output_tokens) == (tokens["input_tokens"], tokens["output_tokens"])
    assert (result.billed_usage.input_tokens, result.billed_usage.output_tokens) == (
        billed["input_tokens"],
        billed["output_tokens"],
    )
    assert result.usage.cache_read_tokens == usage.get("cached_tokens")
    assert result.attributes["usage.billed_units.input_tokens"] == billed["input_tokens"]
    assert result.error_type is None and result.finish_reasons


def test_known_numbers_of_a_reasoning_model_with_a_tool_call():
    ((_, _, interaction),) = [e for e in EXCHANGES if e[0] == "test_command_a_reasoning_with_tool_call"]
    result = result_of(interaction)
    assert result.usage == Usage(input_tokens=1494, output_tokens=330, cache_read_tokens=1008)
    assert result.billed_usage == Usage(input_tokens=80, output_tokens=301)
    assert result.finish_reasons == ["tool_call"]


def test_a_streamed_answer_is_timed_and_captured():
    ((_, _, interaction),) = [e for e in EXCHANGES if e[0] == "test_streaming_tool_call"]
    body, _, _ = body_of(interaction)
    stream = observed(EventStream(None, cohere.CHAT.stream_accumulator(0.0, True), SSEFramer()), [body])
    assert stream.accumulator.time_to_first_chunk == 1.0 and stream.accumulator.done
    parts = json.loads(stream.accumulator.output_messages() or "[]")[0]["parts"]
    call = next(part for part in parts if part["type"] == "tool_call")
    assert call["name"] and json.loads(call["arguments"])


def test_requests_are_read():
    body = {"model": "command-a-03-2025", "stream": True, "max_tokens": 99, "p": 0.9, "k": 4, "temperature": 0.3}
    request = cohere.CHAT.parse_request(json.dumps(body).encode())
    assert (request.model, request.stream, request.max_tokens, request.top_p, request.top_k) == (
        "command-a-03-2025",
        True,
        99,
        0.9,
        4,
    )


def test_embeddings_read_their_billed_units():
    body = {"id": "e1", "embeddings": {"float": [[0.1]]}, "meta": {"billed_units": {"input_tokens": 7}}}
    result = cohere.EMBED.parse_response(json.dumps(body).encode())
    assert result.usage == Usage(input_tokens=7) and result.billed_usage == Usage(input_tokens=7)


STREAMS = [(n, i, x) for n, i, x in EXCHANGES if body_of(x)[2].startswith("text/event-stream")]


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(STREAMS), st.integers(1, 64))
def test_any_split_of_any_recorded_stream_gives_the_whole_streams_result(exchange, largest):
    _, _, interaction = exchange
    assert result_of(interaction, largest) == result_of(interaction)
