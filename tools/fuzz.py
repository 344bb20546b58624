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

from harness import eventstream
from wire import REGISTRY, openai_chat
from wire.call import Endpoint, WireApi
from wire.framing.codecs import DECODE_ERRORS
from wire.framing.sse import SSEFramer
from wire.headers import parse_request_headers
from wire.openai_chat import ChatStreamAccumulator
from wire.stream import EventStream, FilteredStream

# Every route of every registered API: a new API is fuzzed without a line here.
ENDPOINTS = [Endpoint(api, model="m", streamed=route.streamed) for route, api in REGISTRY.routes() if not route.socket]
STREAMED = [endpoint for endpoint in ENDPOINTS if endpoint.operation != "embeddings"]
SOCKET_APIS = list(dict.fromkeys(api for route, api in REGISTRY.routes() if route.socket))
CONTENT_TYPES = ["text/event-stream", "application/json", "application/x-ndjson", "application/vnd.amazon.eventstream"]

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
    b'{"model":"m","message":{"role":"assistant","content":"hi","thinking":"x"},"done":false}\n',
    b'{"done":true,"done_reason":"stop","prompt_eval_count":3,"eval_count":2,"load_duration":5}\n',
    b'{"error":"model not found"}\n',
    b'event: message-end\ndata: {"type":"message-end","delta":{"finish_reason":"COMPLETE","usage":',
    b'{"billed_units":{"input_tokens":4,"output_tokens":2},"tokens":{"input_tokens":70},"cached_tokens":9}}}',
    b'"x_groq":{"usage":{"prompt_tokens":3,"completion_tokens":1}}',
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
# Bedrock's binary event stream: well-formed messages (ConverseStream events, InvokeModel chunks
# with base64 Anthropic or Nova events, exceptions) around fragments, with bytes flipped.
_EVENT_STREAM_MESSAGES = st.one_of(
    st.builds(
        eventstream.event,
        st.sampled_from(["messageStart", "contentBlockStart", "contentBlockDelta", "messageStop", "metadata", "x"]),
        st.dictionaries(st.sampled_from(["delta", "usage", "stopReason", "start", "metrics"]), st.just({"text": "a"})),
    ),
    st.sampled_from(FRAGMENTS).map(lambda fragment: eventstream.chunk({"type": "message_delta", "raw": str(fragment)})),
    st.just(eventstream.chunk({"metadata": {"usage": {"inputTokens": 1, "outputTokens": 2}}})),
    st.just(eventstream.exception("throttlingException", "slow down")),
)


def _corrupted(messages: bytes, position: int) -> bytes:
    """One bit flipped at `position` (a length, a CRC, a header or the payload), if it is inside."""
    if position >= len(messages):
        return messages
    return messages[:position] + bytes([messages[position] ^ 1]) + messages[position + 1 :]


_EVENT_STREAMS = st.builds(
    _corrupted, st.lists(_EVENT_STREAM_MESSAGES, max_size=12).map(b"".join), st.integers(0, 8192)
)
payloads = st.one_of(
    st.binary(max_size=4096),
    st.lists(st.sampled_from(FRAGMENTS), max_size=60).map(b"".join),
    _EVENT_STREAMS,
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
        api.parse_response(data, {"x-amzn-bedrock-input-token-count": "3"})
        api.captured_input(data)
        api.captured_output(data)
        REGISTRY.key_masker.mask(data.decode("latin-1"))
        api.vendor.masked_key({"authorization": data.decode("latin-1")}, "", REGISTRY.key_masker)

    return run


def target_streams(counter: Counter) -> Callable[[], None]:
    @given(payloads, splits, st.sampled_from(STREAMED), st.booleans(), st.sampled_from(CONTENT_TYPES))
    def run(data: bytes, sizes: list[int], endpoint: Endpoint, capture: bool, content_type: str) -> None:
        counter.executions += 1
        api = endpoint.api
        framer = api.stream_framer(content_type, endpoint) or SSEFramer()
        observed = EventStream(None, api.stream_accumulator(0.0, capture), framer)
        if not isinstance(framer, SSEFramer):  # only an SSE stream is ever filtered
            for piece in pieces(data, sizes):
                observed.observe(piece, now=1.0)
            observed.finish(now=2.0)
            observed.accumulator.output_messages()
            return
        filtered = FilteredStream(None, api.usage_removed)
        sent: list[bytes] = []
        for piece in pieces(data, sizes):
            observed.observe(piece, now=1.0)
            sent += filtered.filter(piece)
        observed.finish(now=2.0)
        sent += filtered.filter(b"")
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
        except DECODE_ERRORS:
            pass  # not a valid compressed stream; the addon's tap then passes it through untouched
        filtered = FilteredStream(encoding, openai_chat.API.usage_removed)
        out = [chunk for piece in pieces(data, sizes) for chunk in filtered.filter(piece)]
        out += filtered.filter(b"")
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

    @given(frames, st.sampled_from(SOCKET_APIS), st.booleans())
    def run(messages: list[tuple[bool, bytes]], api: WireApi, capture: bool) -> None:
        counter.executions += 1
        session = api.socket_session("m", capture)
        assert session is not None
        for number, (from_client, content) in enumerate(messages):
            session.message(from_client, content, float(number), number)
        session.close(100.0, 100)

    return run


def target_headers(counter: Counter) -> Callable[[], None]:
    names = st.sampled_from(
        sorted(
            {
                "user-agent",
                "authorization",
                "x",
                *(name for vendor in REGISTRY.vendors for name in (*vendor.request_headers, *vendor.response_headers)),
            }
        )
    )

    @given(st.dictionaries(names, st.text(max_size=80), max_size=5), st.floats(0, 4e9))
    def run(headers: dict[str, str], now_s: float) -> None:
        counter.executions += 1
        request = parse_request_headers(headers)
        for vendor in REGISTRY.vendors:
            info = vendor.upstream(headers, now_s)
            key = vendor.masked_key(headers, "", REGISTRY.key_masker)
            found = vendor.request_attributes(headers)
            json.dumps([info.request_id, asdict(info.rate_limits), asdict(request), request.client.label, key, found])

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
