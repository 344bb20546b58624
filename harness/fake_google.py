"""What the fake upstream answers to Google's `generateContent` dialect, as the Gemini API
(`/v1beta/models/{model}:…`) and Vertex AI (`/v1/projects/{p}/locations/{l}/publishers/google/
models/{model}:…`) do.

It follows the real APIs where the addon cares: the model from the path, `usageMetadata` whose
`promptTokenCount` includes the cached tokens and whose `candidatesTokenCount` leaves out the
thoughts; stream chunks that carry only `{"trafficType": ...}` as usage until the last one;
`?alt=sse` as SSE (`data: {...}\\r\\n\\r\\n`), without it a JSON array (`[{...}\\r\\n,\\r\\n{...}]`)
written element by element; Google's error body (`{"error": {"code", "message", "status"}}`); a
missing key (Gemini: `x-goog-api-key` or `?key=`; Vertex: a bearer token) answered 401 as Google
does. Test knobs come as request headers (the SDK sends them with `http_options.headers`):

- `x-fake-fixture: NAME`: replay tests/fixtures/recorded-gemini/NAME.yaml.
- `x-fake-chunks: N`, `x-fake-chunk-delay-ms: D`: N text chunks, D ms apart.
- `x-fake-cached: N`, `x-fake-thoughts: N`: cached-content and thinking tokens.
- `x-fake-error: STATUS:CODE` (e.g. `429:RESOURCE_EXHAUSTED`): Google's error body.
- `x-fake-stream-error: STATUS`: an error element after the second chunk, then the stream ends.
- `x-fake-blocked: REASON`: a prompt refused (`promptFeedback.blockReason`, no candidates).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from harness.recordings import load_gemini

WORDS = ["Hello", " from", " a", " fake", " Gemini", "."]
# `…/models/{model}:{method}`, in both the Gemini API's and Vertex AI's paths.
ROUTE = re.compile(r"/models/(?P<model>[^/:?]+):(?P<method>[A-Za-z]+)")


def is_google(path: str) -> bool:
    return ROUTE.search(path.partition("?")[0]) is not None


def prompt_tokens(request: dict[str, Any]) -> int:
    """A deterministic stand-in for the tokenizer: 4 + one per word of text in the contents."""
    words = 0
    for content in [*(request.get("contents") or []), request.get("systemInstruction") or {}]:
        for part in content.get("parts") or [] if isinstance(content, dict) else []:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                words += len(part["text"].split())
    return 4 + words


def error_body(code: int, status: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": f"fake {status}", "status": status}}).encode()


def authorized(path: str, headers: dict[str, str]) -> bool:
    """Gemini API: a key in `x-goog-api-key` or `?key=`; Vertex AI: a bearer token."""
    if "/projects/" in path:
        return headers.get("authorization", "").startswith("Bearer ")
    return bool(headers.get("x-goog-api-key") or parse_qs(path.partition("?")[2]).get("key"))


@dataclass
class GenerateScript:
    """One answer to `generateContent` or `streamGenerateContent`."""

    model: str
    request: dict[str, Any]
    chunks: int = len(WORDS)
    cached: int = 0
    thoughts: int = 0
    number: int = 0

    @property
    def response_id(self) -> str:
        return f"fakeResp{self.number:08d}"

    def texts(self) -> list[str]:
        return [WORDS[i % len(WORDS)] for i in range(self.chunks)]

    def usage(self) -> dict[str, Any]:
        prompt = prompt_tokens(self.request) + self.cached
        usage: dict[str, Any] = {
            "promptTokenCount": prompt,
            "candidatesTokenCount": self.chunks,
            "totalTokenCount": prompt + self.chunks + self.thoughts,
            "trafficType": "ON_DEMAND",
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
            "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": self.chunks}],
        }
        if self.cached:
            usage["cachedContentTokenCount"] = self.cached
        if self.thoughts:
            usage["thoughtsTokenCount"] = self.thoughts
        return usage

    def _chunk(self, text: str, last: bool) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text}]}}
        if last:
            candidate["finishReason"] = "STOP"
        return {
            "candidates": [candidate],
            "usageMetadata": self.usage() if last else {"trafficType": "ON_DEMAND"},
            "modelVersion": self.model,
            "createTime": "2026-12-01T10:00:00.000000Z",
            "responseId": self.response_id,
        }

    def response(self) -> dict[str, Any]:
        return self._chunk("".join(self.texts()), last=True)

    def stream_chunks(self, error: str | None = None) -> list[dict[str, Any]]:
        texts = self.texts()
        chunks = []
        for number, text in enumerate(texts):
            chunks.append(self._chunk(text, last=number == len(texts) - 1))
            if error and number == 1:
                chunks.append({"error": {"code": 500, "message": f"fake {error}", "status": error}})
                break
        return chunks


def blocked(reason: str, model: str) -> dict[str, Any]:
    return {
        "promptFeedback": {"blockReason": reason},
        "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7},
        "modelVersion": model,
        "responseId": "fakeBlocked",
    }


def embeddings(method: str, request: dict[str, Any]) -> dict[str, Any]:
    """`embedContent` → one embedding, `batchEmbedContents` → one per request; no usage, as the
    Gemini API answers."""
    if method == "batchEmbedContents":
        return {"embeddings": [{"values": [0.1, 0.2, 0.3]} for _ in request.get("requests") or []]}
    return {"embedding": {"values": [0.1, 0.2, 0.3]}}


def sse_chunks(chunks: list[dict[str, Any]]) -> list[str]:
    return [f"data: {json.dumps(chunk)}\r\n\r\n" for chunk in chunks]


def array_chunks(chunks: list[dict[str, Any]]) -> list[str]:
    """The JSON-array form, as Google writes it: `[{...}`, `\\r\\n,\\r\\n{...}`, …, `]`."""
    pieces = [
        ("[" if number == 0 else "\r\n,\r\n") + json.dumps(chunk, indent=2) for number, chunk in enumerate(chunks)
    ]
    return [*pieces, "]"] if pieces else ["[]"]


def recorded(name: str) -> tuple[int, list[dict[str, Any]] | bytes]:
    """A recording's status and its chunks (streams) or body. Its Content-Encoding is not kept:
    the recorder stored the bodies decoded."""
    recording = load_gemini(name)
    if recording.streamed:
        text = recording.response_body.decode()
        return recording.status, [json.loads(event[6:]) for event in text.split("\r\n\r\n") if event.strip()]
    return recording.status, recording.response_body
