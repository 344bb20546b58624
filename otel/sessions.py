"""Agent sessions as traces. The calls of one agent session (`wire.agents`) share one trace,
under an `invoke_agent {agent}` span that covers them and carries the session's totals.

The trace id and the session span's id come from the session id, so every call can name its
parent before that span is recorded, and the same session gets the same ids in every proxy of a
fleet. The session span is recorded once the session has been idle for `idle_s`, or at shutdown.
A call whose client sent its own `traceparent` keeps that trace and is still counted in its
session's totals.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from wire.agents import DEFAULT_SESSION_IDLE_S
from wire.call import Call
from wire.records import Usage

MAX_OPEN_SESSIONS = 10_000  # then the session idle longest is ended early
# A cache break: a call that reads less than CACHE_BREAK_SHARE of what the previous call of its
# thread (agent or sub-agent, and model) read from the prompt cache, with at least as much input
# (a compacted, shorter prompt reads less for a reason). Reads below CACHE_BREAK_MIN_READ are not
# watched: 1,024 tokens is the shortest prefix Anthropic caches.
CACHE_BREAK_SHARE = 0.5
CACHE_BREAK_MIN_READ = 1024
MAX_THREADS = 64  # per session, the cache reads remembered


def cache_broke(previous_read: int, usage: Usage) -> bool:
    """Did a call whose previous call (same thread) read `previous_read` tokens from the cache break
    the cache: a prefix the agent sent before changed, and was written again at full price."""
    read = usage.cache_read_tokens or 0
    return (
        previous_read >= CACHE_BREAK_MIN_READ
        and read < previous_read * CACHE_BREAK_SHARE
        and (usage.input_tokens or 0) >= previous_read
    )


def session_trace(session_id: str) -> tuple[int, int]:
    """The trace id and the session span's id of a session: the same for the same id, anywhere."""
    digest = hashlib.sha256(session_id.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:16]) or 1, int.from_bytes(digest[16:24]) or 1


@dataclass
class OpenSession:
    """A session's span to be, and its totals so far."""

    agent: str
    session_id: str
    provider: str
    trace_id: int
    span_id: int
    start_ns: int
    end_ns: int
    last_seen: float  # the clock's time of its last call
    calls: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    model_time_s: float = 0.0  # the calls' durations, added up
    tool_time_s: float = 0.0  # the client tools' runs between them (`otel.tools`), added up
    cache_breaks: int = 0
    # The last cache read of each thread (sub-agent and model): what the next call is held to.
    cache_reads: dict[str, int] = field(default_factory=dict)

    def add(self, call: Call, now: float, tool_time_s: float = 0.0) -> None:
        self.calls += 1
        self.tool_time_s += tool_time_s
        self.errors += call.error_type is not None
        self.start_ns = min(self.start_ns, call.start_time_ns)
        self.end_ns = max(self.end_ns, call.start_time_ns + int(call.duration_s * 1e9))
        self.last_seen = now
        self.model_time_s += call.duration_s
        if (usage := call.usage) is not None:
            self.input_tokens += usage.input_tokens or 0
            self.output_tokens += usage.output_tokens or 0
        if call.cost_usd is not None:
            self.cost_usd = (self.cost_usd or 0.0) + call.cost_usd

    def cache_break(self, call: Call, subagent: str | None) -> int | None:
        """The tokens the thread's previous call read from the cache, if `call` broke the cache
        (`cache_broke`); then it is counted. Either way `call`'s read is the thread's newest."""
        usage = call.usage
        if usage is None or call.error_type is not None:
            return None
        thread = f"{subagent or ''} {call.billed_model or ''}"
        previous = self.cache_reads.pop(thread, None)
        self.cache_reads[thread] = usage.cache_read_tokens or 0
        if len(self.cache_reads) > MAX_THREADS:
            del self.cache_reads[next(iter(self.cache_reads))]
        if previous is None or not cache_broke(previous, usage):
            return None
        self.cache_breaks += 1
        return previous


class ResponseChains:
    """Responses API conversations chained by `previous_response_id`, as sessions: a call that
    continues a response is in that response's session, named by the first response id seen in
    the chain (the call that starts a chain has nothing to name it yet, so it stays on its own)."""

    def __init__(self, limit: int = MAX_OPEN_SESSIONS) -> None:
        self._limit = limit
        self._session_of: OrderedDict[str, str] = OrderedDict()  # response id → its chain's session

    def session_of(self, previous_response_id: str) -> str:
        return self._session_of.get(previous_response_id, previous_response_id)

    def extend(self, response_id: str, session_id: str) -> None:
        """`response_id` continues the chain `session_id` names."""
        self._session_of[response_id] = session_id
        if len(self._session_of) > self._limit:
            self._session_of.popitem(last=False)


class Sessions:
    """The open sessions, by session id, the one idle longest first."""

    def __init__(
        self,
        idle_s: float = DEFAULT_SESSION_IDLE_S,
        limit: int = MAX_OPEN_SESSIONS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.idle_s = idle_s
        self._limit = limit
        self._clock = clock
        self._open: OrderedDict[str, OpenSession] = OrderedDict()
        self._ended: list[OpenSession] = []  # over the limit, waiting to be recorded

    def __len__(self) -> int:
        return len(self._open)

    def add(self, call: Call, agent: str, session_id: str, tool_time_s: float = 0.0) -> OpenSession:
        """Count `call` in its session (opened now if new), and the tool time its request ended;
        the session names the call's parent."""
        now = self._clock()
        session = self._open.pop(session_id, None)
        if session is None:
            trace_id, span_id = session_trace(session_id)
            end_ns = call.start_time_ns + int(call.duration_s * 1e9)
            session = OpenSession(
                agent, session_id, call.origin.provider, trace_id, span_id, call.start_time_ns, end_ns, now
            )
            if len(self._open) >= self._limit:
                self._ended.append(self._open.popitem(last=False)[1])
        session.add(call, now, tool_time_s)
        self._open[session_id] = session  # the most recently seen last
        return session

    def ended(self) -> list[OpenSession]:
        """The sessions to record now: idle for `idle_s`, or pushed out by the limit."""
        ended, self._ended = self._ended, []
        now = self._clock()
        while self._open:
            oldest = next(iter(self._open.values()))
            if now - oldest.last_seen < self.idle_s:
                break
            ended.append(self._open.popitem(last=False)[1])
        return ended

    def close(self) -> list[OpenSession]:
        """Every session, at shutdown: none is lost when mitmdump stops."""
        ended = [*self._ended, *self._open.values()]
        self._ended, self._open = [], OrderedDict()
        return ended
