"""Shared test builders: a finished `Call` with a plain origin, so each test names only what it
is about (a call's origin is required, and the same in almost every test)."""

from typing import Any

from wire import openai_chat
from wire.call import Call, Endpoint, Origin

CHAT = Endpoint(openai_chat.API)
ORIGIN = Origin(provider="openai", server_address="api.openai.com", server_port=443, api_key="sk-...abcd")
ORIGIN_FIELDS = ("provider", "server_address", "server_port", "api_key", "request_headers")


def origin(**fields: Any) -> Origin:
    """The plain origin with `fields` replaced."""
    values = {name: getattr(ORIGIN, name) for name in ORIGIN_FIELDS}
    return Origin(**(values | fields))


def finished_call(**fields: Any) -> Call:
    """A finished chat call to api.openai.com; `fields` replace any of its values, or of its
    origin's (`provider`, `api_key`, `request_headers`, ...)."""
    replaced = {name: fields.pop(name) for name in ORIGIN_FIELDS if name in fields}
    values: dict[str, Any] = {"endpoint": CHAT, "origin": origin(**replaced), "start_time_ns": 0, "duration_s": 0.5}
    return Call(**(values | fields))
