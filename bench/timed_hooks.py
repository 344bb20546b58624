"""The addon's hooks timed where they run, inside mitmdump: `mitmdump -s bench/timed_hooks.py`.

The addon of `bench/hooks_only.py` (every call discarded), each traffic hook wrapped in a clock.
SIGUSR1 forgets what was timed so far; SIGUSR2 writes each hook's calls and nanoseconds as JSON
to the file `GENAI_TIMED_HOOKS_OUT` names. `python -m bench.hooks_in_situ` drives it.
"""

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mitmproxy import http

from bench.hooks_only import addons as hooks_only

HOOKS = ("request", "responseheaders", "response")
OUT_VARIABLE = "GENAI_TIMED_HOOKS_OUT"

(_meter,) = hooks_only
_durations_ns: dict[str, list[int]] = {name: [] for name in HOOKS}


def _timed(name: str, hook: Callable[[http.HTTPFlow], None]) -> Callable[[http.HTTPFlow], None]:
    durations = _durations_ns[name]
    clock = time.perf_counter_ns

    def timed(flow: http.HTTPFlow) -> None:
        started = clock()
        hook(flow)
        durations.append(clock() - started)

    return timed


for _name in HOOKS:  # mitmproxy finds an instance's attribute before its class's method
    setattr(_meter, _name, _timed(_name, getattr(_meter, _name)))


def _forget(*_: Any) -> None:
    for durations in _durations_ns.values():
        durations.clear()


def _write(*_: Any) -> None:
    Path(os.environ[OUT_VARIABLE]).write_text(json.dumps(_durations_ns))


signal.signal(signal.SIGUSR1, _forget)
signal.signal(signal.SIGUSR2, _write)
addons = [_meter]  # mitmproxy loads `addons` from this script
