"""Keep a core busy for a share of the time, at the idle scheduling priority the telemetry process
uses: `python -m bench.burn SHARE SECONDS`. Part 6 of the benchmark runs it next to bare mitmdump
to show what any work on the other core costs the proxy on this machine."""

import os
import sys
import time

PERIOD_S = 0.01


def burn(share: float, seconds: float) -> None:
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        busy_until = time.monotonic() + share * PERIOD_S
        while time.monotonic() < busy_until:
            pass
        time.sleep((1 - share) * PERIOD_S)


if __name__ == "__main__":
    burn(float(sys.argv[1]), float(sys.argv[2]))
