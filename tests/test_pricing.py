"""Costs against hand-computed values from the providers' published prices (USD per 1M tokens,
as genai-prices 0.2.3's bundled snapshot has them on 2026-12-01), service tiers, the user's price
file, unknown models, price updates, and the fast path against the library itself."""

import http.server
import json
import logging
import random
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from genai_prices import data_snapshot

from pricing import REPORTED_KEYS, CompiledPrice, Prices, _library_cost, load_overrides
from tests.builders import finished_call
from wire import anthropic_messages, cohere, ollama, openai_chat, openai_responses
from wire.call import Call, Endpoint, WireApi
from wire.records import ApiRequest, ApiResult, Usage

DAY = datetime(2026, 12, 1, 12, tzinfo=UTC)


def call(
    model: str | None,
    usage: Usage | None,
    *,
    provider: str = "openai",
    api: WireApi = openai_chat.API,
    tier: str | None = None,
    status: int = 200,
    request_tier: str | None = None,
) -> Call:
    return finished_call(
        endpoint=Endpoint(api),
        provider=provider,
        start_time_ns=int(DAY.timestamp()) * 10**9,
        status_code=status,
        request=ApiRequest(model=model, service_tier=request_tier),
        result=ApiResult(usage=usage, service_tier=tier),
    )


@pytest.fixture(scope="module")
def prices() -> Prices:
    return Prices()


def cost(prices: Prices, model: str, usage: Usage, **kwargs: object) -> float | None:
    return prices.cost_of(call(model, usage, **kwargs))  # type: ignore[arg-type]


# --- OpenAI: gpt-4o-mini $0.15 in, $0.075 cached, $0.60 out; gpt-5 $1.25 / $0.125 / $10, flex half
# of that, priority twice; gpt-realtime text $4 / $16, audio $32 in / $64 out; gpt-image-1 text $5 in,
# image $10 in, $40 out.


def test_openai_standard_with_cached_input_not_counted_twice(prices):
    # 1,000 input of which 800 cached: 200 × 0.15 + 800 × 0.075 = 90; 100 out × 0.60 = 60 → $0.00015
    usage = Usage(input_tokens=1000, output_tokens=100, cache_read_tokens=800)
    assert cost(prices, "gpt-4o-mini", usage) == pytest.approx(0.00015)
    assert cost(prices, "gpt-4o-mini-2024-07-18", usage) == pytest.approx(0.00015)  # a dated snapshot


def test_openai_reasoning_is_output_and_not_counted_twice(prices):
    # gpt-5: 100 in × 1.25, 1,000 out (900 of them reasoning) × 10 → $0.010125
    usage = Usage(input_tokens=100, output_tokens=1000, reasoning_tokens=900)
    assert cost(prices, "gpt-5", usage) == pytest.approx(0.010125)


def test_openai_service_tier_comes_from_the_response(prices):
    # 10,000 in (4,000 cached), 1,000 out on gpt-5.
    usage = Usage(input_tokens=10_000, output_tokens=1000, cache_read_tokens=4000)
    standard = (6000 * 1.25 + 4000 * 0.125 + 1000 * 10) / 1e6  # 0.018
    flex = (6000 * 0.625 + 4000 * 0.0625 + 1000 * 5) / 1e6  # 0.009
    priority = (6000 * 2.5 + 4000 * 0.25 + 1000 * 20) / 1e6  # 0.036
    assert cost(prices, "gpt-5", usage) == pytest.approx(standard)
    assert cost(prices, "gpt-5", usage, tier="default") == pytest.approx(standard)
    assert cost(prices, "gpt-5", usage, tier="flex", request_tier="flex") == pytest.approx(flex)
    # A request for "fast" is answered as "priority"; what was asked does not decide the price.
    assert cost(prices, "gpt-5", usage, tier="priority", request_tier="fast") == pytest.approx(priority)
    assert cost(prices, "gpt-5", usage, request_tier="flex") == pytest.approx(standard)
    assert cost(prices, "gpt-5", usage, tier="scale") == pytest.approx(standard)  # no list price of its own


def test_a_flex_request_refused_with_429_costs_nothing(prices):
    assert prices.cost_of(call("gpt-5", None, status=429, request_tier="flex")) == 0.0
    assert prices.cost_of(call("gpt-5", None, status=429)) is None  # not flex: no usage, no cost
    assert prices.cost_of(call("gpt-5", None, status=500, request_tier="flex")) is None


def test_openai_audio_tokens_at_their_own_rates(prices):
    # 1,000 in = 600 text + 400 audio; 500 out = 200 text + 300 audio:
    # 600 × 4 + 400 × 32 + 200 × 16 + 300 × 64 = 37,600 → $0.0376
    usage = Usage(
        input_tokens=1000,
        output_tokens=500,
        input_modalities=(("text", 600), ("audio", 400)),
        output_modalities=(("text", 200), ("audio", 300)),
    )
    assert cost(prices, "gpt-realtime", usage, api=openai_responses.API) == pytest.approx(0.0376)


def test_openai_image_tokens_at_their_own_rates(prices):
    # 300 in = 100 text + 200 image; 4,000 image tokens out: 100 × 5 + 200 × 10 + 4,000 × 40 → $0.1625
    usage = Usage(
        input_tokens=300,
        output_tokens=4000,
        input_modalities=(("text", 100), ("image", 200)),
        output_modalities=(("image", 4000),),
    )
    assert cost(prices, "gpt-image-1", usage) == pytest.approx(0.1625)


def test_embeddings_cost_input_only(prices):
    assert cost(prices, "text-embedding-3-small", Usage(input_tokens=2_000_000)) == pytest.approx(0.04)


# --- Anthropic: claude-sonnet-4-5 $3 in, $0.30 cache read, $3.75 5-minute write, $6 1-hour write,
# $15 out; above 200k input tokens $6 / $0.60 / $7.50 / $12 / $22.50. claude-haiku-4-5 $1 / $5,
# batch half of that.


def test_anthropic_cache_reads_and_both_kinds_of_write(prices):
    # 10,000 in = 2,000 uncached + 5,000 read + 2,000 written for 5 m + 1,000 for 1 h; 1,000 out:
    # 2,000 × 3 + 5,000 × 0.3 + 2,000 × 3.75 + 1,000 × 6 + 1,000 × 15 = 36,000 → $0.036
    usage = Usage(
        input_tokens=10_000,
        output_tokens=1000,
        cache_read_tokens=5000,
        cache_write_tokens=3000,
        cache_write_5m_tokens=2000,
        cache_write_1h_tokens=1000,
    )
    anthropic = {"provider": "anthropic", "api": anthropic_messages.API}
    assert cost(prices, "claude-sonnet-4-5-20250929", usage, **anthropic) == pytest.approx(0.036)
    # An unsplit write is a 5-minute one: 100,000 × 3.75
    unsplit = Usage(input_tokens=100_000, output_tokens=0, cache_write_tokens=100_000)
    assert cost(prices, "claude-sonnet-4-5", unsplit, **anthropic) == pytest.approx(0.375)


def test_anthropic_web_searches_are_billed_per_use(prices):
    # 1,000 in × 3 + 100 out × 15 = 4,500 per 1M → $0.0045; 3 searches × $10 per 1,000 → $0.03
    anthropic = call("claude-sonnet-4-5", Usage(input_tokens=1000, output_tokens=100), provider="anthropic")
    anthropic.endpoint = Endpoint(anthropic_messages.API)
    anthropic.result.server_tool_requests = {"web_search": 3, "web_fetch": 2}  # fetches cost nothing extra
    assert prices.cost_of(anthropic) == pytest.approx(0.0345)


def test_anthropic_long_context_prices_every_token_at_the_higher_rate(prices):
    anthropic = {"provider": "anthropic", "api": anthropic_messages.API}
    # 200,000 in is the base tier: 200,000 × 3 + 1,000 × 15 → $0.615
    at_limit = Usage(input_tokens=200_000, output_tokens=1000)
    assert cost(prices, "claude-sonnet-4-5", at_limit, **anthropic) == pytest.approx(0.615)
    # 250,000 in (50,000 read): 200,000 × 6 + 50,000 × 0.6 + 1,000 × 22.5 → $1.2525
    above = Usage(input_tokens=250_000, output_tokens=1000, cache_read_tokens=50_000)
    assert cost(prices, "claude-sonnet-4-5", above, **anthropic) == pytest.approx(1.2525)


def test_anthropic_batch_tier_from_the_usage(prices):
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    anthropic = {"provider": "anthropic", "api": anthropic_messages.API}
    assert cost(prices, "claude-haiku-4-5", usage, **anthropic) == pytest.approx(6.0)
    assert cost(prices, "claude-haiku-4-5", usage, tier="standard", **anthropic) == pytest.approx(6.0)
    assert cost(prices, "claude-haiku-4-5", usage, tier="batch", **anthropic) == pytest.approx(3.0)


# --- Gemini: gemini-2.5-flash $0.30 in, $0.03 cached, $2.50 out (thinking included);
# gemini-2.5-pro $1.25 / $0.125 / $10, above 200k input $2.50 / $0.25 / $15.


def test_gemini_thinking_at_the_output_rate_and_cached_content_at_its_rate(prices):
    # 1,000 in of which 400 cached; 500 out of which 300 thinking: 600 × 0.3 + 400 × 0.03 + 500 × 2.5
    usage = Usage(input_tokens=1000, output_tokens=500, cache_read_tokens=400, reasoning_tokens=300)
    assert cost(prices, "gemini-2.5-flash", usage, provider="gcp.gemini") == pytest.approx(0.001442)
    assert cost(prices, "gemini-2.5-flash", usage, provider="gcp.vertex_ai") == pytest.approx(0.001442)


def test_gemini_long_context(prices):
    # 300,000 in (100,000 cached), 2,000 out: 200,000 × 2.5 + 100,000 × 0.25 + 2,000 × 15 → $0.555
    usage = Usage(input_tokens=300_000, output_tokens=2000, cache_read_tokens=100_000)
    assert cost(prices, "gemini-2.5-pro", usage, provider="gcp.gemini") == pytest.approx(0.555)


def test_prices_are_looked_up_by_provider_then_by_the_wire_api(prices):
    usage = Usage(input_tokens=1_000_000, output_tokens=0)
    assert cost(prices, "gpt-4o", usage, provider="azure.ai.openai") == pytest.approx(2.5)  # Azure: OpenAI's
    # A gateway serving Anthropic's API under its own name: Anthropic's price.
    assert cost(prices, "claude-haiku-4-5", usage, provider="litellm", api=anthropic_messages.API) == 1.0
    assert cost(prices, "claude-haiku-4-5", usage, provider="litellm") is None  # OpenAI's API: not guessed


def test_unknown_models_and_missing_usage_have_no_cost(prices, caplog):
    caplog.set_level(logging.INFO, logger="genai")
    mine = Prices()  # its own memory of what it named
    llama = call("my-local-llama", Usage(input_tokens=10, output_tokens=10))
    assert mine.cost_of(llama) is None and mine.cost_of(llama) is None
    assert caplog.text.count("no price for model 'my-local-llama' of openai") == 1
    assert prices.cost_of(call("gpt-4o-mini-turbo-x", Usage(input_tokens=10, output_tokens=10))) is None
    assert prices.cost_of(call("gpt-4o-mini", None)) is None
    assert prices.cost_of(call(None, Usage(input_tokens=10, output_tokens=10))) is None


# --- The user's price file


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(data))
    return path


def test_a_user_file_overrides_and_adds_models_per_provider_and_for_any(tmp_path):
    path = write(
        tmp_path,
        {
            "models": {"llama-3.1-70b": {"input_mtok": 0.59, "output_mtok": 0.79}},
            "providers": {
                "openai": {"gpt-4o-mini": {"input": 1, "output": 2}},  # the earlier short names
                "anthropic": {
                    "claude-sonnet-4-5": {
                        "input_mtok": 2,
                        "cache_read_mtok": 0.2,
                        "cache_write_mtok": 2.5,
                        "cache_write_1h_mtok": 4,
                        "output_mtok": {"base": 10, "tiers": [{"start": 100_000, "price": 20}]},
                    }
                },
                "mycorp": {"voice-1": {"input_mtok": 1, "input_audio_mtok": 8, "output_mtok": 2}},
            },
        },
    )
    mine = Prices.load(path)
    million = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    assert cost(mine, "gpt-4o-mini", million) == pytest.approx(3.0)
    assert cost(mine, "gpt-4o-mini-2024-07-18", million) == pytest.approx(3.0)
    assert cost(mine, "llama-3.1-70b", million, provider="groq") == pytest.approx(1.38)
    assert cost(mine, "gpt-4.1", million) == pytest.approx(10.0)  # the rest is genai-prices'
    # 10,000 in = 4,000 + 3,000 read + 2,000 5 m + 1,000 1 h writes; 1,000 out below the tier:
    # 4,000 × 2 + 3,000 × 0.2 + 2,000 × 2.5 + 1,000 × 4 + 1,000 × 10 = 27,600
    written = Usage(
        input_tokens=10_000,
        output_tokens=1000,
        cache_read_tokens=3000,
        cache_write_tokens=3000,
        cache_write_1h_tokens=1000,
    )
    anthropic = {"provider": "anthropic", "api": anthropic_messages.API}
    assert cost(mine, "claude-sonnet-4-5", written, **anthropic) == pytest.approx(0.0276)
    # Above 100,000 input tokens the output costs 20.
    assert cost(mine, "claude-sonnet-4-5", million, **anthropic) == pytest.approx(22.0)
    audio = Usage(input_tokens=1_000_000, output_tokens=0, input_modalities=(("text", 500_000), ("audio", 500_000)))
    assert cost(mine, "voice-1", audio, provider="mycorp") == pytest.approx(4.5)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot read price file"),
        ('{"prices": {}}', "needs an object 'models' or 'providers'"),
        ('{"providers": []}', "'providers' must map provider names"),
        ('{"providers": {"anthropic": []}}', "provider 'anthropic' must map model names to prices"),
        ('{"models": {"m": {"input_mtok": 1, "cache_reed_mtok": 1}}}', "unknown rate 'cache_reed_mtok'"),
        ('{"models": {"m": 3}}', "model 'm' needs an object of rates"),
        ('{"models": {"m": {}}}', "model 'm' needs an object of rates"),
        ('{"models": {"m": {"input_mtok": -1}}}', "'input_mtok' must not be negative"),
        ('{"models": {"m": {"input_mtok": "cheap"}}}', "'input_mtok' must be USD per 1M tokens"),
        ('{"models": {"m": {"input_mtok": true}}}', "'input_mtok' must be a number"),
        ('{"models": {"m": {"input_mtok": {"base": 1, "tiers": [{"start": -5, "price": 2}]}}}}', "below 0 tokens"),
    ],
)
def test_bad_price_files_are_refused_with_a_reason(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_overrides(path)


def test_the_example_in_the_readme_is_a_valid_price_file(tmp_path):
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    example = readme.split("<!-- price file example -->\n```json\n", 1)[1].split("```", 1)[0]
    assert load_overrides(write(tmp_path, json.loads(example)))


# --- Updates and the fast path


def test_updated_prices_are_fetched_from_the_url_and_used(tmp_path):
    """The library's own updater against a loopback server: the new data replaces the snapshot."""
    payload = [
        {
            "id": "openai",
            "name": "OpenAI",
            "api_pattern": "https://api\\.openai\\.com",
            "models": [{"id": "gpt-4o-mini", "match": {"equals": "gpt-4o-mini"}, "prices": {"input_mtok": 7}}],
        }
    ]
    body = json.dumps(payload).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    mine = Prices(update_url=f"http://127.0.0.1:{server.server_port}/data.json")
    million = Usage(input_tokens=1_000_000, output_tokens=0)
    assert cost(mine, "gpt-4o-mini", million) == pytest.approx(0.15)  # the bundled snapshot
    updates = mine.updates()
    assert updates is not None and Prices().updates() is None  # off unless asked for
    try:
        updates.start(wait=10)
        assert cost(mine, "gpt-4o-mini", million) == pytest.approx(7.0)
    finally:
        updates.stop()
        data_snapshot.set_custom_snapshot(None)
        server.shutdown()
        server.server_close()
    assert cost(mine, "gpt-4o-mini", million) == pytest.approx(0.15)


def consistent_usage(rng: random.Random, input_tokens: int) -> dict[str, int]:
    output = rng.randint(0, 5000)
    read = rng.randint(0, input_tokens)
    write_ = rng.randint(0, input_tokens - read)
    counts = {
        "input_tokens": input_tokens,
        "output_tokens": output,
        "cache_read_tokens": read,
        "cache_write_tokens": write_,
        "cache_write_1h_tokens": rng.randint(0, write_),
        "output_reasoning_tokens": rng.randint(0, output),
    }
    if rng.random() < 0.3:
        counts["web_searches"] = rng.randint(0, 5)
    if rng.random() < 0.5:
        counts["input_audio_tokens"] = rng.randint(0, input_tokens - read) // 2
        counts["output_image_tokens"] = rng.randint(0, output) // 2
    return counts


def test_the_fast_path_agrees_with_the_library_for_every_model_and_tier():
    """Each model of the snapshot, at each of its service tiers, in each context-length band."""
    rng = random.Random(7)
    compared = 0
    for provider in data_snapshot.get_snapshot().providers:
        for model in provider.models:
            for tier in [None, *(variant.when for variant in model.price_variants or ())]:
                price = model.get_prices(DAY, tier)
                compiled = CompiledPrice(price)
                for input_tokens in (10, 1000, 150_000, 250_000, 1_500_000):
                    counts = consistent_usage(rng, input_tokens)
                    try:
                        expected = float(_library_cost(price, counts))
                    except ValueError:  # cached audio the library wants split: not reported yet
                        continue
                    assert compiled.cost(counts) == pytest.approx(expected, rel=1e-9, abs=1e-12), (model.id, tier)
                    compared += 1
    assert compared > 5000


def test_the_usage_record_maps_onto_every_key_it_reports():
    from pricing import usage_counts

    usage = Usage(
        input_tokens=100,
        output_tokens=50,
        cache_read_tokens=200,  # more than the input: capped
        cache_write_tokens=10,
        reasoning_tokens=60,
        input_modalities=(("text", 70), ("audio", 50)),
        output_modalities=(("audio", 50),),
    )
    counts = usage_counts(usage)
    assert set(counts) <= set(REPORTED_KEYS)
    assert counts["cache_read_tokens"] == 100 and counts["cache_write_tokens"] == 0
    assert counts["output_reasoning_tokens"] == 50
    assert counts["input_text_tokens"] == 70 and counts["input_audio_tokens"] == 30


def test_a_snapshot_the_data_does_not_list_is_priced_as_its_model(prices):
    usage = Usage(input_tokens=1_000_000, output_tokens=0)
    assert cost(prices, "gpt-4.1-nano-2031-01-01", usage) == pytest.approx(0.10)
    assert cost(prices, "gpt-4.1-nano-preview", usage) is None  # not a date: no guessing


# --- audio and images: whisper-1 $0.006 a minute, tts-1 $15 per 1M characters, gpt-4o-transcribe
# $2.50 text in, $6 audio in, $10 out; gpt-realtime audio in $32, cached audio $0.40, text in $4,
# cached text $0.40, text out $16, audio out $64.


def test_speech_to_text_by_duration_and_text_to_speech_by_characters(prices):
    whisper = call("whisper-1", None)
    whisper.result.audio_seconds = 90.0  # a minute and a half: 1.5 × $0.006
    assert prices.cost_of(whisper) == pytest.approx(0.009)
    tts = call("tts-1", None)
    tts.request.input_characters = 2000  # 2,000 × $15 / 1M
    assert prices.cost_of(tts) == pytest.approx(0.03)
    untold = call("gpt-4o-mini-tts", None)  # billed by tokens, none reported: no cost, not 0
    untold.request.input_characters = 2000
    assert prices.cost_of(untold) is None


def test_transcription_tokens_at_the_audio_rate(prices):
    # 14 in = 2 text + 12 audio, 45 out: 2 × 2.5 + 12 × 6 + 45 × 10 = 527 → $0.000527
    usage = Usage(input_tokens=14, output_tokens=45, input_modalities=(("text", 2), ("audio", 12)))
    assert cost(prices, "gpt-4o-transcribe", usage) == pytest.approx(0.000527)


def test_realtime_cached_audio_at_its_own_rate(prices):
    # 1,000 in = 400 text (100 cached) + 600 audio (500 cached); 300 out = 100 text + 200 audio:
    # 300 × 4 + 100 × 0.4 + 100 × 32 + 500 × 0.4 + 100 × 16 + 200 × 64 = 19,040 → $0.01904
    usage = Usage(
        input_tokens=1000,
        output_tokens=300,
        cache_read_tokens=600,
        input_modalities=(("text", 400), ("audio", 600)),
        output_modalities=(("text", 100), ("audio", 200)),
        cache_read_modalities=(("text", 100), ("audio", 500)),
    )
    assert cost(prices, "gpt-realtime", usage) == pytest.approx(0.01904)


def test_local_ollama_calls_cost_nothing_and_its_cloud_stays_unpriced(prices):
    local = call("llama3.2:3b", Usage(input_tokens=100, output_tokens=20), provider="ollama", api=ollama.CHAT)
    assert prices.cost_of(local) == 0.0
    fully_cached = call("llama3.2:3b", Usage(input_tokens=None, output_tokens=20), provider="ollama", api=ollama.CHAT)
    assert prices.cost_of(fully_cached) == 0.0
    cloud = call("gpt-oss:120b", Usage(input_tokens=100, output_tokens=20), provider="ollama.cloud", api=ollama.CHAT)
    assert prices.cost_of(cloud) is None


def test_cohere_is_priced_by_its_billed_units_not_the_processed_tokens(prices):
    processed, billed = Usage(input_tokens=1494, output_tokens=330), Usage(input_tokens=80, output_tokens=301)
    priced = call("command-a", processed, provider="cohere", api=cohere.CHAT)
    priced.result.billed_usage = billed
    # command-a: $2.50 input, $10 output per million tokens (genai-prices)
    assert prices.cost_of(priced) == pytest.approx(80 * 2.5e-6 + 301 * 10e-6)


def test_fast_speed_and_the_fast_tier_are_priced_at_their_own_rates(prices):
    """Anthropic's `speed: fast` (claude-opus-4-8: $10 in, $50 out against $5 / $25) and OpenAI's
    `fast` service tier (gpt-5.4: $5 / $30 against $2.50 / $15), as genai-prices 0.2.5 lists them."""
    usage = Usage(input_tokens=1_000_000, output_tokens=100_000)
    fast = call("claude-opus-4-8", usage, provider="anthropic", api=anthropic_messages.API)
    fast.result.attributes["response.speed"] = "fast"
    standard = call("claude-opus-4-8", usage, provider="anthropic", api=anthropic_messages.API)
    assert prices.cost_of(fast) == pytest.approx(10 + 5)
    assert prices.cost_of(standard) == pytest.approx(5 + 2.5)
    below_the_long_context_tier = Usage(input_tokens=100_000, output_tokens=10_000)
    assert cost(prices, "gpt-5.4", below_the_long_context_tier, tier="fast") == pytest.approx(0.5 + 0.3)
    assert cost(prices, "gpt-5.4", below_the_long_context_tier, tier="default") == pytest.approx(0.25 + 0.15)
