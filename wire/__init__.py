"""The pure wire layer: what LLM API traffic says, as plain records. No mitmproxy, no
OpenTelemetry, no I/O.

The registry below maps a request's route to its wire API. Adding an API is one new module
(a `WireApi` subclass and its stream accumulator) plus one line in `ROUTES`.
"""

from __future__ import annotations

import functools
import re
from urllib.parse import parse_qs

from wire import (
    anthropic_messages,
    gemini_embeddings,
    gemini_generate,
    openai_chat,
    openai_completions,
    openai_embeddings,
    openai_images,
    openai_realtime,
    openai_responses,
    openai_speech,
    openai_transcriptions,
)
from wire.call import Endpoint, WireApi

# By the route's ending, under any prefix (`/v1`, `/openai/v1`, `/anthropic/v1`, Azure's
# deployments); the longest ending first: "/chat/completions" must win over "/completions".
ROUTES: tuple[tuple[str, WireApi], ...] = (
    ("/v1/messages", anthropic_messages.API),
    ("/chat/completions", openai_chat.API),
    ("/responses", openai_responses.API),
    ("/completions", openai_completions.API),
    ("/embeddings", openai_embeddings.API),
    ("/audio/transcriptions", openai_transcriptions.TRANSCRIPTIONS),
    ("/audio/translations", openai_transcriptions.TRANSLATIONS),
    ("/audio/speech", openai_speech.API),
    ("/images/generations", openai_images.GENERATIONS),
    ("/images/edits", openai_images.EDITS),
    ("/images/variations", openai_images.VARIATIONS),
)
# WebSocket sessions, by the upgrade request's route ending: OpenAI's Realtime API (Azure's
# `/openai/realtime` too), and the Responses API's WebSocket mode (`GET /v1/responses`).
SOCKET_ROUTES: tuple[tuple[str, WireApi], ...] = (
    ("/realtime", openai_realtime.API),
    ("/responses", openai_responses.API),
)
# Google's `…/models/{model}:{method}` (the Gemini API's /v1beta/models/..., Vertex AI's
# /v1/projects/{p}/locations/{l}/publishers/google/models/...), by method. `:countTokens` is not
# inference: not metered.
GOOGLE_METHODS: dict[str, WireApi] = {
    "generateContent": gemini_generate.API,
    "streamGenerateContent": gemini_generate.API,
    "embedContent": gemini_embeddings.API,
    "batchEmbedContents": gemini_embeddings.API,
}
_GOOGLE_ROUTE = re.compile(r"/models/([^/:]{1,128}):([A-Za-z]+)$")
_AZURE_DEPLOYMENT = re.compile(r"/openai/deployments/([^/]{1,128})/")


def endpoint_for(method: str, path: str) -> Endpoint | None:
    """The observed endpoint of `METHOD path` (with its query string), or None: not inference."""
    return _endpoint_of_path(path) if method == "POST" else None


def socket_endpoint_for(path: str) -> tuple[Endpoint, str | None] | None:
    """The endpoint of a WebSocket upgrade's path, and the model its query names (Realtime's
    `?model=`, Azure's `&deployment=`), or None: not a metered socket."""
    route, _, query = path.partition("?")
    route = route.rstrip("/")
    for ending, api in SOCKET_ROUTES:
        if route.endswith(ending):
            values = {name: found[0][:128] for name, found in parse_qs(query).items()} if query else {}
            deployment = values.get("deployment")
            endpoint = Endpoint(api, deployment=deployment, api_version=values.get("api-version", "")[:32] or None)
            return endpoint, values.get("model") or deployment
    return None


# Every request passes here; clients call the same few paths over and over.
@functools.lru_cache(maxsize=1024)
def _endpoint_of_path(path: str) -> Endpoint | None:
    route, _, query = path.partition("?")
    route = route.rstrip("/")
    if (google := _GOOGLE_ROUTE.search(route)) is not None:
        method = google.group(2)
        found = GOOGLE_METHODS.get(method)
        return Endpoint(found, model=google.group(1), streamed=method.startswith("stream")) if found else None
    for ending, api in ROUTES:
        if route.endswith(ending):
            deployment = _AZURE_DEPLOYMENT.search(route + "/")
            versions = parse_qs(query).get("api-version") if query else None
            return Endpoint(
                api=api,
                deployment=deployment.group(1) if deployment else None,
                api_version=versions[0][:32] if versions else None,
                azure_v1="/openai/v1/" in route + "/",
            )
    return None
