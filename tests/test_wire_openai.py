"""OpenAI's wire APIs (chat completions, completions, Responses, embeddings) against the recorded
exchanges and hostile input."""

import gzip
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import wire
from harness.fake_openai import FIXTURES, ChatScript, encode_whole, load_fixture
from harness.pieces import observed, split_randomly
from wire import openai_chat, openai_embeddings, openai_responses, values
from wire.call import Endpoint
from wire.content import MAX_PART_CHARS, TRUNCATED, CapturedContent
from wire.framing import codecs
from wire.hosts import parse_host_rule
from wire.openai_chat import ChatStreamAccumulator, request_with_include_usage
from wire.openai_responses import ResponsesStreamAccumulator
from wire.records import Usage
from wire.stream import EventStream, FilteredStream
from wire.values import LARGE_BODY, MAX_LABEL_LENGTH

CHAT_FIXTURES = sorted(p.stem for p in FIXTURES.glob("test_chat_completion*.yaml"))
ENCODINGS = ["gzip", "deflate", "br", "zstd"]


def is_stream(name: str) -> bool:
    return load_fixture(name)["response"]["headers"]["Content-Type"][0].startswith("text/event-stream")


STREAM_FIXTURES = [n for n in CHAT_FIXTURES if is_stream(n)]
PLAIN_FIXTURES = [n for n in CHAT_FIXTURES if not is_stream(n)]


def body_of(name: str) -> bytes:
    return load_fixture(name)["response"]["body"]["string"].encode()


def expected_from_stream_text(text: str) -> dict:
    """Usage, id and finish reasons read from a recorded stream with plain string handling."""
    chunks = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]
    usage = next((c["usage"] for c in chunks if c.get("usage")), None)
    reasons = {}
    for c in chunks:
        for choice in c["choices"]:
            if choice.get("finish_reason"):
                reasons[choice["index"]] = choice["finish_reason"]
    return {"id": chunks[0]["id"], "usage": usage, "finish_reasons": [reasons[i] for i in sorted(reasons)]}


CHAT = Endpoint(openai_chat.API)
RESPONSES = Endpoint(openai_responses.API)


def error_type_of(endpoint: Endpoint, status: int, body: bytes) -> str:
    """`error.type` of a failed plain response: the API's error code, else the status."""
    return endpoint.api.parse_response(body).error_type or str(status)


def chat_stream(encoding: str | None = None, started: float = 0.0) -> EventStream:
    return EventStream(encoding, ChatStreamAccumulator(started))


def stripped(encoding: str | None = None) -> FilteredStream:
    """A chat stream as the client gets it when the addon asked for include_usage."""
    return FilteredStream(encoding, CHAT.api.usage_removed)


def run_stream(pieces: list[bytes], encoding: str | None = None, endpoint: Endpoint = CHAT) -> EventStream:
    return observed(EventStream(encoding, endpoint.api.stream_accumulator(0.0)), pieces)


def assert_matches_recording(stream: EventStream, text: str) -> None:
    expected = expected_from_stream_text(text)
    result = stream.accumulator.result
    assert result.response_id == expected["id"]
    assert result.finish_reasons == expected["finish_reasons"]
    if expected["usage"] is None:
        assert result.usage is None
    else:
        assert result.usage is not None
        assert result.usage.input_tokens == expected["usage"]["prompt_tokens"]
        assert result.usage.output_tokens == expected["usage"]["completion_tokens"]
        assert result.usage.total_tokens == expected["usage"]["total_tokens"]


# --- recorded exchanges -------------------------------------------------------------------


def test_the_fixtures_cover_plain_streamed_and_failed_calls():
    assert len(STREAM_FIXTURES) >= 6 and len(PLAIN_FIXTURES) >= 10
    assert "test_chat_completion_404" in PLAIN_FIXTURES


@pytest.mark.parametrize("name", PLAIN_FIXTURES)
def test_plain_response_yields_its_recorded_usage_ids_and_finish_reasons(name):
    recorded = json.loads(body_of(name))
    result = CHAT.api.parse_response(body_of(name))
    if "error" in recorded:
        assert result.usage is None
        assert result.error_type == recorded["error"]["code"]
        return
    assert result.response_id == recorded["id"]
    assert result.response_model == recorded["model"]
    assert result.finish_reasons == [c["finish_reason"] for c in recorded["choices"]]
    assert result.usage == Usage(
        input_tokens=recorded["usage"]["prompt_tokens"],
        output_tokens=recorded["usage"]["completion_tokens"],
        cache_read_tokens=recorded["usage"].get("prompt_tokens_details", {}).get("cached_tokens"),
        reasoning_tokens=recorded["usage"].get("completion_tokens_details", {}).get("reasoning_tokens"),
    )


def test_a_known_recording_gives_known_numbers():
    """Spot check against the values visible in the cassette, independent of any parser."""
    stream = run_stream([body_of("test_chat_completion_streaming")])
    result = stream.accumulator.result
    assert result.response_id == "chatcmpl-ASYMZ4oSykiIFK4lXLReDiKyAjsQl"
    assert result.response_model == "gpt-4-0613"
    assert result.usage == Usage(input_tokens=12, output_tokens=5, cache_read_tokens=0, reasoning_tokens=0)
    assert result.finish_reasons == ["stop"]
    assert stream.accumulator.done


@pytest.mark.parametrize("name", STREAM_FIXTURES)
@pytest.mark.parametrize("split", ["whole", "bytes", "random"])
def test_stream_yields_recorded_usage_however_it_is_split(name, split):
    body = body_of(name)
    pieces = {"whole": [body], "bytes": [body[i : i + 1] for i in range(len(body))], "random": split_randomly(body, 7)}
    assert_matches_recording(run_stream(pieces[split]), body.decode())


@pytest.mark.parametrize("name", STREAM_FIXTURES)
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_compressed_stream_yields_recorded_usage(name, encoding):
    body = body_of(name)
    compressed = encode_whole(body, encoding)
    assert compressed != body
    assert_matches_recording(run_stream(split_randomly(compressed, 3), encoding), body.decode())


@pytest.mark.parametrize("name", STREAM_FIXTURES)
@pytest.mark.parametrize("newline", ["\r\n", "\r"])
def test_stream_with_other_line_endings_yields_recorded_usage(name, newline):
    text = body_of(name).decode()
    converted = text.replace("\n", newline).encode()
    assert_matches_recording(run_stream(split_randomly(converted, 11)), text)


def test_raw_deflate_without_zlib_header_is_decoded():
    body = body_of("test_chat_completion_streaming")
    compressor = __import__("zlib").compressobj(wbits=-15)
    raw = compressor.compress(body) + compressor.flush()
    assert_matches_recording(run_stream(split_randomly(raw, 5), "deflate"), body.decode())


def test_unknown_or_stacked_encoding_is_left_alone():
    assert not chat_stream("gzip, br", started=0).decodable
    assert not chat_stream("compress", started=0).decodable
    assert chat_stream(None, started=0).decodable
    for encoding in ("gzip, br", "compress"):  # the strip passes such a stream on as it comes
        strip = stripped(encoding)
        assert strip.filter(b"data: {}") == [b"data: {}"] and strip.filter(b"") == []


# --- stream ends ---------------------------------------------------------------------


def test_an_unterminated_last_event_is_still_read_at_the_end():
    body = b'data: {"id":"x","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}'
    stream = run_stream([body])
    assert stream.accumulator.result.usage == Usage(input_tokens=3, output_tokens=4)


# --- timing -------------------------------------------------------------------------------


def test_first_chunk_is_the_first_with_content_not_the_role_opener():
    events = ChatScript({"model": "m", "stream": True}, chunks=3).stream_events()
    stream = chat_stream(None, started=10.0)
    for i, event in enumerate(events):
        stream.observe(event.encode(), now=11.0 + i)
    # event 0 is the role-only opener at t=11; the first content is event 1 at t=12
    assert stream.accumulator.time_to_first_chunk == 2.0
    assert list(stream.accumulator.chunk_intervals) == [1.0, 1.0]


def test_tool_call_deltas_count_as_output():
    stream = run_stream([body_of("test_chat_completion_multiple_tools_streaming_no_content")])
    assert stream.accumulator.time_to_first_chunk is not None
    assert stream.accumulator.result.finish_reasons == ["tool_calls"]


# --- include_usage rewrite and strip ------------------------------------------------------


def test_include_usage_is_added_and_other_stream_options_are_kept():
    body = json.dumps({"model": "m", "stream": True, "stream_options": {"include_obfuscation": False}}).encode()
    rewritten = json.loads(request_with_include_usage(body, CHAT.api.parse_request(body)) or b"")
    assert rewritten["stream_options"] == {"include_obfuscation": False, "include_usage": True}
    assert rewritten["model"] == "m"


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1,2]", b'{"stream":"true"}', b'{"stream":false}', b'{"stream":true,"stream_options":"x"}', b""],
)
def test_include_usage_rewrite_refuses_what_it_cannot_safely_change(body):
    assert request_with_include_usage(body, CHAT.api.parse_request(body)) is None


@pytest.mark.parametrize("encoding", ["identity", *ENCODINGS])
@pytest.mark.parametrize("chunk_size", [1, 7, 10_000])
def test_strip_gives_the_client_the_stream_it_would_get_without_include_usage(encoding, chunk_size):
    request = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    without = "".join(ChatScript(request, chunks=5).stream_events()).encode()
    with_usage = "".join(
        ChatScript({**request, "stream_options": {"include_usage": True}}, chunks=5).stream_events()
    ).encode()
    assert b'"usage":null' in with_usage and b'"choices":[]' in with_usage

    upstream = encode_whole(with_usage, encoding) if encoding != "identity" else with_usage
    stream = stripped(None if encoding == "identity" else encoding)
    sent = []
    for position in range(0, len(upstream), chunk_size):
        sent.extend(stream.filter(upstream[position : position + chunk_size]))
    sent.extend(stream.filter(b""))
    assert all(piece for piece in sent), "an empty chunk would end the HTTP/1.1 body early"
    received = b"".join(sent)
    if encoding != "identity":
        received = codecs.incremental_decoder(encoding)(received)  # type: ignore[misc]
    assert received == without
    assert run_stream([upstream], None if encoding == "identity" else encoding).accumulator.result.usage == Usage(
        input_tokens=9, output_tokens=5, cache_read_tokens=0, reasoning_tokens=0
    )  # 8 + one prompt word; 5 chunks


def test_strip_releases_each_event_as_soon_as_it_is_complete():
    events = ChatScript({"model": "m", "stream": True, "stream_options": {"include_usage": True}}).stream_events()
    stream = stripped()
    first = events[1].encode()
    assert stream.filter(first[:20]) == []
    (released,) = stream.filter(first[20:])
    assert released == first.replace(b',"usage":null', b"")


def test_azure_prompt_filter_chunk_is_not_mistaken_for_the_usage_chunk():
    azure_opening = b'data: {"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[]}\n\n'
    stream = stripped()
    assert stream.filter(azure_opening) == [azure_opening]


def test_an_error_inside_a_stream_sets_the_error_type():
    stream = run_stream([b'data: {"error":{"message":"slow down","type":"requests","code":"rate_limit_exceeded"}}\n\n'])
    assert stream.accumulator.result.error_type == "rate_limit_exceeded"


# --- requests, errors, hosts, keys --------------------------------------------------------


def test_request_parameters_are_read_from_a_recorded_request():
    request = json.loads(load_fixture("test_chat_completion_extra_params")["request"]["body"])
    parsed = CHAT.api.parse_request(json.dumps(request).encode())
    assert parsed.model == request["model"]
    assert parsed.seed == request.get("seed")
    assert parsed.temperature == request.get("temperature")
    assert parsed.max_tokens == request.get("max_tokens")
    assert parsed.service_tier == request.get("service_tier")
    assert parsed.stream is False


def test_request_parsing_normalizes_stop_and_output_type():
    parsed = CHAT.api.parse_request(
        b'{"model":"m","stop":"END","n":2,"stream":true,"response_format":{"type":"json_schema"},'
        b'"stream_options":{"include_usage":true},"max_completion_tokens":9}',
    )
    assert parsed.stop_sequences == ["END"]
    assert parsed.choice_count == 2
    assert parsed.output_type == "json"
    assert parsed.stream and parsed.include_usage
    assert parsed.max_tokens == 9


def test_hostile_model_names_are_length_capped():
    parsed = CHAT.api.parse_request(json.dumps({"model": "m" * 10_000}).encode())
    assert parsed.model is not None and len(parsed.model) == MAX_LABEL_LENGTH


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (429, b'{"error":{"message":"x","type":"requests","code":"rate_limit_exceeded"}}', "rate_limit_exceeded"),
        (400, b'{"error":{"message":"x","type":"invalid_request_error","code":null}}', "invalid_request_error"),
        (502, b"<html><body>Bad gateway</body></html>", "502"),
        (500, b"", "500"),
        (401, b'{"error":{"code":"bad code with spaces/and slashes"}}', "bad_code_with_spaces_and_slashes"),
    ],
)
def test_error_type_is_the_openai_code_else_the_status(status, body, expected):
    assert error_type_of(CHAT, status, body) == expected


@pytest.mark.parametrize(
    ("entry", "path", "expected"),
    [
        ("api.openai.com=openai", "/v1/chat/completions", True),
        ("api.openai.com=openai", "/v1/completions", True),
        ("api.openai.com=openai", "/v1/responses", False),  # always reports usage
        ("api.groq.com=groq", "/openai/v1/chat/completions", False),  # not known to accept it
        ("api.groq.com=groq;stream_usage=on", "/openai/v1/chat/completions", True),
        ("api.openai.com=openai;stream_usage=off", "/v1/chat/completions", False),
        ("*.openai.azure.com=azure.ai.openai", "/openai/deployments/d/chat/completions?api-version=2024-10-21", True),
        ("*.openai.azure.com=azure.ai.openai", "/openai/deployments/d/chat/completions?api-version=2024-06-01", False),
        ("*.openai.azure.com=azure.ai.openai", "/openai/deployments/d/chat/completions", False),
        ("*.openai.azure.com=azure.ai.openai", "/openai/v1/chat/completions", True),
        ("localhost:8000", "/v1/chat/completions", False),  # a bare entry: provider openai, no rewrite
        ("localhost:8000=openai", "/v1/chat/completions", False),  # not a host known to accept it
        ("localhost:8000;stream_usage=on", "/v1/chat/completions", True),
        ("myres.example.com=azure.ai.openai", "/openai/v1/chat/completions", False),  # not Azure's own host
    ],
)
def test_include_usage_is_added_only_where_the_server_is_known_to_accept_it(entry, path, expected):
    endpoint = wire.endpoint_for("POST", path)
    assert endpoint is not None
    assert endpoint.api.may_request_usage(parse_host_rule(entry), endpoint) is expected


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise_out_of_the_parsers(data):
    CHAT.api.parse_request(data)
    CHAT.api.parse_response(data)
    request_with_include_usage(data, CHAT.api.parse_request(data))
    error_type_of(CHAT, 500, data)
    for encoding in [None, *ENCODINGS]:  # corrupt compressed input ends the reading, silently
        stream = chat_stream(encoding, started=0)
        stream.observe(data, now=1)
        stream.observe(data, now=1.5)
        stream.finish(now=2)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_any_split_of_a_valid_stream_gives_the_same_result(data):
    name = data.draw(st.sampled_from(STREAM_FIXTURES))
    body = body_of(name)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=30)))
    pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    assert_matches_recording(run_stream(pieces), body.decode())


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_any_split_of_a_stripped_stream_gives_the_client_the_same_bytes(data):
    request = {"model": "m", "stream": True, "stream_options": {"include_usage": True}}
    upstream = "".join(ChatScript(request, chunks=data.draw(st.integers(1, 8))).stream_events()).encode()
    expected = re.sub(rb'data: \{[^\n]*"choices":\[\],"usage":\{[^\n]*\n\n', b"", upstream)
    expected = expected.replace(b',"usage":null', b"")
    cuts = sorted(data.draw(st.lists(st.integers(0, len(upstream)), max_size=20)))
    stream = stripped()
    out = []
    for a, b in zip([0, *cuts], [*cuts, len(upstream)], strict=True):
        if a < b:  # mitmproxy passes b"" only to mark the end of the body
            out.extend(stream.filter(upstream[a:b]))
    out.extend(stream.filter(b""))
    assert b"".join(out) == expected


def test_gzip_helper_round_trips():
    assert gzip.decompress(encode_whole(b"abc", "gzip")) == b"abc"


def test_corrupt_compressed_data_ends_the_reading_without_an_error():
    stream = chat_stream("gzip", started=0)
    stream.observe(b"\x1f\x8b\x08\x00 this is no deflate data at all", now=1)
    assert stream.decodable is False
    stream.observe(gzip.compress(b"data: {}\n\n"), now=2)  # not read any more
    stream.finish(now=3)
    assert stream.accumulator.result.usage is None


def test_corrupt_compressed_data_turns_the_strip_into_pass_through():
    stream = stripped("gzip")
    good = encode_whole(b'data: {"choices":[{"delta":{"content":"a"}}]}\n\ndata: {"cho', "gzip")[:-8]
    first = stream.filter(good)
    assert codecs.incremental_decoder("gzip")(b"".join(first)).startswith(b"data: {")  # type: ignore[misc]
    garbage = b"\x00not gzip at all"
    assert stream.filter(garbage)[-1] == garbage
    assert stream.filter(b"more") == [b"more"]


# --- Responses API, embeddings, legacy completions ----------------------------------------

RESPONSES_FIXTURES = sorted(p.stem for p in FIXTURES.glob("test_responses*.yaml"))
EMBEDDINGS_FIXTURES = sorted(p.stem for p in FIXTURES.glob("test_embeddings*.yaml"))
EMBEDDINGS = Endpoint(openai_embeddings.API)


def recorded_responses_usage(text: str) -> dict | None:
    """The usage of a recorded Responses body or stream, read with plain string handling."""
    if text.lstrip().startswith("{"):
        return json.loads(text).get("usage")
    completed = [line for line in text.splitlines() if line.startswith('data: {"type":"response.completed"')]
    return json.loads(completed[-1][6:])["response"]["usage"] if completed else None


def responses_usage(recorded: dict) -> Usage:
    return Usage(
        input_tokens=recorded["input_tokens"],
        output_tokens=recorded["output_tokens"],
        cache_read_tokens=recorded["input_tokens_details"]["cached_tokens"],
        reasoning_tokens=recorded["output_tokens_details"]["reasoning_tokens"],
    )


def test_the_responses_fixtures_cover_plain_streamed_reasoning_tools_and_errors():
    names = " ".join(RESPONSES_FIXTURES)
    assert all(word in names for word in ("streaming", "reasoning", "tool_call", "api_error"))


@pytest.mark.parametrize("name", RESPONSES_FIXTURES)
def test_responses_api_exchange_yields_its_recorded_usage(name):
    text = body_of(name).decode()
    recorded = recorded_responses_usage(text)
    if is_stream(name):
        result = run_stream(split_randomly(text.encode(), 5), endpoint=RESPONSES).accumulator.result
    else:
        result = RESPONSES.api.parse_response(text.encode())
    if recorded is None:
        assert result.usage is None and result.error_type == "model_not_found"
        return
    assert result.usage == responses_usage(recorded)
    assert result.response_id is not None and result.response_id.startswith("resp_")
    assert result.finish_reasons == (["tool_calls"] if "tool_call" in name else ["stop"])


def test_responses_reasoning_tokens_are_part_of_output():
    result = RESPONSES.api.parse_response(body_of("test_responses_create_reports_reasoning_tokens[content_mode0]"))
    assert result.usage == Usage(input_tokens=44, output_tokens=288, cache_read_tokens=0, reasoning_tokens=9)
    assert result.response_model is not None and result.response_model.startswith("gpt-5.4")


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_compressed_responses_stream_is_read(encoding):
    body = body_of("test_responses_create_streaming[content_mode0]")
    stream = run_stream(split_randomly(encode_whole(body, encoding), 9), encoding, RESPONSES)
    assert stream.accumulator.result.usage == Usage(
        input_tokens=22, output_tokens=6, cache_read_tokens=0, reasoning_tokens=0
    )
    assert stream.accumulator.done


def test_responses_first_chunk_is_the_first_delta_and_each_delta_is_a_chunk():
    events = sse_events_of(body_of("test_responses_create_streaming[content_mode0]"))
    stream = EventStream(None, ResponsesStreamAccumulator(started=0.0))
    for i, event in enumerate(events):
        stream.observe(event, now=float(i + 1))
    deltas = [i for i, e in enumerate(events) if e.startswith(b"event: response.output_text.delta")]
    assert stream.accumulator.time_to_first_chunk == float(deltas[0] + 1)
    assert len(stream.accumulator.chunk_intervals) == len(deltas) - 1


def sse_events_of(body: bytes) -> list[bytes]:
    return [event + b"\n\n" for event in body.split(b"\n\n") if event.strip()]


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (
            b'event: response.failed\ndata: {"type":"response.failed","response":{"id":"resp_1","status":"failed",'
            b'"error":{"code":"server_error","message":"x"}}}\n\n',
            "server_error",
        ),
        (
            b'event: error\ndata: {"type":"error","code":"rate_limit_exceeded","message":"slow down"}\n\n',
            "rate_limit_exceeded",
        ),
    ],
)
def test_errors_inside_a_responses_stream_set_the_error_type(event, expected):
    assert run_stream([event], endpoint=RESPONSES).accumulator.result.error_type == expected


def test_an_incomplete_response_reports_why():
    body = json.dumps(
        {
            "id": "resp_1",
            "status": "incomplete",
            "incomplete_details": {"reason": "max_output_tokens"},
            "usage": {"input_tokens": 5, "output_tokens": 16, "total_tokens": 21},
        }
    ).encode()
    result = RESPONSES.api.parse_response(body)
    assert result.finish_reasons == ["max_output_tokens"] and result.usage == Usage(input_tokens=5, output_tokens=16)


@pytest.mark.parametrize("name", EMBEDDINGS_FIXTURES)
def test_embeddings_exchange_yields_input_tokens_only(name):
    recorded = json.loads(body_of(name))
    result = EMBEDDINGS.api.parse_response(body_of(name))
    if "error" in recorded:
        assert result.error_type == recorded["error"]["code"] and result.usage is None
        return
    assert result.usage == Usage(input_tokens=recorded["usage"]["prompt_tokens"])
    assert result.response_model == recorded["model"]


def test_embeddings_request_parameters():
    body = load_fixture("test_embeddings_with_dimensions")["request"]["body"]
    request = EMBEDDINGS.api.parse_request(body.encode())
    assert request.model == "text-embedding-3-small" and request.dimensions == json.loads(body)["dimensions"]


def test_legacy_completion_streams_are_stripped_and_counted():
    request = {"model": "gpt-3.5-turbo-instruct", "prompt": "Say this is a test", "stream": True}
    asked = {**request, "stream_options": {"include_usage": True}}
    upstream = "".join(ChatScript(asked, legacy=True).stream_events()).encode()
    stream = stripped()
    sent = [piece for i in range(0, len(upstream), 17) for piece in stream.filter(upstream[i : i + 17])]
    sent += stream.filter(b"")
    assert b"".join(sent) == "".join(ChatScript(request, legacy=True).stream_events()).encode()
    counted = run_stream([upstream]).accumulator  # what the telemetry process reads
    assert counted.result.usage == Usage(
        input_tokens=13, output_tokens=4, cache_read_tokens=0, reasoning_tokens=0
    )  # 8 + 5 prompt words; 4 chunks
    assert counted.time_to_first_chunk == 1


def test_azure_opening_chunk_passes_and_azure_streams_are_counted():
    request = {
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    upstream = "".join(ChatScript(request, azure=True).stream_events()).encode()
    assert b"prompt_filter_results" in upstream
    stream = stripped()
    sent = b"".join(stream.filter(upstream) + stream.filter(b""))
    assert sent.startswith(b'data: {"choices":[],') and b"prompt_filter_results" in sent
    counted = run_stream([upstream]).accumulator.result  # what the telemetry process reads
    assert counted.usage is not None and counted.response_model == "gpt-4o-mini-2024-07-18"


# --- upstream headers ---------------------------------------------------------------------


def test_chat_input_becomes_system_instructions_and_messages():
    body = json.dumps(
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is in"},
                        {"type": "image_url", "image_url": {"url": "data:..."}},
                    ],
                },
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": "look", "arguments": "{}"}}
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "a cat"},
            ]
        }
    ).encode()
    content = CHAT.api.captured_input(body)
    assert json.loads(content.system_instructions or "") == [{"type": "text", "content": "Be brief."}]
    assert json.loads(content.input_messages or "") == [
        {"role": "user", "parts": [{"type": "text", "content": "What is in"}, {"type": "image_url"}]},
        {"role": "assistant", "parts": [{"type": "tool_call", "id": "call_1", "name": "look", "arguments": "{}"}]},
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_1", "response": "a cat"}]},
    ]


def test_responses_input_and_instructions():
    content = RESPONSES.api.captured_input(b'{"instructions":"Be brief.","input":"Say this is a test"}')
    assert json.loads(content.system_instructions or "") == [{"type": "text", "content": "Be brief."}]
    assert json.loads(content.input_messages or "") == [
        {"role": "user", "parts": [{"type": "text", "content": "Say this is a test"}]}
    ]


def test_plain_outputs_of_recordings_are_captured():
    chat = json.loads(CHAT.api.captured_output(body_of("test_chat_completion_tool_calls_no_content")) or "")
    assert chat[0]["finish_reason"] == "tool_calls"
    assert {part["type"] for part in chat[0]["parts"]} == {"tool_call"}
    responses = json.loads(RESPONSES.api.captured_output(body_of("test_responses_create_basic[content_mode0]")) or "")
    assert responses == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": responses[0]["parts"][0]["content"]}],
            "finish_reason": "stop",
        }
    ]
    assert responses[0]["parts"][0]["content"]


@pytest.mark.parametrize(
    ("name", "endpoint"),
    [
        ("test_chat_completion_streaming", CHAT),
        ("test_chat_completion_multiple_tools_streaming_with_content", CHAT),
        ("test_chat_completion_multiple_choices_streaming", CHAT),
        ("test_responses_create_streaming[content_mode0]", RESPONSES),
    ],
)
def test_streamed_output_is_reassembled_from_the_deltas(name, endpoint):
    text = body_of(name).decode()
    stream = EventStream(None, endpoint.api.stream_accumulator(0.0, capture_content=True))
    for piece in split_randomly(text.encode(), 13):
        stream.observe(piece, now=1)
    messages = json.loads(stream.accumulator.output_messages() or "")
    if endpoint == RESPONSES:
        assert messages[0]["parts"][0]["content"] == "This is a test."
        return
    chunks = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]
    for index, message in enumerate(messages):
        expected_text = "".join(
            c["choices"][0]["delta"].get("content") or ""
            for c in chunks
            if c["choices"] and c["choices"][0]["index"] == index
        )
        texts = [p["content"] for p in message["parts"] if p["type"] == "text"]
        assert texts == ([expected_text] if expected_text else [])
        calls = [p for p in message["parts"] if p["type"] == "tool_call"]
        for call in calls:
            assert json.loads(call["arguments"])  # arguments reassembled into valid JSON
            assert call["name"] and call["id"]


def test_captured_text_is_capped():
    content = CHAT.api.captured_input(json.dumps({"messages": [{"role": "user", "content": "x" * 100_000}]}).encode())
    (message,) = json.loads(content.input_messages or "")
    assert len(message["parts"][0]["content"]) == MAX_PART_CHARS + len(TRUNCATED)


def test_without_capture_no_output_is_kept():
    stream = run_stream([body_of("test_chat_completion_streaming")])
    assert stream.accumulator.output_messages() is None


def test_a_large_body_is_summarized_from_its_edges_without_a_full_parse(monkeypatch):
    embeddings = json.loads(body_of("test_embeddings_with_batch_input"))
    embeddings["data"] = embeddings["data"] * 40  # ~4 MB, like a real batch
    body = json.dumps(embeddings).encode()
    assert len(body) > LARGE_BODY

    def no_full_parse(*args):
        raise AssertionError("a large body must not be parsed whole")

    monkeypatch.setattr(values, "load_json_object", no_full_parse)
    result = EMBEDDINGS.api.parse_response(body)
    assert result.usage == Usage(input_tokens=embeddings["usage"]["prompt_tokens"])
    assert result.response_model == embeddings["model"]


def test_a_large_chat_body_keeps_its_id_and_usage():
    answer = {
        "id": "chatcmpl-big",
        "model": "gpt-4o",
        "choices": [{"index": 0, "message": {"content": "x" * 2_000_000}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 500_000, "total_tokens": 500_005},
    }
    result = CHAT.api.parse_response(json.dumps(answer).encode())
    assert (result.response_id, result.response_model, result.usage) == (
        "chatcmpl-big",
        "gpt-4o",
        Usage(input_tokens=5, output_tokens=500_000),
    )


@pytest.mark.parametrize("tail", [b"\n", b"\t", b"\r\n \n"])
def test_strip_mode_passes_a_trailing_fragment_that_is_not_an_event(tail):
    """Found by `make fuzz`: a whitespace-only remainder at the end was held back for good."""
    upstream = b"data: [DONE]\n\n" + tail
    stream = stripped()
    assert b"".join(stream.filter(upstream) + stream.filter(b"")) == upstream


def test_include_usage_is_inserted_and_the_clients_bytes_are_otherwise_kept():
    body = b'{ "model" : "gpt-4o",\n  "messages": [{"role": "user", "content": "h\\u00e9"}], "stream": true }'
    rewritten = request_with_include_usage(body, CHAT.api.parse_request(body))
    assert rewritten == b'{"stream_options":{"include_usage":true},' + body[1:]
    assert json.loads(rewritten)["stream_options"] == {"include_usage": True}


def big_request(**members) -> bytes:
    huge = [{"role": "user", "content": "word " * 400_000}]  # ~2 MB of prompt
    return json.dumps({"messages": huge, **members}).encode()


def test_a_large_request_is_read_and_rewritten_without_a_full_parse(monkeypatch):
    body = big_request(model="gpt-4o", stream=True, temperature=0.5)
    assert len(body) > LARGE_BODY

    def no_full_parse(*args):
        raise AssertionError("a large body must not be parsed whole")

    monkeypatch.setattr(values, "load_json_object", no_full_parse)
    request = CHAT.api.parse_request(body)
    assert (request.model, request.stream, request.temperature) == ("gpt-4o", True, 0.5)
    rewritten = request_with_include_usage(body, CHAT.api.parse_request(body))
    assert rewritten == b'{"stream_options":{"include_usage":true},' + body[1:]
    assert CHAT.api.captured_input(body) == CapturedContent()  # not captured: too large


def test_a_large_request_that_has_stream_options_is_left_alone():
    body = big_request(model="gpt-4o", stream=True, stream_options={"include_obfuscation": False})
    assert request_with_include_usage(body, CHAT.api.parse_request(body)) is None


def test_a_compressed_stream_that_is_only_watched_reads_its_usage():
    body = body_of("test_chat_completion_streaming")
    stream = run_stream([encode_whole(body, "gzip")], "gzip")
    assert stream.accumulator.result.usage == Usage(
        input_tokens=12, output_tokens=5, cache_read_tokens=0, reasoning_tokens=0
    )


# --- bodies passed on unparsed ------------------------------------------------------------


@pytest.mark.parametrize("name", STREAM_FIXTURES)
def test_usage_null_is_removed_wherever_it_stands_and_no_other_byte_changes(name):
    """The real API puts `"usage":null` before `"obfuscation"` (and other servers before `"choices"`):
    the strip takes exactly that member and its comma out of every chunk."""
    blocks = [event + b"\n\n" for event in body_of(name).split(b"\n\n") if event.strip()]
    with_null = [block for block in blocks if b'"usage":null' in block]
    for block in with_null:
        stripped = openai_chat.without_usage_null(block)
        original = json.loads(block[6:])
        del original["usage"]
        assert json.loads(stripped[6:]) == original
        assert list(json.loads(stripped[6:])) == list(original)  # member order kept
        assert len(block) - len(stripped) == len(b',"usage":null')


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        (b'data: {"id":"c","usage":null,"obfuscation":"x"}\n\n', b'data: {"id":"c","obfuscation":"x"}\n\n'),
        (b'data: {"usage":null,"id":"c"}\n\n', b'data: {"id":"c"}\n\n'),
        (b'data: {"id":"c", "usage" : null }\r\n\r\n', b'data: {"id":"c" }\r\n\r\n'),
        (b'data: {"d":{"usage":null},"usage":null,"e":1}\n\n', b'data: {"d":{"usage":null},"e":1}\n\n'),
        (b'data: {"d":"\\"usage\\":null","usage":null}\n\n', b'data: {"d":"\\"usage\\":null"}\n\n'),
        (b'data: {"usage":null}\n\n', b'data: {"usage":null}\n\n'),  # nothing else to keep: left alone
    ],
)
def test_usage_null_removal_is_exact(block, expected):
    assert openai_chat.without_usage_null(block) == expected


def test_cache_writes_and_modalities_are_read_in_both_usage_shapes():
    chat = {
        "prompt_tokens": 1200,
        "completion_tokens": 80,
        "prompt_tokens_details": {
            "cached_tokens": 600,
            "cache_write_tokens": 400,
            "audio_tokens": 50,
            "text_tokens": 1150,
        },
        "completion_tokens_details": {"reasoning_tokens": 30, "audio_tokens": 0, "text_tokens": 80},
    }
    usage = CHAT.api.parse_response(json.dumps({"id": "c", "usage": chat}).encode()).usage
    assert usage == Usage(
        input_tokens=1200,  # already includes the cache reads and writes: nothing is added
        output_tokens=80,
        cache_read_tokens=600,
        cache_write_tokens=400,
        reasoning_tokens=30,
        input_modalities=(("text", 1150), ("audio", 50)),
        output_modalities=(("text", 80),),  # a zero count says nothing: left out
    )
    responses = {
        "input_tokens": 900,
        "output_tokens": 10,
        "input_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 700},
        "output_tokens_details": {"reasoning_tokens": 4},
    }
    result = RESPONSES.api.parse_response(json.dumps({"id": "r", "status": "completed", "usage": responses}).encode())
    assert result.usage == Usage(
        input_tokens=900, output_tokens=10, cache_read_tokens=100, cache_write_tokens=700, reasoning_tokens=4
    )


def test_responses_tool_usage_counts_become_attributes_in_either_shape():
    usage = {
        "input_tokens": 50,
        "output_tokens": 5,
        "tool_usage": {
            "web_search": {"requests": 2, "sources": "many"},
            "file_search_calls": 1,
            "image_generation": None,
            "code_interpreter": [3],
        },
    }
    body = json.dumps({"id": "r", "status": "completed", "usage": usage}).encode()
    result = RESPONSES.api.parse_response(body)
    assert result.attributes == {"usage.tool_usage.web_search.requests": 2, "usage.tool_usage.file_search_calls": 1}
    assert result.usage == Usage(input_tokens=50, output_tokens=5)  # the counts add no tokens
    many = {"tool_usage": {f"tool_{number}": number + 1 for number in range(40)}}
    assert len(openai_responses.tool_usage(many["tool_usage"])) == 16


@pytest.mark.parametrize(
    "conversation", ['"conv_68966790a"', '{"id": "conv_68966790a"}', '{"id": "conv_68966790a", "metadata": {}}']
)
def test_responses_request_names_its_conversation_and_previous_response(conversation):
    body = (
        f'{{"model": "gpt-5", "conversation": {conversation}, "previous_response_id": "resp_0a1b", "input": "hi"}}'
    ).encode()
    request = openai_responses.API.parse_request(body)
    assert request.conversation_id == "conv_68966790a"
    assert request.previous_response_id == "resp_0a1b"
    plain = openai_responses.API.parse_request(b'{"model": "gpt-5", "input": "hi"}')
    assert plain.conversation_id is None and plain.previous_response_id is None
    # Chat completions have no conversation: a member of that name is not read as one.
    assert openai_chat.API.parse_request(b'{"model": "m", "conversation": "c", "messages": []}').conversation_id is None


# --- compatible hosts' own usage fields ----------------------------------------------------
# Rebuilt from each host's documented response shape (no recordings of these hosts are stored here).


def chat_answer(usage: dict) -> bytes:
    choice = {"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}
    return json.dumps(
        {"id": "x1", "object": "chat.completion", "model": "m", "choices": [choice], "usage": usage}
    ).encode()


@pytest.mark.parametrize(
    ("host", "usage", "cached"),
    [
        ("mistral", {"prompt_tokens": 120, "completion_tokens": 9, "total_tokens": 129, "num_cached_tokens": 96}, 96),
        (
            "deepseek",
            {
                "prompt_tokens": 120,
                "completion_tokens": 9,
                "total_tokens": 129,
                "prompt_cache_hit_tokens": 64,
                "prompt_cache_miss_tokens": 56,
            },
            64,
        ),
        ("together", {"prompt_tokens": 120, "completion_tokens": 9, "total_tokens": 129, "cached_tokens": 32}, 32),
        (
            "databricks",
            {"prompt_tokens": 120, "completion_tokens": 9, "total_tokens": 129, "cache_read_input_tokens": 100},
            100,
        ),
        (
            "openai",
            {
                "prompt_tokens": 120,
                "completion_tokens": 9,
                "prompt_tokens_details": {"cached_tokens": 8},
                "cached_tokens": 5,
            },
            8,
        ),
    ],
)
def test_compatible_hosts_cached_input_is_read_as_part_of_the_input(host, usage, cached):
    result = openai_chat.API.parse_response(chat_answer(usage))
    assert result.usage == Usage(input_tokens=120, output_tokens=9, cache_read_tokens=cached)


def test_groq_streams_its_usage_in_x_groq():
    chunks = [
        {"id": "c1", "model": "llama-3.3-70b", "choices": [{"index": 0, "delta": {"content": "Hi"}}]},
        {
            "id": "c1",
            "model": "llama-3.3-70b",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "x_groq": {"id": "req_1", "usage": {"queue_time": 0.02, "prompt_tokens": 18, "completion_tokens": 9}},
        },
    ]
    body = b"".join(f"data: {json.dumps(chunk)}\n\n".encode() for chunk in chunks) + b"data: [DONE]\n\n"
    assert run_stream([body]).accumulator.result.usage == Usage(input_tokens=18, output_tokens=9)


def test_a_stream_that_ends_without_done_is_counted_and_done_at_its_usage():
    """The Hugging Face router's streams end without `data: [DONE]`."""
    chunks = [
        {"id": "c1", "model": "m", "choices": [{"index": 0, "delta": {"content": "Hi"}}]},
        {
            "id": "c1",
            "model": "m",
            "choices": [],
            "usage": {"prompt_tokens": 7, "completion_tokens": 1, "cached_tokens": 0},
        },
    ]
    stream = run_stream([b"".join(f"data: {json.dumps(chunk)}\n\n".encode() for chunk in chunks)])
    assert stream.accumulator.result.usage == Usage(input_tokens=7, output_tokens=1, cache_read_tokens=0)
    assert stream.accumulator.done


def test_openrouter_reports_its_own_cost_and_keeps_the_usage_of_a_chunk_with_an_error():
    usage = {"prompt_tokens": 30, "completion_tokens": 4, "total_tokens": 34, "cost": 0.00042, "is_byok": False}
    result = openai_chat.API.parse_response(chat_answer({**usage, "cost_details": {"upstream_inference_cost": None}}))
    assert result.attributes["usage.reported_cost_usd"] == 0.00042
    failing = {
        "id": "c1",
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}],
        "error": {"code": 502, "message": "upstream failed"},
        "usage": usage,
    }
    stream = run_stream([f"data: {json.dumps(failing)}\n\n".encode()])
    assert stream.accumulator.result.error_type == "502"
    assert stream.accumulator.result.usage == Usage(input_tokens=30, output_tokens=4)


def test_a_compaction_is_a_metered_call_with_its_cache_writes():
    """`POST /v1/responses/compact` answers a `response.compaction` with the Responses API's usage;
    `input_tokens_details.cache_write_tokens` (GPT-5.6 and later) is a part of the input."""
    endpoint = wire.endpoint_for("POST", "/v1/responses/compact")
    assert endpoint is not None and endpoint.api is openai_responses.COMPACT
    usage = {
        "input_tokens": 9000,
        "input_tokens_details": {"cached_tokens": 6000, "cache_write_tokens": 2500},
        "output_tokens": 700,
        "output_tokens_details": {"reasoning_tokens": 300},
        "total_tokens": 9700,
    }
    body = {"id": "cmp_1", "object": "response.compaction", "created_at": 1, "output": [], "usage": usage}
    result = endpoint.api.parse_response(json.dumps(body).encode())
    assert result.usage == Usage(
        input_tokens=9000, output_tokens=700, cache_read_tokens=6000, cache_write_tokens=2500, reasoning_tokens=300
    )
    assert result.attributes == {"gen_ai.conversation.compacted": True}
    assert wire.endpoint_for("POST", "/v1/responses").api is openai_responses.API  # type: ignore[union-attr]
