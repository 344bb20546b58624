"""The addon with its telemetry sink replaced by one that discards every call: `mitmdump -s bench/hooks_only.py`.

Part 6 of the benchmark runs it to split the addon's cost into its hooks (here) and the
telemetry process beside mitmdump (the difference to the real addon).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import telemetry_process
from addon import addons  # noqa: F401  (mitmproxy loads `addons` from this script)
from bench.discard import Discard

telemetry_process._instance = Discard()
