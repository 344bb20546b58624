"""A local HTTPS server that answers like api.openai.com (and, on `/v1/messages`, like
api.anthropic.com: `harness.fake_anthropic`; on Google's `/models/{model}:method` paths, like the
Gemini API and Vertex AI: `harness.fake_google`), for tests and the demo.

It follows the real API where the addon cares: paced SSE streams, `stream_options.include_usage`
semantics (`"usage":null` on every chunk plus one usage-only chunk), realistic headers, OpenAI
error bodies, and replay of the recorded exchanges in tests/fixtures/recorded. Test knobs come
as request headers (the SDK sends them with `extra_headers`):

- `x-fake-fixture: NAME`: replay tests/fixtures/recorded/NAME.yaml (its first interaction).
- `x-fake-chunks: N` and `x-fake-chunk-delay-ms: D`: stream N content chunks, D ms apart.
- `x-fake-error: STATUS:CODE`: answer with an OpenAI error body.
- `x-fake-encoding: gzip|deflate|br|zstd`: compress the response body.
- `x-fake-cached-tokens: N`, `x-fake-reasoning-tokens: N`: usage details.
- `x-fake-raw: NAME`: a fault scenario written byte for byte (`raw_scenario`).
- `x-fake-usage-null: 1`: `"usage":null` in every chunk although the request did not ask for usage.

Paths: `.../chat/completions`, `.../completions` (legacy), `.../responses`, `.../embeddings`, also
under Azure's `/openai/deployments/{deployment}/` (which answer with AZURE_DEPLOYED_MODEL, open
streams with a `prompt_filter_results` chunk, and refuse `stream_options` before api-version
2024-09-01, as older Azure versions do).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import re
import socket
import ssl
import struct
import sys
import threading
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import brotli
import yaml
from backports import zstd

from harness import (
    fake_anthropic,
    fake_bedrock,
    fake_cohere,
    fake_google,
    fake_interactions,
    fake_media,
    fake_ollama,
)

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "recorded"
CREATED = 1731368639
WORDS = ["This", " is", " a", " test", "."]
RESPONSE_HEADERS = {
    "openai-organization": "org-fake",
    "openai-processing-ms": "42",
    "openai-version": "2020-10-01",
    "x-ratelimit-limit-requests": "10000",
    "x-ratelimit-limit-tokens": "30000000",
    "x-ratelimit-remaining-requests": "9999",
    "x-ratelimit-remaining-tokens": "29999980",
    "x-ratelimit-reset-requests": "6ms",
    "x-ratelimit-reset-tokens": "0s",
}


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def load_fixture(name: str) -> dict[str, Any]:
    """The first interaction of a recorded exchange."""
    with open(FIXTURES / f"{name}.yaml", encoding="utf-8") as file:
        return yaml.safe_load(file)["interactions"][0]


def sse_events(body: str) -> list[str]:
    """A recorded SSE body cut into its events, each with its closing blank line."""
    return [event + "\n\n" for event in re.split(r"\n\n", body) if event.strip()]


def dated(model: str) -> str:
    return model if re.search(r"\d{4}-\d{2}-\d{2}$", model) else f"{model}-2024-07-18"


# An Azure deployment answers with the model it runs, whatever the request says.
AZURE_DEPLOYED_MODEL = "gpt-4o-mini-2024-07-18"


def prompt_words(request: dict[str, Any]) -> int:
    """A deterministic stand-in for a tokenizer: words in messages, prompt, input."""
    texts = [str(m.get("content", "")) for m in request.get("messages", []) if isinstance(m, dict)]
    for key in ("prompt", "input", "instructions"):
        value = request.get(key)
        texts += value if isinstance(value, list) else [str(value)] if value else []
    return sum(len(str(text).split()) for text in texts)


@dataclass
class ChatScript:
    """What the fake answers to one synthesized chat completion (or legacy completion) request."""

    request: dict[str, Any]
    chunks: int = 4
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    legacy: bool = False  # /v1/completions
    azure: bool = False  # /openai/deployments/...
    # Some compatible servers send `"usage":null` in every chunk unasked (one is in a recorded
    # OpenLLMetry exchange), and no usage chunk: `x-fake-usage-null: 1`.
    usage_null_unasked: bool = False
    # A compatible host's own usage shape (`x-fake-dialect`): mistral (`num_cached_tokens`),
    # deepseek (`prompt_cache_hit_tokens` / `_miss_tokens`), groq (a stream's usage only in the last
    # chunk's `x_groq.usage`), openrouter (its own `cost`).
    dialect: str | None = None

    @property
    def model(self) -> str:
        if self.azure:
            return AZURE_DEPLOYED_MODEL
        return dated(str(self.request.get("model", "gpt-4o-mini")))

    @property
    def response_id(self) -> str:
        """Deterministic, and the same with or without stream_options, so streams compare byte for byte."""
        identity = {k: v for k, v in self.request.items() if k != "stream_options"}
        prefix = "cmpl-" if self.legacy else "chatcmpl-"
        return prefix + hashlib.sha256(compact(identity).encode()).hexdigest()[:24]

    def usage(self) -> dict[str, Any]:
        words = prompt_words(self.request)
        prompt = 8 + words + self.cached_tokens
        completion = self.chunks + self.reasoning_tokens
        if self.dialect == "mistral":
            return {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
                "num_cached_tokens": self.cached_tokens,
            }
        if self.dialect == "deepseek":
            return {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
                "prompt_cache_hit_tokens": self.cached_tokens,
                "prompt_cache_miss_tokens": prompt - self.cached_tokens,
            }
        if self.dialect == "openrouter":
            return {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
                "cost": round((prompt * 0.15 + completion * 0.6) / 1e6, 12),
                "is_byok": False,
                "cost_details": {"upstream_inference_cost": None},
            }
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": self.reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def text(self) -> str:
        return "".join(WORDS[i % len(WORDS)] for i in range(self.chunks))

    def tool_calls(self) -> list[dict[str, Any]]:
        """As a model told to use a tool (`tool_choice: required`): a call of each tool declared (at
        most two, in parallel), unless the conversation ends with the tools' results."""
        messages = self.request.get("messages") or [{}]
        if self.request.get("tool_choice") != "required" or messages[-1].get("role") == "tool":
            return []
        names = [tool["function"]["name"] for tool in self.request.get("tools") or []][:2]
        return [
            {
                "id": f"call_{hashlib.sha256(f'{self.response_id}{n}'.encode()).hexdigest()[:24]}",
                "type": "function",
                "function": {"name": name, "arguments": '{"path":"README.md"}'},
            }
            for n, name in enumerate(names)
        ]

    def completion(self) -> dict[str, Any]:
        n = self.request.get("n") or 1
        if self.legacy:
            return {
                "id": self.response_id,
                "object": "text_completion",
                "created": CREATED,
                "model": self.model,
                "choices": [
                    {"text": self.text(), "index": i, "logprobs": None, "finish_reason": "length"} for i in range(n)
                ],
                "usage": self.usage(),
            }
        return {
            "id": self.response_id,
            "object": "chat.completion",
            "created": CREATED,
            "model": self.model,
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": self.text(), "refusal": None, "annotations": []}
                    | ({"content": None, "tool_calls": self.tool_calls()} if self.tool_calls() else {}),
                    "logprobs": None,
                    "finish_reason": "tool_calls" if self.tool_calls() else "stop",
                }
                for i in range(n)
            ],
            "usage": self.usage(),
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
        }

    def stream_events(self) -> list[str]:
        """The SSE events, exactly as OpenAI frames them for this request."""
        options = self.request.get("stream_options") or {}
        include_usage = options.get("include_usage") is True
        numbers = iter(range(1_000_000))

        def chunk(choices: list[dict[str, Any]], usage: Any = None) -> str:
            body: dict[str, Any] = {
                "id": self.response_id,
                "object": "text_completion" if self.legacy else "chat.completion.chunk",
                "created": CREATED,
                "model": self.model,
                "service_tier": "default",
                "system_fingerprint": "fp_fake",
                "choices": choices,
            }
            if include_usage or self.usage_null_unasked:
                body["usage"] = usage
            # As the real API: random padding after usage, so `"usage":null` is not the last member.
            number = next(numbers)
            body["obfuscation"] = hashlib.sha256(f"{self.response_id}{number}".encode()).hexdigest()[: 3 + number % 9]
            return f"data: {compact(body)}\n\n"

        def choice(delta: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
            if self.legacy:
                return [{"text": delta.get("content", ""), "index": 0, "logprobs": None, "finish_reason": finish}]
            return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

        events = []
        if self.azure:  # Azure opens with its prompt filter results: empty choices, no usage
            filters = [{"prompt_index": 0, "content_filter_results": {}}]
            opening = {
                "choices": [],
                "created": 0,
                "id": "",
                "model": "",
                "object": "",
                "prompt_filter_results": filters,
            }
            events.append(f"data: {compact(opening)}\n\n")
        if not self.legacy:
            events.append(chunk(choice({"role": "assistant", "content": "", "refusal": None})))
        if calls := self.tool_calls():  # each call's id and name first, then its arguments in pieces
            for n, call in enumerate(calls):
                opening = {**call, "function": {"name": call["function"]["name"], "arguments": ""}}
                events.append(chunk(choice({"tool_calls": [{"index": n, **opening}]})))
                for piece in (call["function"]["arguments"][:8], call["function"]["arguments"][8:]):
                    events.append(chunk(choice({"tool_calls": [{"index": n, "function": {"arguments": piece}}]})))
            events.append(chunk(choice({}, "tool_calls")))
            if include_usage:
                events.append(chunk([], self.usage()))
            return [*events, "data: [DONE]\n\n"]
        events += [chunk(choice({"content": WORDS[i % len(WORDS)]})) for i in range(self.chunks)]
        if self.dialect == "groq":
            last = json.loads(chunk(choice({}, "stop"))[6:])
            last["x_groq"] = {"id": "req_fake", "usage": {"queue_time": 0.01, **self.usage()}}
            events.append(f"data: {compact(last)}\n\n")
        else:
            events.append(chunk(choice({}, "length" if self.legacy else "stop")))
        if include_usage and self.dialect != "groq":
            events.append(chunk([], self.usage()))
        events.append("data: [DONE]\n\n")
        return events


@dataclass
class ResponsesScript:
    """A synthesized Responses API answer, plain or streamed."""

    request: dict[str, Any]
    chunks: int = 4
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_tokens: int = 0  # GPT-5.6 and later report the input written to the cache

    def function_call(self) -> dict[str, Any] | None:
        """As a model asked to use a tool: a `function_call` of the tool the input names with
        `(fake: use NAME)`, unless the input already brings a tool's output (Codex's exec_command
        gets a command to run)."""
        items = self.request.get("input")
        text = json.dumps(items)
        asked = re.search(r"\(fake: use (\w+)\)", text)
        if asked is None or '"function_call_output"' in text:
            return None
        name = asked.group(1)
        call_id = "call_fake" + hashlib.sha256(text.encode()).hexdigest()[:16]
        arguments = {"cmd": "echo from-a-fake-tool-call"} if name == "exec_command" else {}
        return {
            "id": "fc_fake",
            "type": "function_call",
            "status": "completed",
            "call_id": call_id,
            "name": name,
            "arguments": compact(arguments),
        }

    def response(self, status: str = "completed") -> dict[str, Any]:
        text = "".join(WORDS[i % len(WORDS)] for i in range(self.chunks))
        prompt = 8 + prompt_words(self.request) + self.cached_tokens + self.cache_write_tokens
        output = self.chunks + self.reasoning_tokens
        return {
            "id": "resp_" + hashlib.sha256(compact(self.request).encode()).hexdigest()[:24],
            "object": "response",
            "created_at": CREATED,
            "status": status,
            "error": None,
            "incomplete_details": None,
            "model": dated(str(self.request.get("model", "gpt-4o-mini"))),
            "output": [
                {
                    "id": "msg_fake",
                    "type": "message",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}],
                },
                *([call] if (call := self.function_call()) else []),
            ],
            "service_tier": "default",
            "usage": {
                "input_tokens": prompt,
                "input_tokens_details": {"cached_tokens": self.cached_tokens}
                | ({"cache_write_tokens": self.cache_write_tokens} if self.cache_write_tokens else {}),
                "output_tokens": output,
                "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
                "total_tokens": prompt + output,
            },
        }

    def stream_events(self) -> list[str]:
        final = self.response()
        opening = {**final, "status": "in_progress", "output": [], "usage": None}

        def event(kind: str, body: dict[str, Any]) -> str:
            return f"event: {kind}\ndata: {compact({'type': kind, **body})}\n\n"

        item = final["output"][0]
        part = item["content"][0]
        where = {"item_id": item["id"], "output_index": 0, "content_index": 0}
        events = [
            event("response.created", {"response": opening}),
            event(
                "response.output_item.added",
                {"output_index": 0, "item": {**item, "status": "in_progress", "content": []}},
            ),
            event("response.content_part.added", {**where, "part": {**part, "text": ""}}),
        ]
        for i in range(self.chunks):
            events.append(event("response.output_text.delta", {**where, "delta": WORDS[i % len(WORDS)]}))
        events += [
            event("response.output_text.done", {**where, "text": part["text"]}),
            event("response.content_part.done", {**where, "part": part}),
            event("response.output_item.done", {"output_index": 0, "item": item}),
        ]
        for index, called in enumerate(final["output"][1:], start=1):  # a tool call, whole
            events += [
                event("response.output_item.added", {"output_index": index, "item": {**called, "arguments": ""}}),
                event(
                    "response.function_call_arguments.done",
                    {"item_id": called["id"], "output_index": index, "arguments": called["arguments"]},
                ),
                event("response.output_item.done", {"output_index": index, "item": called}),
            ]
        return [*events, event("response.completed", {"response": final})]


def embeddings_answer(request: dict[str, Any]) -> dict[str, Any]:
    inputs = request.get("input")
    items = inputs if isinstance(inputs, list) else [inputs]
    tokens = sum(len(str(item).split()) for item in items)
    dimensions = int(request.get("dimensions") or 8)
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": [0.125] * dimensions} for i in range(len(items))],
        "model": str(request.get("model", "text-embedding-3-small")),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _encoder(encoding: str) -> tuple[Any, Any]:
    """(encode(chunk) -> bytes with a flush, finish() -> bytes) for a streamed body."""
    if encoding in ("gzip", "deflate"):
        compressor = zlib.compressobj(wbits=31 if encoding == "gzip" else 15)
        return (lambda d: compressor.compress(d) + compressor.flush(zlib.Z_SYNC_FLUSH)), (
            lambda: compressor.flush(zlib.Z_FINISH)
        )
    if encoding == "br":
        brotli_compressor = brotli.Compressor()
        return (lambda d: brotli_compressor.process(d) + brotli_compressor.flush()), brotli_compressor.finish
    if encoding == "zstd":
        zstd_compressor = zstd.ZstdCompressor()
        return (lambda d: zstd_compressor.compress(d, zstd.ZstdCompressor.FLUSH_BLOCK)), (
            lambda: zstd_compressor.flush(zstd.ZstdCompressor.FLUSH_FRAME)
        )
    return (lambda d: d), (lambda: b"")


def encode_whole(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.compress(body)
    encode, finish = _encoder(encoding)
    return encode(body) + finish()


def _usage_chunk(prompt: int, completion: int) -> str:
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    return f"data: {compact({'id': 'chatcmpl-raw', 'model': 'raw-model', 'choices': [], 'usage': usage})}\n\n"


def _content_chunk(text: str) -> str:
    choice = {"index": 0, "delta": {"content": text}, "finish_reason": None}
    return f"data: {compact({'id': 'chatcmpl-raw', 'model': 'raw-model', 'choices': [choice]})}\n\n"


@dataclass
class RawScenario:
    """A response written byte for byte, for fault tests (`x-fake-raw: NAME`)."""

    status: int
    headers: dict[str, str]
    parts: list[bytes]  # the body as sent, already encoded
    ending: str = "complete"  # complete | close (mid-body) | reset (TCP RST mid-body) | stall (until the client leaves)
    chunked: bool = True


def raw_scenario(name: str) -> RawScenario:
    """The named fault scenario; its `parts` are exactly the body bytes a client should receive."""
    sse = {"content-type": "text/event-stream"}
    events = [_content_chunk(word) for word in WORDS] + [_usage_chunk(11, 5), "data: [DONE]\n\n"]
    stream = [event.encode() for event in events]
    if name == "html_502":
        return RawScenario(
            502, {"content-type": "text/html"}, [b"<html><body>Bad gateway</body></html>"], chunked=False
        )
    if name == "invalid_json":
        return RawScenario(
            200, {"content-type": "application/json"}, [b'{"usage": {"prompt_tokens": 1,'], chunked=False
        )
    if name == "no_content_type":
        body = compact({"model": "raw-model", "usage": {"prompt_tokens": 3, "completion_tokens": 2}}).encode()
        return RawScenario(200, {}, [body], chunked=False)
    if name == "unknown_encoding":
        return RawScenario(200, {**sse, "content-encoding": "x-custom"}, stream)
    if name == "stacked_encoding":
        return RawScenario(
            200, {**sse, "content-encoding": "gzip, br"}, [encode_whole(encode_whole(b"".join(stream), "gzip"), "br")]
        )
    if name == "corrupt_gzip_stream":
        return RawScenario(200, {**sse, "content-encoding": "gzip"}, [b"\x1f\x8b\x08\x00garbage" * 20])
    if name == "corrupt_gzip_json":
        return RawScenario(
            200, {"content-type": "application/json", "content-encoding": "gzip"}, [b"\x1f\x8bnot gzip"], chunked=False
        )
    if name == "truncated_stream":
        return RawScenario(200, sse, [*stream[:3], b'data: {"id":"chatcmpl-raw","cho'], ending="close")
    if name == "reset_mid_stream":
        return RawScenario(200, sse, stream[:3], ending="reset")
    if name == "stall":
        return RawScenario(200, sse, stream[:2], ending="stall")
    if name == "comments_and_keepalives":
        parts = [b": keep-alive\n\n", b"data:" + stream[0][6:], b": ping\r\n\r\n", *stream[1:]]
        return RawScenario(200, sse, parts)
    if name == "non_utf8":
        return RawScenario(200, sse, [b'data: {"choices":[{"delta":{"content":"\xff\xfe\xc3"}}]}\n\n', *stream])
    if name == "every_byte_split":
        joined = b"".join(stream)
        return RawScenario(200, sse, [joined[i : i + 1] for i in range(len(joined))])
    if name == "big_body":
        filler = b"x" * (50 * 1024 * 1024)
        body = b'{"model":"raw-model","filler":"' + filler + b'","usage":{"prompt_tokens":7,"completion_tokens":3}}'
        return RawScenario(200, {"content-type": "application/json"}, [body], chunked=False)
    if name == "long_stream":
        many = [_content_chunk("x").encode()] * 100_000 + [_usage_chunk(11, 100_000).encode(), b"data: [DONE]\n\n"]
        return RawScenario(200, sse, [b"".join(many[i : i + 1000]) for i in range(0, len(many), 1000)])
    raise KeyError(name)


# Claude on Vertex AI: `…/publishers/anthropic/models/{model}:rawPredict` or `:streamRawPredict`.
VERTEX_CLAUDE = re.compile(r"/publishers/anthropic/models/(?P<model>[^/:]+):(?:rawPredict|streamRawPredict)$")


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class StreamLog:
    """When each event of a streamed response left the fake (time.monotonic)."""

    response_id: str | None
    sent_at: list[float] = field(default_factory=list)
    finished_at: float | None = None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeUpstream
    # The dialect's own response headers for the request being answered (None: OpenAI's).
    upstream_headers: dict[str, str] | None = None

    def setup(self) -> None:
        # TLS handshakes run here, on the connection's own thread, not in accept().
        self.request.settimeout(30)
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        """Only the Interactions API's fetch: every other GET is not found."""
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.server.received.append(ReceivedRequest("GET", self.path, headers, b""))
        self.upstream_headers = {"x-goog-fake": "1"}
        if fake_interactions.is_interactions(self.path):
            answer = fake_interactions.answer("GET", self.path, b"", headers, len(self.server.received))
            self._send_answer(*answer, headers, headers.get("x-fake-encoding", "identity"))
        else:
            self._send_whole(404, "application/json", b'{"error":{"message":"not found"}}', "identity")

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.server.received.append(ReceivedRequest("POST", self.path, headers, body))
        encoding = headers.get("x-fake-encoding", "identity")
        self.upstream_headers = None
        vertex_claude = VERTEX_CLAUDE.search(self.path.partition("?")[0])
        if self.path.partition("?")[0].rstrip("/").endswith("/v1/messages") or vertex_claude:
            self._anthropic(body, headers, encoding, vertex_claude.group("model") if vertex_claude else None)
        elif fake_bedrock.is_bedrock(self.path):
            self._bedrock(body, headers, encoding)
        elif fake_ollama.is_ollama(self.path):
            self._ollama(body, headers, encoding)
        elif fake_interactions.is_interactions(self.path):
            number = len(self.server.received)
            self._send_answer(*fake_interactions.answer("POST", self.path, body, headers, number), headers, encoding)
        elif fake_cohere.is_cohere(self.path):
            self._send_answer(
                *fake_cohere.answer(self.path, body, headers, len(self.server.received)), headers, encoding
            )
        elif "/v1internal:" in self.path:
            self._code_assist(body, encoding)
        elif fake_google.is_google(self.path):
            self._google(body, headers, encoding)
        elif "x-fake-raw" in headers:
            self._send_raw(raw_scenario(headers["x-fake-raw"]))
        elif "x-fake-fixture" in headers:
            self._replay(headers["x-fake-fixture"], headers, encoding)
        elif "x-fake-error" in headers:
            status, _, code = headers["x-fake-error"].partition(":")
            error = {"error": {"message": f"fake {code}", "type": "invalid_request_error", "param": None, "code": code}}
            self._send_whole(int(status), "application/json", compact(error).encode(), encoding)
        elif "/audio/" in self.path or "/images/" in self.path:
            self._media(body, headers, encoding)
        else:
            self._synthesize(json.loads(body or b"{}"), headers, encoding)

    def _media(self, body: bytes, headers: dict[str, str], encoding: str) -> None:
        """OpenAI's audio and images APIs (`harness.fake_media`)."""
        route = self.path.partition("?")[0].rstrip("/")
        if route.endswith(("/audio/transcriptions", "/audio/translations")):
            fields, files = fake_media.form(headers.get("content-type", ""), body)
            content_type, answer = fake_media.transcription(fields, files)
        elif route.endswith("/audio/speech"):
            content_type, answer = fake_media.speech(json.loads(body or b"{}"))
        elif route.endswith("/images/generations"):
            content_type, answer = fake_media.images(json.loads(body or b"{}"))
        else:
            not_found = b'{"error":{"message":"unknown path","code":"not_found"}}'
            self._send_whole(404, "application/json", not_found, "identity")
            return
        if isinstance(answer, bytes):
            self._send_whole(200, content_type, answer, encoding)
        else:
            self._send_stream(answer, 0.05, encoding, None)

    def _synthesize(self, request: dict[str, Any], headers: dict[str, str], encoding: str) -> None:
        route, _, query = self.path.partition("?")
        route = route.rstrip("/")
        azure = "/openai/deployments/" in route
        api_version = (parse_qs(query).get("api-version") or [""])[0]
        if azure and "stream_options" in request and api_version < "2024-09-01":
            error = {"error": {"code": "BadRequest", "message": "Unrecognized request argument: stream_options"}}
            self._send_whole(400, "application/json", compact(error).encode(), "identity")
            return
        knobs = {
            "chunks": int(headers.get("x-fake-chunks", 4)),
            "cached_tokens": int(headers.get("x-fake-cached-tokens", 0)),
            "reasoning_tokens": int(headers.get("x-fake-reasoning-tokens", 0)),
        }
        delay = int(headers.get("x-fake-chunk-delay-ms", 5)) / 1000
        streamed = request.get("stream") is True
        if route.endswith("/embeddings"):
            self._send_whole(200, "application/json", compact(embeddings_answer(request)).encode(), encoding)
        elif route.endswith("/responses/compact"):  # a compaction pass: the Responses usage, never streamed
            compaction = ResponsesScript(request, **knobs, cache_write_tokens=int(headers.get("x-fake-cache-write", 0)))
            answered = {**compaction.response(), "object": "response.compaction"}
            self._send_whole(200, "application/json", compact(answered).encode(), encoding)
        elif route.endswith("/responses"):
            answer = ResponsesScript(request, **knobs, cache_write_tokens=int(headers.get("x-fake-cache-write", 0)))
            if streamed:
                self._send_stream(answer.stream_events(), delay, encoding, answer.response()["id"])
            else:
                self._send_whole(200, "application/json", compact(answer.response()).encode(), encoding)
        elif route.endswith("/completions"):
            script = ChatScript(
                request,
                legacy=not route.endswith("/chat/completions"),
                azure=azure,
                usage_null_unasked=headers.get("x-fake-usage-null") == "1",
                dialect=headers.get("x-fake-dialect"),
                **knobs,
            )
            if streamed:
                self._send_stream(script.stream_events(), delay, encoding, script.response_id)
            else:
                self._send_whole(200, "application/json", compact(script.completion()).encode(), encoding)
        else:
            not_found = b'{"error":{"message":"unknown path","code":"not_found"}}'
            self._send_whole(404, "application/json", not_found, "identity")

    def _bedrock(self, body: bytes, headers: dict[str, str], encoding: str) -> None:
        """AWS Bedrock Runtime (`harness.fake_bedrock`): JSON, or AWS event-stream messages."""
        answer = fake_bedrock.answer(self.path, body, headers, len(self.server.received))
        self.upstream_headers = answer.headers
        self._send_answer(answer.status, answer.content_type, answer.body, headers, encoding)

    def _ollama(self, body: bytes, headers: dict[str, str], encoding: str) -> None:
        """Ollama's native API (`harness.fake_ollama`): NDJSON lines, or one JSON answer."""
        self.upstream_headers = {}
        answer = fake_ollama.answer(self.path, body, headers)
        self._send_answer(answer.status, answer.content_type, answer.body, headers, encoding)

    def _send_answer(
        self,
        status: int,
        content_type: str,
        body: bytes | Sequence[str | bytes],
        headers: dict[str, str],
        encoding: str,
    ) -> None:
        """A whole body, or a list of pieces sent one by one, `x-fake-chunk-delay-ms` apart."""
        if isinstance(body, bytes):
            self._send_whole(status, content_type, body, encoding)
        else:
            delay = int(headers.get("x-fake-chunk-delay-ms", 5)) / 1000
            self._send_stream(body, delay, encoding, None, status, content_type=content_type)

    def _anthropic(self, body: bytes, headers: dict[str, str], encoding: str, vertex_model: str | None) -> None:
        """Anthropic's Messages API (also Claude on Vertex AI, whose path names the model): its
        own headers, error bodies and event stream."""
        self.upstream_headers = {
            "request-id": f"req_fake{len(self.server.received):012d}",
            "anthropic-organization-id": "org-fake",
            **fake_anthropic.rate_limit_headers(),
        }
        delay = int(headers.get("x-fake-chunk-delay-ms", 5)) / 1000
        if "x-fake-fixture" in headers:
            status, content_type, recorded = fake_anthropic.recorded_events(headers["x-fake-fixture"])
            if isinstance(recorded, bytes):
                self._send_whole(status, content_type, recorded, encoding)
            else:
                self._send_stream(recorded, delay, encoding, None, status)
            return
        if "x-fake-error" in headers:
            code, _, kind = headers["x-fake-error"].partition(":")
            self._send_whole(int(code), "application/json", fake_anthropic.error_body(kind), encoding)
            return
        request = json.loads(body or b"{}")
        if vertex_model is not None:
            request["model"] = vertex_model
        script = fake_anthropic.MessagesScript(
            request,
            chunks=int(headers.get("x-fake-chunks", len(fake_anthropic.WORDS))),
            cache_read=int(headers.get("x-fake-cache-read", 0)),
            cache_write_5m=int(headers.get("x-fake-cache-write-5m", 0)),
            cache_write_1h=int(headers.get("x-fake-cache-write-1h", 0)),
            compaction=int(headers.get("x-fake-compaction", 0)),
            speed=headers.get("x-fake-speed"),
            number=len(self.server.received),
        )
        if request.get("stream") is True:
            events = script.stream_events(error=headers.get("x-fake-stream-error"))
            self._send_stream(events, delay, encoding, script.message_id)
        else:
            self._send_whole(200, "application/json", compact(script.message()).encode(), encoding)

    def _google(self, body: bytes, headers: dict[str, str], encoding: str) -> None:
        """Google's generateContent dialect (Gemini API and Vertex AI paths): its error bodies,
        and streams as SSE (`?alt=sse`) or as a JSON array."""
        self.upstream_headers = {"x-goog-fake": "1"}
        route = fake_google.ROUTE.search(self.path.partition("?")[0])
        assert route is not None
        model, method = route.group("model"), route.group("method")
        sse = "alt=sse" in self.path.partition("?")[2]
        delay = int(headers.get("x-fake-chunk-delay-ms", 5)) / 1000
        if not fake_google.authorized(self.path, headers):
            self._send_whole(401, "application/json", fake_google.error_body(401, "UNAUTHENTICATED"), encoding)
            return
        if "x-fake-error" in headers:
            code, _, status = headers["x-fake-error"].partition(":")
            self._send_whole(int(code), "application/json", fake_google.error_body(int(code), status), encoding)
            return
        request = json.loads(body or b"{}")
        if method in ("embedContent", "batchEmbedContents"):
            answer = fake_google.embeddings(method, request)
            self._send_whole(200, "application/json", compact(answer).encode(), encoding)
            return
        if method == "countTokens":
            counted = {"totalTokens": fake_google.prompt_tokens(request)}
            self._send_whole(200, "application/json", compact(counted).encode(), encoding)
            return
        if method not in ("generateContent", "streamGenerateContent"):
            self._send_whole(404, "application/json", fake_google.error_body(404, "NOT_FOUND"), encoding)
            return
        if "x-fake-fixture" in headers:
            recorded_status, recorded = fake_google.recorded(headers["x-fake-fixture"])
            if isinstance(recorded, bytes):
                self._send_whole(recorded_status, "application/json; charset=UTF-8", recorded, encoding)
                return
            chunks = recorded
        elif "x-fake-blocked" in headers:
            blocked = fake_google.blocked(headers["x-fake-blocked"], model)
            if method == "generateContent":
                self._send_whole(200, "application/json", compact(blocked).encode(), encoding)
                return
            chunks = [blocked]
        else:
            script = fake_google.GenerateScript(
                model,
                request,
                chunks=int(headers.get("x-fake-chunks", len(fake_google.WORDS))),
                cached=int(headers.get("x-fake-cached", 0)),
                thoughts=int(headers.get("x-fake-thoughts", 0)),
                number=len(self.server.received),
            )
            if method == "generateContent":
                self._send_whole(200, "application/json", compact(script.response()).encode(), encoding)
                return
            chunks = script.stream_chunks(error=headers.get("x-fake-stream-error"))
        if sse:
            self._send_stream(fake_google.sse_chunks(chunks), delay, encoding, None)
        else:
            self._send_stream(
                fake_google.array_chunks(chunks), delay, encoding, None, content_type="application/json; charset=UTF-8"
            )

    def _code_assist(self, body: bytes, encoding: str) -> None:
        """Google's Code Assist (what Gemini CLI calls logged in with Google): generateContent's
        answer wrapped in `{"response": …, "traceId": …}`, streamed as SSE."""
        self.upstream_headers = {"x-goog-fake": "1"}
        wrapped = json.loads(body or b"{}")
        script = fake_google.GenerateScript(
            wrapped.get("model", "gemini-2.5-pro"), wrapped.get("request") or {}, number=len(self.server.received)
        )
        trace = {"traceId": f"fake{len(self.server.received):08d}"}
        if ":streamGenerateContent" not in self.path:
            answer = {"response": script.response(), **trace}
            self._send_whole(200, "application/json", compact(answer).encode(), encoding)
            return
        chunks = [{"response": chunk, **trace} for chunk in script.stream_chunks(error=None)]
        self._send_stream(fake_google.sse_chunks(chunks), 0.005, encoding, None)

    def _send_raw(self, scenario: RawScenario) -> None:
        self.close_connection = True
        head = [f"HTTP/1.1 {scenario.status} Fake\r\n"]
        head += [f"{name}: {value}\r\n" for name, value in scenario.headers.items()]
        if scenario.chunked:
            head.append("transfer-encoding: chunked\r\n")
        else:
            head.append(f"content-length: {sum(len(p) for p in scenario.parts)}\r\n")
        self.wfile.write(("".join(head) + "\r\n").encode())
        for part in scenario.parts:
            self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n" if scenario.chunked else part)
        self.wfile.flush()
        if scenario.ending == "complete" and scenario.chunked:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        elif scenario.ending == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif scenario.ending == "stall":
            self.connection.settimeout(30)
            with contextlib.suppress(OSError):
                self.connection.recv(1)  # until the other side gives up and closes

    def _replay(self, name: str, headers: dict[str, str], encoding: str) -> None:
        recorded = load_fixture(name)["response"]
        status = recorded["status"]["code"]
        content_type = recorded["headers"].get("Content-Type", ["application/json"])[0]
        text = recorded["body"]["string"]
        if content_type.startswith("text/event-stream"):
            delay = int(headers.get("x-fake-chunk-delay-ms", 2)) / 1000
            self._send_stream(sse_events(text), delay, encoding, None, status)
        else:
            self._send_whole(status, content_type, text.encode(), encoding)

    def _common_headers(self, content_type: str, encoding: str) -> None:
        self.send_header("content-type", content_type)
        upstream_headers = self.upstream_headers
        if upstream_headers is None:  # OpenAI's
            upstream_headers = {"x-request-id": f"req_{len(self.server.received):08d}", **RESPONSE_HEADERS}
        for name, value in upstream_headers.items():
            self.send_header(name, value)
        if encoding != "identity":
            self.send_header("content-encoding", encoding)

    def _send_whole(self, status: int, content_type: str, body: bytes, encoding: str) -> None:
        payload = encode_whole(body, encoding) if encoding != "identity" else body
        self.send_response(status)
        self._common_headers(content_type, encoding)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _send_stream(
        self,
        events: Sequence[str | bytes],
        delay: float,
        encoding: str,
        response_id: str | None,
        status: int = 200,
        content_type: str = "text/event-stream; charset=utf-8",
    ) -> None:
        encode, finish = _encoder(encoding)
        stream_log = StreamLog(response_id)
        self.server.streams.append(stream_log)
        self.send_response(status)
        self._common_headers(content_type, encoding)
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        for position, event in enumerate(events):
            if position:
                time.sleep(delay)
            self._write_chunk(encode(event.encode() if isinstance(event, str) else event))
            stream_log.sent_at.append(time.monotonic())
        self._write_chunk(finish())
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
        stream_log.finished_at = time.monotonic()

    def _write_chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()


class FakeUpstream(ThreadingHTTPServer):
    """`with FakeUpstream(cert, key) as fake:` serves HTTPS on 127.0.0.1:`fake.port` until the block
    ends; without a certificate, plain HTTP (as a local Ollama server)."""

    daemon_threads = True
    request_queue_size = 512  # the listen backlog: hundreds of clients may connect at once

    def __init__(self, cert: Path | None, key: Path | None, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        if cert is not None and key is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)
            self.socket = context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)
        self.received: list[ReceivedRequest] = []
        self.streams: list[StreamLog] = []
        self._thread = threading.Thread(target=self.serve_forever, name="fake-openai", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that leave mid-handshake or mid-stream (aborts, proxy shutdown) are not errors here."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, ssl.SSLError, TimeoutError)):
            super().handle_error(request, client_address)

    def __enter__(self) -> FakeUpstream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
