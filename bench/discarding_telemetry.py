"""The addon with a telemetry process that reads every batch and discards it:
`mitmdump -s bench/discarding_telemetry.py`.

Part 6 of the benchmark runs it between the hooks alone (`bench/hooks_only.py`) and the real
addon: it pays everything on mitmdump's side (hooks, pickling, the pipe) but leaves the other core
idle, so its difference to the real addon is what the telemetry process's work costs mitmdump.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import telemetry_process
from addon import addons  # noqa: F401  (mitmproxy loads `addons` from this script)

# Started as `python -c DISCARD REPLY_FD BUDGET`, like the real child: "ready" on the reply pipe.
DISCARD = "import os, sys\nos.write(int(sys.argv[1]), b'ready\\n')\nwhile os.read(0, 1 << 20):\n    pass\n"

_discarding = telemetry_process.TelemetryProcess([sys.executable, "-c", DISCARD])
_discarding.start()
telemetry_process._instance = _discarding
