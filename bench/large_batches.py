"""The addon handing calls to its telemetry process every 2 s instead of every 50 ms:
`mitmdump -s bench/large_batches.py`.

Part 7 runs it under valgrind, where mitmdump serves about ten calls a second: there a 50 ms
flush carries a call or none, each with its own pipe write (and, at `flow_detail=1`, its own
reply and log record), where at full speed one carries 25 to 35 (500 to 700 calls a second). A
2 s flush under valgrind hands over batches of that size, so the hand-over is counted per call at
what it costs at full speed.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from addon import GenAIMeter
from telemetry_process import TelemetryProcess, TelemetrySink


def started() -> TelemetrySink:
    process = TelemetryProcess(flush_interval_s=2.0)  # `bench.run.HANDOVER_SETTLE_S` waits longer
    process.start()
    return process


addons = [GenAIMeter(telemetry=started)]  # mitmproxy loads `addons` from this script
