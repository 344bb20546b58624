"""The usage summary: per provider and model, what the calls since start (or the last reset) cost.

Pure bookkeeping over finished calls (no mitmproxy, no OpenTelemetry), shown by the
`genai.summary` command and printed when mitmdump exits.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from wire.call import Call
from wire.describe import UNPRICED, format_usd

# Durations kept per row for the percentiles: a uniform sample once there are more calls.
SAMPLE_SIZE = 2048
MAX_ROWS = 500
NO_CALLS = "No LLM API calls observed yet."


class Reservoir:
    """A uniform random sample of at most `size` values (Vitter's algorithm R)."""

    def __init__(self, size: int = SAMPLE_SIZE) -> None:
        self.size = size
        self.values: list[float] = []
        self.seen = 0

    def add(self, value: float) -> None:
        self.seen += 1
        if len(self.values) < self.size:
            self.values.append(value)
        else:
            slot = random.randrange(self.seen)
            if slot < self.size:
                self.values[slot] = value

    def percentile(self, q: float) -> float | None:
        if not self.values:
            return None
        ordered = sorted(self.values)
        return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


@dataclass
class Row:
    calls: int = 0
    errors: int = 0
    input_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float = 0.0
    priced_calls: int = 0
    unpriced_calls: int = 0
    durations: Reservoir = field(default_factory=Reservoir)
    first_chunks: Reservoir = field(default_factory=Reservoir)


class UsageSummary:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], Row] = {}

    def reset(self) -> None:
        self.rows.clear()

    def add(self, call: Call) -> None:
        key = (call.provider, call.billed_model or "?")
        if key not in self.rows and len(self.rows) >= MAX_ROWS:
            key = (call.provider, "_OTHER")
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = Row()
        row.calls += 1
        row.errors += call.error_type is not None
        row.durations.add(call.duration_s)
        if call.time_to_first_chunk_s is not None:
            row.first_chunks.add(call.time_to_first_chunk_s)
        usage = call.usage
        if usage is not None:
            row.input_tokens += usage.input_tokens or 0
            row.cached_tokens += usage.cache_read_tokens or 0
            row.cache_write_tokens += usage.cache_write_tokens or 0
            row.output_tokens += usage.output_tokens or 0
            row.reasoning_tokens += usage.reasoning_tokens or 0
            if call.cost_usd is None:
                row.unpriced_calls += 1
        if call.cost_usd is not None:
            row.cost_usd += call.cost_usd
            row.priced_calls += 1

    def table(self) -> str:
        """A plain-text table, one line per provider and model, then a total."""
        if not self.rows:
            return NO_CALLS
        header: tuple[str, ...] = ("provider", "model", "calls", "errors", "input", "cached", "cache write")
        header += ("output",)
        header += ("reasoning", "cost USD", "p50 s", "p95 s", "p50 TTFC s", "p95 TTFC s")
        lines = [header]
        total = Row()
        for (provider, model), row in sorted(self.rows.items()):
            lines.append((provider, model, *self._cells(row)))
            for name in (
                "calls",
                "errors",
                "input_tokens",
                "cached_tokens",
                "cache_write_tokens",
                "output_tokens",
                "reasoning_tokens",
            ):
                setattr(total, name, getattr(total, name) + getattr(row, name))
            total.cost_usd += row.cost_usd
            total.priced_calls += row.priced_calls
            total.unpriced_calls += row.unpriced_calls
        lines.append(("total", "", *self._cells(total)))
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        text = [
            "  ".join(
                cell.ljust(width) if i < 2 else cell.rjust(width)
                for i, (cell, width) in enumerate(zip(line, widths, strict=True))
            )
            for line in lines
        ]
        text.insert(1, "  ".join("-" * width for width in widths))
        if total.unpriced_calls:
            text.append(
                f"{total.unpriced_calls} calls of models without a price are not in the cost "
                f"({UNPRICED}: no price for the model; see genai_prices)."
            )
        return "\n".join(text)

    @staticmethod
    def _cells(row: Row) -> tuple[str, ...]:
        def seconds(value: float | None) -> str:
            return "-" if value is None else f"{value:.3f}"

        return (
            str(row.calls),
            str(row.errors),
            f"{row.input_tokens:,}",
            f"{row.cached_tokens:,}",
            f"{row.cache_write_tokens:,}",
            f"{row.output_tokens:,}",
            f"{row.reasoning_tokens:,}",
            UNPRICED if row.unpriced_calls and not row.priced_calls else format_usd(row.cost_usd),
            seconds(row.durations.percentile(0.5)),
            seconds(row.durations.percentile(0.95)),
            seconds(row.first_chunks.percentile(0.5)),
            seconds(row.first_chunks.percentile(0.95)),
        )
