"""Ollama's native API (`localhost:11434`, Ollama's cloud at `ollama.com`): `POST /api/chat`,
`/api/generate`, `/api/embed` and the older `/api/embeddings`. Its OpenAI-compatible `/v1/…` routes
are OpenAI's dialect.

A request streams unless it says `"stream": false`. A stream is NDJSON, one object a line; the last
line (`"done": true`) carries `done_reason` and the counts: `prompt_eval_count` is all input, cached
prompt tokens included (`prompt_eval_cached_count`, where sent, is that cached part), `eval_count`
the output. Ollama leaves `prompt_eval_count` out when the whole prompt came from its cache: the
input is then unknown (never 0) unless the cached count gives it. Durations are nanoseconds; the
model's load time, the server's own time to the first token and its output rate go on the span.
Ollama's cloud labels its NDJSON stream `application/json`, so every answer of chat and generate is
read line by line: a plain answer is one such line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wire.call import Endpoint, Route, WireApi
from wire.content import CapturedContent, PartsCollector, dump_messages, role_of, text_part, tool_call_part
from wire.framing import Event, Framer
from wire.framing.ndjson import NDJSONFramer
from wire.records import NO_HEADERS, ApiRequest, ApiResult, AttributeValue, Usage
from wire.stream import StreamAccumulator
from wire.values import (
    GENERIC_ERROR,
    count,
    integer,
    json_members,
    label,
    labels,
    member_pattern,
    number,
    obj,
    small_json,
)
from wire.vendor import Vendor

OLLAMA = Vendor("ollama")
_REQUEST_MEMBERS = member_pattern("model", "stream", "options", "think", "format")
_EMBED_MEMBERS = member_pattern("model", "prompt_eval_count", "total_duration", "load_duration", "error")
_NS = 1e-9


def ollama_request(body: bytes | None) -> ApiRequest:
    data = json_members(body, _REQUEST_MEMBERS)
    if data is None:
        return ApiRequest()
    options = obj(data.get("options"))
    stop = options.get("stop")
    return ApiRequest(
        model=label(data.get("model")),
        stream=data.get("stream") is not False,  # Ollama's default is a stream
        temperature=number(options.get("temperature")),
        top_p=number(options.get("top_p")),
        top_k=number(options.get("top_k")),
        max_tokens=integer(options.get("num_predict")),
        seed=integer(options.get("seed")),
        stop_sequences=labels([stop] if isinstance(stop, str) else stop),
        output_type="json" if data.get("format") else None,
    )


def ollama_usage(data: dict[str, Any]) -> Usage | None:
    prompt, cached = count(data.get("prompt_eval_count")), count(data.get("prompt_eval_cached_count"))
    output = count(data.get("eval_count"))
    if prompt is None and cached is None and output is None:
        return None
    return Usage(input_tokens=prompt if prompt is not None else cached, output_tokens=output, cache_read_tokens=cached)


def timing_attributes(data: dict[str, Any]) -> dict[str, AttributeValue]:
    """The server's own timings: load, its time to the first token (load and prompt evaluation),
    its output rate; in seconds and tokens per second."""
    total, load = count(data.get("total_duration")), count(data.get("load_duration"))
    prompt, evaluation = count(data.get("prompt_eval_duration")), count(data.get("eval_duration"))
    output = count(data.get("eval_count")) or 0
    found: dict[str, AttributeValue] = {}
    if total is not None:
        found["response.total_duration_s"] = total * _NS
    if load is not None:
        found["response.load_duration_s"] = load * _NS
    if prompt is not None:
        found["response.time_to_first_token_s"] = ((load or 0) + prompt) * _NS
    if evaluation and output:
        found["response.output_tokens_per_s"] = output / (evaluation * _NS)
    return found


def _error(data: dict[str, Any]) -> str | None:
    """`{"error": "model 'x' not found"}`: free text, so no type of its own (the status tells more)."""
    return GENERIC_ERROR if data.get("error") else None


class OllamaStreamAccumulator(StreamAccumulator):
    """Each line a JSON object; text in `message.content` (chat) or `response` (generate), reasoning
    in `message.thinking` (or `thinking`), whole tool calls in `message.tool_calls`. An output chunk
    is a line before the last that carries any of them."""

    def __init__(self, started: float, capture_content: bool = False) -> None:
        super().__init__(started, capture_content)
        self._parts = PartsCollector()

    def consume(self, event: Event, now: float) -> None:
        data = event.value if isinstance(event.value, dict) else None
        if data is None:
            return
        result = self.result
        if (error := _error(data)) is not None:
            result.error_type = error
            return
        message = obj(data.get("message"))
        text = message.get("content", data.get("response"))
        thinking = message.get("thinking", data.get("thinking"))
        calls = message.get("tool_calls")
        if data.get("done") is not True and (text or thinking or calls):
            self.output_chunk(now)
        if self.capture_content:
            self._collect(text, thinking, calls)
        result.response_model = label(data.get("model")) or result.response_model
        if data.get("done") is True:
            self.done = True
            reason = label(data.get("done_reason"))
            result.finish_reasons = [reason] if reason else result.finish_reasons
            result.usage = ollama_usage(data) or result.usage
            result.attributes.update(timing_attributes(data))

    def _collect(self, text: Any, thinking: Any, calls: Any) -> None:
        self._parts.add_text(thinking, "reasoning")
        self._parts.add_text(text)
        for call in calls if isinstance(calls, list) else []:
            function = obj(obj(call).get("function"))
            self._parts.add(tool_call_part(obj(call).get("id"), function.get("name"), function.get("arguments", {})))

    def output_messages(self) -> str | None:
        return self._parts.message(self.result.finish_reasons)


class OllamaChat(WireApi):
    name = "ollama_chat"
    operation = "chat"
    vendor = OLLAMA
    routes: tuple[Route, ...] = (Route("/api/chat"),)

    def parse_request(self, body: bytes | None) -> ApiRequest:
        return ollama_request(body)

    def parse_response(self, body: bytes | None, headers: Mapping[str, str] = NO_HEADERS) -> ApiResult:
        """Only reached for a body the stream tap did not read (another addon's response)."""
        accumulator = OllamaStreamAccumulator(0.0)
        for event in (framer := NDJSONFramer()).feed(body or b"") + framer.finish():
            accumulator.consume(event, 0.0)
        return accumulator.result

    def stream_framer(self, content_type: str, endpoint: Endpoint) -> Framer | None:
        """NDJSON, also when labelled `application/json` (Ollama's cloud; a plain answer is one line)."""
        return NDJSONFramer() if content_type.startswith(("application/x-ndjson", "application/json")) else None

    def stream_accumulator(self, started: float, capture_content: bool = False) -> StreamAccumulator:
        return OllamaStreamAccumulator(started, capture_content)

    def captured_input(self, body: bytes | None) -> CapturedContent:
        data = small_json(body)
        inputs = []
        for message in data.get("messages") or []:
            if isinstance(message, dict):
                parts = [text_part(message.get("content", ""))] if message.get("content") else []
                inputs.append({"role": role_of(message), "parts": parts})
        if isinstance(prompt := data.get("prompt"), str):
            inputs.append({"role": "user", "parts": [text_part(prompt)]})
        system = data.get("system")
        return CapturedContent(
            system_instructions=dump_messages([text_part(system)]) if isinstance(system, str) and system else None,
            input_messages=dump_messages(inputs),
        )

    def captured_output(self, body: bytes | None) -> str | None:
        accumulator = OllamaStreamAccumulator(0.0, capture_content=True)
        for event in (framer := NDJSONFramer()).feed(body or b"") + framer.finish():
            accumulator.consume(event, 0.0)
        return accumulator.output_messages()


class OllamaGenerate(OllamaChat):
    name = "ollama_generate"
    operation = "text_completion"
    routes = (Route("/api/generate"),)


class OllamaEmbed(OllamaChat):
    """`/api/embed` and `/api/embeddings`: one JSON answer with `prompt_eval_count` (input tokens)."""

    name = "ollama_embed"
    operation = "embeddings"
    routes = (Route("/api/embed"), Route("/api/embeddings"))

    def parse_request(self, body: bytes | None) -> ApiRequest:
        request = ollama_request(body)
        request.stream = False
        return request

    def parse_response(self, body: bytes | None, headers: Mapping[str, str] = NO_HEADERS) -> ApiResult:
        data = json_members(body, _EMBED_MEMBERS)
        if data is None:
            return ApiResult()
        if (error := _error(data)) is not None:
            return ApiResult(error_type=error)
        prompt = count(data.get("prompt_eval_count"))
        return ApiResult(
            response_model=label(data.get("model")),
            usage=Usage(input_tokens=prompt) if prompt is not None else None,
            attributes=timing_attributes(data),
        )

    def stream_framer(self, content_type: str, endpoint: Endpoint) -> Framer | None:
        return None

    def captured_input(self, body: bytes | None) -> CapturedContent:
        return CapturedContent()

    def captured_output(self, body: bytes | None) -> str | None:
        return None


CHAT = OllamaChat()
GENERATE = OllamaGenerate()
EMBED = OllamaEmbed()
