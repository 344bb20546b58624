"""Load generator for benchmarks, run as its own process: raw asyncio HTTP/1.1 with keep-alive.

Prints one JSON object: request latencies, per-chunk delays (receipt minus the upstream's send
time stamped in each event), client time to first chunk, errors and the elapsed time.
Run: python -m bench.loadgen PORT CONCURRENCY REQUESTS MODE [key=value ...]
MODE: plain | stream | mixed (every other request streams). Keys: chunks, delay_ms,
event_bytes, include_usage (0/1), timeout (s per request), api (openai | anthropic | bedrock: the
request's wire API; bedrock's is ConverseStream, AWS's binary event stream).
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from typing import Any

SENT = re.compile(rb'"(?:content|text)":"(\d+) ([0-9.]+)')
END_OF_CHUNKED = b"\r\n0\r\n\r\n"


def request_bytes(stream: bool, options: dict[str, str]) -> bytes:
    anthropic, bedrock = options.get("api") == "anthropic", options.get("api") == "bedrock"
    body: dict[str, object] = {
        "model": "claude-sonnet-4-6" if anthropic else "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Say this is a test"}],
    }
    if anthropic:
        body["max_tokens"] = 1024
    if bedrock:
        body = {"messages": [{"role": "user", "content": [{"text": "Say this is a test"}]}]}
    elif stream:
        body["stream"] = True
        if options.get("include_usage") == "1":
            body["stream_options"] = {"include_usage": True}
    payload = json.dumps(body).encode()
    extra = "".join(
        f"x-bench-{name.replace('_', '-')}: {options[name]}\r\n"
        for name in ("chunks", "delay_ms", "event_bytes")
        if name in options
    )
    if bedrock:
        operation = "converse-stream" if stream else "converse"
        route = f"POST /model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/{operation} HTTP/1.1\r\n"
        route += "host: bedrock-runtime.us-east-1.amazonaws.com\r\n"
        scope = "20261204/us-east-1/bedrock/aws4_request"
        key = f"authorization: AWS4-HMAC-SHA256 Credential=AKIABENCH00000000000/{scope}\r\n"
    elif anthropic:
        route = "POST /v1/messages HTTP/1.1\r\nhost: api.anthropic.com\r\nanthropic-version: 2023-06-01\r\n"
        key = "x-api-key: sk-ant-api03-bench-000000000000000000000000\r\n"
    else:
        route = "POST /v1/chat/completions HTTP/1.1\r\nhost: api.openai.com\r\n"
        key = "authorization: Bearer sk-bench-0000000000000000000000000000\r\n"
    head = f"{route}content-type: application/json\r\n{key}{extra}content-length: {len(payload)}\r\n\r\n"
    return head.encode() + payload


async def one_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes, stream: bool, result: dict[str, Any]
) -> None:
    started = time.monotonic()
    writer.write(data)
    head = await reader.readuntil(b"\r\n\r\n")
    if b" 200 " not in head.split(b"\r\n", 1)[0]:
        raise ConnectionError(head.split(b"\r\n", 1)[0].decode())
    if not stream:
        length = int(re.search(rb"content-length: *(\d+)", head, re.I).group(1))  # type: ignore[union-attr]
        await reader.readexactly(length)
    else:
        buffer = b""
        first = True
        while not buffer.endswith(END_OF_CHUNKED):
            piece = await reader.read(65536)
            if not piece:
                raise ConnectionError("closed mid-stream")
            now = time.monotonic()
            for _, sent in SENT.findall(piece):
                result["chunk_delays"].append(now - float(sent))
                if first:
                    result["ttfc"].append(now - started)
                    first = False
            buffer = buffer[-8:] + piece
    result["latencies"].append(time.monotonic() - started)


async def connection(port: int, jobs: asyncio.Queue[bool], options: dict[str, str], result: dict[str, Any]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    timeout = float(options.get("timeout", "30"))
    plain, streamed = request_bytes(False, options), request_bytes(True, options)
    try:
        while True:
            try:
                stream = jobs.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                await asyncio.wait_for(
                    one_request(reader, writer, streamed if stream else plain, stream, result), timeout
                )
            except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, ValueError) as error:
                result["errors"].append(str(error)[:200])
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
    finally:
        writer.close()


async def main(port: int, concurrency: int, requests: int, mode: str, options: dict[str, str]) -> dict[str, Any]:
    jobs: asyncio.Queue[bool] = asyncio.Queue()
    for i in range(requests):
        jobs.put_nowait(mode == "stream" or (mode == "mixed" and i % 2 == 1))
    result: dict[str, Any] = {"latencies": [], "chunk_delays": [], "ttfc": [], "errors": []}
    started = time.monotonic()
    await asyncio.gather(*(connection(port, jobs, options, result) for _ in range(concurrency)))
    result["elapsed"] = time.monotonic() - started
    return result


if __name__ == "__main__":
    port, concurrency, requests, mode = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    options = dict(argument.split("=", 1) for argument in sys.argv[5:])
    print(json.dumps(asyncio.run(main(port, concurrency, requests, mode, options))))
