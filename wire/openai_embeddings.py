"""OpenAI embeddings (`POST …/embeddings`): chat completions' request fields and usage shape,
never streamed (a compatible server that streams anyway is read as chat), never captured, input
tokens only, never rewritten."""

from __future__ import annotations

from wire.call import Endpoint
from wire.content import CapturedContent
from wire.hosts import HostRule
from wire.openai_chat import ChatCompletions
from wire.openai_common import openai_routes


class Embeddings(ChatCompletions):
    name = "embeddings"
    routes = openai_routes("/embeddings")
    operation = "embeddings"

    def captured_input(self, body: bytes | None) -> CapturedContent:
        return CapturedContent()

    def captured_output(self, body: bytes | None) -> str | None:
        return None

    def may_request_usage(self, rule: HostRule, endpoint: Endpoint) -> bool:
        return False


API = Embeddings()
