"""Shared test builders: a finished `Call` with a plain origin, so each test names only what it
is about (the fields of a call's origin are required, and are the same in almost every test)."""

from typing import Any

from wire import openai_chat
from wire.call import Call, Endpoint

CHAT = Endpoint(openai_chat.API)


def finished_call(**fields: Any) -> Call:
    """A finished chat call to api.openai.com; `fields` replace any of its values."""
    origin: dict[str, Any] = {
        "endpoint": CHAT,
        "provider": "openai",
        "server_address": "api.openai.com",
        "server_port": 443,
        "api_key": "sk-...abcd",
        "start_time_ns": 0,
        "duration_s": 0.5,
    }
    return Call(**(origin | fields))
