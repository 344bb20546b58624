"""AWS Bedrock's Converse API: `POST /model/{modelId}/converse` (JSON) and `/converse-stream`
(AWS's binary event stream: `messageStart`, `contentBlockStart`, `contentBlockDelta`,
`contentBlockStop`, `messageStop`, `metadata` with the usage; exceptions as messages of their
own). One request shape for every model family; the model is in the path only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wire.bedrock_common import BedrockApi, converse_usage, error_type, metrics_attributes
from wire.call import Route
from wire.content import (
    CapturedContent,
    Part,
    TextCollector,
    dump_messages,
    media_part,
    role_of,
    text_part,
    tool_call_part,
    tool_response_part,
)
from wire.framing import Event
from wire.records import NO_HEADERS, ApiRequest, ApiResult
from wire.stream import StreamAccumulator
from wire.tools import converse_calls, converse_results, merged
from wire.values import error_label, integer, json_members, label, labels, member_pattern, number, obj, small_json

_REQUEST_MEMBERS = member_pattern("inferenceConfig", "serviceTier", "additionalModelRequestFields")
_RESPONSE_MEMBERS = member_pattern("stopReason", "usage", "metrics", "serviceTier", "__type")
# Bedrock's modelId: a model id, an inference profile's id, or an ARN (its `/` sent as %2F).
MODEL = r"/model/(?P<model>[^/]{1,512})"


def update_from_metadata(result: ApiResult, data: dict[str, Any]) -> None:
    """Usage, service tier and the server's latency: a Converse response, or ConverseStream's `metadata`."""
    result.usage = converse_usage(data.get("usage")) or result.usage
    result.service_tier = label(obj(data.get("serviceTier")).get("type")) or result.service_tier
    result.attributes.update(metrics_attributes(data.get("metrics")))


def _parts(content: Any) -> list[Part]:
    """Converse content blocks as convention parts; media by type only."""
    parts: list[Part] = []
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, dict):
            continue
        if isinstance(text := block.get("text"), str):
            parts.append(text_part(text))
        elif isinstance(reasoning := block.get("reasoningContent"), dict):
            parts.append(text_part(obj(reasoning.get("reasoningText")).get("text", ""), "reasoning"))
        elif isinstance(use := block.get("toolUse"), dict):
            parts.append(tool_call_part(use.get("toolUseId"), use.get("name"), use.get("input", {})))
        elif isinstance(outcome := block.get("toolResult"), dict):
            texts = [str(obj(item).get("text", "")) for item in outcome.get("content") or [] if isinstance(item, dict)]
            parts.append(tool_response_part(outcome.get("toolUseId"), "".join(texts)))
        elif block and "cachePoint" not in block:
            parts.append(media_part(next(iter(block))))  # image, document, video, guardContent, ...
    return parts


class _Block:
    """One streamed content block, reassembled."""

    def __init__(self, start: dict[str, Any]) -> None:
        use = obj(start.get("toolUse"))
        self.tool_id, self.tool_name = use.get("toolUseId"), use.get("name")
        self.kind = "tool_call" if use else "text"
        self.text = TextCollector()

    def part(self) -> Part:
        if self.kind == "tool_call":
            return tool_call_part(self.tool_id, self.tool_name, self.text.text())
        return text_part(self.text.text(), self.kind)


class ConverseStreamAccumulator(StreamAccumulator):
    """An output chunk is a `contentBlockDelta` with text, reasoning or tool input."""

    def __init__(self, started: float, capture_content: bool = False) -> None:
        super().__init__(started, capture_content)
        self._blocks: dict[int, _Block] = {}

    def consume(self, event: Event, now: float) -> None:
        data = event.value if isinstance(event.value, dict) else {}
        kind, result = event.kind, self.result
        if kind == "contentBlockDelta":
            delta = obj(data.get("delta"))
            piece = delta.get("text")
            block_kind = "text"
            if piece is None and isinstance(tool := delta.get("toolUse"), dict):
                piece = tool.get("input")
            if piece is None and isinstance(reasoning := delta.get("reasoningContent"), dict):
                piece, block_kind = reasoning.get("text"), "reasoning"
            if isinstance(piece, str) and piece:
                self.output_chunk(now)
                if self.capture_content:
                    block = self._block(data, {})
                    block.kind = "reasoning" if block_kind == "reasoning" else block.kind
                    block.text.add(piece)
        elif kind == "contentBlockStart":
            start = obj(data.get("start"))
            result.tool_calls = merged(result.tool_calls, converse_calls([start]))
            if self.capture_content:
                self._block(data, start)
        elif kind == "messageStop":
            reason = label(data.get("stopReason"))
            result.finish_reasons = [reason] if reason else result.finish_reasons
            self.done = True
        elif kind == "metadata":
            update_from_metadata(result, data)
        elif kind == "exception":
            result.error_type = error_label(data.get("type")) or "error"

    def _block(self, data: dict[str, Any], start: dict[str, Any]) -> _Block:
        index = integer(data.get("contentBlockIndex")) or 0
        block = self._blocks.get(index)
        if block is None and len(self._blocks) < 256:
            block = self._blocks[index] = _Block(start)
        return block or _Block({})

    def output_messages(self) -> str | None:
        if not self._blocks:
            return None
        parts = [self._blocks[index].part() for index in sorted(self._blocks)]
        reason = self.result.finish_reasons[0] if self.result.finish_reasons else "stop"
        return dump_messages([{"role": "assistant", "parts": parts, "finish_reason": reason}])


def converse_request(data: dict[str, Any] | None) -> ApiRequest:
    """A Converse request's parameters (also Nova's InvokeModel body, which has the same `inferenceConfig`)."""
    if data is None:
        return ApiRequest()
    config = obj(data.get("inferenceConfig"))
    return ApiRequest(
        temperature=number(config.get("temperature")),
        top_p=number(config.get("topP")),
        top_k=number(obj(data.get("additionalModelRequestFields")).get("top_k")),
        max_tokens=integer(config.get("maxTokens", config.get("max_new_tokens"))),
        stop_sequences=labels(config.get("stopSequences")),
        service_tier=label(obj(data.get("serviceTier")).get("type")),
        tool_results=converse_results(data.get("messages")),
    )


def converse_output(message: Any, reason: Any) -> str | None:
    parts = _parts(obj(message).get("content"))
    finish = str(reason or "stop")
    return dump_messages([{"role": "assistant", "parts": parts, "finish_reason": finish}] if parts else [])


def converse_input(data: dict[str, Any]) -> CapturedContent:
    inputs = [
        {"role": role_of(message), "parts": _parts(message.get("content"))}
        for message in data.get("messages") or []
        if isinstance(message, dict)
    ]
    return CapturedContent(
        system_instructions=dump_messages(_parts(data.get("system"))), input_messages=dump_messages(inputs)
    )


class Converse(BedrockApi):
    name = "converse"
    routes = (Route(MODEL + "/converse"), Route(MODEL + "/converse-stream", streamed=True))

    def parse_request(self, body: bytes | None) -> ApiRequest:
        return converse_request(json_members(body, _REQUEST_MEMBERS))

    def parse_response(self, body: bytes | None, headers: Mapping[str, str] = NO_HEADERS) -> ApiResult:
        data = json_members(body, _RESPONSE_MEMBERS)
        if (error := error_type(headers, data)) is not None:
            return ApiResult(error_type=error)
        result = ApiResult()
        if data is None:
            return result
        reason = label(data.get("stopReason"))
        result.finish_reasons = [reason] if reason else []
        result.tool_calls = converse_calls(obj(obj(data.get("output")).get("message")).get("content"))
        update_from_metadata(result, data)
        return result

    def stream_accumulator(self, started: float, capture_content: bool = False) -> StreamAccumulator:
        return ConverseStreamAccumulator(started, capture_content)

    def captured_input(self, body: bytes | None) -> CapturedContent:
        return converse_input(small_json(body))

    def captured_output(self, body: bytes | None) -> str | None:
        data = small_json(body)
        return converse_output(obj(data.get("output")).get("message"), data.get("stopReason"))


API = Converse()
