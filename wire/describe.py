"""Calls told as a person reads them: the one-line summary and mitmweb's stream view."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from wire.agents import agent_session
from wire.call import Call, Endpoint
from wire.stream import EventStream

UNPRICED = "–"  # no price for the model: no cost is known, which is not a cost of 0


@dataclass(frozen=True)
class Description:
    """A shown call as the proxy shows it, made where it is parsed and priced: `summarize`'s line,
    and whether it failed (the flow is marked). `call_id` is the call's `description_id`."""

    call_id: int
    text: str
    failed: bool

    @classmethod
    def of(cls, call: Call) -> Description:
        assert call.description_id is not None
        return cls(call.description_id, summarize(call), call.error_type is not None)


def format_usd(cost: float | None) -> str:
    """A cost in USD with enough digits to show it: `0.001234`, `0.000042`, `0.0000000420`."""
    if cost is None:
        return UNPRICED
    if cost == 0 or cost >= 0.0001:
        return f"{cost:.6f}"
    return f"{cost:.{1 - math.floor(math.log10(cost))}f}"


def summarize(call: Call) -> str:
    """One human line, the most useful first: mitmweb's comment column shows about 20 characters
    (`$0.0011 · 67→64 tok`). The error, the cost, the tokens in→out (and their parts), duration,
    time to the first content chunk, then operation and model (in the flow's path or body anyway)."""
    parts = []
    error_type = call.error_type
    if error_type is not None:
        status = f" ({call.status_code})" if call.status_code else ""
        parts.append(f"error {error_type}{status}")
    if call.cost_usd is not None:
        parts.append(f"${format_usd(call.cost_usd)}")
    usage = call.usage
    if usage is not None:
        tokens = f"{usage.input_tokens if usage.input_tokens is not None else '?'}→{usage.output_tokens or 0} tok"
        extras = []
        if usage.cache_read_tokens:
            extras.append(f"{usage.cache_read_tokens} cached")
        if usage.cache_write_tokens:
            extras.append(f"{usage.cache_write_tokens} cache write")
        if usage.reasoning_tokens:
            extras.append(f"{usage.reasoning_tokens} reasoning")
        parts.append(tokens + (f" ({', '.join(extras)})" if extras else ""))
    elif call.usage_unavailable:
        parts.append("usage unavailable")
    parts.append(f"{call.duration_s:.3f}s")
    if call.time_to_first_chunk_s is not None:
        parts.append(f"first content {call.time_to_first_chunk_s:.3f}s")
    parts.append(call.endpoint.api.call_label(call))
    session = agent_session(call.origin.request_headers, call.request.agent_session)
    if session is not None:  # an agent's session (`wire.agents`): its first characters say which
        parts.append(f"session {session.session_id[:8]}")
    return " · ".join(parts)


def describe_stream(endpoint: Endpoint, body: bytes, content_type: str, usage_removed: bool = False) -> str:
    """A streamed response told as a person reads it: the reassembled answer, tool calls, usage.

    For mitmweb's contentview; `body` is the decoded stream as the client got it. `usage_removed`:
    the proxy asked the upstream for usage and took it out of the client's stream again.
    """
    framer = endpoint.api.stream_framer(content_type.lower(), endpoint)
    stream = EventStream(None, endpoint.api.stream_accumulator(0.0, capture_content=True), framer)
    stream.observe(body, 0.0)
    stream.finish(0.0)
    result = stream.accumulator.result
    lines = [f"{endpoint.operation} ({endpoint.api.name}) · model {result.response_model or endpoint.model or '?'}"]
    if result.response_id:
        lines.append(f"id {result.response_id}")
    usage = result.usage
    if usage is not None:
        cache_write = f", {usage.cache_write_tokens} cache write" if usage.cache_write_tokens else ""
        lines.append(
            f"usage: {usage.input_tokens or 0} input ({usage.cache_read_tokens or 0} cached{cache_write}), "
            f"{usage.output_tokens or 0} output ({usage.reasoning_tokens or 0} reasoning)"
        )
    elif usage_removed:
        lines.append("usage: requested by the proxy and removed from the client's stream (see metered)")
    else:
        lines.append("usage: not in this stream")
    if result.error_type:
        lines.append(f"error: {result.error_type}")
    if result.finish_reasons:
        lines.append(f"finish: {', '.join(result.finish_reasons)}")
    messages = json.loads(stream.accumulator.output_messages() or "[]")
    for number, message in enumerate(messages):
        lines.append("")
        lines.append(f"assistant{f' (choice {number})' if len(messages) > 1 else ''}:")
        for part in message.get("parts", []):
            kind = part.get("type")
            if kind == "text":
                lines.append(part.get("content", ""))
            elif kind == "reasoning":
                lines.append(f"(thinking) {part.get('content', '')}")
            elif kind == "tool_call":
                lines.append(f"→ tool call {part.get('name')}({part.get('arguments')})  [{part.get('id')}]")
            elif kind:
                lines.append(f"[{kind}]")
    return "\n".join(lines)
