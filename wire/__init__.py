"""The pure wire layer: what LLM API traffic says, as plain records. No mitmproxy, no
OpenTelemetry, no I/O.

`REGISTRY` lists every wire API. Adding one is a module (a `WireApi` subclass with its routes, its
stream accumulator, and its `Vendor` if the vendor is new) plus one line below.
"""

from __future__ import annotations

from wire import (
    anthropic_messages,
    bedrock_converse,
    bedrock_invoke,
    cohere,
    gemini_code_assist,
    gemini_embeddings,
    gemini_generate,
    gemini_interactions,
    gemini_live,
    mcp,
    ollama,
    openai_chat,
    openai_completions,
    openai_embeddings,
    openai_images,
    openai_realtime,
    openai_responses,
    openai_speech,
    openai_transcriptions,
)
from wire.call import Endpoint
from wire.registry import Registry

# In the order routes are tried: a route that another's would also match first ("/chat/completions" before
# "/completions").
REGISTRY = Registry(
    [
        bedrock_converse.API,
        bedrock_invoke.API,
        anthropic_messages.API,
        gemini_generate.API,
        gemini_code_assist.API,
        gemini_embeddings.API,
        gemini_interactions.API,
        gemini_interactions.FETCH,
        cohere.CHAT,
        cohere.EMBED,
        ollama.CHAT,
        ollama.GENERATE,
        ollama.EMBED,  # `/api/embeddings` before OpenAI's `…/embeddings`
        openai_chat.API,
        openai_responses.API,
        openai_responses.COMPACT,
        openai_completions.API,
        openai_embeddings.API,
        openai_transcriptions.TRANSCRIPTIONS,
        openai_transcriptions.TRANSLATIONS,
        openai_speech.API,
        openai_images.GENERATIONS,
        openai_images.EDITS,
        openai_images.VARIATIONS,
        openai_realtime.API,
        openai_realtime.TRANSCRIPTION,
        gemini_live.API,
        mcp.API,  # no routes: the proxy recognises MCP traffic by host or request (`wire.mcp`)
    ]
)


def endpoint_for(method: str, path: str) -> Endpoint | None:
    """The observed endpoint of `METHOD path` (with its query string), or None: not inference."""
    return REGISTRY.endpoint(method, path)


def socket_endpoint_for(path: str) -> tuple[Endpoint, str | None] | None:
    """The endpoint of a WebSocket upgrade's path and the model its query names, or None."""
    return REGISTRY.socket_endpoint(path)
