"""Google's generateContent dialect (Gemini API, Vertex AI) against every recorded exchange, the
JSON-array stream form, the routes, keys in the URL, and hostile input."""

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import wire
from harness.fake_google import GenerateScript, array_chunks
from harness.fake_openai import encode_whole
from harness.pieces import observed, split_randomly
from harness.recordings import GEMINI_NAMES, load_gemini
from wire import REGISTRY, gemini_embeddings, gemini_generate
from wire.framing.json_array import JSONArrayFramer
from wire.framing.sse import SSEFramer
from wire.records import Usage
from wire.stream import EventStream

API = gemini_generate.API
STREAMS = [n for n in GEMINI_NAMES if load_gemini(n).streamed]
PLAIN = [n for n in GEMINI_NAMES if not load_gemini(n).streamed]
ENCODINGS = ["gzip", "deflate", "br", "zstd"]
STREAM_ENDPOINT = wire.endpoint_for("POST", "/v1beta/models/gemini-2.5-flash:streamGenerateContent")


def chunks_of(body: bytes) -> list[dict[str, Any]]:
    """Every `data:` JSON of a recorded SSE stream, read with plain string handling."""
    return [json.loads(event[6:]) for event in body.decode().split("\r\n\r\n") if event.startswith("data: ")]


def expected_usage(metadata: dict[str, Any]) -> Usage:
    """The documented rule: input = prompt (cached included) + tool-use prompt; output =
    candidates + thoughts."""
    thoughts = metadata.get("thoughtsTokenCount")
    return Usage(
        input_tokens=metadata["promptTokenCount"] + metadata.get("toolUsePromptTokenCount", 0),
        output_tokens=metadata["candidatesTokenCount"] + (thoughts or 0),
        cache_read_tokens=metadata.get("cachedContentTokenCount"),
        reasoning_tokens=thoughts,
        input_modalities=tuple(
            (d["modality"].lower(), d["tokenCount"]) for d in metadata.get("promptTokensDetails", [])
        ),
        output_modalities=tuple(
            (d["modality"].lower(), d["tokenCount"]) for d in metadata.get("candidatesTokensDetails", [])
        ),
    )


def expected_of_stream(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """The last chunk with counts holds the usage; finish reasons from the candidates."""
    with_counts = [c["usageMetadata"] for c in chunks if "promptTokenCount" in c.get("usageMetadata", {})]
    reasons = [c["candidates"][0]["finishReason"].lower() for c in chunks if "finishReason" in c["candidates"][0]]
    return {
        "usage": expected_usage(with_counts[-1]),
        "id": chunks[-1]["responseId"],
        "model": chunks[-1]["modelVersion"],
        "finish": reasons[-1:],
    }


def run(framer: Any, pieces: list[bytes], encoding: str | None = None, capture: bool = False) -> EventStream:
    return observed(EventStream(encoding, API.stream_accumulator(0.0, capture), framer), pieces)


def assert_matches(stream: EventStream, chunks: list[dict[str, Any]]) -> None:
    expected = expected_of_stream(chunks)
    result = stream.accumulator.result
    assert result.usage == expected["usage"]
    assert (result.response_id, result.response_model) == (expected["id"], expected["model"])
    assert result.finish_reasons == expected["finish"]
    assert result.error_type is None


def as_array(chunks: list[dict[str, Any]]) -> bytes:
    """The same chunks as the JSON array `:streamGenerateContent` sends without `?alt=sse`."""
    return "".join(array_chunks(chunks)).encode()


# --- routes, hosts, keys ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "api", "model", "streamed"),
    [
        ("/v1beta/models/gemini-2.5-flash:generateContent", gemini_generate.API, "gemini-2.5-flash", False),
        (
            "/v1/models/gemini-2.5-pro:streamGenerateContent?alt=sse&key=AIzaX",
            gemini_generate.API,
            "gemini-2.5-pro",
            True,
        ),
        (
            "/v1beta1/projects/p-1/locations/us-central1/publishers/google/models/gemini-2.0-flash:generateContent",
            gemini_generate.API,
            "gemini-2.0-flash",
            False,
        ),
        ("/v1/projects/p/locations/global/publishers/google/models/m:streamGenerateContent", API, "m", True),
        ("/v1beta/models/text-embedding-004:embedContent", gemini_embeddings.API, "text-embedding-004", False),
        (
            "/v1beta/models/gemini-embedding-001:batchEmbedContents",
            gemini_embeddings.API,
            "gemini-embedding-001",
            False,
        ),
    ],
)
def test_google_routes_name_their_api_and_model(path, api, model, streamed):
    endpoint = wire.endpoint_for("POST", path)
    assert endpoint is not None
    assert (endpoint.api, endpoint.model, endpoint.streamed) == (api, model, streamed)
    assert "AIza" not in repr(endpoint)  # the query's key is not part of what is kept


def test_count_tokens_and_openai_routes_on_googles_host():
    assert wire.endpoint_for("POST", "/v1beta/models/gemini-2.5-flash:countTokens") is None
    assert wire.endpoint_for("GET", "/v1beta/models/gemini-2.5-flash:generateContent") is None
    compatible = wire.endpoint_for("POST", "/v1beta/openai/chat/completions")  # OpenAI's dialect: the route decides
    assert compatible is not None and compatible.api.name == "chat_completions"


def test_keys_in_a_header_or_in_the_query_are_masked_alike():
    key = "AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvW"
    assert REGISTRY.key_masker.masked_key_of({"x-goog-api-key": key}) == "AIza...tUvW"
    assert REGISTRY.key_masker.masked_key_of({}, f"alt=sse&key={key}") == "AIza...tUvW"
    assert REGISTRY.key_masker.masked_key_of({}, f"key={key}&alt=sse") == "AIza...tUvW"
    assert (
        REGISTRY.key_masker.masked_key_of({"authorization": "Bearer ya29.a0AfH6SMBxyzxyzxyzxyzxyz0123"})
        == "ya29....0123"
    )
    assert REGISTRY.key_masker.masked_key_of({}, "alt=sse&monkey=1") == "none"


# --- recorded exchanges (Vertex AI) --------------------------------------------------------


def test_the_recordings_cover_plain_and_streamed_calls_of_two_models():
    assert len(GEMINI_NAMES) == 28 and len(STREAMS) == 12 and len(PLAIN) == 16
    models = {json.loads(load_gemini(n).response_body).get("modelVersion") for n in PLAIN}
    assert models == {"gemini-1.5-flash-002", "gemini-2.5-flash"}


@pytest.mark.parametrize("name", PLAIN)
def test_plain_response_yields_its_recorded_usage_id_model_and_finish(name):
    recording = load_gemini(name)
    data = json.loads(recording.response_body)  # stored decoded, whatever its Content-Encoding says
    result = API.parse_response(recording.response_body)
    assert result.usage == expected_usage(data["usageMetadata"])
    assert (result.response_id, result.response_model) == (data["responseId"], data["modelVersion"])
    assert result.finish_reasons == [data["candidates"][0]["finishReason"].lower()]


def test_known_recordings_give_known_numbers():
    thinking = API.parse_response(
        load_gemini("test_non_streaming[logcontent-gemini-2.5-flash-vertexaiapi-sync]").response_body
    )
    data = json.loads(load_gemini("test_non_streaming[logcontent-gemini-2.5-flash-vertexaiapi-sync]").response_body)
    metadata = data["usageMetadata"]
    assert metadata["thoughtsTokenCount"] > 0  # thinking is billed as output
    assert thinking.usage is not None and thinking.usage.reasoning_tokens == metadata["thoughtsTokenCount"]
    assert thinking.usage.output_tokens == metadata["candidatesTokenCount"] + metadata["thoughtsTokenCount"]
    assert thinking.usage.total_tokens == metadata["totalTokenCount"]  # nothing counted twice
    old = API.parse_response(
        load_gemini("test_non_streaming[logcontent-gemini-1.5-flash-002-vertexaiapi-sync]").response_body
    )
    assert old.usage == Usage(
        input_tokens=8, output_tokens=211, input_modalities=(("text", 8),), output_modalities=(("text", 211),)
    )


@pytest.mark.parametrize("name", STREAMS)
def test_streams_whole_byte_by_byte_and_in_random_pieces(name):
    body = load_gemini(name).response_body
    chunks = chunks_of(body)
    assert_matches(run(SSEFramer(), [body]), chunks)
    assert_matches(run(SSEFramer(), [body[i : i + 1] for i in range(len(body))]), chunks)
    for seed in range(3):
        assert_matches(run(SSEFramer(), split_randomly(body, seed)), chunks)


@pytest.mark.parametrize("name", STREAMS)
def test_the_json_array_form_of_each_stream_gives_the_same(name):
    chunks = chunks_of(load_gemini(name).response_body)
    array = as_array(chunks)
    assert json.loads(array) == chunks  # it is the JSON array
    assert_matches(run(JSONArrayFramer(), [array]), chunks)
    assert_matches(run(JSONArrayFramer(), [array[i : i + 1] for i in range(len(array))]), chunks)
    for seed in range(3):
        assert_matches(run(JSONArrayFramer(), split_randomly(array, seed, largest=200)), chunks)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_compressed_streams_in_both_forms(encoding):
    body = load_gemini(STREAMS[0]).response_body
    chunks = chunks_of(body)
    for framer, raw in ((SSEFramer(), body), (JSONArrayFramer(), as_array(chunks))):
        encoded = encode_whole(raw, encoding)
        assert_matches(run(framer, split_randomly(encoded, 5, largest=64), encoding), chunks)


def test_lf_only_sse_reads_the_same():
    body = load_gemini(STREAMS[0]).response_body
    assert_matches(run(SSEFramer(), [body.replace(b"\r\n", b"\n")]), chunks_of(body))


def test_intermediate_usage_is_never_added_and_the_last_counts_win():
    script = GenerateScript("gemini-2.5-flash", {"contents": [{"parts": [{"text": "hi there"}]}]}, cached=3, thoughts=5)
    chunks = script.stream_chunks()
    partial = {"promptTokenCount": 1, "candidatesTokenCount": 1}  # a partial count on the way
    chunks[1]["usageMetadata"] = partial
    # A chunk after the last counts that carries none (`trafficType` alone) takes nothing away.
    chunks.append({"candidates": [{"content": {"parts": []}}], "usageMetadata": {"trafficType": "ON_DEMAND"}})
    stream = run(JSONArrayFramer(), [as_array(chunks)])
    assert stream.accumulator.result.usage == Usage(
        input_tokens=6 + 3,
        output_tokens=6 + 5,
        cache_read_tokens=3,
        reasoning_tokens=5,
        input_modalities=(("text", 9),),
        output_modalities=(("text", 6),),
    )


def test_first_chunk_is_the_first_with_output_and_each_chunk_is_timed():
    chunks = GenerateScript("m", {}).stream_chunks()
    opener = {
        "candidates": [{"content": {"role": "model", "parts": []}}],
        "usageMetadata": {"trafficType": "ON_DEMAND"},
    }
    pieces = [piece.encode() for piece in array_chunks([opener, *chunks])]
    stream = run(JSONArrayFramer(), pieces)
    accumulator = stream.accumulator
    assert accumulator.time_to_first_chunk == 2.0  # the opener (piece 1) carries nothing
    assert len(accumulator.chunk_intervals) == len(chunks) - 1


def test_errors_in_a_body_in_a_stream_and_blocked_prompts():
    error = b'{"error": {"code": 429, "message": "Resource exhausted", "status": "RESOURCE_EXHAUSTED"}}'
    assert API.parse_response(error).error_type == "RESOURCE_EXHAUSTED"
    chunks = GenerateScript("m", {}).stream_chunks(error="INTERNAL")
    assert run(JSONArrayFramer(), [as_array(chunks)]).accumulator.result.error_type == "INTERNAL"
    array_error = b"[" + error + b"]"  # an error answered in the stream's own form
    assert run(JSONArrayFramer(), [array_error]).accumulator.result.error_type == "RESOURCE_EXHAUSTED"
    blocked = b'{"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 7}}'
    result = API.parse_response(blocked)
    assert result.error_type == "SAFETY" and result.usage == Usage(input_tokens=7, output_tokens=0)


def test_request_attributes_from_generation_config():
    body = json.dumps(
        {
            "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
            "generationConfig": {
                "temperature": 0.3,
                "topP": 0.9,
                "topK": 40,
                "maxOutputTokens": 256,
                "stopSequences": ["END"],
                "candidateCount": 2,
                "seed": 7,
                "responseMimeType": "application/json",
                "thinkingConfig": {"thinkingBudget": 1024},
            },
        },
        indent=2,  # as the recorder wrote the recordings' request bodies
    ).encode()
    request = API.parse_request(body)
    assert (request.temperature, request.top_p, request.top_k, request.max_tokens) == (0.3, 0.9, 40, 256)
    assert (request.stop_sequences, request.choice_count, request.seed) == (["END"], 2, 7)
    assert (request.output_type, request.attributes, request.model) == (
        "json",
        {"request.thinking.budget_tokens": 1024},
        None,
    )


def test_content_capture_in_the_conventions_shape():
    body = json.dumps(
        {
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "contents": [
                {
                    "role": "user",
                    "parts": [{"text": "Weather?"}, {"inlineData": {"mimeType": "image/png", "data": "iVBOR"}}],
                },
                {"role": "model", "parts": [{"functionCall": {"name": "weather", "args": {"city": "Oslo"}}}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "weather", "response": {"t": 3}}}]},
            ],
        }
    ).encode()
    captured = API.captured_input(body)
    assert json.loads(captured.system_instructions or "") == [{"type": "text", "content": "Be brief."}]
    inputs = json.loads(captured.input_messages or "")
    assert [m["role"] for m in inputs] == ["user", "assistant", "user"]
    assert inputs[0]["parts"][1] == {"type": "image/png"} and "iVBOR" not in (captured.input_messages or "")
    assert inputs[1]["parts"][0]["type"] == "tool_call" and inputs[1]["parts"][0]["name"] == "weather"
    assert inputs[2]["parts"][0]["type"] == "tool_call_response"
    chunks = chunks_of(load_gemini(STREAMS[0]).response_body)
    stream = run(SSEFramer(), ["".join(f"data: {json.dumps(c)}\r\n\r\n" for c in chunks).encode()], capture=True)
    (message,) = json.loads(stream.accumulator.output_messages() or "")
    assert message["parts"][0]["content"] == "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks)
    assert message["finish_reason"] == "stop"


def test_embeddings_record_the_call_and_usage_only_where_reported():
    api = gemini_embeddings.API
    assert api.operation == "embeddings"
    assert api.parse_response(b'{"embedding": {"values": [0.1, 0.2]}}').usage is None
    assert api.parse_request(b'{"content": {"parts": [{"text": "a"}]}, "outputDimensionality": 64}').dimensions == 64
    with_usage = b'{"embeddings": [{"values": [0.1]}], "usageMetadata": {"promptTokenCount": 5}}'
    assert api.parse_response(with_usage).usage == Usage(input_tokens=5, output_tokens=0)


# --- hostile input ---------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000), st.integers(min_value=1, max_value=64))
def test_arbitrary_bytes_never_raise_in_either_framer(data, size):
    for framer in (SSEFramer(), JSONArrayFramer()):
        stream = EventStream(None, API.stream_accumulator(0.0, True), framer)
        for i in range(0, len(data), size):
            stream.observe(data[i : i + size], 1.0)
        stream.finish(2.0)
        stream.accumulator.output_messages()
    API.parse_response(data)
    API.parse_request(data)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(alphabet='{}[]"\\,: ab\n'),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
            max_leaves=10,
        ).map(lambda value: {"v": value}),
        max_size=6,
    ),
    st.integers(min_value=0, max_value=10_000),
)
def test_the_array_framer_returns_exactly_the_elements_however_the_bytes_are_cut(elements, seed):
    body = json.dumps(elements).encode()
    framer = JSONArrayFramer()
    out = [event for piece in split_randomly(body, seed, largest=17) for event in framer.feed(piece)]
    assert [json.loads(event.raw) for event in out] == elements


def test_each_streamed_candidate_keeps_its_own_finish_reason_and_candidate_0_is_kept():
    chunks = [
        {"candidates": [{"index": 0, "content": {"role": "model", "parts": [{"text": "A"}]}}]},
        {"candidates": [{"index": 1, "content": {"role": "model", "parts": [{"text": "B"}]}}]},
        {
            "candidates": [
                {"index": 1, "content": {"role": "model", "parts": [{"text": "b"}]}, "finishReason": "MAX_TOKENS"},
                {"index": 0, "content": {"role": "model", "parts": [{"text": "a"}]}, "finishReason": "STOP"},
            ]
        },
    ]
    body = "".join(f"data: {json.dumps(chunk)}\r\n\r\n" for chunk in chunks).encode()
    messages = json.loads(run(SSEFramer(), [body], capture=True).accumulator.output_messages() or "[]")
    assert [(m["parts"][0]["content"], m["finish_reason"]) for m in messages] == [("Aa", "stop"), ("Bb", "max_tokens")]


def test_a_role_is_bounded_like_every_label():
    body = json.dumps({"contents": [{"role": "x" * 500, "parts": [{"text": "hi"}]}]}).encode()
    (message,) = json.loads(gemini_generate.API.captured_input(body).input_messages or "[]")
    assert len(message["role"]) == 128


def test_the_tool_use_prompt_is_input_and_on_the_span_to_explain_it():
    """A call whose input is 40 times its prompt (Google's search results) can be explained."""
    body = {"usageMetadata": {"promptTokenCount": 10, "toolUsePromptTokenCount": 390, "candidatesTokenCount": 5}}
    result = gemini_generate.API.parse_response(json.dumps(body).encode())
    assert result.usage is not None and result.usage.input_tokens == 400
    assert result.attributes == {"usage.tool_use_prompt_tokens": 390}
