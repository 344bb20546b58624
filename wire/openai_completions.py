"""OpenAI legacy completions (`POST …/completions`): chat completions' streams and usage, a prompt
instead of messages."""

from __future__ import annotations

from wire.content import CapturedContent, dump_messages, text_part
from wire.openai_chat import ChatCompletions
from wire.openai_common import openai_routes
from wire.values import small_json


class Completions(ChatCompletions):
    name = "completions"
    routes = openai_routes("/completions")
    operation = "text_completion"

    def captured_input(self, body: bytes | None) -> CapturedContent:
        prompt = small_json(body).get("prompt")
        prompts = prompt if isinstance(prompt, list) else [prompt] if prompt else []
        inputs = [{"role": "user", "parts": [text_part(p) for p in prompts if isinstance(p, str)]}]
        return CapturedContent(input_messages=dump_messages(inputs))


API = Completions()
