"""Client tool calls and their results, in each API's dialect (facts: tests/fixtures/agents/
agents-on-the-wire.md, "Where the ids are, per API").

A response asks for tools (`ToolCall`); a later request of the same conversation sends their
results back (`ToolResult`). Every request replays the whole history, so a request's results are
read from its newest turn only: the trailing tool messages, or its last user message. Server-side
tools (Anthropic's `server_tool_use`, OpenAI's `web_search_call`, Gemini's built-in tools) run
inside the response and are not client tool calls.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from wire.records import ToolCall, ToolResult
from wire.values import label, obj

MAX_TOOLS = 64  # per response or request: more are left out

# Responses API output items the client runs, and their result items in a later request's input.
_RESPONSES_CALLS = {"function_call": "function", "custom_tool_call": "custom", "local_shell_call": "local_shell"}
_RESPONSES_RESULTS = {f"{kind}_output" for kind in _RESPONSES_CALLS}


def _bounded[T](found: Iterable[T]) -> tuple[T, ...]:
    return tuple(found)[:MAX_TOOLS]


def _call(call_id: Any, name: Any, tool_type: str = "function") -> ToolCall | None:
    """A call; one without an id (Gemini, Ollama) is known by its name."""
    name = label(name)
    call_id = label(call_id) or name
    return ToolCall(call_id, name, tool_type) if call_id and name else None


def _result(call_id: Any, name: Any = None, error: bool = False) -> ToolResult | None:
    name = label(name)
    call_id = label(call_id) or name
    return ToolResult(call_id, name, error) if call_id else None


def merged(calls: tuple[ToolCall, ...], more: Iterable[ToolCall]) -> tuple[ToolCall, ...]:
    """`calls` and the calls of `more` not among them (by id): a stream may name a call again."""
    known = {call.call_id for call in calls}
    return _bounded((*calls, *(call for call in more if call.call_id not in known)))


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _last(messages: Any) -> dict[str, Any]:
    found = _dicts(messages)
    return found[-1] if found else {}


def _last_user_blocks(messages: Any) -> list[dict[str, Any]]:
    """The content blocks of the last message, when it is the user's (where results come back)."""
    last = _last(messages)
    return _dicts(last.get("content")) if last.get("role") == "user" else []


# --- OpenAI chat completions (and Cohere v2, Ollama: the same message shapes) ----------------------


def openai_chat_calls(message: Any) -> tuple[ToolCall, ...]:
    """`message.tool_calls[] {id, type, function{name}}` of an answer's message."""
    calls = (
        _call(call.get("id"), obj(call.get("function")).get("name"), label(call.get("type")) or "function")
        for call in _dicts(obj(message).get("tool_calls"))
    )
    return _bounded(call for call in calls if call is not None)


def openai_chat_results(messages: Any) -> tuple[ToolResult, ...]:
    """The trailing `{"role": "tool", "tool_call_id", "tool_name"?}` messages."""
    found: list[ToolResult] = []
    for message in reversed(_dicts(messages)):
        if message.get("role") != "tool":
            break
        result = _result(message.get("tool_call_id"), message.get("tool_name") or message.get("name"))
        if result is not None:
            found.append(result)
    return _bounded(reversed(found))


# --- Anthropic Messages (also on Bedrock InvokeModel and Vertex rawPredict) -----------------------


def anthropic_calls(content: Any) -> tuple[ToolCall, ...]:
    """The `tool_use` blocks of an answer's content."""
    calls = (_call(block.get("id"), block.get("name")) for block in _dicts(content) if block.get("type") == "tool_use")
    return _bounded(call for call in calls if call is not None)


def anthropic_results(messages: Any) -> tuple[ToolResult, ...]:
    """The `tool_result` blocks of the last message, when it is the user's."""
    results = (
        _result(block.get("tool_use_id"), error=block.get("is_error") is True)
        for block in _last_user_blocks(messages)
        if block.get("type") == "tool_result"
    )
    return _bounded(result for result in results if result is not None)


# --- OpenAI Responses ---------------------------------------------------------------------------


def responses_call(item: Any) -> ToolCall | None:
    """An output item the client runs (`function_call`, `custom_tool_call`, `local_shell_call`)."""
    item = obj(item)
    tool_type = _RESPONSES_CALLS.get(str(item.get("type")))
    if tool_type is None:
        return None
    name = item.get("name") or ("local_shell" if tool_type == "local_shell" else None)
    return _call(item.get("call_id"), name, tool_type)


def responses_calls(output: Any) -> tuple[ToolCall, ...]:
    return _bounded(call for item in _dicts(output) if (call := responses_call(item)) is not None)


def responses_results(items: Any) -> tuple[ToolResult, ...]:
    """The trailing `*_call_output` items of a request's `input` (a string input has none)."""
    found: list[ToolResult] = []
    for item in reversed(_dicts(items)):
        if item.get("type") not in _RESPONSES_RESULTS:
            break
        if (result := _result(item.get("call_id"))) is not None:
            found.append(result)
    return _bounded(reversed(found))


# --- Gemini generateContent ---------------------------------------------------------------------


def gemini_calls(candidates: Any) -> tuple[ToolCall, ...]:
    """The `functionCall` parts of the first candidate (the one an agent goes on with)."""
    first = candidates[0] if isinstance(candidates, list) and candidates else None
    parts = obj(obj(first).get("content")).get("parts")
    found: list[ToolCall] = []
    for part in parts if isinstance(parts, list) else ():
        asked = part.get("functionCall") if isinstance(part, dict) else None
        if isinstance(asked, dict) and (call := _call(asked.get("id"), asked.get("name"))) is not None:
            found.append(call)
    return tuple(found[:MAX_TOOLS])


def gemini_results(contents: Any) -> tuple[ToolResult, ...]:
    """The `functionResponse` parts of the last content; a response with an `error` member failed."""
    results = (
        _result(response.get("id"), response.get("name"), error="error" in obj(response.get("response")))
        for part in _dicts(_last(contents).get("parts"))
        if (response := obj(part.get("functionResponse")))
    )
    return _bounded(result for result in results if result is not None)


# --- Bedrock Converse ---------------------------------------------------------------------------


def converse_calls(content: Any) -> tuple[ToolCall, ...]:
    """The `toolUse` blocks of an answer's message content."""
    calls = (
        _call(use.get("toolUseId"), use.get("name")) for block in _dicts(content) if (use := obj(block.get("toolUse")))
    )
    return _bounded(call for call in calls if call is not None)


def converse_results(messages: Any) -> tuple[ToolResult, ...]:
    """The `toolResult` blocks of the last message, when it is the user's (`status: error` failed)."""
    results = (
        _result(outcome.get("toolUseId"), error=outcome.get("status") == "error")
        for block in _last_user_blocks(messages)
        if (outcome := obj(block.get("toolResult")))
    )
    return _bounded(result for result in results if result is not None)
