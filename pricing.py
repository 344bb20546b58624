"""What a call costs: price tables by provider and model, and one formula for every provider.

Prices are USD per 1M tokens. The usage record's input already includes cache reads and cache
writes and its output includes reasoning (`wire.records.Usage`), so for every provider:
cost = uncached input × input rate + cache reads × cache-read rate + cache writes × their
rate (5-minute or 1-hour) + output × output rate. A rate a model does not list is its input rate.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wire.call import Call
from wire.records import Usage

log = logging.getLogger("genai")

BUILTIN_PRICES = Path(__file__).resolve().parent / "prices.json"
# Dated snapshots and aliases: gpt-4o-mini-2024-07-18, gpt-4-0613, claude-sonnet-4-20250514,
# claude-3-5-haiku-latest.
_SNAPSHOT_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|\d{4}|latest)$")
# Providers billed at another provider's list prices.
PRICED_AS = {"azure.ai.openai": "openai"}
ANY_PROVIDER = ""  # the section of a price file's top-level "models"


@dataclass(frozen=True)
class Price:
    input: float
    output: float
    cached_input: float | None = None  # cache reads
    cache_write: float | None = None  # cache writes (5-minute ones where the API splits them)
    cache_write_1h: float | None = None

    def cost(self, usage: Usage) -> float | None:
        """USD for this usage, or None without an input count (never a guessed 0)."""
        if usage.input_tokens is None:
            return None
        read = min(usage.cache_read_tokens or 0, usage.input_tokens)
        write = min(usage.cache_write_tokens or 0, usage.input_tokens - read)
        write_1h = min(usage.cache_write_1h_tokens or 0, write)
        write_rate = self.input if self.cache_write is None else self.cache_write
        dollars_per_million = (
            (usage.input_tokens - read - write) * self.input
            + read * (self.input if self.cached_input is None else self.cached_input)
            + (write - write_1h) * write_rate
            + write_1h * (write_rate if self.cache_write_1h is None else self.cache_write_1h)
            + (usage.output_tokens or 0) * self.output
        )
        return dollars_per_million / 1_000_000


_RATES = ("input", "output", "cached_input", "cache_write", "cache_write_1h")
Sections = dict[str, dict[str, Price]]


def _rate(model: str, entry: dict[str, Any], name: str, required: bool) -> float | None:
    value = entry.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"model {model!r}: {name!r} must be a non-negative number of USD per 1M tokens")
    return float(value)


def _models(path: Path, models: Any, where: str) -> dict[str, Price]:
    if not isinstance(models, dict):
        raise ValueError(f"price file {path}: {where} must map model names to prices")
    prices = {}
    for model, entry in models.items():
        if not isinstance(entry, dict):
            raise ValueError(f"price file {path}: model {model!r} needs an object with input and output")
        unknown = set(entry) - set(_RATES)
        if unknown:
            raise ValueError(f"price file {path}: model {model!r} has unknown rates {sorted(unknown)}; known: {_RATES}")
        try:
            rates = {name: _rate(model, entry, name, name in ("input", "output")) for name in _RATES}
        except ValueError as error:
            raise ValueError(f"price file {path}: {error}") from error
        prices[model.lower()] = Price(**rates)  # type: ignore[arg-type]
    return prices


def load_prices(path: Path) -> Sections:
    """A price file: `{"models": {MODEL: RATES}, "providers": {PROVIDER: {MODEL: RATES}}}`, both
    optional; RATES is `{"input", "output"[, "cached_input", "cache_write", "cache_write_1h"]}`.
    "models" apply to every provider. Raises ValueError naming the file and the problem.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read price file {path}: {error}") from error
    if not isinstance(data, dict) or not ({"models", "providers"} & set(data)):
        raise ValueError(f"price file {path} needs an object 'models' or 'providers' mapping model names to prices")
    sections: Sections = {}
    if "models" in data:
        sections[ANY_PROVIDER] = _models(path, data["models"], "'models'")
    providers = data.get("providers", {})
    if not isinstance(providers, dict):
        raise ValueError(f"price file {path}: 'providers' must map provider names to models")
    for provider, models in providers.items():
        sections[str(provider)] = _models(path, models, f"provider {provider!r}")
    return sections


MAX_RESOLVED_NAMES = 1024
# Unknown models are named in the log once each, up to this many.
MAX_UNPRICED_MODELS_LOGGED = 200


class PriceTable:
    def __init__(self, builtin: Sections, user: Sections | None = None) -> None:
        # The user's file first, then the built-in table: each by provider, then for any provider.
        self._tables = [table for table in (user, builtin) if table]
        # (provider, model) as seen → its price: the fallbacks cost a regex and dict look-ups per call.
        self._resolved: dict[tuple[str, str, str | None], Price | None] = {}
        self._unpriced_logged: set[str] = set()

    @classmethod
    def load(cls, user_file: Path | None = None) -> PriceTable:
        """The built-in table, overridden and extended by `user_file`."""
        return cls(load_prices(BUILTIN_PRICES), load_prices(user_file) if user_file is not None else None)

    def lookup(self, provider: str, model: str | None, vendor: str | None = None) -> Price | None:
        """The provider's price of the model: exact name first, then without a snapshot suffix.

        `vendor` is the wire API's (`WireApi.vendor`): a gateway or proxy that serves Anthropic's
        API under a provider name of its own is priced at Anthropic's list prices, when the
        provider has none of its own for the model.
        """
        if not model:
            return None
        key = (provider, model, vendor)
        if key in self._resolved:
            return self._resolved[key]
        price = self._find((provider, PRICED_AS.get(provider), vendor, ANY_PROVIDER), model.lower())
        if len(self._resolved) >= MAX_RESOLVED_NAMES:  # model names come from clients: stay bounded
            self._resolved.clear()
        self._resolved[key] = price
        return price

    def _find(self, sections: tuple[str | None, ...], name: str) -> Price | None:
        for candidate in (name, _SNAPSHOT_SUFFIX.sub("", name)):
            for table in self._tables:
                for section in sections:
                    price = table.get(section, {}).get(candidate) if section is not None else None
                    if price is not None:
                        return price
        return None

    def cost(self, provider: str, model: str | None, usage: Usage | None, vendor: str | None = None) -> float | None:
        """USD for one call, or None when the model or the usage is unknown (never a guessed 0)."""
        price = self.lookup(provider, model, vendor)
        return None if price is None or usage is None else price.cost(usage)

    def cost_of(self, call: Call, *, quiet: bool = False) -> float | None:
        """`cost` of a finished call; an unknown model is named in the log once (unless `quiet`:
        the proxy's summary line is quiet, the telemetry process prices the same call and says it,
        its lines relayed with the prefix "genai: ")."""
        if call.usage is None:
            return None
        model = call.billed_model
        cost = self.cost(call.provider, model, call.usage, call.endpoint.api.vendor)
        logged = self._unpriced_logged
        if cost is None and not quiet and model and model not in logged and len(logged) < MAX_UNPRICED_MODELS_LOGGED:
            logged.add(model)
            log.info("no price for model %r of %s; its calls record no cost (see genai_prices).", model, call.provider)
        return cost
