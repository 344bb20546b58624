"""What the fake upstream answers to `POST …/v1/messages`, as api.anthropic.com does.

It follows the real API where the addon cares: `event:` lines, `message_start` with the usage
so far, `ping` written as `{"type": "ping"}`, paced `content_block_delta`s, a `message_delta`
with the cumulative usage (input and cache counts repeated), `message_stop`; `data:` JSON padded
with spaces before its closing brace as the real API writes it; Anthropic's error bodies and
`anthropic-ratelimit-*` headers with RFC 3339 reset times; `request-id`. Test knobs come as
request headers (the SDK sends them with `extra_headers`):

- `x-fake-fixture: NAME`: replay tests/fixtures/recorded-anthropic/NAME.yaml.
- `x-fake-chunks: N`, `x-fake-chunk-delay-ms: D`: N text deltas, D ms apart.
- `x-fake-cache-read: N`, `x-fake-cache-write-5m: N`, `x-fake-cache-write-1h: N`: cache tokens.
- `x-fake-error: STATUS:TYPE`: an Anthropic error body (529 overloaded_error, 429 rate_limit_error, ...).
- `x-fake-stream-error: TYPE`: an `event: error` after the second delta, then the stream ends.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from harness.recordings import load_anthropic

WORDS = ["Hello", " from", " a", " fake", " Claude", "."]
SERVICE_TIER = "standard"


def padded(data: dict[str, Any]) -> str:
    """JSON as the real API writes some events: spaces before the closing brace."""
    return json.dumps(data, separators=(",", ":"))[:-1] + "      }"


def sse(kind: str, data: dict[str, Any]) -> str:
    body = '{"type": "ping"}' if kind == "ping" else padded(data)
    return f"event: {kind}\ndata: {body}\n\n"


def prompt_tokens(request: dict[str, Any]) -> int:
    """A deterministic stand-in for the tokenizer: 8 + one per word of text in system and messages."""
    words = 0

    def count(content: Any) -> None:
        nonlocal words
        if isinstance(content, str):
            words += len(content.split())
        elif isinstance(content, list):
            for block in content:
                if isinstance(block, dict) and block.get("type") == "text":
                    words += len(str(block.get("text", "")).split())

    count(request.get("system"))
    for message in request.get("messages") or []:
        if isinstance(message, dict):
            count(message.get("content"))
    return 8 + words


def rate_limit_headers(now: datetime | None = None) -> dict[str, str]:
    moment = (now or datetime.now(UTC)) + timedelta(seconds=30)
    reset = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    headers = {}
    for budget, limit, remaining in (
        ("requests", 1000, 999),
        ("tokens", 540000, 539000),
        ("input-tokens", 450000, 449000),
        ("output-tokens", 90000, 90000),
    ):
        headers[f"anthropic-ratelimit-{budget}-limit"] = str(limit)
        headers[f"anthropic-ratelimit-{budget}-remaining"] = str(remaining)
        headers[f"anthropic-ratelimit-{budget}-reset"] = reset
    return headers


def error_body(kind: str) -> bytes:
    body = {"type": "error", "error": {"type": kind, "message": f"fake {kind}"}, "request_id": "req_fake"}
    return json.dumps(body).encode()


# What the fake model passes a tool it calls (Claude Code's Glob needs a pattern).
TOOL_INPUTS: dict[str, dict[str, Any]] = {"Glob": {"pattern": "*.txt"}}


@dataclass
class MessagesScript:
    """One answer to a Messages API request, plain or streamed."""

    request: dict[str, Any]
    chunks: int = len(WORDS)
    cache_read: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    number: int = 0
    # `x-fake-compaction: N`: a server-side compaction pass of N input tokens (and N // 2 written to
    # the cache, 400 output) in `usage.iterations`, which the top-level counts leave out.
    compaction: int = 0
    speed: str | None = None  # `x-fake-speed: fast`

    @property
    def model(self) -> str:
        return str(self.request.get("model") or "claude-fake")

    @property
    def message_id(self) -> str:
        return f"msg_fake{self.number:08d}"

    def texts(self) -> list[str]:
        return [WORDS[i % len(WORDS)] for i in range(self.chunks)]

    def usage(self, output_tokens: int) -> dict[str, Any]:
        usage = self._usage(output_tokens)
        if self.speed:
            usage["speed"] = self.speed
        if self.compaction:
            compacting = {
                "type": "compaction",
                "input_tokens": self.compaction,
                "cache_creation_input_tokens": self.compaction // 2,
                "cache_read_input_tokens": 0,
                "cache_creation": {"ephemeral_5m_input_tokens": self.compaction // 2, "ephemeral_1h_input_tokens": 0},
                "output_tokens": 400,
            }
            turn = {"type": "message", "model": self.model} | {
                key: usage[key]
                for key in (
                    "input_tokens",
                    "cache_creation_input_tokens",
                    "cache_read_input_tokens",
                    "cache_creation",
                    "output_tokens",
                )
            }
            usage["iterations"] = [compacting, turn]
        return usage

    def _usage(self, output_tokens: int) -> dict[str, Any]:
        return {
            "input_tokens": prompt_tokens(self.request),
            "cache_creation_input_tokens": self.cache_write_5m + self.cache_write_1h,
            "cache_read_input_tokens": self.cache_read,
            "cache_creation": {
                "ephemeral_5m_input_tokens": self.cache_write_5m,
                "ephemeral_1h_input_tokens": self.cache_write_1h,
            },
            "output_tokens": output_tokens,
            "service_tier": SERVICE_TIER,
        }

    def tool_uses(self) -> list[dict[str, Any]]:
        """As a model told to use a tool: a `tool_use` of each tool declared (at most two) with
        `tool_choice: {"type": "any"}`, or of the one the first message asks for with
        `(fake: use NAME)` (what an agent's user prompt can carry); none once the last message
        brings the tools' results."""
        messages = self.request.get("messages") or [{}]
        last = messages[-1]
        content = last.get("content") if isinstance(last.get("content"), list) else []
        if any(block.get("type") == "tool_result" for block in content):
            return []
        tools = (self.request.get("tools") or [])[:2]
        if (self.request.get("tool_choice") or {}).get("type") != "any":
            asked = re.search(r"\(fake: use (\w+)\)", json.dumps(messages[0]))
            if not asked:
                return []
            tools = [tool for tool in self.request.get("tools") or [] if tool.get("name") == asked.group(1)][:1]
        return [
            {
                "type": "tool_use",
                "id": f"toolu_fake{self.number:08d}{n}",
                "name": tool["name"],
                "input": TOOL_INPUTS.get(tool["name"], {"n": n}),
            }
            for n, tool in enumerate(tools)
        ]

    def message(self) -> dict[str, Any]:
        uses = self.tool_uses()
        return {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [{"type": "text", "text": "".join(self.texts())}, *uses],
            "stop_reason": "tool_use" if uses else "end_turn",
            "stop_sequence": None,
            "usage": self.usage(self.chunks),
        }

    def stream_events(self, error: str | None = None) -> list[str]:
        start = {**self.message(), "content": [], "stop_reason": None, "usage": self.usage(1)}
        events = [
            sse("message_start", {"type": "message_start", "message": start}),
            sse(
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            ),
            sse("ping", {}),
        ]
        for number, text in enumerate(self.texts()):
            delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}
            events.append(sse("content_block_delta", delta))
            if error and number == 1:
                events.append(sse("error", {"type": "error", "error": {"type": error, "message": f"fake {error}"}}))
                return events
        usage = {
            key: value
            for key, value in self.usage(self.chunks).items()
            if key not in ("cache_creation", "service_tier")
        }
        events.append(sse("content_block_stop", {"type": "content_block_stop", "index": 0}))
        for index, use in enumerate(self.tool_uses(), start=1):
            opening = {"type": "content_block_start", "index": index, "content_block": {**use, "input": {}}}
            delta = {"type": "input_json_delta", "partial_json": json.dumps(use["input"])}
            events += [
                sse("content_block_start", opening),
                sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}),
                sse("content_block_stop", {"type": "content_block_stop", "index": index}),
            ]
        reason = "tool_use" if self.tool_uses() else "end_turn"
        events += [
            sse(
                "message_delta",
                {"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": None}, "usage": usage},
            ),
            sse("message_stop", {"type": "message_stop"}),
        ]
        return events


def claude_code_request(model: str) -> dict[str, Any]:
    """The shape of what Claude Code 2.1 sends, headless: a stream, system and message blocks with
    `cache_control`, nine tools, thinking."""
    ephemeral = {"type": "ephemeral"}
    return {
        "model": model,
        "max_tokens": 32000,
        "stream": True,
        "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": ephemeral}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": ephemeral}]}],
        "tools": [{"name": f"Tool{i}", "input_schema": {"type": "object"}} for i in range(9)],
        "thinking": {"type": "enabled", "budget_tokens": 31999},
    }


def recorded_events(name: str) -> tuple[int, str, list[str] | bytes]:
    """A recording's status, content type, and its events (streams) or body."""
    recording = load_anthropic(name)
    content_type = recording.response_headers.get("content-type", "application/json")
    if recording.streamed:
        text = recording.response_body.decode()
        return recording.status, content_type, [event + "\n\n" for event in text.split("\n\n") if event.strip()]
    return recording.status, content_type, recording.response_body
