"""What a call costs: genai-prices' price data, the user's price file over it, and a fast path.

Prices come from the `genai-prices` package (pinned in requirements.txt) and its bundled snapshot:
no network at run time unless the telemetry process is told to fetch updates (`update_url`).
The usage record (`wire.records.Usage`) maps onto the library's usage keys in one place
(`usage_counts`); the library decides what each count costs: cache reads and writes (5 m / 1 h),
audio and image tokens, reasoning as output, context-length tiers, service tiers and batch.

Why a fast path: the library computes one call in about 110 µs (bench part 4), and the telemetry
process prices every call. A model's price at one service
tier, on one day and in one context-length band is linear in the usage counts, so `Rates` asks
the library once for the USD per token of each count and prices a call with a dot product.
`tests/test_pricing.py` checks the two agree for every model of the snapshot.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import pydantic
from genai_prices import UpdatePrices, data_snapshot
from genai_prices import Usage as PricedUsage
from genai_prices.data_units import unit_data
from genai_prices.types import ModelPrice, PriceContext, Provider, TieredPrices

from wire.call import Call
from wire.records import MODALITIES, Usage

log = logging.getLogger("genai")

# gen_ai.provider.name (or a wire API's vendor) → genai-prices' provider id, where they differ.
PROVIDER_IDS = {
    "gcp": "google",
    "azure.ai.openai": "azure",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "aws.bedrock": "aws",
    "mistral_ai": "mistral",
    "moonshot_ai": "moonshotai",
    "x_ai": "x-ai",
    "z_ai": "zai",
}
# Providers whose calls cost nothing: models run on the user's own machine (Ollama's local server).
# A call there is priced 0, not left unpriced; a price file can still set a price for a model.
FREE_PROVIDERS = frozenset({"ollama"})
# The usage keys `usage_counts` reports; the rest of the library's keys stay 0.
REPORTED_KEYS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "output_reasoning_tokens",
    *(f"{direction}_{modality}_tokens" for direction in ("input", "output") for modality in MODALITIES),
    *(f"cache_{modality}_read_tokens" for modality in MODALITIES),  # after both of their parents
    "web_searches",  # server-side tool uses, billed per use
    "code_executions",
    "audio_seconds",  # speech to text by duration
    "input_characters",  # text to speech by characters
)
# Anthropic's usage.server_tool_use counts → the library's keys.
SERVER_TOOL_KEYS = {"web_search": "web_searches", "code_execution": "code_executions"}
# Each reported key's reported ancestors below input and output (which always have room).
NESTED_IN = {
    "cache_write_5m_tokens": ("cache_write_tokens",),
    "cache_write_1h_tokens": ("cache_write_tokens",),
    **{f"cache_{m}_read_tokens": ("cache_read_tokens", f"input_{m}_tokens") for m in MODALITIES},
}
PRICE_KEYS = frozenset(unit["price_key"] for unit in unit_data.values())
# The rate names of this project's earlier price files, still accepted.
SHORT_NAMES = {
    "input": "input_mtok",
    "output": "output_mtok",
    "cached_input": "cache_read_mtok",
    "cache_write": "cache_write_mtok",
    "cache_write_1h": "cache_write_1h_mtok",
}
ANY_PROVIDER = "*"  # the user's file's top-level "models"
# Dated snapshots: gpt-4o-mini-2024-07-18, claude-sonnet-4-20250514.
_SNAPSHOT_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|\d{4}|latest)$")
# Probing a band starts this many tokens into it, so each probe's extra token stays in the band.
PROBE_INPUT = 1000
NS_PER_DAY = 86_400 * 10**9
MAX_CACHED_RATES = 4096  # model names come from clients: stay bounded
# Unknown models are named in the log once each, up to this many.
MAX_UNPRICED_MODELS_LOGGED = 200

# A rate of the user's file: a number, or a base and tiers. (A union is not a `type` to mypy.)
_price_value: pydantic.TypeAdapter[Decimal | TieredPrices] = pydantic.TypeAdapter(cast(Any, Decimal | TieredPrices))


def usage_counts(usage: Usage, server_tool_requests: Mapping[str, int] | None = None) -> dict[str, int]:
    """The usage record (and the server-side tool uses, by tool) as the library's usage keys,
    each part at most the whole it belongs to."""
    total_in = usage.input_tokens or 0
    total_out = usage.output_tokens or 0
    read = min(usage.cache_read_tokens or 0, total_in)
    write = min(usage.cache_write_tokens or 0, total_in - read)
    write_1h = min(usage.cache_write_1h_tokens or 0, write)
    counts = {
        "input_tokens": total_in,
        "output_tokens": total_out,
        "cache_read_tokens": read,
        "cache_write_tokens": write,
        "cache_write_5m_tokens": min(usage.cache_write_5m_tokens or 0, write - write_1h),
        "cache_write_1h_tokens": write_1h,
        "output_reasoning_tokens": min(usage.reasoning_tokens or 0, total_out),
    }
    for direction, left, parts in (
        ("input", total_in, usage.input_modalities),
        ("output", total_out, usage.output_modalities),
    ):
        for modality, tokens in parts:
            counts[f"{direction}_{modality}_tokens"] = part = min(tokens, left)
            left -= part
    left = read
    for modality, tokens in usage.cache_read_modalities:
        counts[f"cache_{modality}_read_tokens"] = part = min(tokens, left, counts.get(f"input_{modality}_tokens", 0))
        left -= part
    for tool, uses in (server_tool_requests or {}).items():
        if tool in SERVER_TOOL_KEYS:
            counts[SERVER_TOOL_KEYS[tool]] = uses
    return counts


# (provider, model, vendor, the price context's items, day): a compiled price is cached per key.
PriceKey = tuple[str, str, str, tuple[tuple[str, str], ...] | None, int]


def tier_context(call: Call) -> PriceContext | None:
    """What of the answer changes its price, in the library's terms (its vendor says what: OpenAI's
    service tier; Anthropic's batch and fast speed)."""
    return cast(PriceContext | None, call.endpoint.api.vendor.price_context(call.result))


@dataclass(frozen=True, slots=True)
class Rates:
    """USD per unit (a token, a second, a character) of each reported usage key, plus a per-call
    amount, in one input band."""

    per_call: float
    per_unit: tuple[tuple[str, float], ...]

    def cost(self, counts: Mapping[str, float]) -> float:
        return self.per_call + sum(rate * counts.get(key, 0) for key, rate in self.per_unit)

    def prices_any(self, keys: tuple[str, ...]) -> bool:
        return any(key in keys for key, _ in self.per_unit)


def _bands(price: ModelPrice) -> tuple[int, ...]:
    """The input-token thresholds of the model's context-length tiers, ascending."""
    starts = {tier.start for value in vars(price).values() if isinstance(value, TieredPrices) for tier in value.tiers}
    return tuple(sorted(starts))


def _library_cost(price: ModelPrice, counts: Mapping[str, int]) -> Decimal:
    return price.calc_price(PricedUsage(**{key: value for key, value in counts.items() if value}))["total_price"]


def compile_rates(price: ModelPrice, band_start: int) -> Rates:
    """The library's price as `Rates` for calls with more than `band_start` input tokens (up to
    the next tier): the cost of a base usage and of one more token of each key."""
    base = {key: 0 for key in REPORTED_KEYS} | {"input_tokens": band_start + PROBE_INPUT, "output_tokens": PROBE_INPUT}
    base_cost = _library_cost(price, base)
    rates: dict[str, Decimal] = {}
    for key in REPORTED_KEYS:  # ancestors come first in REPORTED_KEYS
        probe = dict(base)
        for counted in (key, *NESTED_IN.get(key, ())):
            probe[counted] += 1
        rates[key] = _library_cost(price, probe) - base_cost - sum(rates[a] for a in NESTED_IN.get(key, ()))
    per_call = base_cost - sum(rates[key] * base[key] for key in REPORTED_KEYS)
    return Rates(float(per_call), tuple((key, float(rate)) for key, rate in rates.items() if rate))


class CompiledPrice:
    """One model's price on one day at one tier: `Rates` per context-length band, made on first use."""

    def __init__(self, price: ModelPrice) -> None:
        self.price = price
        self.bands = _bands(price)
        self._rates: dict[int, Rates] = {}

    def rates(self, input_tokens: float) -> Rates:
        band = sum(input_tokens > start for start in self.bands)
        rates = self._rates.get(band)
        if rates is None:
            rates = self._rates[band] = compile_rates(self.price, self.bands[band - 1] if band else 0)
        return rates

    def cost(self, counts: Mapping[str, float]) -> float:
        return self.rates(counts.get("input_tokens", 0)).cost(counts)


def _model_price(model: str, entry: Any, where: str) -> ModelPrice:
    if not isinstance(entry, dict) or not entry:
        example = '{"input_mtok": 0.15, "output_mtok": 0.6}'
        raise ValueError(f"{where}: model {model!r} needs an object of rates, e.g. {example}")
    rates: dict[str, Decimal | TieredPrices] = {}
    for name, value in entry.items():
        key = SHORT_NAMES.get(str(name), str(name))
        if key not in PRICE_KEYS:
            raise ValueError(f"{where}: model {model!r} has an unknown rate {name!r}; known: {sorted(PRICE_KEYS)}")
        if isinstance(value, bool):
            raise ValueError(f"{where}: model {model!r}: {name!r} must be a number")
        try:
            rate = _price_value.validate_python(value)
        except pydantic.ValidationError as error:
            raise ValueError(
                f"{where}: model {model!r}: {name!r} must be USD per 1M tokens, or "
                f'{{"base": USD, "tiers": [{{"start": TOKENS, "price": USD}}]}} ({error.errors()[0]["msg"]})'
            ) from error
        low = rate.base if isinstance(rate, TieredPrices) else rate
        tier_prices = [tier.price for tier in rate.tiers] if isinstance(rate, TieredPrices) else []
        if not all(p.is_finite() and p >= 0 for p in (low, *tier_prices)):
            raise ValueError(f"{where}: model {model!r}: {name!r} must not be negative")
        if isinstance(rate, TieredPrices) and any(tier.start < 0 for tier in rate.tiers):
            raise ValueError(f"{where}: model {model!r}: {name!r} has a tier starting below 0 tokens")
        rates[key] = rate
    return ModelPrice(**rates)


Overrides = dict[str, dict[str, ModelPrice]]  # provider ("*": any) → model → price


def load_overrides(path: Path) -> Overrides:
    """A price file: `{"providers": {PROVIDER: {MODEL: RATES}}, "models": {MODEL: RATES}}`, both
    optional, "models" for any provider. RATES maps genai-prices' price keys (`input_mtok`,
    `output_mtok`, `cache_read_mtok`, `cache_write_mtok`, `cache_write_1h_mtok`, `input_audio_mtok`,
    ...) to USD per 1M tokens or to tiers. Raises ValueError naming the file and the problem."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read price file {path}: {error}") from error
    if not isinstance(data, dict) or not ({"models", "providers"} & set(data)):
        raise ValueError(f"price file {path} needs an object 'models' or 'providers' mapping model names to prices")
    sections = {ANY_PROVIDER: data.get("models", {}), **(data.get("providers") or {})}
    if not isinstance(data.get("providers", {}), dict):
        raise ValueError(f"price file {path}: 'providers' must map provider names to models")
    overrides: Overrides = {}
    for provider, models in sections.items():
        where = f"price file {path}, " + ("'models'" if provider == ANY_PROVIDER else f"provider {provider!r}")
        if not isinstance(models, dict):
            raise ValueError(f"{where} must map model names to prices")
        overrides[provider] = {model.lower(): _model_price(model, entry, where) for model, entry in models.items()}
    return overrides


class Prices:
    """The cost of a call: the user's file first (by provider, then for any), then genai-prices
    (by provider, then the wire API's vendor: a gateway serving Anthropic's API under a name of
    its own is priced as Anthropic)."""

    def __init__(self, overrides: Overrides | None = None, update_url: str | None = None) -> None:
        self.overrides = overrides or {}
        self.update_url = update_url
        # genai-prices' data (31.5 MB), read at the first lookup.
        self._snapshot: data_snapshot.DataSnapshot | None = None
        # (provider, model, vendor, tier, day) → the price, or None for an unknown model
        self._compiled: dict[PriceKey, CompiledPrice | None] = {}
        self._unpriced_logged: set[str] = set()

    @classmethod
    def load(cls, user_file: Path | None = None, update_url: str | None = None) -> Prices:
        return cls(load_overrides(user_file) if user_file is not None else None, update_url)

    def updates(self) -> UpdatePrices | None:
        """What fetches genai-prices' data from `update_url` hourly on a background thread, once
        started; for the telemetry process only: parsing the data would stall mitmproxy's event loop."""
        return UpdatePrices(url=self.update_url) if self.update_url else None

    def _provider(self, provider_id: str) -> Provider | None:
        assert self._snapshot is not None  # `lookup` read it
        try:
            return self._snapshot.find_provider(None, PROVIDER_IDS.get(provider_id, provider_id), None)
        except LookupError:
            return None

    def _find(self, provider: str, model: str, vendor: str, tier: PriceContext | None, day: int) -> ModelPrice | None:
        """The exact name first, then without a date suffix (a snapshot the data does not list yet
        is priced as its model)."""
        names = tuple(dict.fromkeys((model, _SNAPSHOT_SUFFIX.sub("", model))))
        for name in names:  # the user's prices win over the library's, snapshots included
            for section in (provider, ANY_PROVIDER):
                if (price := self.overrides.get(section, {}).get(name)) is not None:
                    return price
        when = datetime.fromtimestamp(day * 86_400, UTC)
        found_in = self._snapshot
        assert found_in is not None  # `lookup` read it
        for name in names:
            for provider_id in dict.fromkeys((provider, vendor)):
                found = self._provider(provider_id)
                info = found.find_model(name, all_providers=found_in.providers) if found else None
                if found is not None and info is not None:
                    # A tier's prices are the provider's own, not those of a provider it falls back to.
                    own = any(info is candidate for candidate in found.models)
                    return info.get_prices(when, tier if own else None)
        return None

    def lookup(
        self, provider: str, model: str, vendor: str, tier: PriceContext | None, day: int
    ) -> CompiledPrice | None:
        """The model's price at `tier` on `day` (days since 1970, UTC), cached."""
        snapshot = data_snapshot.get_snapshot()
        if snapshot is not self._snapshot:  # updated prices arrived
            self._snapshot = snapshot
            self._compiled.clear()
        key = (provider, model.lower(), vendor, tuple(sorted(tier.items())) if tier else None, day)
        try:
            return self._compiled[key]
        except KeyError:
            pass
        price = self._find(provider, key[1], vendor, tier, day)
        if len(self._compiled) >= MAX_CACHED_RATES:
            self._compiled.clear()
        compiled = self._compiled[key] = CompiledPrice(price) if price is not None else None
        return compiled

    def cost_of(self, call: Call) -> float | None:
        """USD for a finished call, or None when its model or usage is unknown (never a guessed 0).

        A flex request refused with 429 costs nothing (OpenAI does not bill it). An unknown model
        is named in the log once.
        """
        usage = call.result.billed_usage or call.usage
        # Counts that are not tokens: a call without usage is still priced by them.
        billed = (("audio_seconds", call.result.audio_seconds), ("input_characters", call.request.input_characters))
        units = {key: value for key, value in billed if value}
        if usage is None and not units:
            return 0.0 if call.status_code == 429 and call.request.service_tier == "flex" else None
        model = call.billed_model
        free = call.origin.provider in FREE_PROVIDERS
        if not model or (usage is not None and usage.input_tokens is None and not units):
            return 0.0 if free and model else None
        day = call.start_time_ns // NS_PER_DAY
        price = self.lookup(call.origin.provider, model, call.endpoint.api.vendor.name, tier_context(call), day)
        if price is None and free:
            return 0.0
        if price is not None:
            counts: dict[str, float] = dict(units)
            if usage is not None:
                counts |= usage_counts(usage, call.result.server_tool_requests)
            if usage is None and not price.rates(0).prices_any(tuple(units)):
                return None  # a model billed by tokens, and none reported: no cost, not 0
            return price.cost(counts)
        logged = self._unpriced_logged
        if model not in logged and len(logged) < MAX_UNPRICED_MODELS_LOGGED:
            logged.add(model)
            log.info(
                "no price for model %r of %s; its calls record no cost (see genai_prices).", model, call.origin.provider
            )
        return None
