"""The addon's hooks timed inside a running mitmdump, against the same hooks timed in a loop.

`python -m bench.hooks_in_situ [--requests N] [--concurrency 1,16]` runs mitmdump with
`bench/timed_hooks.py` (the hooks, every call discarded) in reverse mode before the benchmark's
upstream; per concurrency it sends N non-streaming calls after a warm-up and prints each hook's
median and mean time per call. Between two calls at concurrency 1 mitmdump waits while the load
generator and the upstream run, so each call starts with caches the others have used: there the
hooks take longer than part 4's figure, which times them call after call in one process.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.run import Bench, Sizes, hooks_per_call_us
from bench.timed_hooks import HOOKS, OUT_VARIABLE

SCRIPT = Path(__file__).with_name("timed_hooks.py")
SIGNAL_WAIT_S = 0.5  # for mitmdump's loop to run the signal's handler


def in_situ(requests: int, concurrencies: Sequence[int]) -> dict[int, dict[str, list[int]]]:
    """Per concurrency, each hook's durations in nanoseconds, one per call."""
    measured: dict[int, dict[str, list[int]]] = {}
    with tempfile.TemporaryDirectory(prefix="genai-in-situ-") as tmp:
        bench = Bench(Sizes(), Path(tmp))
        out = Path(tmp) / "timed.json"
        hosts = f"genai_hosts=127.0.0.1:{bench.upstream_port}=openai;stream_usage=on"
        try:
            with bench.proxy(False, "live", "-s", str(SCRIPT), "--set", hosts, env={OUT_VARIABLE: str(out)}) as proxy:
                bench.load(proxy.port, 4, bench.sizes.warmup, "plain")
                for concurrency in concurrencies:
                    os.kill(proxy.pid, signal.SIGUSR1)
                    time.sleep(SIGNAL_WAIT_S)
                    bench.load(proxy.port, concurrency, requests, "plain")
                    os.kill(proxy.pid, signal.SIGUSR2)
                    time.sleep(SIGNAL_WAIT_S)
                    measured[concurrency] = json.loads(out.read_text())
        finally:
            bench.close()
    return measured


def report(measured: dict[int, dict[str, list[int]]], in_a_loop_us: float) -> str:
    lines = [
        "| concurrency | " + " | ".join(f"`{hook}` median / mean µs" for hook in HOOKS) + " | the three, mean µs |",
        "|---" * (len(HOOKS) + 2) + "|",
    ]
    for concurrency, durations in measured.items():
        cells = [
            f"{statistics.median(durations[hook]) / 1000:.1f} / {statistics.fmean(durations[hook]) / 1000:.1f}"
            for hook in HOOKS
        ]
        total = sum(statistics.fmean(durations[hook]) for hook in HOOKS) / 1000
        lines.append(f"| {concurrency} | " + " | ".join(cells) + f" | **{total:.1f}** |")
    lines.append(
        "\nThe same three hooks in a loop in one process, handing over to a real telemetry process "
        f"(part 4): {in_a_loop_us:.1f} µs per call."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", default="1,16")
    options = parser.parse_args()
    concurrencies = [int(value) for value in options.concurrency.split(",")]
    measured = in_situ(options.requests, concurrencies)
    print(report(measured, hooks_per_call_us(2000)))


if __name__ == "__main__":
    main()
