"""Cost arithmetic against hand-computed values, model matching and price files."""

import json
import logging

import pytest
from protocol import ApiRequest, Endpoint, Exchange, Usage

from pricing import BUILTIN_PRICES, Price, PriceTable, load_prices

CHAT = Endpoint(openai_chat.API)


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable.load()


def test_cost_of_a_plain_call(table):
    # gpt-4o-mini: $0.15 in, $0.60 out per 1M. 1,000 in and 500 out: 0.00015 + 0.0003
    assert table.cost("gpt-4o-mini", Usage(input_tokens=1000, output_tokens=500)) == pytest.approx(0.00045)


def test_cached_tokens_are_priced_at_the_cached_rate_and_not_counted_twice(table):
    # 1,000 input of which 800 cached: 200 × $0.15 + 800 × $0.075 = $0.00009; 100 out × $0.60 = $0.00006
    usage = Usage(input_tokens=1000, output_tokens=100, cache_read_tokens=800)
    assert table.cost("gpt-4o-mini", usage) == pytest.approx(0.00015)


def test_reasoning_tokens_are_output_and_not_counted_twice(table):
    # o3: $2 in, $8 out. 100 in, 1,000 out of which 900 reasoning: 0.0002 + 0.008
    usage = Usage(input_tokens=100, output_tokens=1000, reasoning_tokens=900)
    assert table.cost("o3", usage) == pytest.approx(0.0082)


def test_dated_snapshots_match_their_model(table):
    usage = Usage(input_tokens=1_000_000, output_tokens=0)
    assert table.cost("gpt-4o-mini-2024-07-18", usage) == pytest.approx(0.15)
    assert table.cost("gpt-4-0613", usage) == pytest.approx(30.0)
    assert table.cost("GPT-4o", usage) == pytest.approx(2.5)


def test_a_model_without_a_cached_rate_bills_cached_tokens_as_input(table):
    usage = Usage(input_tokens=1_000_000, output_tokens=0, cache_read_tokens=500_000)
    assert table.cost("gpt-4", usage) == pytest.approx(30.0)


def test_embeddings_cost_input_only(table):
    assert table.cost("text-embedding-3-small", Usage(input_tokens=2_000_000)) == pytest.approx(0.04)


def test_unknown_models_and_missing_usage_have_no_cost(table):
    assert table.cost("my-local-llama", Usage(input_tokens=10, output_tokens=10)) is None
    assert table.cost("gpt-4o-mini-turbo-x", Usage(input_tokens=10, output_tokens=10)) is None  # no prefix guessing
    assert table.cost("gpt-4o-mini", None) is None
    assert table.cost(None, Usage(input_tokens=10, output_tokens=10)) is None


def test_an_unknown_model_is_named_once_and_never_when_quiet(caplog):
    table = PriceTable.load()  # its own memory of what it named
    caplog.set_level(logging.INFO, logger="genai")
    exchange = Exchange(CHAT, "openai", "h", 443, ApiRequest(model="my-llama"), "k", 0, 1.0)
    exchange.result.usage = Usage(input_tokens=10, output_tokens=10)
    assert table.cost_of(exchange, quiet=True) is None and "my-llama" not in caplog.text
    assert table.cost_of(exchange) is None and table.cost_of(exchange) is None
    assert caplog.text.count("no price for model 'my-llama'") == 1


def test_a_user_file_overrides_and_extends(tmp_path):
    user = tmp_path / "prices.json"
    user.write_text(
        json.dumps({"models": {"gpt-4o-mini": {"input": 1, "output": 2}, "llama-3-70b": {"input": 0.5, "output": 0.5}}})
    )
    table = PriceTable.load(user)
    assert table.lookup("gpt-4o-mini") == Price(input=1.0, output=2.0)
    assert table.cost("llama-3-70b", Usage(input_tokens=2_000_000, output_tokens=2_000_000)) == pytest.approx(2.0)
    assert table.lookup("gpt-4.1") is not None  # the rest of the built-in table stays


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot read price file"),
        ('{"prices": {}}', "needs an object 'models'"),
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
    prices = load_prices(BUILTIN_PRICES)
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
