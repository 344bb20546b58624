"""The addon with its telemetry sink replaced by one that discards every call: `mitmdump -s bench/hooks_only.py`.

Part 6 of the benchmark runs it to split the addon's cost into its hooks (here) and the
telemetry process beside mitmdump (the difference to the real addon).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from addon import GenAIMeter
from bench.discard import Discard

_discard = Discard()
addons = [GenAIMeter(telemetry=lambda: _discard)]  # mitmproxy loads `addons` from this script
