"""What the fake upstream answers to Google's Interactions API, as generativelanguage.googleapis.com
does: `POST /v1beta/interactions` (plain, or SSE with `"stream": true`; `"background": true` answers
`in_progress` without usage), `GET /v1beta/interactions/{id}` (`?stream=true`: the stored interaction's
events, then `interaction.completed` with its usage). Usage as the real API writes it: thought tokens
beside `total_output_tokens`, `total_tokens` their sum with the input. Knobs: `x-fake-chunks`,
`x-fake-chunk-delay-ms`.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any

WORDS = ["Hello", " from", " a", " fake", " interaction", "."]
THOUGHT = 7
ROUTE = re.compile(r"/interactions(?:/(?P<id>[^/:?]+))?$")
_stored: dict[str, dict[str, Any]] = {}  # the interactions made, by id (the fake keeps them all)
_lock = threading.Lock()


def is_interactions(path: str) -> bool:
    return ROUTE.search(path.partition("?")[0]) is not None


def _usage(request: dict[str, Any], chunks: int) -> dict[str, Any]:
    given = request.get("input")
    prompt = 5 + len(str(given if isinstance(given, str) else json.dumps(given)).split())
    return {
        "total_tokens": prompt + chunks + THOUGHT,
        "total_input_tokens": prompt,
        "input_tokens_by_modality": [{"modality": "text", "tokens": prompt}],
        "total_cached_tokens": 0,
        "total_output_tokens": chunks,
        "total_tool_use_tokens": 0,
        "total_thought_tokens": THOUGHT,
    }


def _event(kind: str, data: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps({**data, 'event_type': kind}, separators=(',', ':'))}\n\n"


def _events(interaction: dict[str, Any], texts: list[str]) -> list[str]:
    started = {key: interaction[key] for key in ("id", "object", "model")} | {"status": "in_progress"}
    events = [
        _event("interaction.created", {"interaction": started}),
        _event("step.start", {"index": 0, "step": {"type": "model_output"}}),
        *(_event("step.delta", {"index": 0, "delta": {"type": "text", "text": text}}) for text in texts),
        _event("step.stop", {"index": 0}),
        _event("interaction.completed", {"interaction": interaction}),
        "event: done\ndata: [DONE]\n\n",
    ]
    return events


def answer(
    method: str, path: str, body: bytes, headers: dict[str, str], number: int
) -> tuple[int, str, bytes | list[str]]:
    route, _, query = path.partition("?")
    found = ROUTE.search(route)
    assert found is not None
    if method == "GET":
        with _lock:
            interaction = _stored.get(found.group("id") or "")
        if interaction is None:
            error = {
                "error": {
                    "message": f"Invalid interaction name: interactions/{found.group('id')}",
                    "code": "invalid_request",
                }
            }
            return 400, "application/json; charset=UTF-8", json.dumps(error).encode()
        texts = interaction["_texts"]
        public = {k: v for k, v in interaction.items() if not k.startswith("_")}
        if "stream=true" in query:
            return 200, "text/event-stream", _events(public, texts)
        return 200, "application/json", json.dumps(public).encode()
    request = json.loads(body or b"{}")
    chunks = int(headers.get("x-fake-chunks", len(WORDS)))
    texts = [WORDS[i % len(WORDS)] for i in range(chunks)]
    identifier = f"v1_fake{number:012d}"
    completed = {
        "id": identifier,
        "status": "completed",
        "usage": _usage(request, chunks),
        "service_tier": "standard",
        "steps": [{"type": "model_output", "content": [{"type": "text", "text": "".join(texts)}]}],
        "object": "interaction",
        "model": request.get("model", "gemini-3-flash"),
    }
    with _lock:
        _stored[identifier] = {**completed, "_texts": texts}
    if request.get("background") is True:
        waiting = {k: v for k, v in completed.items() if k not in ("usage", "steps")} | {"status": "in_progress"}
        return 200, "application/json", json.dumps(waiting).encode()
    if request.get("stream") is True:
        return 200, "text/event-stream", _events(completed, texts)
    return 200, "application/json", json.dumps(completed).encode()
