"""Tool time from the wire: the time between a response that asks for tools and the request that
brings their results back (`wire.tools`). The proxy never sees the tools run (a local shell, a
file edit, a stdio MCP server), only that gap, which also holds the agent's own overhead between
the two calls (permission prompts, hooks, the user approving).

Calls wait here, by scope (an agent session and sub-agent, else the client's key at its server),
until a later request of the same scope answers them: by id, else by name (Gemini calls may have no
id, and Gemini CLI answers them under an id of its own). Parallel calls of one response share one
gap. Calls never answered (the user interrupted, the session ended) expire unrecorded.
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from wire.agents import DEFAULT_SESSION_IDLE_S
from wire.records import ToolCall, ToolResult
from wire.tools import MAX_TOOLS

MAX_SCOPES = 10_000  # scopes with calls waiting; then the one idle longest is forgotten
MAX_SCOPES_SEARCHED = 100  # for the call an MCP request serves: the scopes seen last


@dataclass(frozen=True, slots=True)
class ToolRun:
    """A tool's run as the proxy saw it: from the end of the response that asked for it to the start
    of the request that answered it."""

    call: ToolCall
    start_ns: int
    end_ns: int
    error: bool  # the result says the tool failed
    parent: tuple[int, int]  # (trace id, span id): the session's span, else the asking call's
    mcp_calls: tuple[tuple[int, int], ...] = ()  # the spans of the MCP calls made for it (`running`)

    @property
    def duration_s(self) -> float:
        return max(self.end_ns - self.start_ns, 0) / 1e9


@dataclass(slots=True)
class _Waiting:
    call: ToolCall
    asked_ns: int
    parent: tuple[int, int]
    mcp_calls: list[tuple[int, int]] = field(default_factory=list)


@dataclass(slots=True)
class _Scope:
    calls: OrderedDict[str, _Waiting]
    last_seen: float


class PendingTools:
    """The tool calls waiting for their results, per scope, the scope idle longest first."""

    def __init__(
        self,
        expire_s: float = DEFAULT_SESSION_IDLE_S,
        limit: int = MAX_SCOPES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.expire_s = expire_s
        self._limit = limit
        self._clock = clock
        self._scopes: OrderedDict[str, _Scope] = OrderedDict()

    def __len__(self) -> int:
        """How many calls wait."""
        return sum(len(scope.calls) for scope in self._scopes.values())

    def asked(self, scope: str, calls: Sequence[ToolCall], asked_ns: int, parent: tuple[int, int]) -> None:
        """A response of `scope` that ended at `asked_ns` asks for `calls`."""
        self._expire()
        if not calls:
            return
        waiting = self._scopes.pop(scope, None) or _Scope(OrderedDict(), 0.0)
        waiting.last_seen = self._clock()
        for call in calls:
            waiting.calls[call.call_id] = _Waiting(call, asked_ns, parent)
        while len(waiting.calls) > MAX_TOOLS:
            waiting.calls.popitem(last=False)
        self._scopes[scope] = waiting
        if len(self._scopes) > self._limit:
            self._scopes.popitem(last=False)

    def answered(self, scope: str, results: Sequence[ToolResult], at_ns: int) -> list[ToolRun]:
        """The runs a request of `scope` that started at `at_ns` ends with its `results`; results of
        calls not waiting (answered before, or never seen) give none."""
        self._expire()
        waiting = self._scopes.get(scope)
        if waiting is None or not results:
            return []
        runs = []
        for result in results:
            found = waiting.calls.pop(result.call_id, None) or self._by_name(waiting, result.name)
            if found is not None:
                run = ToolRun(found.call, found.asked_ns, at_ns, result.error, found.parent, tuple(found.mcp_calls))
                runs.append(run)
        if not waiting.calls:
            del self._scopes[scope]
        return runs

    def running(self, mcp_tool: str, at_ns: int) -> tuple[ToolCall, tuple[int, int], list[tuple[int, int]]] | None:
        """The waiting call an MCP `tools/call` of `mcp_tool` made at `at_ns` serves, if any: the
        newest asked before it whose name is the tool's, or ends with `__` and it (agents prefix an
        MCP tool's name for the model: Claude Code's `mcp__<server>__<tool>`). Returns the call,
        its parent span, and the list the MCP call's span is added to (the tool's span links it)."""
        for scope in itertools.islice(reversed(self._scopes.values()), MAX_SCOPES_SEARCHED):
            for waiting in reversed(scope.calls.values()):
                name = waiting.call.name
                if waiting.asked_ns <= at_ns and (name == mcp_tool or name.endswith(f"__{mcp_tool}")):
                    return waiting.call, waiting.parent, waiting.mcp_calls
        return None

    @staticmethod
    def _by_name(waiting: _Scope, name: str | None) -> _Waiting | None:
        """The oldest waiting call of this tool name."""
        call_id = next((key for key, found in waiting.calls.items() if found.call.name == name), None)
        return waiting.calls.pop(call_id) if name is not None and call_id is not None else None

    def _expire(self) -> None:
        now = self._clock()
        while self._scopes:
            oldest = next(iter(self._scopes.values()))
            if now - oldest.last_seen < self.expire_s:
                break
            self._scopes.popitem(last=False)
