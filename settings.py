"""The addon's options, parsed once: `Settings.parse` turns mitmproxy's options into one frozen
record when they change (in `configure`), as mitmproxy's own addons turn a spec into a `BlockSpec`.
The hooks read that record, never `ctx.options`, each read of which deep-copies the value."""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mitmproxy import exceptions

from telemetry_process import ATTRIBUTIONS, MetricOptions, UsePrices
from wire.hosts import DEFAULT_HOSTS, HostRule, parse_host_rule
from wire.mcp import MCP

log = logging.getLogger("genai")

CAPTURE_CONTENT_VARIABLE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
DEFAULT_METRIC_OPTIONS = MetricOptions()
DEFAULT_PRICES = UsePrices()
STREAM_STORE_LIMIT = 1024 * 1024  # genai_stream_store_limit's default


def refused(reason: str) -> exceptions.OptionsError:
    """An option refused with one line that says why (raise it `from None`); the error behind it is
    logged at debug level only: raised with its cause, both tracebacks print, twenty lines before
    the one that counts."""
    log.debug("genai: %s", reason, exc_info=True)
    return exceptions.OptionsError(reason)


@dataclass(frozen=True)
class Settings:
    """What the addon's options say, checked."""

    # genai_extra_hosts first, then genai_hosts: the first rule a host matches wins.
    rules: tuple[HostRule, ...] = tuple(parse_host_rule(entry) for entry in DEFAULT_HOSTS)
    capture_content: bool = False  # genai_capture_content, or its environment variable
    stream_usage: bool = True
    stream_unmetered: bool = True
    stream_store_limit: int = STREAM_STORE_LIMIT
    metric_options: MetricOptions = DEFAULT_METRIC_OPTIONS  # genai_legacy_* and genai_metric_attribution
    prices: UsePrices = DEFAULT_PRICES  # genai_prices and genai_prices_update
    mcp_rules: tuple[HostRule, ...] = ()  # genai_mcp_hosts: MCP servers, metered as `mcp`
    gc_freeze: bool = True  # genai_gc_freeze

    def parse(self, options: Any, updated: set[str]) -> Settings:
        """These settings with the `updated` options read anew; raises OptionsError naming the
        option and the value refused. `options`: mitmproxy's (`ctx.options`)."""
        changes: dict[str, Any] = {}
        if {"genai_hosts", "genai_extra_hosts"} & updated:
            changes["rules"] = _host_rules(options, warn="genai_hosts" in updated)
        if "genai_mcp_hosts" in updated:
            changes["mcp_rules"] = _mcp_rules(options.genai_mcp_hosts)
        if "genai_capture_content" in updated:
            from_environment = os.environ.get(CAPTURE_CONTENT_VARIABLE, "").strip().lower() == "true"
            changes["capture_content"] = bool(options.genai_capture_content) or from_environment
        if "genai_stream_usage" in updated:
            changes["stream_usage"] = options.genai_stream_usage
        if "genai_stream_unmetered" in updated:
            changes["stream_unmetered"] = options.genai_stream_unmetered
        if "genai_stream_store_limit" in updated:
            changes["stream_store_limit"] = options.genai_stream_store_limit
        if "genai_gc_freeze" in updated:
            changes["gc_freeze"] = options.genai_gc_freeze
        options_of_calls = {
            "genai_legacy_metrics",
            "genai_legacy_completion_id",
            "genai_metric_attribution",
            "genai_session_idle",
        }
        if options_of_calls & updated:
            if options.genai_session_idle <= 0:
                raise exceptions.OptionsError(
                    f"Invalid genai_session_idle {options.genai_session_idle}: a number of seconds above 0"
                )
            if options.genai_metric_attribution not in ATTRIBUTIONS:
                raise exceptions.OptionsError(
                    f"Invalid genai_metric_attribution {options.genai_metric_attribution!r}: "
                    f"use one of {', '.join(ATTRIBUTIONS)}"
                )
            changes["metric_options"] = MetricOptions(
                legacy_metrics=options.genai_legacy_metrics,
                legacy_completion_id=options.genai_legacy_completion_id,
                attribution=options.genai_metric_attribution,
                session_idle_s=options.genai_session_idle,
            )
        if {"genai_prices", "genai_prices_update"} & updated:
            user_file, update_url = options.genai_prices, options.genai_prices_update
            if update_url and not update_url.startswith(("https://", "http://")):
                raise exceptions.OptionsError(f"Invalid genai_prices_update: {update_url!r} is not an http(s) URL")
            path = Path(user_file).expanduser() if user_file else None
            if path is not None:
                # Imported only to check a price file: genai-prices costs mitmdump's process some
                # 11,000 long-lived objects, which every full garbage collection walks.
                from pricing import load_overrides

                try:
                    load_overrides(path)
                except ValueError as error:
                    raise refused(f"Invalid genai_prices: {error}") from None
            changes["prices"] = UsePrices(user_file=str(path) if path else None, update_url=update_url or None)
        return dataclasses.replace(self, **changes)


def _mcp_rules(entries: Any) -> tuple[HostRule, ...]:
    rules = []
    for entry in entries:
        if "=" in entry or ";" in entry:
            raise refused(f"Invalid genai_mcp_hosts entry {entry!r}: only HOST[:PORT] (a glob) is known")
        try:
            rules.append(parse_host_rule(f"{entry}={MCP.name}"))
        except ValueError as error:
            raise refused(f"Invalid genai_mcp_hosts entry {entry!r}: {error}") from None
    return tuple(rules)


def _host_rules(options: Any, warn: bool) -> tuple[HostRule, ...]:
    rules = []
    for name in ("genai_extra_hosts", "genai_hosts"):  # the extra entries are tried first
        for entry in getattr(options, name):
            try:
                rules.append(parse_host_rule(entry))
            except ValueError as error:
                raise refused(f"Invalid {name} entry {entry!r}: {error}") from None
    dropped = [entry for entry in DEFAULT_HOSTS if entry not in options.genai_hosts]
    if warn and dropped:
        log.warning(
            "genai: genai_hosts replaces the default host list: %d default hosts are not metered now "
            "(%s%s). To add hosts and keep the defaults, set genai_extra_hosts instead.",
            len(dropped),
            ", ".join(entry.partition("=")[0] for entry in dropped[:5]),
            ", ..." if len(dropped) > 5 else "",
        )
    return tuple(rules)
