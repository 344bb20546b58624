"""`make fuzz`: a long property-based fuzz run of everything that parses network input.

Not part of `make test` (which runs the same properties briefly). Prints the executions reached
per target; the README records a run. Usage: python -m tools.fuzz [seconds per target, default 60]
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wire
from wire import gemini_embeddings, gemini_generate, openai_realtime, openai_responses, sse
from wire.call import Endpoint
from wire.headers import parse_request_headers, parse_upstream_headers
from wire.openai_chat import ChatStreamAccumulator
from wire.secrets import mask_api_key
from wire.stream import EventStream

ENDPOINTS = [
    *(Endpoint(api) for _, api in wire.ROUTES),
    Endpoint(gemini_generate.API, model="m", streamed=True),
    Endpoint(gemini_embeddings.API, model="e"),
]
STREAMED = [endpoint for endpoint in ENDPOINTS if endpoint.operation != "embeddings"]

# JSON-ish bytes reach deeper than uniform noise: fragments of real OpenAI, Anthropic and Gemini payloads, shuffled.
FRAGMENTS = [
    b'[{"candidates": [{"content": {"role": "model", "parts": [{"text": "hi \\" } {"}]}, "finishReason": "STOP"}]',
    b', "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2, "thoughtsTokenCount": 1,',
    b'"cachedContentTokenCount": 1, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 3}]}}',
    b'{"functionCall": {"name": "f", "args": {"a": [1, {"b": "}"}]}}}',
    b'"promptFeedback": {"blockReason": "SAFETY"}',
    b'{"error": {"code": 429, "status": "RESOURCE_EXHAUSTED"}}',
    b"\r\n,\r\n",
    b"\\",
    b"event: message_start\n",
    b'data: {"type":"message_start","message":{"id":"msg_1","model":"claude","usage":{"input_tokens":3,',
    b'"cache_read_input_tokens":2,"cache_creation":{"ephemeral_5m_input_tokens":1},"output_tokens":1}}}',
    b"event: content_block_delta\n",
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}   }',
    b'{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t","name":"f"}}',
    b'{"type":"input_json_delta","partial_json":"{\\"a\\":"}',
    b'data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":5}}',
    b"event: ping\n",
    b'data: {"type": "ping"}',
    b'{"type":"error","error":{"type":"overloaded_error"}}',
    b'{"choices":[',
    b'{"index":0,"delta":{"content":"hi"},"finish_reason":null}',
    b'],"usage":null}',
    b'"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}',
    b"data: ",
    b"event: response.completed\n",
    b'{"type":"response.completed","response":{"usage":{"input_tokens":1,"output_tokens":2}}}',
    b"data: [DONE]",
    b"\n\n",
    b"\r\n",
    b"\r",
    b": keep-alive\n",
    b'{"error":{"code":"x"}}',
    b"\xff\xfe",
    b"}",
    b"]",
    b'"',
]
payloads = st.one_of(
    st.binary(max_size=4096),
    st.lists(st.sampled_from(FRAGMENTS), max_size=60).map(b"".join),
)
splits = st.lists(st.integers(1, 64), min_size=1, max_size=64)


def pieces(data: bytes, sizes: list[int]) -> list[bytes]:
    out, position, i = [], 0, 0
    while position < len(data):
        size = sizes[i % len(sizes)]
        out.append(data[position : position + size])
        position, i = position + size, i + 1
    return out


class Counter:
    def __init__(self) -> None:
        self.executions = 0


def target_parsers(counter: Counter) -> Callable[[], None]:
    @given(payloads, st.sampled_from(ENDPOINTS))
    def run(data: bytes, endpoint: Endpoint) -> None:
        counter.executions += 1
        api = endpoint.api
        api.request_with_usage(data, api.parse_request(data))
        api.parse_response(data)
        api.captured_input(data)
        api.captured_output(data)
        mask_api_key(data.decode("latin-1"))

    return run


def target_streams(counter: Counter) -> Callable[[], None]:
    content_types = st.sampled_from(["text/event-stream", "application/json"])

    @given(payloads, splits, st.sampled_from(STREAMED), st.booleans(), content_types)
    def run(data: bytes, sizes: list[int], endpoint: Endpoint, capture: bool, content_type: str) -> None:
        counter.executions += 1
        api = endpoint.api
        framer = api.stream_framer(content_type, endpoint) or sse.SSEFramer()
        observed = EventStream(None, api.stream_accumulator(0.0, capture), framer)
        if not isinstance(framer, sse.SSEFramer):  # a JSON array is only observed, never filtered
            for piece in pieces(data, sizes):
                observed.observe(piece, now=1.0)
            observed.finish(now=2.0)
            observed.accumulator.output_messages()
            return
        filtered = EventStream(None, api.stream_accumulator(0.0, capture))
        sent: list[bytes] = []
        for piece in pieces(data, sizes):
            observed.observe(piece, now=1.0)
            sent += filtered.filter(piece, now=1.0)
        observed.finish(now=2.0)
        sent += filtered.filter(b"", now=2.0)
        observed.accumulator.output_messages()
        assert all(sent), "an empty chunk mid-stream would end the client's HTTP/1.1 body"
        if b"usage" not in data:
            assert b"".join(sent) == data, "the filter may only remove what include_usage added"

    return run


def target_compressed_streams(counter: Counter) -> Callable[[], None]:
    @given(payloads, splits, st.sampled_from(["gzip", "deflate", "br", "zstd"]))
    def run(data: bytes, sizes: list[int], encoding: str) -> None:
        counter.executions += 1
        stream = EventStream(encoding, ChatStreamAccumulator(0.0))
        try:
            for piece in pieces(data, sizes):
                stream.observe(piece, now=1.0)
        except sse.DECODE_ERRORS:
            pass  # not a valid compressed stream; the addon's tap then passes it through untouched
        filtered = EventStream(encoding, ChatStreamAccumulator(0.0))
        out = [chunk for piece in pieces(data, sizes) for chunk in filtered.filter(piece, now=1.0)]
        out += filtered.filter(b"", now=2.0)
        assert all(out)

    return run


SOCKET_FRAGMENTS = [
    b'{"type":"session.created","session":{"id":"s","model":"m","audio":{"output":{"voice":"v"}}}}',
    b'{"type":"response.create","response":{"output_modalities":["text"]},"model":"m","input":"x"}',
    b'{"type":"response.created","response":{"id":"r"}}',
    b'{"type":"response.output_audio.delta","response_id":"r","delta":"AAAA"}',
    b'{"type":"response.output_text.delta","delta":"hi"}',
    b'{"type":"response.done","response":{"id":"r","status":"failed","status_details":{"error":{"code":1}},',
    b'"usage":{"input_tokens":3,"input_token_details":{"cached_tokens_details":{"audio_tokens":9}}}}}',
    b'{"type":"response.completed","response":{"usage":{"input_tokens":1,"output_tokens":2}}}',
    b'{"type":"input_audio_buffer.committed","item_id":"i"}',
    b'{"type":"conversation.item.input_audio_transcription.completed","item_id":"i","usage":{"type":"duration"}}',
    b'{"type":"error","error":{"code":"x"}}',
    b'"response_id":',
    b"\xff",
]


def target_sockets(counter: Counter) -> Callable[[], None]:
    frames = st.lists(
        st.tuples(
            st.booleans(),
            st.one_of(st.binary(max_size=512), st.lists(st.sampled_from(SOCKET_FRAGMENTS), max_size=4).map(b"".join)),
        ),
        max_size=40,
    )

    @given(frames, st.sampled_from([openai_realtime.API, openai_responses.API]), st.booleans())
    def run(messages: list[tuple[bool, bytes]], api: wire.call.WireApi, capture: bool) -> None:
        counter.executions += 1
        session = api.socket_session("m", capture)
        assert session is not None
        for number, (from_client, content) in enumerate(messages):
            session.message(from_client, content, float(number), number)
        session.close(100.0, 100)

    return run


def target_headers(counter: Counter) -> Callable[[], None]:
    names = st.sampled_from(
        [
            "x-ratelimit-remaining-tokens",
            "x-ratelimit-reset-tokens",
            "x-request-id",
            "request-id",
            "openai-processing-ms",
            "anthropic-ratelimit-input-tokens-remaining",
            "anthropic-ratelimit-requests-reset",
            "anthropic-version",
            "anthropic-beta",
            "user-agent",
            "x",
        ]
    )

    @given(st.dictionaries(names, st.text(max_size=80), max_size=5), st.floats(0, 4e9))
    def run(headers: dict[str, str], now_s: float) -> None:
        counter.executions += 1
        info = parse_upstream_headers(headers, now_s)
        request = parse_request_headers(headers)
        json.dumps([info.request_id, asdict(info.rate_limits), asdict(request), request.client.label])

    return run


TARGETS = {
    "parsers": target_parsers,
    "streams": target_streams,
    "compressed streams": target_compressed_streams,
    "WebSocket sessions": target_sockets,
    "upstream headers": target_headers,
}


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    total = 0
    for name, build in TARGETS.items():
        counter = Counter()
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            test = build(counter)
            settings(
                max_examples=2000,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )(test)()
        print(f"{name:20s} {counter.executions:>9,} executions in {time.monotonic() - started:.0f}s, no failure")
        total += counter.executions
    print(f"{'total':20s} {total:>9,} executions")


if __name__ == "__main__":
    main()
