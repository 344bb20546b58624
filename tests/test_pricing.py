"""Cost arithmetic against hand-computed values from the providers' list prices, model matching
by provider, and price files."""

import json
import logging

import pytest

from pricing import BUILTIN_PRICES, Price, PriceTable, load_prices
from wire import openai_chat
from wire.call import Call, Endpoint
from wire.records import ApiRequest, ApiResult, Usage

CHAT = Endpoint(openai_chat.API)


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable.load()


def test_cost_of_a_plain_call(table):
    # gpt-4o-mini: $0.15 in, $0.60 out per 1M. 1,000 in and 500 out: 0.00015 + 0.0003
    assert table.cost("openai", "gpt-4o-mini", Usage(input_tokens=1000, output_tokens=500)) == pytest.approx(0.00045)


def test_cached_tokens_are_priced_at_the_cached_rate_and_not_counted_twice(table):
    # 1,000 input of which 800 cached: 200 × $0.15 + 800 × $0.075 = $0.00009; 100 out × $0.60 = $0.00006
    usage = Usage(input_tokens=1000, output_tokens=100, cache_read_tokens=800)
    assert table.cost("openai", "gpt-4o-mini", usage) == pytest.approx(0.00015)


def test_reasoning_tokens_are_output_and_not_counted_twice(table):
    # o3: $2 in, $8 out. 100 in, 1,000 out of which 900 reasoning: 0.0002 + 0.008
    usage = Usage(input_tokens=100, output_tokens=1000, reasoning_tokens=900)
    assert table.cost("openai", "o3", usage) == pytest.approx(0.0082)


def test_dated_snapshots_match_their_model(table):
    usage = Usage(input_tokens=1_000_000, output_tokens=0)
    assert table.cost("openai", "gpt-4o-mini-2024-07-18", usage) == pytest.approx(0.15)
    assert table.cost("openai", "gpt-4-0613", usage) == pytest.approx(30.0)
    assert table.cost("openai", "GPT-4o", usage) == pytest.approx(2.5)


def test_a_model_without_a_cached_rate_bills_cached_tokens_as_input(table):
    usage = Usage(input_tokens=1_000_000, output_tokens=0, cache_read_tokens=500_000)
    assert table.cost("openai", "gpt-4", usage) == pytest.approx(30.0)


def test_embeddings_cost_input_only(table):
    assert table.cost("openai", "text-embedding-3-small", Usage(input_tokens=2_000_000)) == pytest.approx(0.04)


def test_unknown_models_and_missing_usage_have_no_cost(table):
    assert table.cost("openai", "my-local-llama", Usage(input_tokens=10, output_tokens=10)) is None
    assert (
        table.cost("openai", "gpt-4o-mini-turbo-x", Usage(input_tokens=10, output_tokens=10)) is None
    )  # no prefix guessing
    assert table.cost("openai", "gpt-4o-mini", None) is None
    assert table.cost("openai", None, Usage(input_tokens=10, output_tokens=10)) is None


def test_an_unknown_model_is_named_once_and_never_when_quiet(caplog):
    table = PriceTable.load()  # its own memory of what it named
    caplog.set_level(logging.INFO, logger="genai")
    call = Call(
        endpoint=CHAT,
        provider="openai",
        server_address="h",
        server_port=443,
        api_key="k",
        start_time_ns=0,
        duration_s=1.0,
        request=ApiRequest(model="my-llama"),
        result=ApiResult(usage=Usage(input_tokens=10, output_tokens=10)),
    )
    assert table.cost_of(call, quiet=True) is None and "my-llama" not in caplog.text
    assert table.cost_of(call) is None and table.cost_of(call) is None
    assert caplog.text.count("no price for model 'my-llama'") == 1


def test_a_user_file_overrides_and_extends(tmp_path):
    user = tmp_path / "prices.json"
    user.write_text(
        json.dumps({"models": {"gpt-4o-mini": {"input": 1, "output": 2}, "llama-3-70b": {"input": 0.5, "output": 0.5}}})
    )
    table = PriceTable.load(user)
    assert table.lookup("openai", "gpt-4o-mini") == Price(input=1.0, output=2.0)
    assert table.cost("openai", "llama-3-70b", Usage(input_tokens=2_000_000, output_tokens=2_000_000)) == pytest.approx(
        2.0
    )
    assert table.lookup("openai", "gpt-4.1") is not None  # the rest of the built-in table stays


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot read price file"),
        ('{"prices": {}}', "needs an object 'models' or 'providers'"),
        ('{"providers": {"anthropic": []}}', "provider 'anthropic' must map model names to prices"),
        ('{"models": {"m": {"input": 1, "output": 1, "cache_read": 1}}}', "unknown rates"),
        ('{"models": {"m": 3}}', "model 'm' needs an object"),
        ('{"models": {"m": {"input": -1, "output": 1}}}', "'input' must be a non-negative number"),
        ('{"models": {"m": {"input": 1}}}', "'output' must be a non-negative number"),
    ],
)
def test_bad_price_files_are_refused_with_a_reason(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_prices(path)


def test_the_builtin_table_covers_the_current_openai_models():
    prices = load_prices(BUILTIN_PRICES)["openai"]
    for model in (
        "gpt-5",
        "gpt-5-mini",
        "gpt-4.1",
        "gpt-4.1-mini",
        "gpt-4o",
        "gpt-4o-mini",
        "o3",
        "o4-mini",
        "text-embedding-3-small",
    ):
        assert model in prices
    assert all(p.cached_input is None or p.cached_input <= p.input for p in prices.values())


# Anthropic's list prices (USD per 1M tokens): claude-sonnet-4 $3 in, $15 out; cache reads 0.1×,
# 5-minute writes 1.25×, 1-hour writes 2× the input rate. claude-opus-4-5 $5 / $25.


def test_anthropic_cache_reads_and_both_kinds_of_write_at_their_own_rates(table):
    # 10,000 input = 2,000 uncached + 5,000 read + 2,000 written for 5 m + 1,000 written for 1 h; 1,000 out.
    usage = Usage(
        input_tokens=10_000,
        output_tokens=1_000,
        cache_read_tokens=5_000,
        cache_write_tokens=3_000,
        cache_write_5m_tokens=2_000,
        cache_write_1h_tokens=1_000,
    )
    expected = (2_000 * 3 + 5_000 * 0.3 + 2_000 * 3.75 + 1_000 * 6 + 1_000 * 15) / 1e6  # 0.036
    assert table.cost("anthropic", "claude-sonnet-4-20250514", usage) == pytest.approx(expected)
    assert expected == pytest.approx(0.036)


def test_an_unsplit_cache_write_is_billed_at_the_5_minute_rate(table):
    usage = Usage(input_tokens=1_000_000, output_tokens=0, cache_write_tokens=1_000_000)
    assert table.cost("anthropic", "claude-opus-4-5-20251101", usage) == pytest.approx(6.25)


def test_prices_are_looked_up_by_provider(table):
    usage = Usage(input_tokens=1_000_000, output_tokens=0)
    assert table.cost("anthropic", "claude-haiku-4-5", usage) == pytest.approx(1.0)
    assert table.cost("openai", "claude-haiku-4-5", usage) is None  # not OpenAI's model
    assert table.cost("azure.ai.openai", "gpt-4o", usage) == pytest.approx(2.5)  # Azure at OpenAI's list price
    assert table.cost("deepseek", "gpt-4o", usage) is None  # another provider's price is not guessed
    # A gateway serving Anthropic's API under its own name: Anthropic's list price, unless it has its own.
    assert table.cost("litellm", "claude-haiku-4-5", usage, vendor="anthropic") == pytest.approx(1.0)
    assert table.cost("litellm", "claude-haiku-4-5", usage, vendor="openai") is None


def test_a_user_file_prices_per_provider_with_cache_write_rates(tmp_path):
    user = tmp_path / "prices.json"
    user.write_text(
        json.dumps(
            {
                "providers": {
                    "anthropic": {
                        "claude-sonnet-4": {"input": 2, "output": 10, "cached_input": 0.2, "cache_write": 2.5}
                    },
                    "deepseek": {"deepseek-chat": {"input": 0.27, "output": 1.1}},
                }
            }
        )
    )
    table = PriceTable.load(user)
    usage = Usage(input_tokens=2_000_000, output_tokens=0, cache_write_tokens=1_000_000)
    assert table.cost("anthropic", "claude-sonnet-4-20250514", usage) == pytest.approx(2 + 2.5)
    assert table.cost("deepseek", "deepseek-chat", Usage(input_tokens=1_000_000, output_tokens=1_000_000)) == (
        pytest.approx(1.37)
    )
    assert table.cost("anthropic", "claude-opus-4", Usage(input_tokens=1_000_000)) == pytest.approx(15)  # built-in


def test_the_builtin_table_covers_the_current_anthropic_models():
    prices = load_prices(BUILTIN_PRICES)["anthropic"]
    for model in (
        "claude-opus-4-5",
        "claude-sonnet-4-5",
        "claude-haiku-4-5",
        "claude-sonnet-4",
        "claude-opus-4-1",
        "claude-opus-4-8",
        "claude-sonnet-4-6",
    ):
        price = prices[model]
        assert price.cached_input == pytest.approx(price.input * 0.1)
        assert price.cache_write == pytest.approx(price.input * 1.25)
        assert price.cache_write_1h == pytest.approx(price.input * 2)
