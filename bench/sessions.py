"""Part 11 of `make bench`: the memory agent sessions hold in the telemetry process.

Each session makes two calls, as an agent does: one asks for a tool, the next brings its result
back and asks for another tool, whose result never comes (the user walked away). The telemetry
state that grows with sessions (the open sessions, the tool calls waiting, the summary's session
rows) is measured with tracemalloc: at the limit of open sessions, at twice that many (the oldest
are ended early), and once they have all been idle for `genai_session_idle`.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from otel.sessions import MAX_OPEN_SESSIONS, Sessions
from otel.tools import PendingTools
from telemetry import Telemetry
from telemetry_process import MetricOptions
from wire import anthropic_messages
from wire.agents import DEFAULT_SESSION_IDLE_S
from wire.call import Call, Endpoint, Origin
from wire.records import ApiRequest, ApiResult, ToolCall, ToolResult, Usage

if TYPE_CHECKING:
    from bench.run import Bench

ENDPOINT = Endpoint(anthropic_messages.API)
ORIGIN = Origin("anthropic", "api.anthropic.com", 443, "sk-ant-api03-...abcd")


def session_calls(number: int, start_ns: int) -> list[Call]:
    """One session's two calls, with Claude Code's header and ids of the real lengths."""
    headers = {
        "user-agent": "claude-cli/2.1.332 (external, sdk-cli)",
        "x-claude-code-session-id": f"{number:08x}-7d4a-4e5b-9c6f-0a1b2c3d4e5f",
    }
    origin = Origin(ORIGIN.provider, ORIGIN.server_address, ORIGIN.server_port, ORIGIN.api_key, headers)
    usage = Usage(input_tokens=12_000, output_tokens=300, cache_read_tokens=11_000)
    first_tool = f"toolu_01{number:022d}"
    answering = ApiRequest(model="claude-sonnet-4-6", tool_results=(ToolResult(first_tool),))
    steps = [
        (ApiRequest(model="claude-sonnet-4-6"), (ToolCall(first_tool, "Bash"),)),
        (answering, (ToolCall(f"{first_tool}x", "Read"),)),
    ]
    return [
        Call(
            endpoint=ENDPOINT,
            origin=origin,
            start_time_ns=start_ns + step * 2_000_000_000,
            duration_s=1.0,
            status_code=200,
            request=request,
            result=ApiResult(response_model="claude-sonnet-4-6", usage=usage, tool_calls=tools),
            cost_usd=0.01,
        )
        for step, (request, tools) in enumerate(steps)
    ]


def held_bytes() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def agent_sessions(sessions: int = MAX_OPEN_SESSIONS) -> dict[str, Any]:
    """Open `sessions` sessions (the limit: MAX_OPEN_SESSIONS, unless a test sets a smaller one),
    then as many again, then let them all idle out; the bytes each stage holds, and how many
    sessions and waiting tool calls there are."""
    clock = [0.0]
    telemetry = Telemetry(span_exporters=[], metric_readers=[InMemoryMetricReader()])
    telemetry.sessions = Sessions(limit=sessions, clock=lambda: clock[0])
    telemetry.tools = PendingTools(limit=sessions, clock=lambda: clock[0])
    options = MetricOptions()
    tracemalloc.start()
    try:
        baseline = held_bytes()
        stages: dict[str, Any] = {}
        started = time.perf_counter()
        for stage, numbers in (("at the limit", range(sessions)), ("twice the limit", range(sessions, 2 * sessions))):
            for number in numbers:
                clock[0] += 0.001
                for call in session_calls(number, int(clock[0] * 1e9)):
                    telemetry.record(call, options)
            stages[stage] = (held_bytes() - baseline, len(telemetry.sessions), len(telemetry.tools))
        seconds = time.perf_counter() - started
        clock[0] += DEFAULT_SESSION_IDLE_S + 1
        telemetry.end_idle_sessions()
        telemetry.tools.answered("nobody", [], 0)  # expiry runs with the next call
        stages["all idle"] = (held_bytes() - baseline, len(telemetry.sessions), len(telemetry.tools))
    finally:
        tracemalloc.stop()
        telemetry.shutdown(1)
    return {"sessions": sessions, "stages": stages, "calls_per_s": 2 * sessions * 2 / seconds}


def report_sessions(measured: dict[str, Any]) -> list[str]:
    sessions = measured["sessions"]
    lines = [
        "## 11. Agent sessions: the telemetry process's memory (in-process, tracemalloc)",
        "",
        f"{sessions:,} sessions of two calls each (one asks for a tool, the next answers it and asks for "
        f"another that never comes back), then {sessions:,} more, then all idle past genai_session_idle. "
        f"{measured['calls_per_s']:,.0f} calls/s recorded, under tracemalloc.",
        "",
        "| stage | open sessions | tool calls waiting | held MB | bytes per open session |",
        "|---|---:|---:|---:|---:|",
    ]
    for stage, (held, open_sessions, waiting) in measured["stages"].items():
        per_session = f"{held / open_sessions:,.0f}" if open_sessions else "-"
        lines.append(f"| {stage} | {open_sessions:,} | {waiting:,} | {held / 1e6:.1f} | {per_session} |")
    return [*lines, ""]


def sessions_part(bench: Bench, report: list[str], raw: dict[str, Any]) -> None:
    measured = agent_sessions(bench.sizes.agent_sessions)
    raw["agent_sessions"] = measured
    report += report_sessions(measured)
