"""The one registry of wire APIs: each API declares its routes (`WireApi.routes`), the registry
compiles them once and answers, per request, which API it calls and what its route says."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from urllib.parse import parse_qs, unquote

from wire.call import Endpoint, Route, WireApi
from wire.secrets import KeyMasker
from wire.vendor import Vendor

MAX_MODEL_LENGTH = 256  # a Bedrock ARN of an application inference profile is about 100 characters


class Registry:
    """The APIs in the order their routes are tried: a route that another's would also match
    comes first ("/chat/completions" before "/completions")."""

    def __init__(self, apis: Sequence[WireApi]) -> None:
        self._apis = {api.name: api for api in apis}
        if len(self._apis) != len(apis):
            raise ValueError("two wire APIs share a name")
        self._routes = [(re.compile(f"(?:{route.pattern})$"), route, api) for api in apis for route in api.routes]
        self.vendors: tuple[Vendor, ...] = tuple(dict.fromkeys(api.vendor for api in apis))
        self.key_masker = KeyMasker(prefix for vendor in self.vendors for prefix in vendor.key_prefixes)
        # The header fields any API's vendor reads, for the proxy to pick once per flow.
        self.request_headers = tuple(dict.fromkeys(n for vendor in self.vendors for n in vendor.request_headers))
        self.response_headers = tuple(dict.fromkeys(n for vendor in self.vendors for n in vendor.response_headers))

    def api(self, name: str) -> WireApi:
        return self._apis[name]

    def apis(self) -> tuple[WireApi, ...]:
        return tuple(self._apis.values())

    def routes(self) -> list[tuple[Route, WireApi]]:
        return [(route, api) for _, route, api in self._routes]

    # Every request passes here; clients call the same few paths over and over.
    @functools.lru_cache(maxsize=1024)  # noqa: B019 (the registry lives as long as the process)
    def endpoint(self, method: str, path: str) -> Endpoint | None:
        """The endpoint of `METHOD path` (with its query string), or None: not metered."""
        found = self._match(method, path, socket=False)
        return found[0] if found else None

    def socket_endpoint(self, path: str) -> tuple[Endpoint, str | None] | None:
        """The endpoint of a WebSocket upgrade's path, and the model its query names (Realtime's
        `?model=`, Azure's `&deployment=`), or None: not a metered socket."""
        found = self._match("GET", path, socket=True)
        if found is None:
            return None
        endpoint, query = found
        return endpoint, query.get("model") or endpoint.deployment

    def _match(self, method: str, path: str, socket: bool) -> tuple[Endpoint, dict[str, str]] | None:
        route_path, _, query_text = path.partition("?")
        route_path = route_path.rstrip("/")
        for pattern, route, api in self._routes:
            if route.socket != socket or route.method != method:
                continue
            match = pattern.search(route_path)
            if match is None:
                continue
            groups = match.groupdict()
            query = {name: found[0][:128] for name, found in parse_qs(query_text).items()} if query_text else {}
            model = groups.get("model")
            deployment = groups.get("deployment") or (query.get("deployment") if socket else None)
            endpoint = Endpoint(
                api,
                deployment=deployment,
                api_version=query.get("api-version", "")[:32] or None,
                azure_v1=groups.get("azure_v1") is not None,
                model=unquote(model)[:MAX_MODEL_LENGTH] if model else None,
                streamed=route.streamed,
            )
            return endpoint, query
        return None
