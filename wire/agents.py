"""The agent session a call belongs to, from the headers agents send with every request
(facts and sources: tests/fixtures/agents/agents-on-the-wire.md): the session's id, and a sub-agent's.

A session id is not a credential, but it comes from the client: it is recorded as it is when
short and printable, and otherwise as a hash of it (`conversation_id`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

# The header each agent names its session with, first found wins (lower-case names).
SESSION_HEADERS = (
    "x-claude-code-session-id",  # Claude Code, since 2.1.86
    "session-id",  # Codex CLI since rust-v0.131.0
    "session_id",  # Codex CLI before
    "x-opencode-session",  # OpenCode (Zen / Go)
    "x-copilot-session-id",  # GitHub Copilot
    "x-qwen-code-session-id",  # Qwen Code
    "x-session-affinity",  # OpenCode, newer builds on other providers
    "x-session-id",  # OpenCode, newer builds
)
# Codex's thread, where no session header came: `x-codex-window-id` is `<thread id>:<generation>`
# (the generation counts context windows, so only the thread part names the conversation).
CODEX_WINDOW_HEADER = "x-codex-window-id"
# Any other agent's (an in-house loop's): `x-<name>-session-id`, when none of the above is sent.
GENERIC_SESSION_PREFIX, GENERIC_SESSION_SUFFIX = "x-", "-session-id"
# The header a sub-agent's requests carry its own id in (its session is its parent's).
SUBAGENT_HEADERS = (
    "x-claude-code-agent-id",  # Claude Code's Task / Agent tool
    "x-openai-subagent",  # Codex CLI
)
MAX_ID_LENGTH = 64
# A session ends after this long without a call (the addon's genai_session_idle).
DEFAULT_SESSION_IDLE_S = 300
# Claude Code's `metadata.user_id` is about 200 characters; a longer one is not read (it may be
# parsed on mitmproxy's event loop, with a request that may stream).
MAX_USER_ID_LENGTH = 1024


@dataclass(frozen=True)
class AgentSession:
    """The session a call belongs to; `subagent_id` when a sub-agent made it."""

    session_id: str
    subagent_id: str | None = None


def conversation_id(value: str) -> str:
    """A client's id as recorded: itself when short and printable, else `sha256:` and 32 hex digits
    of its hash (the same id gives the same value, and nothing long or odd reaches a backend)."""
    if len(value) <= MAX_ID_LENGTH and value.isprintable():
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def claude_code_session(user_id: object) -> str | None:
    """The session in a Claude Code request body's `metadata.user_id`, which names it for versions
    without the session header: a JSON object serialised into the string since 2.1.78
    (`{"device_id": …, "account_uuid": …, "session_id": …}`), `user_…_account_…_session_<uuid>`
    before. The rest of it (device and account) is never recorded."""
    if not isinstance(user_id, str) or len(user_id) > MAX_USER_ID_LENGTH:
        return None
    session: object = None
    if user_id.startswith("{"):
        try:
            decoded = json.loads(user_id)
        except ValueError:
            return None
        session = decoded.get("session_id") if isinstance(decoded, dict) else None
    elif "_session_" in user_id:
        session = user_id.rpartition("_session_")[2]
    return conversation_id(session.strip()) if isinstance(session, str) and session.strip() else None


def _first(headers: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    return next((value.strip() for name in names if (value := headers.get(name, "")).strip()), None)


def is_session_header(name: bytes) -> bool:
    """A lower-case field name of the generic rule, `x-<name>-session-id`."""
    return (
        name.endswith(b"-session-id")
        and name.startswith(b"x-")
        and len(name) > len(GENERIC_SESSION_PREFIX) + len(GENERIC_SESSION_SUFFIX)
    )


def _generic(headers: Mapping[str, str]) -> str | None:
    return next(
        (
            value.strip()
            for name, value in headers.items()
            if value.strip() and is_session_header(name.encode("ascii", "replace"))
        ),
        None,
    )


def agent_session(headers: Mapping[str, str], body_session: str | None = None) -> AgentSession | None:
    """The session of a request: the one its headers name (lower-case names: an agent's own header,
    else any `x-…-session-id`), else the one its body names (`ApiRequest.agent_session`: Claude
    Code's before the header), or None."""
    window = headers.get(CODEX_WINDOW_HEADER, "").rpartition(":")[0].strip() or None
    named = _first(headers, SESSION_HEADERS) or window or _generic(headers)
    session = conversation_id(named) if named is not None else body_session
    if session is None:
        return None
    subagent = _first(headers, SUBAGENT_HEADERS)
    return AgentSession(session, conversation_id(subagent) if subagent else None)
