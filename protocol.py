"""OpenAI wire protocol: requests, responses and Server-Sent Event streams as plain data.

This layer knows nothing of mitmproxy or OpenTelemetry. Every parser here takes bytes that
came off the network and must never raise on them: a malformed body gives an empty result,
never an exception, so the addon above can stay a thin, safe shim.
"""

from __future__ import annotations

import fnmatch
import json
import re
import sys
import zlib
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import brotli

if sys.version_info >= (3, 14):  # pragma: no cover
    from compression import zstd
else:  # pragma: no cover
    from backports import zstd

# Longest client-controlled string (model names, error codes) that becomes telemetry.
MAX_LABEL_LENGTH = 128
CHAT_COMPLETIONS_SUFFIX = "/chat/completions"


# --- which flows are observed -------------------------------------------------------------


@dataclass(frozen=True)
class HostRule:
    """One `genai_hosts` entry: `HOST[:PORT][=PROVIDER]`, HOST may be a glob."""

    host_pattern: str
    port: int | None
    provider: str

    def matches(self, host: str, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        return fnmatch.fnmatchcase(host.lower(), self.host_pattern)


DEFAULT_PROVIDER = "openai"
_PROVIDER_NAME = re.compile(r"^[a-z0-9_.]{1,64}$")
_HOST_PATTERN = re.compile(r"^[a-z0-9*?.\-\[\]]{1,253}$")


def parse_host_rule(entry: str) -> HostRule:
    """Parse a `genai_hosts` entry; raise ValueError with a readable reason."""
    spec, _, provider = entry.strip().partition("=")
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
    return HostRule(host, port, provider)


def match_host(rules: Sequence[HostRule], host: str, port: int) -> HostRule | None:
    for rule in rules:
        if rule.matches(host, port):
            return rule
    return None


def is_chat_completions(method: str, path: str) -> bool:
    """`POST .../chat/completions`, under any prefix (`/v1`, `/openai/v1`, `/api/v1`, ...)."""
    return method == "POST" and path.partition("?")[0].rstrip("/").endswith(CHAT_COMPLETIONS_SUFFIX)


# --- secrets ------------------------------------------------------------------------------

_KEY_SCHEME = re.compile(r"^(sk-(?:[a-z]{1,10}-)?)")
# Below this many secret characters, even the last four say too much.
_MIN_SECRET_FOR_SUFFIX = 16


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


# --- requests -----------------------------------------------------------------------------


@dataclass
class ChatRequest:
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


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _integer(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return int(value)


def _label(value: Any) -> str | None:
    """A client- or server-supplied string made safe to use as a telemetry value."""
    if not isinstance(value, str) or not value:
        return None
    return value[:MAX_LABEL_LENGTH]


def _load_json_object(body: bytes | str | None) -> dict[str, Any] | None:
    if not body:
        return None
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


_OUTPUT_TYPES = {"text": "text", "json_object": "json", "json_schema": "json"}


def parse_chat_request(body: bytes | None) -> ChatRequest:
    data = _load_json_object(body)
    if data is None:
        return ChatRequest()
    stream_options = data.get("stream_options")
    stop = data.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    response_format = data.get("response_format")
    max_tokens = data.get("max_completion_tokens", data.get("max_tokens"))
    return ChatRequest(
        model=_label(data.get("model")),
        stream=data.get("stream") is True,
        include_usage=isinstance(stream_options, dict) and stream_options.get("include_usage") is True,
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
        output_type=_OUTPUT_TYPES.get(str(response_format.get("type"))) if isinstance(response_format, dict) else None,
    )


def request_with_include_usage(body: bytes) -> bytes | None:
    """The request body with `stream_options.include_usage` set, or None when unsafe to touch.

    Unsafe: not a JSON object, `stream` not literally true, or `stream_options` present but not
    an object. Other `stream_options` fields are kept.
    """
    data = _load_json_object(body)
    if data is None or data.get("stream") is not True:
        return None
    stream_options = data.setdefault("stream_options", {})
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


def _count(value: Any) -> int | None:
    number = _integer(value)
    return number if number is not None and number >= 0 else None


def parse_chat_usage(value: Any) -> Usage | None:
    if not isinstance(value, dict):
        return None
    prompt_details = value.get("prompt_tokens_details")
    completion_details = value.get("completion_tokens_details")
    usage = Usage(
        input_tokens=_count(value.get("prompt_tokens")),
        output_tokens=_count(value.get("completion_tokens")),
        total_tokens=_count(value.get("total_tokens")),
        cached_input_tokens=_count(prompt_details.get("cached_tokens")) if isinstance(prompt_details, dict) else None,
        reasoning_output_tokens=_count(completion_details.get("reasoning_tokens"))
        if isinstance(completion_details, dict)
        else None,
    )
    if usage.input_tokens is None and usage.output_tokens is None:
        return None
    return usage


@dataclass
class ChatResult:
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


def parse_chat_response(body: bytes | None) -> ChatResult:
    data = _load_json_object(body)
    if data is None:
        return ChatResult()
    result = ChatResult(
        response_id=_label(data.get("id")),
        response_model=_label(data.get("model")),
        usage=parse_chat_usage(data.get("usage")),
        system_fingerprint=_label(data.get("system_fingerprint")),
        service_tier=_label(data.get("service_tier")),
        error_type=error_type_from_object(data),
    )
    choices = data.get("choices")
    if isinstance(choices, list):
        reasons = {}
        for position, choice in enumerate(choices):
            if isinstance(choice, dict) and isinstance(choice.get("finish_reason"), str):
                index = _integer(choice.get("index"))
                reasons[position if index is None else index] = choice["finish_reason"][:MAX_LABEL_LENGTH]
        result.finish_reasons = [reasons[i] for i in sorted(reasons)]
    return result


def error_type_for_status(status_code: int, body: bytes | None) -> str:
    """`error.type` of a failed HTTP exchange: the OpenAI error code, else the status code."""
    data = _load_json_object(body)
    return (error_type_from_object(data) if data else None) or str(status_code)


# --- content-encoding ---------------------------------------------------------------------


Transcoder = Callable[[bytes], bytes]


def _zlib_decoder(wbits: int) -> Transcoder:
    decompressor = zlib.decompressobj(wbits)
    return decompressor.decompress


def _deflate_decoder() -> Transcoder:
    """`deflate` is zlib-wrapped by the RFC, raw in practice: decide on the first byte."""
    inner: list[Transcoder] = []

    def decode(data: bytes) -> bytes:
        if not inner:
            if not data:
                return b""
            # A zlib header's first byte has compression method 8 in its low nibble.
            inner.append(_zlib_decoder(15 if data[0] & 0x0F == 8 else -15))
        return inner[0](data)

    return decode


def _zstd_decoder() -> Transcoder:
    """zstd bodies may hold several frames; a decompressor handles one."""
    state = [zstd.ZstdDecompressor()]

    def decode(data: bytes) -> bytes:
        out = []
        while data:
            out.append(state[0].decompress(data))
            if not state[0].eof:
                break
            data = state[0].unused_data
            state[0] = zstd.ZstdDecompressor()
        return b"".join(out)

    return decode


def _brotli_decoder() -> Transcoder:
    return brotli.Decompressor().process  # type: ignore[no-any-return]


_DECODERS: dict[str, Callable[[], Transcoder]] = {
    "identity": lambda: lambda data: data,
    "gzip": lambda: _zlib_decoder(31),
    "x-gzip": lambda: _zlib_decoder(31),
    "deflate": _deflate_decoder,
    "br": _brotli_decoder,
    "zstd": _zstd_decoder,
}


def _single_encoding(content_encoding: str | None) -> str | None:
    encoding = (content_encoding or "identity").strip().lower()
    return encoding if encoding in _DECODERS else None


def incremental_decoder(content_encoding: str | None) -> Transcoder | None:
    """A stateful decoder for one body, or None for unknown or stacked encodings."""
    encoding = _single_encoding(content_encoding)
    return _DECODERS[encoding]() if encoding else None


class Encoder(Protocol):
    def encode(self, data: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


class _IdentityEncoder:
    def encode(self, data: bytes) -> bytes:
        return data

    def finish(self) -> bytes:
        return b""


class _ZlibEncoder:
    def __init__(self, wbits: int) -> None:
        self._compressor = zlib.compressobj(wbits=wbits)

    def encode(self, data: bytes) -> bytes:
        return self._compressor.compress(data) + self._compressor.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        return self._compressor.flush(zlib.Z_FINISH)


class _BrotliEncoder:
    def __init__(self) -> None:
        self._compressor = brotli.Compressor()

    def encode(self, data: bytes) -> bytes:
        return self._compressor.process(data) + self._compressor.flush()  # type: ignore[no-any-return]

    def finish(self) -> bytes:
        return self._compressor.finish()  # type: ignore[no-any-return]


class _ZstdEncoder:
    def __init__(self) -> None:
        self._compressor = zstd.ZstdCompressor()

    def encode(self, data: bytes) -> bytes:
        return self._compressor.compress(data, zstd.ZstdCompressor.FLUSH_BLOCK)

    def finish(self) -> bytes:
        return self._compressor.flush(zstd.ZstdCompressor.FLUSH_FRAME)


_ENCODERS: dict[str, Callable[[], Encoder]] = {
    "identity": _IdentityEncoder,
    "gzip": lambda: _ZlibEncoder(31),
    "x-gzip": lambda: _ZlibEncoder(31),
    "deflate": lambda: _ZlibEncoder(15),
    "br": _BrotliEncoder,
    "zstd": _ZstdEncoder,
}


def incremental_encoder(content_encoding: str | None) -> Encoder | None:
    """A stateful encoder that flushes after every call, so nothing is held back."""
    encoding = _single_encoding(content_encoding)
    return _ENCODERS[encoding]() if encoding else None


# --- Server-Sent Events -------------------------------------------------------------------

# A blank line: two line terminators in a row. A lone CR counts only when no LF follows it.
_EVENT_END = re.compile(rb"(?:\r\n|\n|\r(?!\n))(?:\r\n|\n|\r(?!\n))")


class SSEFramer:
    """Cuts a byte stream into raw SSE event blocks (each with its closing blank line).

    Works on bytes so a UTF-8 character split across network chunks is never decoded half.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._scan_from = 0

    @property
    def pending(self) -> bytes:
        return bytes(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        blocks: list[bytes] = []
        start = 0
        # A trailing CR may be the first half of CRLF: decide when the next byte comes.
        end = len(self._buffer) - 1 if self._buffer.endswith(b"\r") else len(self._buffer)
        position = max(self._scan_from, 0)
        while True:
            match = _EVENT_END.search(self._buffer, position, end)
            if match is None:
                break
            blocks.append(bytes(self._buffer[start : match.end()]))
            start = position = match.end()
        if start:
            del self._buffer[:start]
        # Resume just before the unscanned tail: a terminator pair may straddle the boundary.
        self._scan_from = max(len(self._buffer) - 3, 0)
        return blocks

    def finish(self) -> list[bytes]:
        """The unterminated remainder at the end of the body, if any."""
        rest = bytes(self._buffer)
        self._buffer.clear()
        self._scan_from = 0
        return [rest] if rest.strip() else []


@dataclass
class SSEEvent:
    event: str | None
    data: str | None


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def parse_sse_event(block: bytes) -> SSEEvent:
    """Fields of one event block; comments and unknown fields are ignored."""
    event: str | None = None
    data_lines: list[str] = []
    for line in _LINE_BREAK.split(block.decode("utf-8", "replace")):
        if not line or line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data_lines.append(value)
        elif name == "event":
            event = value
    return SSEEvent(event, "\n".join(data_lines) if data_lines else None)


# --- chat completion streams --------------------------------------------------------------


def _delta_has_output(delta: Any) -> bool:
    """Content, a tool call or reasoning: what counts as an output chunk (not the role opener)."""
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


class ChatStreamAccumulator:
    """Folds the events of one chat completion stream into a ChatResult and chunk timings."""

    def __init__(self, started: float) -> None:
        self.result = ChatResult()
        self.started = started
        self.time_to_first_chunk: float | None = None
        # Seconds between consecutive output chunks after the first; compact for long streams.
        self.chunk_intervals = array("d")
        self.done = False
        self._last_output_at: float | None = None
        self._reasons: dict[int, str] = {}

    def consume(self, event: SSEEvent, now: float) -> bool:
        """Record one event; True when it is the usage-only chunk that include_usage adds."""
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
        choices = chunk.get("choices")
        usage = parse_chat_usage(chunk.get("usage"))
        if usage is not None:
            result.usage = usage
        if not isinstance(choices, list):
            return False
        has_output = False
        for position, choice in enumerate(choices):
            if not isinstance(choice, dict):
                continue
            has_output = has_output or _delta_has_output(choice.get("delta"))
            reason = choice.get("finish_reason")
            if isinstance(reason, str):
                index = _integer(choice.get("index"))
                self._reasons[position if index is None else index] = reason[:MAX_LABEL_LENGTH]
                result.finish_reasons = [self._reasons[i] for i in sorted(self._reasons)]
        if has_output:
            if self._last_output_at is None:
                self.time_to_first_chunk = now - self.started
            else:
                self.chunk_intervals.append(now - self._last_output_at)
            self._last_output_at = now
        return not choices and usage is not None


# `"usage":null` that include_usage adds to every chunk, as the last member of the object.
_USAGE_NULL_MEMBER = re.compile(rb',\s*"usage"\s*:\s*null\s*}(\s*(?:\r\n|\n|\r))')


class ChatStream:
    """One streamed chat completion response, fed the raw body chunks as they pass.

    `observe` only watches. `filter` also returns what the client should get instead of the
    chunk: used when the addon added `include_usage` to the request, so the usage-only chunk
    and the `"usage":null` members it causes are removed and the client sees the stream it
    asked for. Events are released as soon as they are complete; nothing else is held back.
    """

    def __init__(self, content_encoding: str | None, started: float) -> None:
        self.accumulator = ChatStreamAccumulator(started)
        self._framer = SSEFramer()
        decoder = incremental_decoder(content_encoding)
        encoder = incremental_encoder(content_encoding)
        self.decodable = decoder is not None and encoder is not None
        self._decode: Transcoder = decoder or (lambda data: b"")
        self._encoder: Encoder = encoder or _IdentityEncoder()
        self._passthrough = False

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
            return [piece for piece in (self._encoder.encode(b"".join(held)) if held else b"", chunk) if piece]
        kept: list[bytes] = []
        for block in blocks:
            if self.accumulator.consume(parse_sse_event(block), now):
                continue
            kept.append(_USAGE_NULL_MEMBER.sub(rb"}\1", block, count=1))
        out = self._encoder.encode(b"".join(kept)) if kept else b""
        if not chunk:
            out += self._encoder.finish()
        return [out] if out else []


# --- a finished exchange ------------------------------------------------------------------


@dataclass
class Exchange:
    """One observed call, finished: everything the telemetry layer records."""

    operation: str
    api_type: str
    provider: str
    server_address: str
    server_port: int
    request: ChatRequest
    api_key: str  # already masked
    start_time_ns: int  # wall clock, for span timestamps
    duration_s: float
    result: ChatResult = field(default_factory=ChatResult)
    status_code: int | None = None
    error_type: str | None = None
    time_to_first_chunk_s: float | None = None
    chunk_intervals_s: Sequence[float] = ()
    # W3C trace context headers the client sent (`traceparent`, `tracestate`).
    trace_headers: dict[str, str] = field(default_factory=dict)

    @property
    def usage(self) -> Usage | None:
        return self.result.usage


def summarize(exchange: Exchange) -> str:
    """One human line: operation, model, tokens, duration, time to first chunk, error."""
    model = exchange.result.response_model or exchange.request.model or "?"
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
    parts.append(f"{exchange.duration_s:.3f}s")
    if exchange.time_to_first_chunk_s is not None:
        parts.append(f"first chunk {exchange.time_to_first_chunk_s:.3f}s")
    if exchange.error_type is not None:
        status = f" ({exchange.status_code})" if exchange.status_code else ""
        parts.append(f"error {exchange.error_type}{status}")
    return " · ".join(parts)
