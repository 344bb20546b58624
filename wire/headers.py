"""What the header fields of a call say beyond the bodies, read the same way for every vendor:
the client (User-Agent), the trace context, request ids, rate limits and their reset times
(durations such as `6ms` or `1m3s`, or RFC 3339 moments turned into seconds from the call's end).
Which fields a vendor sends is its `wire.vendor.Vendor`'s to say.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime

from wire.agents import CODEX_WINDOW_HEADER, SESSION_HEADERS, SUBAGENT_HEADERS, AgentSession, agent_session
from wire.values import label

# Rate-limit budgets a vendor may state.
BUDGETS = ("requests", "tokens", "input_tokens", "output_tokens")


@dataclass
class RateLimits:
    """Rate-limit headroom of the call's key, per budget; reset times in seconds from the call's end."""

    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests_s: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens_s: float | None = None
    limit_input_tokens: int | None = None
    remaining_input_tokens: int | None = None
    reset_input_tokens_s: float | None = None
    limit_output_tokens: int | None = None
    remaining_output_tokens: int | None = None
    reset_output_tokens_s: float | None = None

    def known(self) -> bool:
        return any(getattr(self, item.name) is not None for item in fields(self))


_DURATION_PART = re.compile(r"([0-9]{1,12}(?:\.[0-9]{1,9})?)(ms|h|m|s)")
_DURATION = re.compile(r"(?:[0-9]{1,12}(?:\.[0-9]{1,9})?(?:ms|h|m|s))+")
_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_reset_duration(text: str | None) -> float | None:
    """`8.64s`, `132ms`, `1m3s`, `2h0m0s` → seconds; None if it is not such a duration."""
    if not text:
        return None
    text = text.strip()
    if not _DURATION.fullmatch(text):
        return None
    return sum(float(number) * _DURATION_UNITS[unit] for number, unit in _DURATION_PART.findall(text))


def parse_reset_time(text: str | None, now_s: float) -> float | None:
    """An RFC 3339 time (`2026-03-03T03:03:04Z`) as seconds after `now_s` (epoch seconds, at least 0)."""
    if not text or len(text) > 40:
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return max(moment.timestamp() - now_s, 0.0)


def header_count(headers: Mapping[str, str], name: str) -> int | None:
    """A count of up to 18 ASCII digits (Unicode digits pass `isdigit` but are no header count)."""
    value = headers.get(name)
    if value is None:
        return None
    value = value.strip()
    return int(value) if 0 < len(value) <= 18 and value.isascii() and value.isdigit() else None


def rate_limits_from(
    headers: Mapping[str, str], now_s: float, patterns: Mapping[str, str], reset_as_moment: bool
) -> RateLimits:
    """The rate limits of the headers named `patterns[budget] % part` (part: limit, remaining,
    reset); resets are durations, or moments (`reset_as_moment`)."""
    limits = RateLimits()
    for budget, pattern in patterns.items():
        setattr(limits, f"limit_{budget}", header_count(headers, pattern % "limit"))
        setattr(limits, f"remaining_{budget}", header_count(headers, pattern % "remaining"))
        reset = headers.get(pattern % "reset")
        reset_s = parse_reset_time(reset, now_s) if reset_as_moment else parse_reset_duration(reset)
        setattr(limits, f"reset_{budget}_s", reset_s)
    return limits


def rate_limit_headers(patterns: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(pattern % part for pattern in patterns.values() for part in ("limit", "remaining", "reset"))


@dataclass
class UpstreamInfo:
    """What the upstream's headers say beyond the body."""

    request_id: str | None = None  # for support tickets
    processing_ms: float | None = None  # openai-processing-ms
    rate_limits: RateLimits = field(default_factory=RateLimits)


_REQUEST_ID = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")


def request_id_of(headers: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    """The first of the header fields `names` that holds a plausible request id."""
    request_id = next((value for name in names if (value := headers.get(name))), None)
    return request_id if request_id and _REQUEST_ID.match(request_id) else None


# The request header fields every call keeps (besides the key, masked at once, and its vendor's
# own, `Vendor.request_headers`): the trace context and the client's User-Agent.
TRACE_HEADERS = ("traceparent", "tracestate")
REQUEST_HEADERS = (*TRACE_HEADERS, "user-agent", *SESSION_HEADERS, CODEX_WINDOW_HEADER, *SUBAGENT_HEADERS)
# Trace context headers longer than this are not W3C-valid anyway; ignore them.
MAX_TRACE_HEADER_LENGTH = 512
MAX_USER_AGENT_LENGTH = 256
UNKNOWN_CLIENT = "unknown"
_PRODUCT = re.compile(r"[^a-z0-9._\-]")


@dataclass
class Client:
    """Which program made the call, from its User-Agent: `claude-cli/2.1.197 (external, sdk-cli)`
    is `claude-cli` 2.1.197; `OpenAI/Python 1.54.3` (the SDKs' form) is `openai-python` 1.54.3."""

    name: str = UNKNOWN_CLIENT
    version: str | None = None

    @property
    def label(self) -> str:
        """Name and major version, `openai-python/1`: few enough distinct values to group by."""
        major = re.match(r"\d+", self.version or "")
        return f"{self.name}/{major.group()}" if major else self.name


def parse_user_agent(user_agent: str | None) -> Client:
    words = (user_agent or "").split()
    if not words:
        return Client()
    name, _, version = words[0].partition("/")
    if version and not version[0].isdigit() and len(words) > 1 and words[1][:1].isdigit():
        name, version = f"{name}-{version}", words[1]  # "OpenAI/Python 1.54.3"
    product = _PRODUCT.sub("", name.lower())[:64]
    return Client(product or UNKNOWN_CLIENT, label(version))


@dataclass
class RequestInfo:
    """What the request's common headers say: the client, and the agent session it is part of."""

    user_agent: str | None = None  # as sent, cut at MAX_USER_AGENT_LENGTH
    client: Client = field(default_factory=Client)
    session: AgentSession | None = None


_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")


def parse_traceparent(value: str | None) -> tuple[int, int] | None:
    """A W3C `traceparent`'s trace id and parent span id, or None (absent, malformed, or zero)."""
    found = _TRACEPARENT.match(value.strip().lower()) if value else None
    if found is None:
        return None
    trace_id, span_id = int(found.group(1), 16), int(found.group(2), 16)
    return (trace_id, span_id) if trace_id and span_id else None


def parse_request_headers(headers: Mapping[str, str], body_session: str | None = None) -> RequestInfo:
    """What the request's recorded headers say; `body_session`: the agent session its body names."""
    user_agent = headers.get("user-agent")
    return RequestInfo(
        user_agent=user_agent[:MAX_USER_AGENT_LENGTH] if user_agent else None,
        client=parse_user_agent(user_agent),
        session=agent_session(headers, body_session),
    )
