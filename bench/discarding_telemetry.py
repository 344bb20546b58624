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
from addon import GenAIMeter

# Started like the real child (`python -c DISCARD REPLY_FD BUDGET SCHEMA`): its start-up status on
# the reply pipe, then it reads stdin until mitmdump closes it.
DISCARD = (
    "import os, signal, sys\n"
    "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    f"sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})\n"
    "from telemetry_process import StatusReply, encode_batch\n"
    "os.write(int(sys.argv[1]), encode_batch([StatusReply()]))\n"
    "while os.read(0, 1 << 20):\n    pass\n"
)

_discarding = telemetry_process.TelemetryProcess([sys.executable, "-c", DISCARD])
_discarding.start()
addons = [GenAIMeter(telemetry=lambda: _discarding)]  # mitmproxy loads `addons` from this script
