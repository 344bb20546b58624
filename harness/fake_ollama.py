"""What the fake upstream answers to Ollama's native API (`POST /api/chat`, `/api/generate`,
`/api/embed`, `/api/embeddings`), as an Ollama server does.

It follows the real server where the addon cares: a stream unless the request says
`"stream": false`, NDJSON lines (`application/x-ndjson`; labelled `application/json` when the host
asked for is ollama.com, as Ollama's cloud does), paced, the last line `"done": true` with
`done_reason`, `prompt_eval_count` (all input, cached included), `eval_count` and durations in
nanoseconds; a plain answer is one such line; errors as `{"error": "…"}`. Test knobs come as
request headers:

- `x-fake-chunks: N`, `x-fake-chunk-delay-ms: D`: N text lines, D ms apart.
- `x-fake-cached: N`: N prompt tokens from the cache (`prompt_eval_cached_count`).
- `x-fake-error: STATUS`: an error answer; `x-fake-stream-error: 1`: an error line after two lines.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

WORDS = ["Hello", " from", " a", " fake", " Ollama", "."]
ROUTES = ("/api/chat", "/api/generate", "/api/embed", "/api/embeddings")
NDJSON = "application/x-ndjson"
JSON = "application/json; charset=utf-8"


def is_ollama(path: str) -> bool:
    return path.partition("?")[0].rstrip("/").endswith(ROUTES)


def prompt_tokens(request: dict[str, Any]) -> int:
    """A deterministic stand-in for the tokenizer: 10 + one per word of the messages or the prompt."""
    texts = [str(message.get("content", "")) for message in request.get("messages") or [] if isinstance(message, dict)]
    texts.append(str(request.get("prompt") or ""))
    inputs = request.get("input")
    texts += inputs if isinstance(inputs, list) else [str(inputs or "")]
    return 10 + sum(len(text.split()) for text in texts)


@dataclass
class Answer:
    status: int
    content_type: str
    body: bytes | list[str]  # a list: NDJSON lines, sent one by one


def line(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":")) + "\n"


def answer(path: str, body: bytes, headers: dict[str, str]) -> Answer:
    route = path.partition("?")[0].rstrip("/")
    request = json.loads(body or b"{}")
    model = str(request.get("model", "llama3.2"))
    if "x-fake-error" in headers:
        error = {"error": f'model "{model}" not found, try pulling it first'}
        return Answer(int(headers["x-fake-error"]), JSON, json.dumps(error).encode())
    if route.endswith(("/api/embed", "/api/embeddings")):
        embedded = {
            "model": model,
            "embeddings": [[0.1, -0.2, 0.3]],
            "total_duration": 22_283_583,
            "load_duration": 7_451_083,
            "prompt_eval_count": prompt_tokens(request),
        }
        return Answer(200, JSON, json.dumps(embedded).encode())
    chunks = int(headers.get("x-fake-chunks", len(WORDS)))
    cached = int(headers.get("x-fake-cached", 0))
    chat = route.endswith("/api/chat")

    def output(text: str, done: bool) -> dict[str, Any]:
        common = {"model": model, "created_at": "2026-12-04T12:00:00.000000Z"}
        if chat:
            return {**common, "message": {"role": "assistant", "content": text}, "done": done}
        return {**common, "response": text, "done": done}

    texts = [WORDS[i % len(WORDS)] for i in range(chunks)]
    final = {
        **output("", True),
        "done_reason": "stop",
        "total_duration": 171_946_792,
        "load_duration": 38_473_250,
        "prompt_eval_count": prompt_tokens(request) + cached,
        "prompt_eval_duration": 27_608_250,
        "eval_count": chunks,
        "eval_duration": 105_611_917,
        **({"prompt_eval_cached_count": cached} if cached else {}),
    }
    if request.get("stream") is False:
        return Answer(200, JSON, json.dumps({**final, **output("".join(texts), True)}).encode())
    lines = [line(output(text, False)) for text in texts]
    if headers.get("x-fake-stream-error"):
        return Answer(200, NDJSON, [*lines[:2], line({"error": "an error was encountered while running the model"})])
    cloud = headers.get("host", "").partition(":")[0] == "ollama.com"
    return Answer(200, JSON if cloud else NDJSON, [*lines, line(final)])
