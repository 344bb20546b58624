"""OpenAI embeddings (`POST …/embeddings`): never streamed, never captured, usage of input only."""

from __future__ import annotations

from wire.call import WireApi
from wire.content import CapturedContent
from wire.openai_chat import ChatStreamAccumulator, chat_result
from wire.openai_common import openai_request
from wire.records import ApiRequest, ApiResult
from wire.stream import StreamAccumulator


class Embeddings(WireApi):
    name = "embeddings"
    operation = "embeddings"
    vendor = "openai"

    def parse_request(self, body: bytes | None) -> ApiRequest:
        return openai_request(body)

    def parse_response(self, body: bytes | None) -> ApiResult:
        return chat_result(body)

    def stream_accumulator(self, started: float, capture_content: bool = False) -> StreamAccumulator:
        return ChatStreamAccumulator(started)  # a compatible server that streams anyway

    def captured_input(self, body: bytes | None) -> CapturedContent:
        return CapturedContent()

    def captured_output(self, body: bytes | None) -> str | None:
        return None


API = Embeddings()
