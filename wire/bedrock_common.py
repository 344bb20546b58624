"""What AWS Bedrock Runtime's APIs share (`bedrock-runtime.{region}.amazonaws.com`): the vendor
(SigV4 credentials, `x-amzn-*` headers), errors, and usage in the Converse shape.

Usage (Converse, ConverseStream's `metadata`, Nova's InvokeModel): `inputTokens` leaves out cache
reads and writes, reported beside it (`cacheReadInputTokens`, `cacheWriteInputTokens`, split by
TTL in `cacheDetails`; older responses name them `…TokenCount`); the usage record's input is their
sum, as for Anthropic. Every InvokeModel response also states `x-amzn-bedrock-*-token-count`
headers, whatever the model's body looks like.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from wire.call import Endpoint, WireApi
from wire.framing import Framer
from wire.framing.eventstream import EventStreamFramer
from wire.headers import UpstreamInfo, header_count
from wire.records import ApiResult, AttributeValue, Usage
from wire.secrets import KeyMasker, masked
from wire.values import count, error_label, obj
from wire.vendor import Vendor

# `x-amzn-ErrorType: ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/`
ERROR_TYPE = "x-amzn-errortype"
INVOCATION_LATENCY = "x-amzn-bedrock-invocation-latency"
# InvokeModel's token counts, by the usage record's field.
TOKEN_COUNT_HEADERS = {
    "input": "x-amzn-bedrock-input-token-count",
    "output": "x-amzn-bedrock-output-token-count",
    "cache_read": "x-amzn-bedrock-cache-read-input-token-count",
    "cache_write": "x-amzn-bedrock-cache-write-input-token-count",
}
# The cost-attribution tags Claude Code users send (`ANTHROPIC_CUSTOM_HEADERS`): a JSON object.
REQUEST_METADATA = "x-amzn-bedrock-request-metadata"
MAX_REQUEST_METADATA = 256
# `AWS4-HMAC-SHA256 Credential=AKIA…/20260101/us-east-1/bedrock/aws4_request, SignedHeaders=…, Signature=…`:
# the access key id's scheme (AKIA long-term, ASIA temporary, ABIA service) and the rest of it.
_SIGV4_KEY = re.compile(r"^AWS4-HMAC-SHA256\s+Credential=(A[A-Z0-9]{3})([A-Z0-9]{1,64})/")


class BedrockVendor(Vendor):
    request_headers = (REQUEST_METADATA,)
    request_id_headers = ("x-amzn-requestid",)
    response_headers = (*request_id_headers, ERROR_TYPE, INVOCATION_LATENCY, *TOKEN_COUNT_HEADERS.values())
    # Bedrock API keys: long-term `ABSK…`, short-term `bedrock-api-key-…` (sent as bearer tokens).
    key_prefixes = ("ABSK", "bedrock-api-key-")

    def request_attributes(self, headers: Mapping[str, str]) -> dict[str, AttributeValue]:
        metadata = headers.get(REQUEST_METADATA)
        return {"request.metadata": metadata[:MAX_REQUEST_METADATA]} if metadata else {}

    def upstream(self, headers: Mapping[str, str], now_s: float) -> UpstreamInfo:
        info = super().upstream(headers, now_s)
        latency = header_count(headers, INVOCATION_LATENCY)
        info.processing_ms = float(latency) if latency is not None else None
        return info

    def masked_key(self, headers: Mapping[str, str], query: str, masker: KeyMasker) -> str:
        """A SigV4 signature's access key id as its scheme and last 4 (`AKIA...WXYZ`); the
        signature and a session token (`x-amz-security-token`) are never read."""
        found = _SIGV4_KEY.match(headers.get("authorization", ""))
        if found is not None:
            return masked(found.group(1), found.group(2))
        return masker.masked_key_of(headers, query)

    def price_context(self, result: ApiResult) -> dict[str, str] | None:
        return None  # the price data has Bedrock's standard prices only


BEDROCK = BedrockVendor("aws.bedrock")
EVENT_STREAM = "application/vnd.amazon.eventstream"


class BedrockApi(WireApi):
    """What Bedrock's runtime APIs share: the vendor, chat, and streams as AWS event streams."""

    operation = "chat"
    vendor = BEDROCK

    def stream_framer(self, content_type: str, endpoint: Endpoint) -> Framer | None:
        """A `-stream` route may answer an error as plain JSON: only an event stream is a stream."""
        return EventStreamFramer() if content_type.startswith(EVENT_STREAM) else None


def error_type(headers: Mapping[str, str], data: dict[str, Any] | None) -> str | None:
    """`x-amzn-errortype`'s exception name, else the body's `__type` (`…#ThrottlingException`)."""
    header = headers.get(ERROR_TYPE)
    if header:
        return error_label(header.partition(":")[0])
    kind = (data or {}).get("__type")
    return error_label(kind.rpartition("#")[2]) if isinstance(kind, str) and kind else None


def _first_count(value: dict[str, Any], *names: str) -> int | None:
    return next((found for name in names if (found := count(value.get(name))) is not None), None)


def converse_usage(value: Any) -> Usage | None:
    """Converse's `usage` (also Nova's InvokeModel usage) as the usage record."""
    if not isinstance(value, dict):
        return None
    uncached = count(value.get("inputTokens"))
    output = count(value.get("outputTokens"))
    if uncached is None and output is None:
        return None
    cache_read = _first_count(value, "cacheReadInputTokens", "cacheReadInputTokenCount")
    cache_write = _first_count(value, "cacheWriteInputTokens", "cacheWriteInputTokenCount")
    by_ttl: dict[str, int] = {}
    for detail in value.get("cacheDetails") or []:
        ttl, tokens = obj(detail).get("ttl"), count(obj(detail).get("inputTokens"))
        if ttl in ("5m", "1h") and tokens is not None:
            by_ttl[ttl] = by_ttl.get(ttl, 0) + tokens
    return Usage(
        input_tokens=(uncached or 0) + (cache_read or 0) + (cache_write or 0),
        output_tokens=output,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        cache_write_5m_tokens=by_ttl.get("5m"),
        cache_write_1h_tokens=by_ttl.get("1h"),
    )


def header_usage(headers: Mapping[str, str]) -> Usage | None:
    """InvokeModel's token-count headers as the usage record (their input count, like the
    body's `inputTokens`, leaves the cache out)."""
    counts = {field: header_count(headers, name) for field, name in TOKEN_COUNT_HEADERS.items()}
    if counts["input"] is None and counts["output"] is None:
        return None
    return converse_usage(
        {
            "inputTokens": counts["input"],
            "outputTokens": counts["output"],
            "cacheReadInputTokens": counts["cache_read"],
            "cacheWriteInputTokens": counts["cache_write"],
        }
    )


def metrics_attributes(metrics: Any) -> dict[str, AttributeValue]:
    """InvokeModel streams' `amazon-bedrock-invocationMetrics` (and Converse's `metrics`) as span
    attributes: the server's own latencies in ms, and its token counts (which may differ from the
    model's: a recorded Claude stream said 134 output tokens, its metrics 90)."""
    metrics = obj(metrics)
    found = {
        "response.latency_ms": count(metrics.get("latencyMs")),
        "response.invocation_latency_ms": count(metrics.get("invocationLatency")),
        "response.first_byte_latency_ms": count(metrics.get("firstByteLatency")),
        "response.invocation.input_tokens": count(metrics.get("inputTokenCount")),
        "response.invocation.output_tokens": count(metrics.get("outputTokenCount")),
    }
    return {name: value for name, value in found.items() if value is not None}
