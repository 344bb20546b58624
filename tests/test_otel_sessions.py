"""Agent sessions as traces (`otel.sessions`): ids from the session id, totals, idle ends."""

from otel.sessions import Sessions, session_trace
from tests.builders import finished_call
from wire.records import ApiResult, Usage


def call(start_s: float, duration_s: float = 1.0, **fields):
    return finished_call(**{"status_code": 200, **fields}, start_time_ns=int(start_s * 1e9), duration_s=duration_s)


def test_the_ids_come_from_the_session_id_alone():
    assert session_trace("s-1") == session_trace("s-1") != session_trace("s-2")
    trace_id, span_id = session_trace("s-1")
    assert 0 < trace_id < 2**128 and 0 < span_id < 2**64


def test_a_session_adds_up_its_calls_and_spans_them():
    clock = [0.0]
    sessions = Sessions(clock=lambda: clock[0])
    usage = ApiResult(usage=Usage(input_tokens=100, output_tokens=10))
    first = sessions.add(call(10.0, result=usage, cost_usd=0.01), "claude-cli", "s-1")
    second = sessions.add(call(15.0, 2.0, result=usage, cost_usd=0.02), "claude-cli", "s-1")
    failed = sessions.add(call(20.0, 0.5, status_code=529), "claude-cli", "s-1")
    assert first is second is failed and len(sessions) == 1
    assert (first.calls, first.errors, first.input_tokens, first.output_tokens) == (3, 1, 200, 20)
    assert first.cost_usd is not None and abs(first.cost_usd - 0.03) < 1e-12
    assert first.model_time_s == 3.5
    assert (first.start_ns, first.end_ns) == (10_000_000_000, 20_500_000_000)
    assert (first.trace_id, first.span_id) == session_trace("s-1")


def test_a_session_ends_when_idle_and_all_end_at_shutdown():
    clock = [0.0]
    sessions = Sessions(idle_s=60, clock=lambda: clock[0])
    sessions.add(call(0.0), "codex_exec", "a")
    clock[0] = 30.0
    sessions.add(call(30.0), "claude-cli", "b")
    clock[0] = 59.0
    assert sessions.ended() == []
    clock[0] = 61.0
    assert [s.session_id for s in sessions.ended()] == ["a"]  # b was seen 31 s ago
    clock[0] = 62.0
    sessions.add(call(62.0), "codex_exec", "a")  # a new session under the same id
    assert sorted(s.session_id for s in sessions.close()) == ["a", "b"] and len(sessions) == 0


def test_at_most_the_limit_are_open_the_one_idle_longest_ended_first():
    clock = [0.0]
    sessions = Sessions(limit=2, clock=lambda: clock[0])
    for number, name in enumerate(["a", "b", "a", "c"]):
        clock[0] = float(number)
        sessions.add(call(float(number)), "agent", name)
    assert len(sessions) == 2 and [s.session_id for s in sessions.ended()] == ["b"]


def cached(read: int, input_tokens: int = 20_000) -> ApiResult:
    return ApiResult(
        response_model="claude-x", usage=Usage(input_tokens=input_tokens, output_tokens=5, cache_read_tokens=read)
    )


def test_a_call_that_reads_far_less_from_the_cache_than_the_last_breaks_it():
    sessions = Sessions()
    session = sessions.add(call(0.0, result=cached(0)), "claude-cli", "s")
    reads = [(0, None), (15_000, None), (18_000, None), (2_000, 18_000), (19_000, None), (9_600, None)]
    for read, expected in reads:  # 9,600 of 19,000 is more than half: not a break
        assert session.cache_break(call(1.0, result=cached(read)), None) == expected
    assert session.cache_breaks == 1


def test_a_shorter_prompt_small_reads_other_threads_and_failures_are_not_breaks():
    session = Sessions().add(call(0.0, result=cached(0)), "claude-cli", "s")
    assert session.cache_break(call(1.0, result=cached(8_000)), None) is None
    assert session.cache_break(call(2.0, result=cached(100, input_tokens=5_000)), None) is None  # compacted
    assert session.cache_break(call(3.0, result=cached(900)), None) is None
    assert session.cache_break(call(4.0, result=cached(0)), None) is None  # 900 read before: too few to watch
    assert session.cache_break(call(5.0, result=cached(8_000)), "agent_7") is None  # a sub-agent: its own thread
    assert session.cache_break(call(6.0, result=cached(8_000)), None) is None
    assert session.cache_break(call(7.0, status_code=529), None) is None  # no usage
    assert session.cache_breaks == 0
