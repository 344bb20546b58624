"""API keys as they may appear in telemetry: never more than a scheme prefix and the last 4."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from urllib.parse import unquote

# Key schemes that say which kind of key it is, not who holds it: OpenAI's `sk-`, `sk-proj-`,
# `sk-svcacct-`, ...; Anthropic's `sk-ant-api03-` (API keys), `sk-ant-oat01-` (OAuth tokens),
# `sk-ant-admin01-`; Google's `AIza` (API keys) and `ya29.` (OAuth access tokens). Anthropic's
# comes first: the generic form would stop at `sk-ant-`.
_KEY_SCHEME = re.compile(r"^(sk-ant-[a-z]{2,8}[0-9]{2}-|sk-(?:[a-z]{1,10}-)?|AIza|ya29\.)")
# Below this many secret characters, even the last four say too much.
_MIN_SECRET_FOR_SUFFIX = 16
# The request header fields that may carry a key, in the order they are tried: a bearer token
# (OpenAI, Anthropic OAuth, Vertex AI), Azure's `api-key`, Anthropic's `x-api-key`, the Gemini API's
# `x-goog-api-key`.
CREDENTIAL_HEADERS = ("authorization", "api-key", "x-api-key", "x-goog-api-key")
# The Gemini API also takes its key in the URL: `?key=AIza...`.
_QUERY_KEY = re.compile(r"(?:^|&)key=([^&]*)")


@functools.lru_cache(maxsize=256)  # a proxy sees the same few keys on every call
def mask_api_key(credential: str | None) -> str:
    """Keep at most the scheme prefix (`sk-`, `sk-proj-`, `sk-ant-api03-`, ...) and the last 4 characters.

    Accepts an `Authorization` header value (`Bearer sk-...`) or a bare key (`api-key`, `x-api-key`).
    """
    if not credential:
        return "none"
    words = credential.split(None, 1)
    if words and words[0].lower() == "bearer":
        words = words[1:]
    key = words[0].strip() if words else ""
    if not key:
        return "none"
    scheme_match = _KEY_SCHEME.match(key)
    scheme = scheme_match.group(1) if scheme_match else ""
    secret = key[len(scheme) :]
    if len(secret) < _MIN_SECRET_FOR_SUFFIX:
        return f"{scheme}..."
    return f"{scheme}...{secret[-4:]}"


def masked_key_of(headers: Mapping[str, str], query: str = "") -> str:
    """The masked key of a request, from the first of `CREDENTIAL_HEADERS` it carries, else the
    URL query's `key` (`query`: the part after `?`, which is never kept anywhere else)."""
    for name in CREDENTIAL_HEADERS:
        value = headers.get(name)
        if value:
            return mask_api_key(value)
    if "key=" in query and (found := _QUERY_KEY.search(query)):
        return mask_api_key(unquote(found.group(1)))
    return "none"
