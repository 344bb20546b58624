"""OpenAI wire protocol: requests, responses and streams as plain data.

Covers chat completions, the Responses API, legacy completions and embeddings, on OpenAI, Azure
OpenAI and OpenAI-compatible hosts. This layer knows nothing of mitmproxy or OpenTelemetry.
Every parser here takes bytes that came off the network and must never raise on them: a
malformed body gives an empty result, never an exception.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import re
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import parse_qs

from sse import (
    Encoder,
    IdentityEncoder,
    SSEEvent,
    SSEFramer,
    Transcoder,
    incremental_decoder,
    incremental_encoder,
    parse_sse_event,
)

# Longest client-controlled string (model names, error codes) that becomes telemetry.
MAX_LABEL_LENGTH = 128


# --- which flows are observed -------------------------------------------------------------

DEFAULT_PROVIDER = "openai"
# Providers whose servers are known to accept `stream_options.include_usage`.
USAGE_REWRITE_PROVIDERS = {"openai", "azure.ai.openai"}
# Azure OpenAI accepts stream_options from this api-version on (and on the /openai/v1/ paths).
AZURE_STREAM_OPTIONS_SINCE = "2024-09-01"


@dataclass(frozen=True)
class HostRule:
    """One `genai_hosts` entry: `HOST[:PORT][=PROVIDER][;stream_usage=on|off]`, HOST may be a glob."""

    host_pattern: str
    port: int | None
    provider: str
    stream_usage: bool | None = None  # None: decided by provider

    def matches(self, host: str, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        return fnmatch.fnmatchcase(host.lower(), self.host_pattern)


_PROVIDER_NAME = re.compile(r"^[a-z0-9_.]{1,64}$")
_HOST_PATTERN = re.compile(r"^[a-z0-9*?.\-\[\]]{1,253}$")
_SWITCH = {"on": True, "true": True, "off": False, "false": False}


def parse_host_rule(entry: str) -> HostRule:
    """Parse a `genai_hosts` entry; raise ValueError with a readable reason."""
    entry, _, flags = entry.strip().partition(";")
    stream_usage: bool | None = None
    if flags:
        name, _, value = flags.strip().partition("=")
        if name.strip() != "stream_usage" or value.strip().lower() not in _SWITCH:
            raise ValueError(f"unknown setting {flags.strip()!r}; only stream_usage=on|off is known")
        stream_usage = _SWITCH[value.strip().lower()]
    spec, _, provider = entry.partition("=")
    provider = provider.strip() or DEFAULT_PROVIDER
    if not _PROVIDER_NAME.match(provider):
        raise ValueError(f"provider {provider!r} must be 1-64 of a-z, 0-9, '_' or '.'")
    host, port_text = spec.strip().lower(), ""
    if host.startswith("["):  # [::1]:8000
        inner, _, rest = host[1:].partition("]")
        host, port_text = inner, rest.removeprefix(":")
    elif host.count(":") == 1:
        host, port_text = host.split(":")
    if not host or not (_HOST_PATTERN.match(host) or ":" in host):
        raise ValueError(f"host {host!r} is not a host name, address or glob")
    port: int | None = None
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"port {port_text!r} is not a number from 1 to 65535")
        port = int(port_text)
    return HostRule(host, port, provider, stream_usage)


def match_host(rules: Sequence[HostRule], host: str, port: int) -> HostRule | None:
    for rule in rules:
        if rule.matches(host, port):
            return rule
    return None


@dataclass(frozen=True)
class Endpoint:
    """What an observed request calls: the operation, the API shape and Azure routing."""

    operation: str  # gen_ai.operation.name: chat | text_completion | embeddings
    api_type: str  # chat_completions | responses | completions | embeddings
    deployment: str | None = None  # Azure /openai/deployments/{deployment}/...
    api_version: str | None = None  # Azure ?api-version=...
    azure_v1: bool = False  # Azure /openai/v1/... (no api-version needed)


# Longest suffix first: "/chat/completions" must win over "/completions".
_ROUTES = (
    ("/chat/completions", "chat", "chat_completions"),
    ("/responses", "chat", "responses"),
    ("/completions", "text_completion", "completions"),
    ("/embeddings", "embeddings", "embeddings"),
)
_AZURE_DEPLOYMENT = re.compile(r"/openai/deployments/([^/]{1,128})/")


def classify_endpoint(method: str, path: str) -> Endpoint | None:
    """The observed endpoint of `METHOD path`, under any prefix (`/v1`, `/openai/v1`, ...)."""
    return _classify_path(path) if method == "POST" else None


# Every request passes here; clients call the same few paths over and over.
@functools.lru_cache(maxsize=1024)
def _classify_path(path: str) -> Endpoint | None:
    route, _, query = path.partition("?")
    route = route.rstrip("/")
    for suffix, operation, api_type in _ROUTES:
        if route.endswith(suffix):
            deployment = _AZURE_DEPLOYMENT.search(route + "/")
            versions = parse_qs(query).get("api-version") if query else None
            return Endpoint(
                operation=operation,
                api_type=api_type,
                deployment=deployment.group(1) if deployment else None,
                api_version=versions[0][:32] if versions else None,
                azure_v1="/openai/v1/" in route + "/",
            )
    return None


def adds_include_usage(rule: HostRule, endpoint: Endpoint) -> bool:
    """May the addon add `stream_options.include_usage` to this streamed request?

    Only toward servers known to accept it: some (older Azure api-versions, some compatible
    servers) answer an unknown `stream_options` with 400. A host entry's `stream_usage` wins.
    """
    if endpoint.api_type not in ("chat_completions", "completions"):
        return False  # the Responses API always reports usage; embeddings never stream
    if rule.stream_usage is not None:
        return rule.stream_usage
    if rule.provider == "azure.ai.openai":
        return endpoint.azure_v1 or (endpoint.api_version or "") >= AZURE_STREAM_OPTIONS_SINCE
    return rule.provider in USAGE_REWRITE_PROVIDERS


# --- secrets ------------------------------------------------------------------------------

_KEY_SCHEME = re.compile(r"^(sk-(?:[a-z]{1,10}-)?)")
# Below this many secret characters, even the last four say too much.
_MIN_SECRET_FOR_SUFFIX = 16


@functools.lru_cache(maxsize=256)  # a proxy sees the same few keys on every call
def mask_api_key(credential: str | None) -> str:
    """Keep at most the scheme prefix (`sk-`, `sk-proj-`, ...) and the last 4 characters.

    Accepts an `Authorization` header value (`Bearer sk-...`) or a bare key (Azure `api-key`).
    """
    if not credential:
        return "none"
    words = credential.split(None, 1)
    if words and words[0].lower() == "bearer":
        words = words[1:]
    key = words[0].strip() if words else ""
    if not key:
        return "none"
    scheme_match = _KEY_SCHEME.match(key)
    scheme = scheme_match.group(1) if scheme_match else ""
    secret = key[len(scheme) :]
    if len(secret) < _MIN_SECRET_FOR_SUFFIX:
        return f"{scheme}..."
    return f"{scheme}...{secret[-4:]}"


# --- JSON helpers -------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _integer(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return int(value)


def _count(value: Any) -> int | None:
    number = _integer(value)
    return number if number is not None and number >= 0 else None


def _label(value: Any) -> str | None:
    """A client- or server-supplied string made safe to use as a telemetry value."""
    if not isinstance(value, str) or not value:
        return None
    return value[:MAX_LABEL_LENGTH]


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _load_json_object(body: bytes | str | None) -> dict[str, Any] | None:
    if not body:
        return None
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


# --- large bodies -------------------------------------------------------------------------

# Above this size a JSON body is not parsed whole (that would stall mitmproxy's event loop; long
# contexts, images and batch embeddings reach many MB): its head and tail are searched for the
# few top-level members telemetry needs. Responses put `usage` last and `id`/`model` first or
# last; requests put the big `messages`/`input` in one member, the small ones before or after it.
LARGE_BODY = 1024 * 1024
_EDGE = 64 * 1024
_RESPONSE_MEMBERS = re.compile(r'"(id|model|usage|system_fingerprint|service_tier|status)"\s*:\s*')
# Request members that are plain values and whose names do not also occur nested in messages.
_REQUEST_MEMBERS = re.compile(
    r'"(model|stream|stream_options|temperature|top_p|max_tokens|max_completion_tokens|max_output_tokens'
    r'|frequency_penalty|presence_penalty|seed|n|service_tier|dimensions|encoding_format)"\s*:\s*'
)


def _members_near_edges(body: bytes, members: re.Pattern[str]) -> dict[str, Any]:
    """Summary members found in the body's head and tail, JSON-decoded.

    A key's quoted name followed by a colon cannot occur inside a JSON string (its quotes would
    be escaped), so each match is a real member. Top-level `id` and `model` come before nested
    ones (tool calls have ids too), so the head's first match wins; `usage` is the last member,
    so the tail's last match wins for it.
    """
    decoder = json.JSONDecoder()
    found: dict[str, Any] = {}
    for edge, is_tail in ((body[:_EDGE], False), (body[-_EDGE:], True)):
        text = edge.decode("utf-8", "replace")
        for match in members.finditer(text):
            name = match.group(1)
            if name in found and not (is_tail and name == "usage"):
                continue
            try:
                found[name], _ = decoder.raw_decode(text, match.end())
            except ValueError:
                continue
    return found


# --- requests -----------------------------------------------------------------------------


@dataclass
class ApiRequest:
    """What the client asked for, as far as telemetry cares."""

    model: str | None = None
    stream: bool = False
    include_usage: bool = False
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    stop_sequences: list[str] | None = None
    seed: int | None = None
    choice_count: int | None = None
    service_tier: str | None = None
    output_type: str | None = None
    encoding_formats: list[str] | None = None
    dimensions: int | None = None


_OUTPUT_TYPES = {"text": "text", "json_object": "json", "json_schema": "json"}


def _request_members(body: bytes | None) -> dict[str, Any] | None:
    return _members_near_edges(body, _REQUEST_MEMBERS) if body and len(body) > LARGE_BODY else _load_json_object(body)


def parse_request(endpoint: Endpoint, body: bytes | None) -> ApiRequest:
    data = _request_members(body)
    if data is None:
        return ApiRequest()
    stream_options = data.get("stream_options")
    stop = data.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if endpoint.api_type == "responses":
        output_format = _object(_object(data.get("text")).get("format")).get("type")
        max_tokens = data.get("max_output_tokens")
    else:
        output_format = _object(data.get("response_format")).get("type")
        max_tokens = data.get("max_completion_tokens", data.get("max_tokens"))
    encoding_format = _label(data.get("encoding_format"))
    return ApiRequest(
        model=_label(data.get("model")),
        stream=data.get("stream") is True,
        include_usage=_object(stream_options).get("include_usage") is True,
        temperature=_number(data.get("temperature")),
        top_p=_number(data.get("top_p")),
        max_tokens=_integer(max_tokens),
        frequency_penalty=_number(data.get("frequency_penalty")),
        presence_penalty=_number(data.get("presence_penalty")),
        stop_sequences=[s[:MAX_LABEL_LENGTH] for s in stop[:16] if isinstance(s, str)]
        if isinstance(stop, list)
        else None,
        seed=_integer(data.get("seed")),
        choice_count=_integer(data.get("n")),
        service_tier=_label(data.get("service_tier")),
        output_type=_OUTPUT_TYPES.get(str(output_format)),
        encoding_formats=[encoding_format] if encoding_format else None,
        dimensions=_integer(data.get("dimensions")),
    )


INCLUDE_USAGE_MEMBER = b'"stream_options":{"include_usage":true},'


def request_with_include_usage(body: bytes, request: ApiRequest) -> bytes | None:
    """The request body with `stream_options.include_usage` set, or None when unsafe to touch.

    `request` is `parse_request` of the same body. Unsafe: not a JSON object or `stream` not
    literally true (then `request.stream` is false), or `stream_options` present but not an object
    (or present in a body too large to parse). Without `stream_options`, one member is inserted at
    the front and the client's bytes are otherwise kept; with it, its other fields are kept.
    """
    if not request.stream:
        return None
    if b'"stream_options"' not in body:
        opening = body.find(b"{")
        rest = body[opening + 1 :].lstrip()
        if opening < 0 or body[:opening].strip() or rest[:1] in (b"}", b""):
            return None
        return body[: opening + 1] + INCLUDE_USAGE_MEMBER + body[opening + 1 :]
    data = _load_json_object(body) if len(body) <= LARGE_BODY else None
    stream_options = data.setdefault("stream_options", {}) if data is not None else None
    if not isinstance(stream_options, dict):
        return None
    stream_options["include_usage"] = True
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


# --- responses ----------------------------------------------------------------------------


@dataclass
class Usage:
    """Token counts as billed. Input includes cached; output includes reasoning."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    cached_input_tokens: int | None = None
    reasoning_output_tokens: int | None = None


def parse_usage(value: Any) -> Usage | None:
    """Usage in any of OpenAI's shapes: chat/completions/embeddings or the Responses API."""
    if not isinstance(value, dict):
        return None
    if "input_tokens" in value or "output_tokens" in value:  # Responses API
        input_details = _object(value.get("input_tokens_details"))
        output_details = _object(value.get("output_tokens_details"))
        usage = Usage(
            input_tokens=_count(value.get("input_tokens")),
            output_tokens=_count(value.get("output_tokens")),
            total_tokens=_count(value.get("total_tokens")),
            cached_input_tokens=_count(input_details.get("cached_tokens")),
            reasoning_output_tokens=_count(output_details.get("reasoning_tokens")),
        )
    else:
        prompt_details = _object(value.get("prompt_tokens_details"))
        completion_details = _object(value.get("completion_tokens_details"))
        usage = Usage(
            input_tokens=_count(value.get("prompt_tokens")),
            output_tokens=_count(value.get("completion_tokens")),
            total_tokens=_count(value.get("total_tokens")),
            cached_input_tokens=_count(prompt_details.get("cached_tokens")),
            reasoning_output_tokens=_count(completion_details.get("reasoning_tokens")),
        )
    if usage.input_tokens is None and usage.output_tokens is None:
        return None
    return usage


@dataclass
class ApiResult:
    """What the upstream answered, from a JSON body or a whole stream."""

    response_id: str | None = None
    response_model: str | None = None
    finish_reasons: list[str] = field(default_factory=list)
    usage: Usage | None = None
    system_fingerprint: str | None = None
    service_tier: str | None = None
    error_type: str | None = None


_ERROR_LABEL = re.compile(r"[^A-Za-z0-9_.\-]")


def error_label(value: Any) -> str | None:
    """An upstream error code or type, cut down to a safe low-cardinality label."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        return None
    return _ERROR_LABEL.sub("_", value[:64])


def error_type_from_object(data: dict[str, Any]) -> str | None:
    """`{"error": {"code": ..., "type": ...}}` → the code, else the type."""
    error = data.get("error")
    if isinstance(error, dict):
        return error_label(error.get("code")) or error_label(error.get("type")) or "error"
    if isinstance(error, str):
        return "error"
    return None


def _finish_reasons(choices: Any) -> dict[int, str]:
    reasons: dict[int, str] = {}
    if isinstance(choices, list):
        for position, choice in enumerate(choices):
            if isinstance(choice, dict) and isinstance(choice.get("finish_reason"), str):
                index = _integer(choice.get("index"))
                reasons[position if index is None else index] = choice["finish_reason"][:MAX_LABEL_LENGTH]
    return reasons


def _responses_finish_reason(response: dict[str, Any]) -> str | None:
    """A Responses API status as a chat-style finish reason."""
    status = response.get("status")
    if status == "completed":
        output = response.get("output")
        calls_tools = isinstance(output, list) and any(
            isinstance(item, dict) and str(item.get("type", "")).endswith("_call") for item in output
        )
        return "tool_calls" if calls_tools else "stop"
    if status == "incomplete":
        return _label(_object(response.get("incomplete_details")).get("reason")) or "incomplete"
    return _label(status) if status in ("failed", "cancelled") else None


def _responses_result(response: dict[str, Any], result: ApiResult) -> ApiResult:
    result.response_id = _label(response.get("id")) or result.response_id
    result.response_model = _label(response.get("model")) or result.response_model
    result.service_tier = _label(response.get("service_tier")) or result.service_tier
    result.usage = parse_usage(response.get("usage")) or result.usage
    reason = _responses_finish_reason(response)
    if reason:
        result.finish_reasons = [reason]
    error = response.get("error")
    if isinstance(error, dict):
        result.error_type = error_label(error.get("code")) or error_label(error.get("type")) or "error"
    return result


def parse_response(endpoint: Endpoint, body: bytes | None) -> ApiResult:
    data = _members_near_edges(body, _RESPONSE_MEMBERS) if body and len(body) > LARGE_BODY else _load_json_object(body)
    if data is None:
        return ApiResult()
    if endpoint.api_type == "responses" and set(data) - {"error"}:  # a response object, not an error envelope
        return _responses_result(data, ApiResult())
    reasons = _finish_reasons(data.get("choices"))
    return ApiResult(
        response_id=_label(data.get("id")),
        response_model=_label(data.get("model")),
        finish_reasons=[reasons[i] for i in sorted(reasons)],
        usage=parse_usage(data.get("usage")),
        system_fingerprint=_label(data.get("system_fingerprint")),
        service_tier=_label(data.get("service_tier")),
        error_type=error_type_from_object(data),
    )


def error_type_for_status(status_code: int, body: bytes | None) -> str:
    """`error.type` of a failed HTTP exchange: the OpenAI error code, else the status code."""
    data = _load_json_object(body)
    return (error_type_from_object(data) if data else None) or str(status_code)


# --- rate limits and upstream headers -----------------------------------------------------


@dataclass
class RateLimits:
    """OpenAI's `x-ratelimit-*` response headers; reset times in seconds."""

    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests_s: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens_s: float | None = None

    def known(self) -> bool:
        return any(value is not None for value in vars(self).values())


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


def _header_count(headers: Mapping[str, str], name: str) -> int | None:
    """A count of up to 18 ASCII digits (Unicode digits pass `isdigit` but are no header count)."""
    value = headers.get(name)
    if value is None:
        return None
    value = value.strip()
    return int(value) if 0 < len(value) <= 18 and value.isascii() and value.isdigit() else None


def parse_rate_limits(headers: Mapping[str, str]) -> RateLimits:
    return RateLimits(
        limit_requests=_header_count(headers, "x-ratelimit-limit-requests"),
        remaining_requests=_header_count(headers, "x-ratelimit-remaining-requests"),
        reset_requests_s=parse_reset_duration(headers.get("x-ratelimit-reset-requests")),
        limit_tokens=_header_count(headers, "x-ratelimit-limit-tokens"),
        remaining_tokens=_header_count(headers, "x-ratelimit-remaining-tokens"),
        reset_tokens_s=parse_reset_duration(headers.get("x-ratelimit-reset-tokens")),
    )


@dataclass
class UpstreamInfo:
    """What the upstream's headers say beyond the body."""

    request_id: str | None = None  # x-request-id, for support tickets
    processing_ms: float | None = None  # openai-processing-ms
    rate_limits: RateLimits = field(default_factory=RateLimits)


_REQUEST_ID = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")
# The response headers `parse_upstream_headers` reads (lower case).
UPSTREAM_HEADERS = (
    "x-request-id",
    "apim-request-id",
    "openai-processing-ms",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
)


def parse_upstream_headers(headers: Mapping[str, str]) -> UpstreamInfo:
    request_id = headers.get("x-request-id") or headers.get("apim-request-id")
    processing = headers.get("openai-processing-ms")
    try:
        processing_ms = float(processing) if processing else None
    except ValueError:
        processing_ms = None
    return UpstreamInfo(
        request_id=request_id if request_id and _REQUEST_ID.match(request_id) else None,
        processing_ms=processing_ms,
        rate_limits=parse_rate_limits(headers),
    )


# --- message content (opt-in) -------------------------------------------------------------

# Longest text kept per message part, and the most parts kept, when content capture is on.
MAX_PART_CHARS = 16_384
MAX_PARTS = 256
TRUNCATED = "…[truncated]"


@dataclass
class CapturedContent:
    """Prompt and completion in the GenAI conventions' shape, as JSON strings for span attributes."""

    system_instructions: str | None = None
    input_messages: str | None = None
    output_messages: str | None = None


def _text_part(text: Any) -> dict[str, Any]:
    content = str(text)
    if len(content) > MAX_PART_CHARS:
        content = content[:MAX_PART_CHARS] + TRUNCATED
    return {"type": "text", "content": content}


def _content_parts(content: Any) -> list[dict[str, Any]]:
    """Chat or Responses content (a string or a list of typed parts) as convention parts."""
    if isinstance(content, str):
        return [_text_part(content)] if content else []
    parts = []
    for part in content if isinstance(content, list) else []:
        if not isinstance(part, dict):
            continue
        kind = str(part.get("type", ""))
        text = part.get("text", part.get("refusal"))
        if isinstance(text, str):
            parts.append(_text_part(text))
        elif kind:  # images, audio, files: say what was there, not the data
            parts.append({"type": kind[:64]})
    return parts


def _tool_call_part(call: dict[str, Any]) -> dict[str, Any]:
    function = _object(call.get("function"))
    return {
        "type": "tool_call",
        "id": _label(call.get("id") or call.get("call_id")),
        "name": _label(function.get("name") or call.get("name")),
        "arguments": str(function.get("arguments", call.get("arguments", "")))[:MAX_PART_CHARS],
    }


def _chat_input(messages: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    inputs: list[dict[str, Any]] = []
    for message in messages if isinstance(messages, list) else []:
        if not isinstance(message, dict):
            continue
        role = str(message.get("role", "user"))
        if role in ("system", "developer"):
            system += _content_parts(message.get("content"))
            continue
        if role == "tool":
            parts = [
                {
                    "type": "tool_call_response",
                    "id": _label(message.get("tool_call_id")),
                    "response": str(message.get("content", ""))[:MAX_PART_CHARS],
                }
            ]
        else:
            parts = _content_parts(message.get("content"))
            parts += [_tool_call_part(c) for c in message.get("tool_calls") or [] if isinstance(c, dict)]
        inputs.append({"role": role[:32], "parts": parts})
    return system, inputs


def _responses_input(data: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system = _content_parts(data.get("instructions"))
    items = data.get("input")
    if isinstance(items, str):
        return system, [{"role": "user", "parts": [_text_part(items)]}]
    inputs: list[dict[str, Any]] = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        kind = item.get("type", "message")
        if kind == "function_call_output":
            response = str(item.get("output", ""))[:MAX_PART_CHARS]
            part = {"type": "tool_call_response", "id": _label(item.get("call_id")), "response": response}
            inputs.append({"role": "tool", "parts": [part]})
        elif kind == "function_call":
            inputs.append({"role": "assistant", "parts": [_tool_call_part(item)]})
        elif kind == "message":
            role = str(item.get("role", "user"))
            if role in ("system", "developer"):
                system += _content_parts(item.get("content"))
            else:
                inputs.append({"role": role[:32], "parts": _content_parts(item.get("content"))})
    return system, inputs


def _dump(value: list[dict[str, Any]]) -> str | None:
    return json.dumps(value[:MAX_PARTS], ensure_ascii=False, separators=(",", ":")) if value else None


def captured_input(endpoint: Endpoint, body: bytes | None) -> CapturedContent:
    """System instructions and input messages of a request (chat, Responses, completions).

    Bodies over LARGE_BODY are not captured: parsing them would stall the proxy.
    """
    data = (_load_json_object(body) if body and len(body) <= LARGE_BODY else None) or {}
    if endpoint.api_type == "responses":
        system, inputs = _responses_input(data)
    elif endpoint.api_type == "completions":
        prompt = data.get("prompt")
        prompts = prompt if isinstance(prompt, list) else [prompt] if prompt else []
        system, inputs = [], [{"role": "user", "parts": [_text_part(p) for p in prompts if isinstance(p, str)]}]
    elif endpoint.api_type == "chat_completions":
        system, inputs = _chat_input(data.get("messages"))
    else:
        return CapturedContent()
    return CapturedContent(system_instructions=_dump(system), input_messages=_dump(inputs))


def _responses_output(response: dict[str, Any]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for item in response.get("output") or []:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "message":
            parts += _content_parts(item.get("content"))
        elif str(item.get("type", "")).endswith("_call"):
            parts.append(_tool_call_part(item))
    reason = _responses_finish_reason(response)
    return [{"role": "assistant", "parts": parts, "finish_reason": reason or "stop"}] if parts else []


def captured_output(endpoint: Endpoint, body: bytes | None) -> str | None:
    """The output messages of a plain (not streamed) response; not for bodies over LARGE_BODY."""
    data = (_load_json_object(body) if body and len(body) <= LARGE_BODY else None) or {}
    if endpoint.api_type == "responses":
        return _dump(_responses_output(data))
    messages = []
    for choice in data.get("choices") or []:
        if not isinstance(choice, dict):
            continue
        message = _object(choice.get("message"))
        parts = _content_parts(message.get("content") if message else choice.get("text"))
        parts += [_tool_call_part(c) for c in message.get("tool_calls") or [] if isinstance(c, dict)]
        messages.append({"role": "assistant", "parts": parts, "finish_reason": choice.get("finish_reason") or "stop"})
    return _dump(messages)


class StreamedOutput:
    """Reassembles streamed output from chat/completion deltas, within the part size cap."""

    def __init__(self) -> None:
        self._texts: dict[int, list[str]] = {}
        self._sizes: dict[int, int] = {}
        self._calls: dict[tuple[int, int], dict[str, Any]] = {}
        self._reasons: dict[int, str] = {}

    def add(self, choices: list[Any]) -> None:
        for position, choice in enumerate(choices):
            if not isinstance(choice, dict):
                continue
            index = _integer(choice.get("index"))
            index = position if index is None else index
            delta = _object(choice.get("delta"))
            text = delta.get("content", choice.get("text"))
            if isinstance(text, str) and text and self._sizes.get(index, 0) <= MAX_PART_CHARS:
                self._texts.setdefault(index, []).append(text)
                self._sizes[index] = self._sizes.get(index, 0) + len(text)
            for call in delta.get("tool_calls") or []:
                if isinstance(call, dict):
                    slot = self._calls.setdefault((index, _integer(call.get("index")) or 0), {"arguments": ""})
                    function = _object(call.get("function"))
                    slot["id"] = slot.get("id") or call.get("id")
                    slot["name"] = slot.get("name") or function.get("name")
                    if len(slot["arguments"]) <= MAX_PART_CHARS:
                        slot["arguments"] += str(function.get("arguments") or "")
            if isinstance(choice.get("finish_reason"), str):
                self._reasons[index] = choice["finish_reason"]

    def messages(self) -> str | None:
        indexes = sorted(set(self._texts) | {i for i, _ in self._calls} | set(self._reasons))
        messages = []
        for index in indexes:
            parts = _content_parts("".join(self._texts.get(index, [])))
            calls = sorted((k, v) for k, v in self._calls.items() if k[0] == index)
            parts += [_tool_call_part(call) for _, call in calls]
            messages.append({"role": "assistant", "parts": parts, "finish_reason": self._reasons.get(index, "stop")})
        return _dump(messages)


# --- streams ------------------------------------------------------------------------------


class StreamAccumulator:
    """Folds the events of one stream into an ApiResult and chunk timings.

    With `capture_content`, it also keeps the output text (`output_messages()`).
    """

    def __init__(self, started: float, capture_content: bool = False) -> None:
        self.capture_content = capture_content
        self.result = ApiResult()
        self.started = started
        self.time_to_first_chunk: float | None = None
        # Seconds between consecutive output chunks after the first; compact for long streams.
        self.chunk_intervals = array("d")
        self.done = False
        self._last_output_at: float | None = None

    def _output_chunk(self, now: float) -> None:
        if self._last_output_at is None:
            self.time_to_first_chunk = now - self.started
        else:
            self.chunk_intervals.append(now - self._last_output_at)
        self._last_output_at = now

    def consume(self, event: SSEEvent, now: float) -> bool:
        """Record one event; True when it is the usage-only chunk that include_usage adds."""
        raise NotImplementedError

    def output_messages(self) -> str | None:
        raise NotImplementedError


def _delta_has_output(choice: dict[str, Any]) -> bool:
    """Content, a tool call or reasoning: what counts as an output chunk (not the role opener)."""
    if choice.get("text"):  # legacy completions
        return True
    delta = choice.get("delta")
    if not isinstance(delta, dict):
        return False
    return bool(
        delta.get("content")
        or delta.get("tool_calls")
        or delta.get("function_call")
        or delta.get("reasoning_content")
        or delta.get("reasoning")
        or delta.get("refusal")
    )


class ChatStreamAccumulator(StreamAccumulator):
    """Chat completion and legacy completion streams: `data: {chunk}` … `data: [DONE]`."""

    def __init__(self, started: float, capture_content: bool = False) -> None:
        super().__init__(started, capture_content)
        self._reasons: dict[int, str] = {}
        self._output = StreamedOutput() if capture_content else None

    def output_messages(self) -> str | None:
        return self._output.messages() if self._output else None

    def consume(self, event: SSEEvent, now: float) -> bool:
        data = event.data
        if data is None:
            return False
        if data == "[DONE]":
            self.done = True
            return False
        chunk = _load_json_object(data)
        if chunk is None:
            return False
        result = self.result
        error_type = error_type_from_object(chunk)
        if error_type:
            result.error_type = error_type
            return False
        if result.response_id is None:
            result.response_id = _label(chunk.get("id"))
        if result.response_model is None:
            result.response_model = _label(chunk.get("model"))
        if result.system_fingerprint is None:
            result.system_fingerprint = _label(chunk.get("system_fingerprint"))
        if result.service_tier is None:
            result.service_tier = _label(chunk.get("service_tier"))
        usage = parse_usage(chunk.get("usage"))
        if usage is not None:
            result.usage = usage
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            return False
        if self._output is not None:
            self._output.add(choices)
        has_output = reason_added = False
        for position, choice in enumerate(choices):
            if not isinstance(choice, dict):
                continue
            has_output = has_output or _delta_has_output(choice)
            reason = choice.get("finish_reason")
            if isinstance(reason, str):
                index = _integer(choice.get("index"))
                self._reasons[position if index is None else index] = reason[:MAX_LABEL_LENGTH]
                reason_added = True
        if reason_added:
            result.finish_reasons = [self._reasons[i] for i in sorted(self._reasons)]
        if has_output:
            self._output_chunk(now)
        return not choices and usage is not None


_RESPONSE_LIFECYCLE = {"response.created", "response.in_progress", "response.queued"}
_RESPONSE_TERMINAL = {"response.completed", "response.incomplete", "response.failed"}


class ResponsesStreamAccumulator(StreamAccumulator):
    """Responses API streams: `event: <type>` / `data: {json}` pairs; usage in the terminal event.

    Only lifecycle, terminal and error events are parsed as JSON; a delta is known by its type.
    The terminal event carries the whole response, so captured output is read from it.
    """

    def __init__(self, started: float, capture_content: bool = False) -> None:
        super().__init__(started, capture_content)
        self._final_output: str | None = None

    def output_messages(self) -> str | None:
        return self._final_output

    def consume(self, event: SSEEvent, now: float) -> bool:
        kind = event.event
        if kind is None and event.data:  # servers that put the type only in the JSON
            kind = str(_object(_load_json_object(event.data)).get("type"))
        if not kind:
            return False
        if kind.endswith(".delta"):
            self._output_chunk(now)
        elif kind in _RESPONSE_LIFECYCLE or kind in _RESPONSE_TERMINAL:
            response = _object(_object(_load_json_object(event.data)).get("response"))
            _responses_result(response, self.result)
            if kind in _RESPONSE_TERMINAL:
                self.done = True
                if self.capture_content:
                    self._final_output = _dump(_responses_output(response))
        elif kind == "error":
            data = _object(_load_json_object(event.data))
            self.result.error_type = (
                error_label(data.get("code"))
                or error_type_from_object(data)
                or error_label(data.get("type"))
                or "error"
            )
        return False


def stream_accumulator(endpoint: Endpoint, started: float, capture_content: bool = False) -> StreamAccumulator:
    if endpoint.api_type == "responses":
        return ResponsesStreamAccumulator(started, capture_content)
    return ChatStreamAccumulator(started, capture_content)


# `"usage":null` that include_usage adds to every chunk, as the last member of the object.
_USAGE_NULL_MEMBER = re.compile(rb',\s*"usage"\s*:\s*null\s*}(\s*(?:\r\n|\n|\r))')


class EventStream:
    """One streamed response, fed the raw body chunks as they pass.

    `observe` only watches. `filter` also returns what the client should get instead of the
    chunk: used when the addon added `include_usage` to the request, so the usage-only chunk
    and the `"usage":null` members it causes are removed and the client sees the stream it
    asked for. Events are released as soon as they are complete; nothing else is held back.
    """

    def __init__(self, content_encoding: str | None, accumulator: StreamAccumulator) -> None:
        self.accumulator = accumulator
        self._framer = SSEFramer()
        self._content_encoding = content_encoding
        decoder = incremental_decoder(content_encoding)
        self.decodable = decoder is not None  # the encoders cover the same encodings
        self._decode: Transcoder = decoder or (lambda data: b"")
        self._encoder: Encoder | None = None  # made on the first `filter`: observe mode needs none
        self._passthrough = False

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            self._encoder = incremental_encoder(self._content_encoding) or IdentityEncoder()
        return self._encoder

    def observe(self, chunk: bytes, now: float) -> None:
        if self.decodable and chunk:
            for block in self._framer.feed(self._decode(chunk)):
                self.accumulator.consume(parse_sse_event(block), now)

    def finish(self, now: float) -> None:
        """The body has ended: read an unterminated last event, if any (observe mode)."""
        if self.decodable:
            for block in self._framer.finish():
                self.accumulator.consume(parse_sse_event(block), now)

    def filter(self, chunk: bytes, now: float) -> list[bytes]:
        """What to send on in place of `chunk` (b"" marks the end of the body).

        Compressed data that does not decode switches the stream to plain pass-through: what
        was held back goes out, then the upstream's bytes as they come.
        """
        if self._passthrough:
            return [chunk] if chunk else []
        try:
            blocks = self._framer.feed(self._decode(chunk)) if chunk else self._framer.finish()
        except Exception:
            self._passthrough = True
            held = self._framer.finish()
            return [piece for piece in (self.encoder.encode(b"".join(held)) if held else b"", chunk) if piece]
        kept: list[bytes] = []
        for block in blocks:
            if self.accumulator.consume(parse_sse_event(block), now):
                continue
            kept.append(_USAGE_NULL_MEMBER.sub(rb"}\1", block, count=1))
        out = self.encoder.encode(b"".join(kept)) if kept else b""
        if not chunk:
            out += self.encoder.finish()
        return [out] if out else []


# --- a finished exchange ------------------------------------------------------------------


@dataclass
class Exchange:
    """One observed call, finished: everything the telemetry layer records."""

    endpoint: Endpoint
    provider: str
    server_address: str
    server_port: int
    request: ApiRequest
    api_key: str  # already masked
    start_time_ns: int  # wall clock, for the span
    duration_s: float
    result: ApiResult = field(default_factory=ApiResult)
    status_code: int | None = None
    error_type: str | None = None
    time_to_first_chunk_s: float | None = None
    chunk_intervals_s: Sequence[float] = ()
    # The response's header fields the proxy read, `UPSTREAM_HEADERS` among them (lower-case
    # names), parsed only where they are recorded (`upstream`): the proxy passes them on as they are.
    upstream_headers: dict[str, str] = field(default_factory=dict)
    cost_usd: float | None = None
    content: CapturedContent | None = None  # only when content capture is on
    # W3C trace context headers the client sent (`traceparent`, `tracestate`).
    trace_headers: dict[str, str] = field(default_factory=dict)

    @property
    def usage(self) -> Usage | None:
        return self.result.usage

    @functools.cached_property
    def upstream(self) -> UpstreamInfo:
        return parse_upstream_headers(self.upstream_headers)

    @property
    def operation(self) -> str:
        return self.endpoint.operation

    @property
    def request_model(self) -> str | None:
        """The model asked for; on Azure a request may name only a deployment, then the response's."""
        return self.request.model or self.result.response_model


class FinishedCall(NamedTuple):
    """One finished call as the proxy hands it on: plain values, and the bodies it did not parse.

    Built on mitmproxy's event loop for every call, and pickled there for the telemetry process:
    a tuple costs a tenth of an `Exchange` (whose request and result objects the telemetry process
    would replace anyway) to build and to pickle. `exchange_of` makes the `Exchange`.
    """

    endpoint: Endpoint
    provider: str
    server_address: str
    server_port: int
    api_key: str  # already masked
    start_time_ns: int
    duration_s: float
    status_code: int | None
    error_type: str | None
    request: ApiRequest | bytes | None  # parsed, or the body still to parse (None: no body)
    result: ApiResult | bytes  # parsed, or the body still to parse
    upstream_headers: dict[str, str]
    trace_headers: dict[str, str]
    time_to_first_chunk_s: float | None = None
    chunk_intervals_s: Sequence[float] = ()
    content: CapturedContent | None = None


def exchange_of(call: FinishedCall) -> Exchange:
    """The `Exchange` of a finished call, parsing the bodies the proxy passed on as they were."""
    request = call.request
    if not isinstance(request, ApiRequest):
        request = parse_request(call.endpoint, request)
    result, error_type = call.result, call.error_type
    if not isinstance(result, ApiResult):
        body, result = result, parse_response(call.endpoint, result)
        if error_type is None and call.status_code is not None and call.status_code >= 400:
            error_type = error_type_for_status(call.status_code, body)
    return Exchange(
        endpoint=call.endpoint,
        provider=call.provider,
        server_address=call.server_address,
        server_port=call.server_port,
        request=request,
        api_key=call.api_key,
        start_time_ns=call.start_time_ns,
        duration_s=call.duration_s,
        result=result,
        status_code=call.status_code,
        error_type=error_type,
        time_to_first_chunk_s=call.time_to_first_chunk_s,
        chunk_intervals_s=call.chunk_intervals_s,
        upstream_headers=call.upstream_headers,
        content=call.content,
        trace_headers=call.trace_headers,
    )


def summarize(exchange: Exchange) -> str:
    """One human line: operation, model, tokens, cost, duration, time to first chunk, error."""
    model = exchange.result.response_model or exchange.request_model or "?"
    parts = [f"{exchange.operation} {model}"]
    usage = exchange.usage
    if usage is not None:
        tokens = f"{usage.input_tokens or 0} in / {usage.output_tokens or 0} out"
        extras = []
        if usage.cached_input_tokens:
            extras.append(f"{usage.cached_input_tokens} cached")
        if usage.reasoning_output_tokens:
            extras.append(f"{usage.reasoning_output_tokens} reasoning")
        parts.append(tokens + (f" ({', '.join(extras)})" if extras else ""))
    elif exchange.request.stream and exchange.error_type is None:
        parts.append("usage unavailable")
    if exchange.cost_usd is not None:
        parts.append(f"${exchange.cost_usd:.6f}")
    parts.append(f"{exchange.duration_s:.3f}s")
    if exchange.time_to_first_chunk_s is not None:
        parts.append(f"first chunk {exchange.time_to_first_chunk_s:.3f}s")
    if exchange.error_type is not None:
        status = f" ({exchange.status_code})" if exchange.status_code else ""
        parts.append(f"error {exchange.error_type}{status}")
    return " · ".join(parts)


def describe_stream(endpoint: Endpoint, body: bytes) -> str:
    """A streamed response told as a person reads it: the reassembled answer, tool calls, usage.

    For mitmweb's contentview; `body` is the decoded stream.
    """
    stream = EventStream(None, stream_accumulator(endpoint, 0.0, capture_content=True))
    stream.observe(body, 0.0)
    stream.finish(0.0)
    result = stream.accumulator.result
    lines = [f"{endpoint.operation} ({endpoint.api_type}) · model {result.response_model or '?'}"]
    if result.response_id:
        lines.append(f"id {result.response_id}")
    usage = result.usage
    if usage is not None:
        lines.append(
            f"usage: {usage.input_tokens or 0} input ({usage.cached_input_tokens or 0} cached), "
            f"{usage.output_tokens or 0} output ({usage.reasoning_output_tokens or 0} reasoning)"
        )
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
            if part.get("type") == "text":
                lines.append(part.get("content", ""))
            elif part.get("type") == "tool_call":
                lines.append(f"→ tool call {part.get('name')}({part.get('arguments')})  [{part.get('id')}]")
    return "\n".join(lines)
