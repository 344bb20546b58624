"""Google's embeddings: `…/models/{model}:embedContent` and `:batchEmbedContents` (the Gemini API
and Vertex AI). `generateContent`'s error body and usage shape; the Gemini API reports no usage
for embeddings, so a call records none unless the response carries `usageMetadata`. Never
streamed (a server that streams anyway is read as `generateContent`), never captured."""

from __future__ import annotations

from wire.call import Route
from wire.content import CapturedContent
from wire.gemini_generate import GenerateContent
from wire.records import ApiRequest
from wire.values import integer, json_members, member_pattern, obj

_REQUEST_MEMBERS = member_pattern("outputDimensionality", "requests")


class EmbedContent(GenerateContent):
    name = "embed_content"
    operation = "embeddings"
    routes = (
        Route(r"/models/(?P<model>[^/:]{1,128}):embedContent"),
        Route(r"/models/(?P<model>[^/:]{1,128}):batchEmbedContents"),
    )

    def parse_request(self, body: bytes | None) -> ApiRequest:
        data = json_members(body, _REQUEST_MEMBERS)
        if data is None:
            return ApiRequest()
        requests = data.get("requests")  # batchEmbedContents: one request per input
        first = obj(requests[0]) if isinstance(requests, list) and requests else data
        return ApiRequest(dimensions=integer(first.get("outputDimensionality")))

    def captured_input(self, body: bytes | None) -> CapturedContent:
        return CapturedContent()

    def captured_output(self, body: bytes | None) -> str | None:
        return None


API = EmbedContent()
