"""What a call costs: a price table per model, and the arithmetic that avoids double counting.

Prices are USD per 1M tokens. OpenAI's input count already includes cached tokens and its output
count already includes reasoning tokens, so: cost = (input - cached) × input rate
+ cached × cached rate + output × output rate. Reasoning tokens are billed as output.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol import Exchange, Usage

log = logging.getLogger("genai")

BUILTIN_PRICES = Path(__file__).resolve().parent / "prices.json"
# Dated snapshots: gpt-4o-mini-2024-07-18, gpt-4-0613, gpt-3.5-turbo-0125.
_SNAPSHOT_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{4})$")


@dataclass(frozen=True)
class Price:
    input: float
    output: float
    cached_input: float | None = None


def _rate(model: str, entry: dict[str, Any], name: str, required: bool) -> float | None:
    value = entry.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"model {model!r}: {name!r} must be a non-negative number of USD per 1M tokens")
    return float(value)


def load_prices(path: Path) -> dict[str, Price]:
    """A price file: `{"models": {"MODEL": {"input": .., "cached_input": .., "output": ..}}}`.

    Raises ValueError naming the file and the problem.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read price file {path}: {error}") from error
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, dict):
        raise ValueError(f"price file {path} needs an object 'models' mapping model names to prices")
    prices = {}
    for model, entry in models.items():
        if not isinstance(entry, dict):
            raise ValueError(f"price file {path}: model {model!r} needs an object with input and output")
        try:
            prices[model.lower()] = Price(
                input=_rate(model, entry, "input", True) or 0.0,
                output=_rate(model, entry, "output", True) or 0.0,
                cached_input=_rate(model, entry, "cached_input", False),
            )
        except ValueError as error:
            raise ValueError(f"price file {path}: {error}") from error
    return prices


MAX_RESOLVED_NAMES = 1024
# Unknown models are named in the log once each, up to this many.
MAX_UNPRICED_MODELS_LOGGED = 200


class PriceTable:
    def __init__(self, prices: dict[str, Price]) -> None:
        self.prices = prices
        # Model name as sent → its price: the snapshot-suffix fallback costs a regex per call.
        self._resolved: dict[str, Price | None] = {}
        self._unpriced_logged: set[str] = set()

    @classmethod
    def load(cls, user_file: Path | None = None) -> PriceTable:
        """The built-in table, overridden and extended by `user_file`."""
        prices = load_prices(BUILTIN_PRICES)
        if user_file is not None:
            prices |= load_prices(user_file)
        return cls(prices)

    def lookup(self, model: str | None) -> Price | None:
        """Exact name first, then the name without a dated snapshot suffix."""
        if not model:
            return None
        if model in self._resolved:
            return self._resolved[model]
        name = model.lower()
        price = self.prices.get(name) or self.prices.get(_SNAPSHOT_SUFFIX.sub("", name))
        if len(self._resolved) >= MAX_RESOLVED_NAMES:  # model names come from clients: stay bounded
            self._resolved.clear()
        self._resolved[model] = price
        return price

    def cost(self, model: str | None, usage: Usage | None) -> float | None:
        """USD for one call, or None when the model or the usage is unknown (never a guessed 0)."""
        price = self.lookup(model)
        if price is None or usage is None or usage.input_tokens is None:
            return None
        cached = min(usage.cached_input_tokens or 0, usage.input_tokens)
        cached_rate = price.input if price.cached_input is None else price.cached_input
        dollars_per_million = (
            (usage.input_tokens - cached) * price.input
            + cached * cached_rate
            + (usage.output_tokens or 0) * price.output
        )
        return dollars_per_million / 1_000_000

    def cost_of(self, exchange: Exchange, *, quiet: bool = False) -> float | None:
        """`cost` of a finished call; an unknown model is named in the log once (unless `quiet`:
        the proxy's summary line is quiet, the telemetry process prices the same call and says it)."""
        if exchange.usage is None:
            return None
        model = exchange.result.response_model or exchange.request_model
        cost = self.cost(model, exchange.usage)
        logged = self._unpriced_logged
        if cost is None and not quiet and model and model not in logged and len(logged) < MAX_UNPRICED_MODELS_LOGGED:
            logged.add(model)
            log.info("genai: no price for model %r; its calls record no cost (see genai_prices).", model)
        return cost
