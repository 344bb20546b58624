"""End to end for agents' tool time: a scripted agent loop with the real `openai` and `anthropic`
SDKs through a real mitmdump (reverse mode to the fake upstream, which calls the declared tools
when told to, as the real APIs do with `tool_choice`): the model asks for tools, the script "runs"
them for a known time, then sends their results. One trace per session, an `execute_tool` span per
tool over that gap, and the session's totals.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from harness.e2e import KEY, World, spans_for
from harness.mitmdump import Mitmdump, reverse_args
from otel.sessions import session_trace
from tests.test_end_to_end_anthropic import KEY as ANTHROPIC_KEY

TOOL_RUN_S = 0.4  # what the script's tools take
# The proxy's gap runs from the response's last byte to the next request's first, as it saw them:
# the script's own gap plus the SDK's time to read the stream's end and to build and send the
# request (10 ms measured on an idle machine; 98 ms once, with the suite's three workers on 2 cores).
ON_THE_WIRE_S = 0.15
IDLE_S = 2  # genai_session_idle: the session's span is recorded this long after its last call


@pytest.fixture(scope="module")
def openai_proxy(world: World) -> Iterator[Mitmdump]:
    args = [*reverse_args(world.fake.port, world.pki.ca_cert), "--set", f"genai_session_idle={IDLE_S}"]
    with Mitmdump(args, world.env, world.tmp / "conf-agents-openai") as started:
        yield started


@pytest.fixture(scope="module")
def anthropic_proxy(world: World) -> Iterator[Mitmdump]:
    args = [
        *reverse_args(world.fake.port, world.pki.ca_cert, provider="anthropic"),
        *("--set", f"genai_session_idle={IDLE_S}"),
    ]
    with Mitmdump(args, world.env, world.tmp / "conf-agents-anthropic") as started:
        yield started


def session_spans(world: World, session: str, count: int) -> list[Any]:
    """The spans of the session's trace, once `count` have arrived (its invoke_agent span among them)."""
    trace_id = f"{session_trace(session)[0]:032x}"

    def arrived() -> list[Any]:
        found = [span for span in world.receiver.spans() if span.trace_id == trace_id]
        return found if len(found) >= count else []

    result: list[Any] = world.receiver.wait_for(arrived)
    return result


def test_an_openai_agent_loop_gives_tool_spans_of_the_time_its_tools_took(world: World, openai_proxy: Mitmdump):
    import openai

    session = f"loop-{uuid.uuid4()}"
    client = openai.OpenAI(
        base_url=f"{openai_proxy.url}/v1",
        api_key=KEY,
        max_retries=0,
        default_headers={"X-Scripted-Loop-Session-Id": session},  # the generic session rule
    )
    tools: list[Any] = [
        {"type": "function", "function": {"name": name, "parameters": {"type": "object", "properties": {}}}}
        for name in ("read_file", "list_dir")
    ]
    messages: list[Any] = [{"role": "user", "content": "What is in the README?"}]
    stream = client.chat.completions.create(
        model="e2e-agent-loop", messages=messages, tools=tools, tool_choice="required", stream=True
    )
    calls: dict[int, dict[str, Any]] = {}
    for chunk in stream:
        for delta in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
            call = calls.setdefault(delta.index, {"id": None, "name": None, "arguments": ""})
            call["id"] = call["id"] or delta.id
            call["name"] = call["name"] or (delta.function.name if delta.function else None)
            call["arguments"] += (delta.function.arguments or "") if delta.function else ""
    answered_at = time.monotonic()
    assert [call["name"] for call in calls.values()] == ["read_file", "list_dir"]
    time.sleep(TOOL_RUN_S)  # the tools run
    messages.append(
        {
            "role": "assistant",
            "tool_calls": [
                {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                for c in calls.values()
            ],
        }
    )
    messages += [{"role": "tool", "tool_call_id": c["id"], "content": "# README"} for c in calls.values()]
    asked_at = time.monotonic()
    final = client.chat.completions.create(model="e2e-agent-loop", messages=messages, tools=tools)
    client_gap = asked_at - answered_at
    assert final.choices[0].finish_reason == "stop"

    spans = session_spans(world, session, 5)  # two calls, two tools, the session
    by_name = {span.name: span for span in spans}
    assert (
        sorted(by_name)
        == [
            "chat e2e-agent-loop",
            "execute_tool list_dir",
            "execute_tool read_file",
            "invoke_agent openai-python",
        ]
        and len(spans) == 5
    )
    read, listed = by_name["execute_tool read_file"], by_name["execute_tool list_dir"]
    for tool, call in ((read, calls[0]), (listed, calls[1])):
        took = (tool.end_time_unix_nano - tool.start_time_unix_nano) / 1e9
        assert 0 <= took - client_gap < ON_THE_WIRE_S, (took, client_gap)
        assert tool.attributes["gen_ai.tool.call.id"] == call["id"]
        assert tool.attributes["gen_ai.conversation.id"] == session
        assert tool.parent_span_id == by_name["invoke_agent openai-python"].span_id
    agent = by_name["invoke_agent openai-python"]
    chats = [span for span in spans if span.name.startswith("chat")]
    assert agent.attributes["genai.session.calls"] == 2
    assert agent.attributes["gen_ai.usage.input_tokens"] == sum(
        s.attributes["gen_ai.usage.input_tokens"] for s in chats
    )
    assert agent.attributes["gen_ai.usage.output_tokens"] == sum(
        s.attributes["gen_ai.usage.output_tokens"] for s in chats
    )
    assert abs(agent.attributes["genai.session.tool_time_s"] - client_gap) < ON_THE_WIRE_S  # one gap, two tools
    durations = world.receiver.wait_for(
        lambda: world.receiver.latest("gen_ai.execute_tool.duration", gen_ai__tool__name="read_file")
    )
    assert (
        sum(point.count for point in durations) >= 1 and durations[0].attributes["gen_ai.agent.name"] == "openai-python"
    )


def test_an_anthropic_agent_loop_marks_a_failed_tool_and_streams_its_calls(world: World, anthropic_proxy: Mitmdump):
    session = f"loop-{uuid.uuid4()}"
    client = anthropic.Anthropic(
        base_url=anthropic_proxy.url,
        api_key=ANTHROPIC_KEY,
        max_retries=0,
        default_headers={"x-claude-code-session-id": session},
    )
    tools: list[Any] = [{"name": name, "input_schema": {"type": "object"}} for name in ("Bash", "Read")]
    messages: list[Any] = [{"role": "user", "content": "Run the tests."}]
    with client.messages.stream(
        model="e2e-agent-claude", max_tokens=256, messages=messages, tools=tools, tool_choice={"type": "any"}
    ) as stream:
        first = stream.get_final_message()
    answered_at = time.monotonic()
    uses = [block for block in first.content if block.type == "tool_use"]
    assert first.stop_reason == "tool_use" and [use.name for use in uses] == ["Bash", "Read"]
    time.sleep(TOOL_RUN_S)
    messages += [
        {"role": "assistant", "content": [block.model_dump() for block in first.content]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": uses[0].id, "content": "exit 1", "is_error": True},
                {"type": "tool_result", "tool_use_id": uses[1].id, "content": "ok"},
            ],
        },
    ]
    asked_at = time.monotonic()
    final = client.messages.create(model="e2e-agent-claude", max_tokens=256, messages=messages, tools=tools)
    client_gap = asked_at - answered_at
    assert final.stop_reason == "end_turn"

    spans = session_spans(world, session, 5)
    by_name = {span.name: span for span in spans}
    bash, read = by_name["execute_tool Bash"], by_name["execute_tool Read"]
    assert bash.attributes["error.type"] == "tool_error" and "error.type" not in read.attributes
    assert (bash.attributes["gen_ai.tool.call.id"], read.attributes["gen_ai.tool.call.id"]) == (uses[0].id, uses[1].id)
    took = (bash.end_time_unix_nano - bash.start_time_unix_nano) / 1e9
    assert 0 <= took - client_gap < ON_THE_WIRE_S, (took, client_gap)
    (agent,) = [span for span in spans if span.name.startswith("invoke_agent")]
    assert agent.attributes["genai.session.calls"] == 2
    assert spans_for(world, "e2e-agent-claude", 2)  # both calls carry their model, in the session's trace
