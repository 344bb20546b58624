"""API keys as they may appear in telemetry: never more than a scheme prefix and the last 4."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from urllib.parse import unquote

# Below this many secret characters, even the last four say too much.
_MIN_SECRET_FOR_SUFFIX = 16
# The request header fields that may carry a key, in the order they are tried: a bearer token
# (OpenAI, Anthropic OAuth, Vertex AI, Bedrock API keys), Azure's `api-key`, Anthropic's
# `x-api-key`, the Gemini API's `x-goog-api-key`.
CREDENTIAL_HEADERS = ("authorization", "api-key", "x-api-key", "x-goog-api-key")
# The Gemini API also takes its key in the URL: `?key=AIza...`.
_QUERY_KEY = re.compile(r"(?:^|&)key=([^&]*)")


class KeyMasker:
    """Masks keys by the key schemes of every vendor (`Vendor.key_prefixes`): a key may reach any
    host that speaks its vendor's API, so every scheme is known everywhere. The longest scheme
    pattern is tried first: Anthropic's `sk-ant-api03-` must win over OpenAI's `sk-`."""

    def __init__(self, prefixes: Iterable[str]) -> None:
        ordered = sorted(set(prefixes), key=len, reverse=True)
        self._scheme = re.compile(f"^({'|'.join(ordered)})") if ordered else None
        # Every metered request is masked on mitmproxy's loop, where masking (the split, the scheme
        # pattern) costs 5 to 10 µs cold against 1.4 µs in a loop, and clients send the same few
        # keys over and over. It holds up to 256 raw credentials in the process's memory, which
        # every request's headers pass through anyway; only the masked forms ever leave it.
        self.mask = functools.lru_cache(maxsize=256)(self._mask)

    def _mask(self, credential: str | None) -> str:
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
        scheme_match = self._scheme.match(key) if self._scheme else None
        scheme = scheme_match.group(1) if scheme_match else ""
        return masked(scheme, key[len(scheme) :])

    def masked_key_of(self, headers: Mapping[str, str], query: str = "") -> str:
        """The masked key of a request, from the first of `CREDENTIAL_HEADERS` it carries, else the
        URL query's `key` (`query`: the part after `?`, which is never kept anywhere else)."""
        for name in CREDENTIAL_HEADERS:
            value = headers.get(name)
            if value:
                return self.mask(value)
        if "key=" in query and (found := _QUERY_KEY.search(query)):
            return self.mask(unquote(found.group(1)))
        return "none"


def masked(scheme: str, secret: str) -> str:
    """A key as `scheme...` and the secret's last 4 characters, when it is long enough to spare them."""
    if len(secret) < _MIN_SECRET_FOR_SUFFIX:
        return f"{scheme}..."
    return f"{scheme}...{secret[-4:]}"
