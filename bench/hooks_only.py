"""The addon with its recorder replaced by one that discards every call: `mitmdump -s bench/hooks_only.py`.

Part 6 of the benchmark runs it to split the addon's cost into its hooks (here) and the
telemetry process beside mitmdump (the difference to the real addon).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import telemetry_process
from addon import addons  # noqa: F401  (mitmproxy loads `addons` from this script)
from pricing import PriceTable
from wire.call import Call


class Discard:
    def record_call(self, call: Call, *, legacy_metrics: bool, legacy_completion_id: bool) -> None:
        pass

    def use_prices(self, prices: PriceTable) -> None:
        pass

    def summary_table(self) -> str | None:
        return None

    def reset_summary(self) -> None:
        pass

    def shutdown(self, budget_s: float = 0) -> bool:
        return True


telemetry_process._instance = Discard()
