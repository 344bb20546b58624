"""Unexpected exceptions (bugs, not traffic): each call site's first is logged with its traceback,
later ones are counted and summed up in one line at most every `SUMMARY_EVERY_S` per site.

The addon's hooks, its stream tap, the pipe to the telemetry process and the telemetry process's
recording loop all report here, so a bug is seen once in full and its repeats are never silent
nor a traceback per request.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

SUMMARY_EVERY_S = 60.0


@dataclass
class _Site:
    errors: int = 0
    told: int = 0  # errors already in a log line
    told_at: float = 0.0


class UnexpectedErrors:
    """Call `report` from an `except` block."""

    def __init__(
        self, logger: logging.Logger, prefix: str = "genai: ", clock: Callable[[], float] = time.monotonic
    ) -> None:
        """`prefix` starts every line; the telemetry process's lines get theirs in mitmdump's log."""
        self._log = logger
        self._prefix = prefix
        self._clock = clock
        self._sites: dict[str, _Site] = {}

    def report(self, site: str, consequence: str) -> None:
        """`site` names where it failed ("the response hook"), `consequence` what that means for
        the user ("the flow is unaffected")."""
        state = self._sites.setdefault(site, _Site())
        state.errors += 1
        now = self._clock()
        if state.errors == 1:
            self._log.warning("%s%s failed; %s.", self._prefix, site, consequence, exc_info=True)
        elif now - state.told_at >= SUMMARY_EVERY_S:
            self._log.warning(
                "%s%s failed %d more times (%d in all, the last: %s); %s.",
                self._prefix,
                site,
                state.errors - state.told,
                state.errors,
                _exception_line(),
                consequence,
            )
        else:
            return
        state.told, state.told_at = state.errors, now

    def count(self, site: str) -> int:
        """How many errors `site` had."""
        return self._sites[site].errors if site in self._sites else 0


def _exception_line() -> str:
    error = sys.exc_info()[1]
    return f"{type(error).__name__}: {error}" if error is not None else "unknown"
