"""AWS Bedrock's InvokeModel: `POST /model/{modelId}/invoke` and `/invoke-with-response-stream`,
with each model family's own body.

- Anthropic's models take the Messages API (`anthropic_version: bedrock-2023-05-31`, no `model`)
  and answer it: read by `anthropic_messages`. Streamed, each event-stream `chunk` carries one
  Anthropic event, base64 in `{"bytes": …}`.
- Nova answers in the Converse shape (`usage.inputTokens`, a stream of `{"messageStart": …}` …).
- Titan, Llama and the rest have bodies of their own; Titan's and Llama's token counts are read.
- Whatever the body, every plain response states `x-amzn-bedrock-*-token-count` headers, and the
  last chunk of a stream `amazon-bedrock-invocationMetrics`: the usage when the body has none.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from wire import anthropic_messages
from wire.bedrock_common import (
    BedrockApi,
    converse_usage,
    error_type,
    header_usage,
    metrics_attributes,
)
from wire.bedrock_converse import (
    MODEL,
    ConverseStreamAccumulator,
    converse_input,
    converse_output,
    converse_request,
)
from wire.call import Route
from wire.content import CapturedContent
from wire.framing import Event
from wire.records import NO_HEADERS, ApiRequest, ApiResult, Usage
from wire.stream import StreamAccumulator
from wire.tools import converse_calls
from wire.values import count, error_label, integer, json_members, label, member_pattern, number, obj, small_json

_REQUEST_MEMBERS = member_pattern(
    "anthropic_version", "inferenceConfig", "textGenerationConfig", "max_gen_len", "max_tokens", "temperature", "top_p"
)
_RESPONSE_MEMBERS = member_pattern(
    "type",
    "usage",
    "stopReason",
    "inputTextTokenCount",
    "results",
    "prompt_token_count",
    "generation_token_count",
    "stop_reason",
    "__type",
)
METRICS = "amazon-bedrock-invocationMetrics"


def _native_usage(data: dict[str, Any]) -> Usage | None:
    """Titan's and Llama's token counts."""
    if (prompt := count(data.get("inputTextTokenCount"))) is not None:
        results = [obj(item) for item in data.get("results") or []]
        return Usage(input_tokens=prompt, output_tokens=sum(count(item.get("tokenCount")) or 0 for item in results))
    if (prompt := count(data.get("prompt_token_count"))) is not None:
        return Usage(input_tokens=prompt, output_tokens=count(data.get("generation_token_count")))
    return None


def _metrics_usage(metrics: dict[str, Any]) -> Usage | None:
    return converse_usage(
        {
            "inputTokens": metrics.get("inputTokenCount"),
            "outputTokens": metrics.get("outputTokenCount"),
            "cacheReadInputTokens": metrics.get("cacheReadInputTokenCount"),
            "cacheWriteInputTokens": metrics.get("cacheWriteInputTokenCount"),
        }
    )


class InvokeStreamAccumulator(StreamAccumulator):
    """Each `chunk` is one event of the model's own stream: Anthropic's events go to Anthropic's
    accumulator, Converse-shaped ones (Nova) to Converse's; chosen by the first chunk."""

    def __init__(self, started: float, capture_content: bool = False) -> None:
        super().__init__(started, capture_content)
        self._inner: StreamAccumulator | None = None
        self._metrics: dict[str, Any] = {}

    def consume(self, event: Event, now: float) -> None:
        if event.kind == "exception":
            self.result.error_type = error_label(obj(event.value).get("type")) or "error"
            return
        encoded = obj(event.value).get("bytes")
        if event.kind != "chunk" or not isinstance(encoded, str):
            return
        try:
            text = base64.b64decode(encoded, validate=True).decode("utf-8", "replace")
            data = json.loads(text)
        except (binascii.Error, ValueError, RecursionError):
            return
        if not isinstance(data, dict):
            return
        if isinstance(metrics := data.pop(METRICS, None), dict):
            self._metrics = metrics
        inner = self._inner or self._start(data)
        if "type" in data:
            inner.consume(Event(str(data["type"]), text, data), now)
        else:
            for kind, value in data.items():
                inner.consume(Event(kind, None, value), now)
        self.time_to_first_chunk, self.chunk_intervals, self.done = (
            inner.time_to_first_chunk,
            inner.chunk_intervals,
            inner.done,
        )
        if self._metrics:
            self.result.attributes.update(metrics_attributes(self._metrics))
            self.result.usage = self.result.usage or _metrics_usage(self._metrics)

    def _start(self, data: dict[str, Any]) -> StreamAccumulator:
        """The model family's accumulator, sharing this one's result."""
        if "type" in data:
            inner: StreamAccumulator = anthropic_messages.MessagesStreamAccumulator(self.started, self.capture_content)
        else:
            inner = ConverseStreamAccumulator(self.started, self.capture_content)
        inner.result = self.result
        self._inner = inner
        return inner

    def output_messages(self) -> str | None:
        return self._inner.output_messages() if self._inner else None


class InvokeModel(BedrockApi):
    name = "invoke_model"
    routes = (Route(MODEL + "/invoke"), Route(MODEL + "/invoke-with-response-stream", streamed=True))

    def parse_request(self, body: bytes | None) -> ApiRequest:
        data = json_members(body, _REQUEST_MEMBERS)
        if data is None:
            return ApiRequest()
        if "anthropic_version" in data:
            return anthropic_messages.API.parse_request(body)
        if "inferenceConfig" in data:  # Nova
            return converse_request(data)
        titan = obj(data.get("textGenerationConfig"))
        return ApiRequest(
            temperature=number(titan.get("temperature", data.get("temperature"))),
            top_p=number(titan.get("topP", data.get("top_p"))),
            max_tokens=integer(titan.get("maxTokenCount", data.get("max_gen_len", data.get("max_tokens")))),
        )

    def parse_response(self, body: bytes | None, headers: Mapping[str, str] = NO_HEADERS) -> ApiResult:
        data = json_members(body, _RESPONSE_MEMBERS)
        if (error := error_type(headers, data)) is not None:
            return ApiResult(error_type=error)
        result = ApiResult()
        if data is not None and data.get("type") == "message":
            result = anthropic_messages.API.parse_response(body, headers)
        elif data is not None:
            result.usage = converse_usage(data.get("usage")) or _native_usage(data)
            reason = label(data.get("stopReason") or data.get("stop_reason"))
            result.finish_reasons = [reason] if reason else []
            result.tool_calls = converse_calls(obj(obj(data.get("output")).get("message")).get("content"))  # Nova
        result.usage = result.usage or header_usage(headers)
        return result

    def stream_accumulator(self, started: float, capture_content: bool = False) -> StreamAccumulator:
        return InvokeStreamAccumulator(started, capture_content)

    def captured_input(self, body: bytes | None) -> CapturedContent:
        data = small_json(body)
        if "anthropic_version" in data:
            return anthropic_messages.API.captured_input(body)
        return converse_input(data) if "messages" in data else CapturedContent()

    def captured_output(self, body: bytes | None) -> str | None:
        data = small_json(body)
        if data.get("type") == "message":
            return anthropic_messages.API.captured_output(body)
        return converse_output(obj(data.get("output")).get("message"), data.get("stopReason"))


API = InvokeModel()
