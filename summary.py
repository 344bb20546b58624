"""The usage summary: per provider and model, what the calls since start (or the last reset) cost.

Pure bookkeeping over finished calls (no mitmproxy, no OpenTelemetry), shown by the
`genai.summary` command and printed when mitmdump exits.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from wire.call import Call
from wire.describe import UNPRICED, format_usd

# Durations kept per row for the percentiles: a uniform sample once there are more calls.
SAMPLE_SIZE = 2048
MAX_ROWS = 500
SESSIONS_SHOWN = 10  # the agent sessions table: the most expensive
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
class Spend:
    """Who spent it: calls, tokens and cost of one client or one (masked) key."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    priced_calls: int = 0
    unpriced_calls: int = 0

    def add(self, call: Call) -> None:
        self.calls += 1
        if call.usage is not None:
            self.input_tokens += call.usage.input_tokens or 0
            self.output_tokens += call.usage.output_tokens or 0
            self.unpriced_calls += call.cost_usd is None
        if call.cost_usd is not None:
            self.cost_usd += call.cost_usd
            self.priced_calls += 1

    def cost(self) -> str:
        return UNPRICED if self.unpriced_calls and not self.priced_calls else format_usd(self.cost_usd)

    def cells(self) -> tuple[str, ...]:
        return str(self.calls), f"{self.input_tokens:,}", f"{self.output_tokens:,}", self.cost()


@dataclass
class Row(Spend):
    """One provider and model: what a `Spend` counts, and errors, the cache, reasoning and timings."""

    errors: int = 0
    # The model that answered, where it is not the one asked for (a dated snapshot): shown once.
    answered_by: str | None = None
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    durations: Reservoir = field(default_factory=Reservoir)
    first_chunks: Reservoir = field(default_factory=Reservoir)

    def add(self, call: Call) -> None:
        super().add(call)
        self.errors += call.error_type is not None
        answered = call.result.response_model
        if self.answered_by is None and answered and answered != call.request_model:
            self.answered_by = answered
        self.durations.add(call.duration_s)
        if call.time_to_first_chunk_s is not None:
            self.first_chunks.add(call.time_to_first_chunk_s)
        if call.usage is not None:
            self.cached_tokens += call.usage.cache_read_tokens or 0
            self.cache_write_tokens += call.usage.cache_write_tokens or 0
            self.reasoning_tokens += call.usage.reasoning_tokens or 0


@dataclass
class SessionSpend(Spend):
    """One agent session: what a `Spend` counts, the tokens read from the cache, its calls'
    durations added up (the time the model took) and its client tools' runs between them
    (`otel.tools`; the rest of the session was the agent's, or its user's)."""

    cached_tokens: int = 0
    model_time_s: float = 0.0
    tool_time_s: float = 0.0

    def add(self, call: Call, tool_time_s: float = 0.0) -> None:
        super().add(call)
        self.model_time_s += call.duration_s
        self.tool_time_s += tool_time_s
        if call.usage is not None:
            self.cached_tokens += call.usage.cache_read_tokens or 0

    def session_cells(self) -> tuple[str, ...]:
        share = f"{self.cached_tokens / self.input_tokens:.0%}" if self.input_tokens else "-"
        calls, input_tokens, output_tokens, cost = self.cells()
        return calls, input_tokens, share, output_tokens, cost, f"{self.model_time_s:.1f}", f"{self.tool_time_s:.1f}"


def _bounded[K](rows: dict[K, Any], key: K, other: K, most: int) -> K:
    """`key`, or `other` once `rows` holds `most` others: client names and keys come from clients."""
    return key if key in rows or len(rows) < most else other


def _render(lines: list[tuple[str, ...]], left: int) -> str:
    """Columns padded to their widest cell, the first `left` of them left-aligned, a rule under the header."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    text = [
        "  ".join(
            cell.ljust(width) if i < left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        )
        for line in lines
    ]
    text.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(text)


class UsageSummary:
    def __init__(self, sessions_shown: int = SESSIONS_SHOWN, max_rows: int = MAX_ROWS) -> None:
        self.sessions_shown = sessions_shown
        self.max_rows = max_rows  # per table: the rest are summed up in one `_OTHER` row
        self.rows: dict[tuple[str, str], Row] = {}
        self.by_client: dict[str, Spend] = {}
        self.by_key: dict[str, Spend] = {}
        self.by_session: dict[tuple[str, str], SessionSpend] = {}  # (agent, session id)

    def reset(self) -> None:
        self.rows.clear()
        self.by_client.clear()
        self.by_key.clear()
        self.by_session.clear()

    def add(self, call: Call, client: str, session: tuple[str, str] | None = None, tool_time_s: float = 0.0) -> None:
        """One finished call; `client` is its client's label (`wire.headers.Client.label`),
        `session` its agent and agent session (`wire.agents`), if it named one, and `tool_time_s`
        the tool time its request ended (`otel.tools`)."""
        for spends, name in ((self.by_client, client), (self.by_key, call.origin.api_key)):
            spends.setdefault(_bounded(spends, name, "_OTHER", self.max_rows), Spend()).add(call)
        if session is not None:
            key = _bounded(self.by_session, session, (session[0], "_OTHER"), self.max_rows)
            self.by_session.setdefault(key, SessionSpend()).add(call, tool_time_s)
        # By the model asked for: a failed call has no response model, and one model must not
        # make two rows (its answers under the dated snapshot, its failures under its name).
        key = (call.origin.provider, call.request_model or "?")
        key = _bounded(self.rows, key, (call.origin.provider, "_OTHER"), self.max_rows)
        self.rows.setdefault(key, Row()).add(call)

    def table(self) -> str:
        """Plain-text tables: one line per provider and model, then a total; then calls, tokens and
        cost by client and by masked key."""
        if not self.rows:
            return NO_CALLS
        header: tuple[str, ...] = ("provider", "model", "calls", "errors", "input", "cached", "cache write")
        header += ("output",)
        header += ("reasoning", "cost USD", "p50 s", "p95 s", "p50 TTFC s", "p95 TTFC s")
        lines = [header]
        total = Row()
        for (provider, model), row in sorted(self.rows.items()):
            shown = f"{model} ({row.answered_by})" if row.answered_by else model
            lines.append((provider, shown, *self._cells(row)))
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
        text = [_render(lines, left=2)]
        if total.unpriced_calls:
            text.append(
                f"{total.unpriced_calls} calls of models without a price are not in the cost "
                f"({UNPRICED}: no price for the model; see genai_prices)."
            )
        for title, spends in (("client", self.by_client), ("key", self.by_key)):
            rows = [(name, *spend.cells()) for name, spend in sorted(spends.items())]
            text += ["", _render([(title, "calls", "input", "output", "cost USD"), *rows], left=1)]
        if self.by_session:
            costliest = sorted(self.by_session.items(), key=lambda item: -item[1].cost_usd)[: self.sessions_shown]
            header = (
                "agent",
                "session",
                "calls",
                "input",
                "cached",
                "output",
                "cost USD",
                "model time s",
                "tool time s",
            )
            rows = [(agent, session, *spend.session_cells()) for (agent, session), spend in costliest]
            more = len(self.by_session) - len(rows)
            text += ["", _render([header, *rows], left=2)]
            if more:
                text.append(f"{more} more sessions (the {self.sessions_shown} that cost most are shown).")
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
            row.cost(),
            seconds(row.durations.percentile(0.5)),
            seconds(row.durations.percentile(0.95)),
            seconds(row.first_chunks.percentile(0.5)),
            seconds(row.first_chunks.percentile(0.95)),
        )
