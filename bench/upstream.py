"""A fast fake upstream for benchmarks: asyncio, plain HTTP/1.1, precomputed answers. OpenAI's
chat completions, Anthropic's Messages API on `/v1/messages` (streams with `event:` lines,
padded JSON, a ping and cumulative usage, as the real API sends them), and Bedrock's
ConverseStream on `/model/{model}/converse-stream` (AWS's binary event stream).

Every streamed event carries the moment it was sent (`time.monotonic()`, one clock for all
processes on the machine) in its content, so the load generator can measure per-chunk delay.
Request headers set the shape: `x-bench-chunks` (default 200), `x-bench-delay-ms` (default 10),
`x-bench-event-bytes` (pad each event to about this size). Run: python -m bench.upstream PORT
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from harness import eventstream

USAGE = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}
PLAIN = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "This is a test."}, "finish_reason": "stop"}
        ],
        "usage": USAGE,
    },
    separators=(",", ":"),
).encode()
HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: %s\r\nx-request-id: req_bench\r\nx-ratelimit-remaining-tokens: 999\r\n"


def event(sequence: int, padding: str, include_usage: bool) -> bytes:
    content = f"{sequence} {time.monotonic():.9f} {padding}"
    chunk: dict[str, object] = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}],
    }
    if include_usage:
        chunk["usage"] = None
    return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"


def anthropic_event(kind: str, data: dict[str, object]) -> bytes:
    return b"event: %s\ndata: %s        }\n\n" % (kind.encode(), json.dumps(data, separators=(",", ":")).encode()[:-1])


ANTHROPIC_USAGE = {"input_tokens": 12, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
ANTHROPIC_HEAD = [
    anthropic_event(
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_bench",
                "model": "claude-sonnet-4-6",
                "usage": {**ANTHROPIC_USAGE, "output_tokens": 1},
            },
        },
    ),
    anthropic_event(
        "content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}}
    ),
    b'event: ping\ndata: {"type": "ping"}\n\n',
]


def anthropic_delta(sequence: int, padding: str) -> bytes:
    text = f"{sequence} {time.monotonic():.9f} {padding}"
    return anthropic_event(
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
    )


def anthropic_tail(chunks: int) -> bytes:
    usage = {**ANTHROPIC_USAGE, "output_tokens": chunks}
    return (
        anthropic_event("content_block_stop", {"type": "content_block_stop", "index": 0})
        + anthropic_event(
            "message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": usage}
        )
        + anthropic_event("message_stop", {"type": "message_stop"})
    )


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            headers = {}
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
            request_line = head.split(b"\r\n", 1)[0]
            anthropic = b" /v1/messages " in request_line
            if b"/converse-stream " in request_line:
                await bedrock_stream(writer, headers)
            elif b'"stream":true' in body.replace(b" ", b""):
                include_usage = b'"include_usage":true' in body.replace(b" ", b"")
                await stream(writer, headers, include_usage=include_usage, anthropic=anthropic)
            else:
                writer.write(HEAD % b"application/json" + b"content-length: %d\r\n\r\n" % len(PLAIN) + PLAIN)
                await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def stream(
    writer: asyncio.StreamWriter, headers: dict[bytes, bytes], include_usage: bool, anthropic: bool
) -> None:
    chunks = int(headers.get(b"x-bench-chunks", b"200"))
    delay = int(headers.get(b"x-bench-delay-ms", b"10")) / 1000
    padding = "x" * max(int(headers.get(b"x-bench-event-bytes", b"0")) - 200, 0)
    writer.write(HEAD % b"text/event-stream" + b"transfer-encoding: chunked\r\n\r\n")
    if anthropic:
        writer.write(chunk(b"".join(ANTHROPIC_HEAD)))
    for sequence in range(chunks):
        if delay and sequence:
            await asyncio.sleep(delay)
        writer.write(
            chunk(anthropic_delta(sequence, padding) if anthropic else event(sequence, padding, include_usage))
        )
        if delay or sequence % 64 == 0:
            await writer.drain()
    if anthropic:
        writer.write(chunk(anthropic_tail(chunks)) + b"0\r\n\r\n")
        await writer.drain()
        return
    if include_usage:
        usage = {"id": "chatcmpl-bench", "model": "gpt-4o-mini-2024-07-18", "choices": [], "usage": USAGE}
        writer.write(chunk(b"data: " + json.dumps(usage, separators=(",", ":")).encode() + b"\n\n"))
    writer.write(chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
    await writer.drain()


def bedrock_delta(sequence: int, padding: str) -> bytes:
    text = f"{sequence} {time.monotonic():.9f} {padding}"
    return eventstream.event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": text}, "p": "abcdefgh"})


BEDROCK_USAGE = {"inputTokens": 12, "cacheReadInputTokens": 0, "cacheWriteInputTokens": 0}


async def bedrock_stream(writer: asyncio.StreamWriter, headers: dict[bytes, bytes]) -> None:
    chunks = int(headers.get(b"x-bench-chunks", b"200"))
    delay = int(headers.get(b"x-bench-delay-ms", b"10")) / 1000
    padding = "x" * max(int(headers.get(b"x-bench-event-bytes", b"0")) - 200, 0)
    writer.write(HEAD % b"application/vnd.amazon.eventstream" + b"transfer-encoding: chunked\r\n\r\n")
    writer.write(chunk(eventstream.event("messageStart", {"role": "assistant"})))
    for sequence in range(chunks):
        if delay and sequence:
            await asyncio.sleep(delay)
        writer.write(chunk(bedrock_delta(sequence, padding)))
        if delay or sequence % 64 == 0:
            await writer.drain()
    usage = {**BEDROCK_USAGE, "outputTokens": chunks, "totalTokens": 12 + chunks}
    tail = eventstream.event("messageStop", {"stopReason": "end_turn"}) + eventstream.event(
        "metadata", {"usage": usage, "metrics": {"latencyMs": 10}}
    )
    writer.write(chunk(tail) + b"0\r\n\r\n")
    await writer.drain()


async def main(port: int) -> None:
    server = await asyncio.start_server(serve, "127.0.0.1", port, backlog=1024)
    print(f"upstream listening at 127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
