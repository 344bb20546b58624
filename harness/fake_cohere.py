"""What the fake upstream answers to Cohere's v2 API (`POST /v2/chat`, `/v2/embed`), as
api.cohere.com does: `usage` with the processed `tokens` (a preamble of 66 tokens the model reads
and nobody is billed for) and the `billed_units`; a stream of `message-start`, `content-start`,
paced `content-delta`s, `content-end`, `message-end` with the usage, then a bare `data: [DONE]`;
errors as `{"id": …, "message": …}`. Knobs: `x-fake-chunks`, `x-fake-chunk-delay-ms`,
`x-fake-error: STATUS`.
"""

from __future__ import annotations

import json
from typing import Any

WORDS = ["Hello", " from", " a", " fake", " Cohere", "."]
PREAMBLE = 66


def is_cohere(path: str) -> bool:
    return path.partition("?")[0].rstrip("/").endswith(("/v2/chat", "/v2/embed"))


def billed_input(request: dict[str, Any]) -> int:
    words = 0
    for message in request.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        words += len(str(content).split()) if isinstance(content, str) else 0
    for text in request.get("texts") or []:
        words += len(str(text).split())
    return words


def usage(request: dict[str, Any], output: int) -> dict[str, Any]:
    billed = billed_input(request)
    return {
        "billed_units": {"input_tokens": billed, "output_tokens": output},
        "tokens": {"input_tokens": billed + PREAMBLE, "output_tokens": output},
    }


def sse(kind: str, data: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data}, separators=(',', ':'))}\n\n"


def answer(path: str, body: bytes, headers: dict[str, str], number: int) -> tuple[int, str, bytes | list[str]]:
    request = json.loads(body or b"{}")
    identifier = f"00000000-0000-4000-8000-{number:012d}"
    if "x-fake-error" in headers:
        error = {"id": identifier, "message": "invalid api token"}
        return int(headers["x-fake-error"]), "application/json", json.dumps(error).encode()
    if path.partition("?")[0].rstrip("/").endswith("/v2/embed"):
        texts = request.get("texts") or []
        meta = {"api_version": {"version": "2"}, "billed_units": {"input_tokens": billed_input(request)}}
        embedded = {
            "id": identifier,
            "embeddings": {"float": [[0.1, 0.2] for _ in texts]},
            "texts": texts,
            "meta": meta,
        }
        return 200, "application/json", json.dumps(embedded).encode()
    texts = [WORDS[i % len(WORDS)] for i in range(int(headers.get("x-fake-chunks", len(WORDS))))]
    if request.get("stream") is not True:
        message = {"role": "assistant", "content": [{"type": "text", "text": "".join(texts)}]}
        whole = {"id": identifier, "message": message, "finish_reason": "COMPLETE", "usage": usage(request, len(texts))}
        return 200, "application/json", json.dumps(whole).encode()
    start = {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
    events = [
        sse("message-start", {"id": identifier, "delta": {"message": start}}),
        sse("content-start", {"index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}}),
        *(sse("content-delta", {"index": 0, "delta": {"message": {"content": {"text": text}}}}) for text in texts),
        sse("content-end", {"index": 0}),
        sse("message-end", {"delta": {"finish_reason": "COMPLETE", "usage": usage(request, len(texts))}}),
        "data: [DONE]\n\n",
    ]
    return 200, "text/event-stream", events
