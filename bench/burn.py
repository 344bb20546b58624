"""Keep a core busy for a share of the time, at the idle scheduling priority the telemetry process
uses: `python -m bench.burn SHARE SECONDS [spin|objects]`. Part 6 of the benchmark runs it next to
bare mitmdump to show what work on the other core costs the proxy on this machine: `spin` only
spins, `objects` builds and drops Python objects over a few megabytes, as the telemetry process's
work does (allocation, memory traffic through the caches both cores share)."""

import os
import sys
import time

PERIOD_S = 0.01


def spin(until: float) -> None:
    while time.monotonic() < until:
        pass


def churn_objects(until: float) -> None:
    while time.monotonic() < until:
        records = [{"name": "gen_ai.client.token.usage", "value": i, "key": str(i)} for i in range(2000)]
        del records


def burn(share: float, seconds: float, work: str = "spin") -> None:
    busy = {"spin": spin, "objects": churn_objects}[work]
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        busy(time.monotonic() + share * PERIOD_S)
        time.sleep((1 - share) * PERIOD_S)


if __name__ == "__main__":
    burn(float(sys.argv[1]), float(sys.argv[2]), *sys.argv[3:4])
