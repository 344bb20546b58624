"""The usage summary table."""

from summary import Reservoir, UsageSummary
from tests.builders import finished_call
from wire.call import Call
from wire.records import ApiRequest, ApiResult, Usage


def call(model: str, duration: float, usage: Usage | None, cost: float | None = None, **extra) -> Call:
    return finished_call(
        request=ApiRequest(model=model),
        duration_s=duration,
        result=ApiResult(response_model=model, usage=usage, error_type=extra.pop("error_type", None)),
        cost_usd=cost,
        **extra,
    )


def test_rows_add_up_per_provider_and_model():
    summary = UsageSummary()
    summary.add(
        call(
            "gpt-4o-mini",
            1.0,
            Usage(input_tokens=100, output_tokens=10, cache_read_tokens=40, reasoning_tokens=0),
            cost=0.001,
        ),
        "openai-python/1",
    )
    summary.add(
        call(
            "gpt-4o-mini",
            3.0,
            Usage(input_tokens=50, output_tokens=5, cache_read_tokens=0, reasoning_tokens=2),
            cost=0.002,
            time_to_first_chunk_s=0.25,
        ),
        "curl/8",
    )
    summary.add(call("gpt-4o-mini", 2.0, None, error_type="rate_limit_exceeded"), "openai-python/1")
    summary.add(call("my-llama", 0.5, Usage(input_tokens=7, output_tokens=3)), "openai-python/1")
    row = summary.rows[("openai", "gpt-4o-mini")]
    assert (row.calls, row.errors, row.input_tokens, row.cached_tokens, row.output_tokens, row.reasoning_tokens) == (
        3,
        1,
        150,
        40,
        15,
        2,
    )
    assert row.cost_usd == 0.003
    table = summary.table()
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["provider", "model", "calls", "errors"]
    gpt = next(line for line in lines if "gpt-4o-mini" in line).split()
    assert gpt[2:10] == ["3", "1", "150", "40", "0", "15", "2", "0.003000"]
    assert gpt[10:12] == ["2.000", "3.000"]  # p50 and p95 of 1, 2, 3 s
    assert gpt[12] == "0.250"
    total = next(line for line in lines if line.startswith("total")).split()
    assert total[1:3] == ["4", "1"]
    assert "1 calls of models without a price are not in the cost (–: no price for the model" in table
    llama = next(line for line in lines if "my-llama" in line).split()
    assert llama[9] == "–"  # unpriced: no cost, not a cost of 0


def test_reset_and_empty():
    summary = UsageSummary()
    assert summary.table() == "No LLM API calls observed yet."
    summary.add(call("m", 1.0, Usage(input_tokens=1, output_tokens=1)), "openai-python/1")
    summary.reset()
    assert summary.table() == "No LLM API calls observed yet."


def test_the_duration_sample_stays_bounded():
    reservoir = Reservoir(size=100)
    for value in range(10_000):
        reservoir.add(float(value))
    assert len(reservoir.values) == 100 and reservoir.seen == 10_000
    median = reservoir.percentile(0.5)
    assert median is not None and 2_000 < median < 8_000


def test_anthropic_rows_show_cache_writes_apart():
    summary = UsageSummary()
    usage = Usage(input_tokens=1313, output_tokens=50, cache_read_tokens=1000, cache_write_tokens=300)
    summary.add(call("claude-sonnet-4-5", 1.0, usage, cost=0.01, provider="anthropic"), "claude-cli/2")
    line = next(line for line in summary.table().splitlines() if line.startswith("anthropic")).split()
    assert line[:8] == ["anthropic", "claude-sonnet-4-5", "1", "0", "1,313", "1,000", "300", "50"]


def test_who_spent_it_by_client_and_by_key():
    summary = UsageSummary()
    usage = Usage(input_tokens=100, output_tokens=10)
    summary.add(call("gpt-4o", 1.0, usage, cost=0.002, api_key="sk-proj-...AAAA"), "openai-python/1")
    summary.add(call("gpt-4o", 1.0, usage, cost=0.003, api_key="sk-proj-...BBBB"), "openai-python/1")
    summary.add(call("claude-x", 1.0, usage, cost=None, api_key="sk-ant-api03-...CCCC"), "claude-cli/2")
    tables = summary.table().split("\n\n")
    by_client = tables[1].splitlines()
    assert by_client[0].split() == ["client", "calls", "input", "output", "cost", "USD"]
    assert by_client[2].split() == ["claude-cli/2", "1", "100", "10", "–"]  # unpriced, not 0
    assert by_client[3].split() == ["openai-python/1", "2", "200", "20", "0.005000"]
    by_key = {line.split()[0]: line.split()[1:] for line in tables[2].splitlines()[2:]}
    assert by_key == {
        "sk-ant-api03-...CCCC": ["1", "100", "10", "–"],
        "sk-proj-...AAAA": ["1", "100", "10", "0.002000"],
        "sk-proj-...BBBB": ["1", "100", "10", "0.003000"],
    }


def test_clients_and_keys_stay_bounded():
    summary = UsageSummary(max_rows=3)
    for number in range(10):
        summary.add(call("m", 1.0, Usage(input_tokens=1, output_tokens=1), api_key=f"k{number}"), f"client-{number}/1")
    assert len(summary.by_client) == 4 and summary.by_client["_OTHER"].calls == 7
    assert len(summary.by_key) == 4 and summary.by_key["_OTHER"].calls == 7


def test_a_models_answers_and_failures_share_one_row_named_once_with_the_answering_snapshot():
    """Answers come back under the dated snapshot, failures have no response model: both are the
    model asked for, one row."""
    summary = UsageSummary()
    answered = call("gpt-4o-mini", 1.0, Usage(input_tokens=10, output_tokens=2))
    answered.result.response_model = "gpt-4o-mini-2024-07-18"
    failed = call("gpt-4o-mini", 0.2, None, error_type="rate_limit_exceeded")
    failed.result.response_model = None
    for finished in (answered, failed):
        summary.add(finished, "openai-python/1")
    (key,) = summary.rows
    assert key == ("openai", "gpt-4o-mini") and (summary.rows[key].calls, summary.rows[key].errors) == (2, 1)
    assert "gpt-4o-mini (gpt-4o-mini-2024-07-18)" in summary.table()


def test_agent_sessions_the_costliest_first_with_cache_share_model_and_tool_time():
    summary = UsageSummary()
    cached = Usage(input_tokens=1000, output_tokens=50, cache_read_tokens=900)
    summary.add(call("claude-x", 2.0, cached, cost=0.01), "claude-cli/2", ("claude-cli", "s-cheap"))
    for tool_time_s in (0.0, 4.25):  # the second request brought a tool's result back
        summary.add(call("claude-x", 3.0, cached, cost=0.05), "claude-cli/2", ("claude-cli", "s-dear"), tool_time_s)
    summary.add(call("gpt-4o", 1.0, cached, cost=0.02), "openai-python/1")  # no session: not in the table
    sessions = summary.table().split("\n\n")[-1].splitlines()
    assert " ".join(sessions[0].split()) == "agent session calls input cached output cost USD model time s tool time s"
    assert sessions[2].split() == ["claude-cli", "s-dear", "2", "2,000", "90%", "100", "0.100000", "6.0", "4.2"]
    assert sessions[3].split() == ["claude-cli", "s-cheap", "1", "1,000", "90%", "50", "0.010000", "2.0", "0.0"]
    summary.sessions_shown = 1
    shown = summary.table().split("\n\n")[-1].splitlines()
    assert len(shown) == 4 and shown[-1] == "1 more sessions (the 1 that cost most are shown)."
