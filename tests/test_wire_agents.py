"""The agent session of a call, from the request shapes each agent sends
(tests/fixtures/agents/agents-on-the-wire.md)."""

import json

import pytest

from wire import anthropic_messages
from wire.agents import AgentSession, agent_session, claude_code_session, conversation_id
from wire.headers import REQUEST_HEADERS, parse_request_headers

SESSION = "3f2b8c1e-7d4a-4e5b-9c6f-0a1b2c3d4e5f"


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        # Claude Code 2.1: the main agent, then a Task sub-agent (the parent's session, its own id).
        (
            {"x-claude-code-session-id": SESSION, "user-agent": "claude-cli/2.1.332 (external, sdk-cli)"},
            (SESSION, None),
        ),
        ({"x-claude-code-session-id": SESSION, "x-claude-code-agent-id": "agent_7"}, (SESSION, "agent_7")),
        # Codex CLI: `session-id` since 0.131, `session_id` before; a sub-agent says which.
        ({"session-id": SESSION, "originator": "codex_cli_rs"}, (SESSION, None)),
        ({"session_id": SESSION}, (SESSION, None)),
        ({"session-id": SESSION, "x-openai-subagent": "review"}, (SESSION, "review")),
        ({"x-opencode-session": "ses_01JZ"}, ("ses_01JZ", None)),
        ({"x-copilot-session-id": "c0p1l0t"}, ("c0p1l0t", None)),
        ({"x-qwen-code-session-id": SESSION}, (SESSION, None)),
        ({"x-session-affinity": "ses_02", "x-session-id": "ses_03"}, ("ses_02", None)),  # OpenCode, newer
        # Any other agent: the generic rule, `x-<name>-session-id`, after the agents' own headers.
        # Codex without a session header: the thread of its window id (the generation left out).
        ({"x-codex-window-id": "019a2b3c-thread:2"}, ("019a2b3c-thread", None)),
        ({"x-codex-window-id": "019a2b3c-thread:2", "session-id": SESSION}, (SESSION, None)),
        ({"x-lore-session-id": "lore-1"}, ("lore-1", None)),
        ({"x-lore-session-id": "lore-1", "session-id": SESSION}, (SESSION, None)),
    ],
)
def test_each_agents_session_header_names_the_session(headers, expected):
    assert agent_session(headers) == AgentSession(*expected)


def test_a_call_without_a_session_header_has_none():
    assert agent_session({"user-agent": "OpenAI/Python 1.54.3"}) is None
    assert agent_session({"x--session-id": "x", "session-ids": "y", "y-a-session-id": "z"}) is None
    assert agent_session({"x-claude-code-session-id": "  "}) is None  # blank is not a session


def test_long_or_odd_ids_are_recorded_as_their_hash():
    long = "x" * 200
    hashed = conversation_id(long)
    assert hashed.startswith("sha256:") and len(hashed) == 7 + 32 and hashed == conversation_id(long)
    assert conversation_id("line\nbreak").startswith("sha256:")
    assert agent_session({"session-id": long}) == AgentSession(hashed)


def test_the_headers_are_recorded_and_read_with_the_request():
    """The hooks pass the session headers on (REQUEST_HEADERS); the telemetry side reads them."""
    assert {"x-claude-code-session-id", "session-id", "x-claude-code-agent-id"} <= set(REQUEST_HEADERS)
    info = parse_request_headers({"x-claude-code-session-id": SESSION, "user-agent": "claude-cli/2.1.332"})
    assert info.session == AgentSession(SESSION) and info.client.name == "claude-cli"


@pytest.mark.parametrize(
    ("user_id", "expected"),
    [
        # Claude Code since 2.1.78: a JSON object in the string.
        (f'{{"device_id":"{"d" * 64}","account_uuid":"","session_id":"{SESSION}"}}', SESSION),
        # Before: user_<64 hex>_account_<uuid>_session_<uuid>.
        (f"user_{'a' * 64}_account_11111111-2222-3333-4444-555555555555_session_{SESSION}", SESSION),
        ("some-other-client-user", None),
        ('{"session_id": 7}', None),
        ("{not json", None),
        ('{"session_id": "s"}' + " " * 2000, None),  # too long to read
        (None, None),
    ],
)
def test_claude_codes_session_in_metadata_user_id(user_id, expected):
    assert claude_code_session(user_id) == expected


def test_an_anthropic_request_names_claude_codes_session_from_its_metadata():
    body = json.dumps(
        {
            "model": "claude-sonnet-4-6",
            "max_tokens": 32,
            "messages": [],
            "metadata": {"user_id": f'{{"device_id":"{"d" * 64}","account_uuid":"","session_id":"{SESSION}"}}'},
        }
    ).encode()
    request = anthropic_messages.API.parse_request(body)
    assert request.agent_session == SESSION and request.conversation_id is None
    # The session of the call, whichever of the body and a header names it (the header first).
    assert agent_session({}, request.agent_session) == AgentSession(SESSION)
    assert agent_session({"x-claude-code-session-id": "from-header"}, request.agent_session) == AgentSession(
        "from-header"
    )
    assert "d" * 16 not in repr(request)  # the device id is never kept
