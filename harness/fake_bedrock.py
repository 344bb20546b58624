"""What the fake upstream answers to AWS Bedrock Runtime's `POST /model/{modelId}/…`, as
bedrock-runtime.{region}.amazonaws.com does (it signs nothing and checks no signature).

It follows the real API where the addon cares: the model only in the (percent-encoded) path;
Converse's usage (`inputTokens` without the cache, `cacheReadInputTokens`, `cacheWriteInputTokens`,
`cacheDetails` by TTL) and `metrics.latencyMs`; ConverseStream as AWS event-stream messages
(`messageStart`, paced `contentBlockDelta`s, `contentBlockStop`, `messageStop`, `metadata`), each
payload padded with a `"p"` member; InvokeModel with Anthropic's Messages body answered by
Anthropic's message plus the `x-amzn-bedrock-*-token-count` headers, and streamed as `chunk`
messages of base64 Anthropic events, the last with `amazon-bedrock-invocationMetrics`; errors as
`x-amzn-ErrorType` and `{"message": …}`; `x-amzn-RequestId`. Test knobs come as request headers:

- `x-fake-chunks: N`, `x-fake-chunk-delay-ms: D`: N text deltas, D ms apart.
- `x-fake-cache-read: N`, `x-fake-cache-write-5m: N`, `x-fake-cache-write-1h: N`: cache tokens.
- `x-fake-error: STATUS:ExceptionName`: an error answer (429 ThrottlingException, 400 ValidationException, ...).
- `x-fake-stream-error: exceptionName`: an exception message after the second delta, then the stream ends.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from harness import eventstream, fake_anthropic

ROUTE = re.compile(
    r"/model/(?P<model>[^/]+)/(?P<operation>converse|converse-stream|invoke|invoke-with-response-stream)$"
)
WORDS = ["Hello", " from", " a", " fake", " Bedrock", "."]
EVENT_STREAM = "application/vnd.amazon.eventstream"
ERROR_NAMESPACE = "http://internal.amazon.com/coral/com.amazon.bedrock/"


def is_bedrock(path: str) -> bool:
    return ROUTE.search(path.partition("?")[0]) is not None


def prompt_tokens(request: dict[str, Any]) -> int:
    """A deterministic stand-in for the tokenizer: 6 + one per word of text in system and messages."""
    words = 0
    for block in request.get("system") or []:
        words += len(str(block.get("text", "")).split()) if isinstance(block, dict) else 0
    for message in request.get("messages") or []:
        for block in message.get("content") or [] if isinstance(message, dict) else []:
            words += len(str(block.get("text", "")).split()) if isinstance(block, dict) else 0
    return 6 + words


def padded(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "p": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"[: 5 + len(payload) * 7]}


@dataclass
class Answer:
    status: int
    content_type: str
    headers: dict[str, str]
    body: bytes | list[bytes]  # a list: event-stream messages, sent one by one


@dataclass
class ConverseScript:
    request: dict[str, Any]
    chunks: int = len(WORDS)
    cache_read: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0

    def texts(self) -> list[str]:
        return [WORDS[i % len(WORDS)] for i in range(self.chunks)]

    def usage(self) -> dict[str, Any]:
        uncached = prompt_tokens(self.request)
        written = self.cache_write_5m + self.cache_write_1h
        details = [
            {"inputTokens": n, "ttl": ttl} for ttl, n in (("1h", self.cache_write_1h), ("5m", self.cache_write_5m)) if n
        ]
        return {
            "inputTokens": uncached,
            "outputTokens": self.chunks,
            "totalTokens": uncached + self.cache_read + written + self.chunks,
            "cacheReadInputTokens": self.cache_read,
            "cacheWriteInputTokens": written,
            **({"cacheDetails": details} if details else {}),
        }

    def response(self) -> dict[str, Any]:
        return {
            "output": {"message": {"role": "assistant", "content": [{"text": "".join(self.texts())}]}},
            "stopReason": "end_turn",
            "usage": self.usage(),
            "metrics": {"latencyMs": 120},
        }

    def stream(self, error: str | None = None) -> list[bytes]:
        messages = [eventstream.event("messageStart", padded({"role": "assistant"}))]
        for number, text in enumerate(self.texts()):
            delta = {"contentBlockIndex": 0, "delta": {"text": text}}
            messages.append(eventstream.event("contentBlockDelta", padded(delta)))
            if error and number == 1:
                messages.append(eventstream.exception(error, f"fake {error}"))
                return messages
        metadata = {"usage": self.usage(), "metrics": {"latencyMs": 120}}
        return [
            *messages,
            eventstream.event("contentBlockStop", padded({"contentBlockIndex": 0})),
            eventstream.event("messageStop", padded({"stopReason": "end_turn"})),
            eventstream.event("metadata", padded(metadata)),
        ]


def _anthropic_events(script: fake_anthropic.MessagesScript, error: str | None) -> list[dict[str, Any]]:
    """The Messages API's stream events as Bedrock carries them: the JSON of each, pings left out."""
    events = []
    for block in script.stream_events():
        data = next(line[6:] for line in block.splitlines() if line.startswith("data: "))
        event = json.loads(data)
        if event.get("type") != "ping":
            events.append(event)
    if error:
        events = events[:5]  # message_start, content_block_start, two deltas
    return events


def answer(path: str, body: bytes, headers: dict[str, str], number: int) -> Answer:
    found = ROUTE.search(path.partition("?")[0])
    assert found is not None
    model, operation = unquote(found.group("model")), found.group("operation")
    common = {"x-amzn-RequestId": str(uuid.UUID(int=number))}
    if "x-fake-error" in headers:
        status, _, name = headers["x-fake-error"].partition(":")
        error = json.dumps({"message": f"fake {name}"}).encode()
        return Answer(
            int(status), "application/json", {**common, "x-amzn-ErrorType": f"{name}:{ERROR_NAMESPACE}"}, error
        )
    request = json.loads(body or b"{}")
    knobs: dict[str, int] = {
        "chunks": int(headers.get("x-fake-chunks", len(WORDS))),
        "cache_read": int(headers.get("x-fake-cache-read", 0)),
        "cache_write_5m": int(headers.get("x-fake-cache-write-5m", 0)),
        "cache_write_1h": int(headers.get("x-fake-cache-write-1h", 0)),
    }
    stream_error = headers.get("x-fake-stream-error")
    if operation.startswith("converse"):
        script = ConverseScript(request, **knobs)
        if operation == "converse":
            return Answer(200, "application/json", common, json.dumps(script.response()).encode())
        return Answer(200, EVENT_STREAM, common, script.stream(stream_error))
    claude = fake_anthropic.MessagesScript(
        {**request, "model": model},
        chunks=knobs["chunks"],
        cache_read=knobs["cache_read"],
        cache_write_5m=knobs["cache_write_5m"],
        cache_write_1h=knobs["cache_write_1h"],
        number=number,
    )
    message = claude.message()
    usage = message["usage"]
    counts = {
        "X-Amzn-Bedrock-Input-Token-Count": str(usage["input_tokens"]),
        "X-Amzn-Bedrock-Output-Token-Count": str(usage["output_tokens"]),
        "X-Amzn-Bedrock-Invocation-Latency": "230",
    }
    if operation == "invoke":
        return Answer(200, "application/json", {**common, **counts}, json.dumps(message).encode())
    events = _anthropic_events(claude, stream_error)
    if not stream_error:
        events[-1]["amazon-bedrock-invocationMetrics"] = {
            "inputTokenCount": usage["input_tokens"],
            "outputTokenCount": usage["output_tokens"],
            "invocationLatency": 230,
            "firstByteLatency": 90,
        }
    messages = [eventstream.chunk(event) for event in events]
    if stream_error:
        messages.append(eventstream.exception(stream_error, f"fake {stream_error}"))
    return Answer(200, EVENT_STREAM, {**common, "X-Amzn-Bedrock-Content-Type": "application/json"}, messages)
