"""What the APIs of one vendor share beyond their bodies: the header fields they read and what
those say (request id, rate limits, the API version asked for), how their credentials look, the
namespace of their own span attributes, and how a service tier is priced.

Each vendor's module defines its `Vendor` (OpenAI's in `openai_common`, Anthropic's in
`anthropic_messages`, Google's in `gemini_generate`, AWS Bedrock's in `bedrock_common`); every
`WireApi` names its own. Nothing outside these modules switches on a vendor.
"""

from __future__ import annotations

from collections.abc import Mapping

from wire.headers import RateLimits, UpstreamInfo, request_id_of
from wire.records import ApiResult, AttributeValue
from wire.secrets import KeyMasker


class Vendor:
    """The default is a vendor whose headers say nothing the addon records."""

    name: str  # the namespace of its span attributes and gauges: openai, anthropic, gcp, aws.bedrock
    # The request header fields its APIs read beyond the common ones (lower case).
    request_headers: tuple[str, ...] = ()
    # The response header fields `upstream` reads (lower case).
    response_headers: tuple[str, ...] = ()
    request_id_headers: tuple[str, ...] = ()
    # The rate-limit budgets its headers state (`RateLimits` fields), each a pair of gauges.
    rate_limit_budgets: tuple[str, ...] = ()
    # Regular expressions of its key schemes: prefixes that say which kind of key it is, not who holds it.
    key_prefixes: tuple[str, ...] = ()

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<vendor {self.name}>"

    def request_attributes(self, headers: Mapping[str, str]) -> dict[str, AttributeValue]:
        """Span attributes (without the vendor's namespace) from its `request_headers`."""
        return {}

    def rate_limits(self, headers: Mapping[str, str], now_s: float) -> RateLimits:
        return RateLimits()

    def upstream(self, headers: Mapping[str, str], now_s: float) -> UpstreamInfo:
        """What its response headers say; `now_s`: when the call ended (epoch seconds)."""
        return UpstreamInfo(
            request_id=request_id_of(headers, self.request_id_headers), rate_limits=self.rate_limits(headers, now_s)
        )

    def masked_key(self, headers: Mapping[str, str], query: str, masker: KeyMasker) -> str:
        """The request's credential, masked (`query`: the URL's, for keys sent there)."""
        return masker.masked_key_of(headers, query)

    def price_context(self, result: ApiResult) -> dict[str, str] | None:
        """What of the answer changes its price, in genai-prices' terms (its `PriceContext`): the
        service tier the response reports (OpenAI's flex, priority, fast; Google's)."""
        return {"service_tier": result.service_tier} if result.service_tier else None
