"""The usage summary table."""

from summary import Reservoir, UsageSummary
from wire import openai_chat
from wire.call import Call, Endpoint
from wire.records import ApiRequest, ApiResult, Usage

CHAT = Endpoint(openai_chat.API)


def call(model: str, duration: float, usage: Usage | None, cost: float | None = None, **extra) -> Call:
    return Call(
        endpoint=CHAT,
        provider=extra.pop("provider", "openai"),
        server_address="api.openai.com",
        server_port=443,
        request=ApiRequest(model=model),
        api_key="sk-...",
        start_time_ns=0,
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
        )
    )
    summary.add(
        call(
            "gpt-4o-mini",
            3.0,
            Usage(input_tokens=50, output_tokens=5, cache_read_tokens=0, reasoning_tokens=2),
            cost=0.002,
            time_to_first_chunk_s=0.25,
        )
    )
    summary.add(call("gpt-4o-mini", 2.0, None, error_type="rate_limit_exceeded"))
    summary.add(call("my-llama", 0.5, Usage(input_tokens=7, output_tokens=3)))
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
    summary.add(call("m", 1.0, Usage(input_tokens=1, output_tokens=1)))
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
    summary.add(call("claude-sonnet-4-5", 1.0, usage, cost=0.01, provider="anthropic"))
    line = next(line for line in summary.table().splitlines() if line.startswith("anthropic")).split()
    assert line[:8] == ["anthropic", "claude-sonnet-4-5", "1", "0", "1,313", "1,000", "300", "50"]
