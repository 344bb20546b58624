"""Tool time from the wire (`otel.tools`): calls wait by scope until a later request answers them."""

import pytest

from otel.tools import PendingTools
from wire.records import ToolCall, ToolResult
from wire.tools import MAX_TOOLS

pytestmark = pytest.mark.unit

PARENT = (7, 8)


def pending(clock: list[float] | None = None, **limits) -> PendingTools:
    clock = clock if clock is not None else [0.0]
    return PendingTools(clock=lambda: clock[0], **limits)


def test_parallel_calls_are_answered_by_id_each_with_the_one_gap():
    tools = pending()
    tools.asked("s", [ToolCall("toolu_1", "Read"), ToolCall("toolu_2", "Grep")], asked_ns=1_000, parent=PARENT)
    runs = tools.answered("s", [ToolResult("toolu_2"), ToolResult("toolu_1", error=True)], at_ns=3_500_000_000)
    assert [(run.call.name, run.start_ns, run.end_ns, run.error) for run in runs] == [
        ("Grep", 1_000, 3_500_000_000, False),
        ("Read", 1_000, 3_500_000_000, True),
    ]
    assert runs[0].parent == PARENT and abs(runs[0].duration_s - 3.499999) < 1e-9
    assert len(tools) == 0


def test_results_answered_before_or_never_asked_for_give_nothing():
    tools = pending()
    tools.asked("s", [ToolCall("call_1", "shell")], asked_ns=0, parent=PARENT)
    assert len(tools.answered("s", [ToolResult("call_1")], at_ns=10)) == 1
    assert tools.answered("s", [ToolResult("call_1")], at_ns=20) == []  # the history replays it
    assert tools.answered("s", [ToolResult("call_unknown")], at_ns=20) == []


def test_scopes_do_not_answer_each_other_two_sub_agents_interleaved():
    tools = pending()
    tools.asked("session a", [ToolCall("toolu_main", "Task")], asked_ns=0, parent=PARENT)
    tools.asked("session a sub-1", [ToolCall("toolu_sub", "Read")], asked_ns=5, parent=PARENT)
    assert tools.answered("session a", [ToolResult("toolu_sub")], at_ns=9) == []
    (sub,) = tools.answered("session a sub-1", [ToolResult("toolu_sub")], at_ns=9)
    (main,) = tools.answered("session a", [ToolResult("toolu_main")], at_ns=20)
    assert (sub.call.name, sub.start_ns, main.call.name, main.start_ns) == ("Read", 5, "Task", 0)


def test_a_result_under_an_id_of_its_own_is_matched_by_name_oldest_first():
    """Gemini CLI gives a call without an id its own (`<name>-<ms>-<hex>`) and answers under it."""
    tools = pending()
    tools.asked("s", [ToolCall("read_file", "read_file"), ToolCall("glob", "glob")], asked_ns=0, parent=PARENT)
    (run,) = tools.answered("s", [ToolResult("read_file-1764900000000-ab12", "read_file")], at_ns=5)
    assert run.call.name == "read_file" and len(tools) == 1


def test_calls_never_answered_expire_with_the_idle_time_and_scopes_are_bounded():
    clock = [0.0]
    tools = pending(clock, expire_s=60, limit=2)
    tools.asked("a", [ToolCall("call_1", "shell")], asked_ns=0, parent=PARENT)
    clock[0] = 61.0
    assert tools.answered("a", [ToolResult("call_1")], at_ns=1) == []  # the user walked away
    for scope in ("x", "y", "z"):
        tools.asked(scope, [ToolCall("call_1", "shell")], asked_ns=0, parent=PARENT)
    assert tools.answered("x", [ToolResult("call_1")], at_ns=1) == []  # forgotten: the limit is 2
    assert len(tools.answered("z", [ToolResult("call_1")], at_ns=1)) == 1
    tools.asked("w", [ToolCall(f"call_{n}", "shell") for n in range(MAX_TOOLS + 5)], asked_ns=0, parent=PARENT)
    assert len(tools) == 1 + MAX_TOOLS  # y's, and w's newest


def test_an_mcp_call_finds_the_waiting_tool_call_it_serves_by_its_prefixed_name():
    tools = pending()
    tools.asked("s", [ToolCall("toolu_1", "mcp__weather__get_weather"), ToolCall("toolu_2", "Read")], 100, PARENT)
    assert tools.running("get_weather", at_ns=50) is None  # asked after the MCP call started: not its
    assert tools.running("get_forecast", at_ns=200) is None
    found = tools.running("get_weather", at_ns=200)
    assert found is not None and found[0].call_id == "toolu_1" and found[1] == PARENT
    found[2].append((5, 6))  # the MCP call's span
    (run,) = tools.answered("s", [ToolResult("toolu_1")], at_ns=300)
    assert run.mcp_calls == ((5, 6),)
