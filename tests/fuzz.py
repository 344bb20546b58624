"""`make fuzz`: a long property-based fuzz run of everything that parses network input.

Not part of `make test` (which runs the same properties briefly). Prints the executions reached
per target; the README records a run. Usage: python -m tests.fuzz [seconds per target, default 60]
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import protocol
import sse
from protocol import EventStream

ENDPOINTS = [
    protocol.Endpoint("chat", "chat_completions"),
    protocol.Endpoint("chat", "responses"),
    protocol.Endpoint("text_completion", "completions"),
    protocol.Endpoint("embeddings", "embeddings"),
]

# JSON-ish bytes reach deeper than uniform noise: fragments of real OpenAI payloads, shuffled.
FRAGMENTS = [
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
    def run(data: bytes, endpoint: protocol.Endpoint) -> None:
        counter.executions += 1
        protocol.parse_request(endpoint, data)
        protocol.parse_response(endpoint, data)
        protocol.request_with_include_usage(data, protocol.parse_request(endpoint, data))
        protocol.error_type_for_status(500, data)
        protocol.captured_input(endpoint, data)
        protocol.captured_output(endpoint, data)
        protocol.mask_api_key(data.decode("latin-1"))

    return run


def target_streams(counter: Counter) -> Callable[[], None]:
    @given(payloads, splits, st.sampled_from(ENDPOINTS[:3]), st.booleans())
    def run(data: bytes, sizes: list[int], endpoint: protocol.Endpoint, capture: bool) -> None:
        counter.executions += 1
        observed = EventStream(None, protocol.stream_accumulator(endpoint, 0.0, capture))
        filtered = EventStream(None, protocol.stream_accumulator(endpoint, 0.0, capture))
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
        stream = EventStream(encoding, protocol.ChatStreamAccumulator(0.0))
        try:
            for piece in pieces(data, sizes):
                stream.observe(piece, now=1.0)
        except sse.DECODE_ERRORS:
            pass  # not a valid compressed stream; the addon's tap then passes it through untouched
        filtered = EventStream(encoding, protocol.ChatStreamAccumulator(0.0))
        out = [chunk for piece in pieces(data, sizes) for chunk in filtered.filter(piece, now=1.0)]
        out += filtered.filter(b"", now=2.0)
        assert all(out)

    return run


def target_headers(counter: Counter) -> Callable[[], None]:
    names = st.sampled_from(
        ["x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens", "x-request-id", "openai-processing-ms", "x"]
    )

    @given(st.dictionaries(names, st.text(max_size=80), max_size=5))
    def run(headers: dict[str, str]) -> None:
        counter.executions += 1
        info = protocol.parse_upstream_headers(headers)
        json.dumps(info.request_id)

    return run


TARGETS = {
    "parsers": target_parsers,
    "streams": target_streams,
    "compressed streams": target_compressed_streams,
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
