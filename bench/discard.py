"""A telemetry sink that discards every call: the addon's hooks measured without what they hand on."""

from collections.abc import Callable, Sequence

from telemetry_process import MetricOptions, UsePrices
from wire.call import Call, SocketRecord
from wire.describe import Description


class Discard:
    on_description: Callable[[Sequence[Description]], None] | None = None

    def record_call(self, call: Call, options: MetricOptions) -> None:
        pass

    def record_session(self, record: SocketRecord) -> None:
        pass

    def use_prices(self, prices: UsePrices) -> None:
        pass

    def summary_table(self) -> str | None:
        return None

    def reset_summary(self) -> None:
        pass

    def shutdown(self, budget_s: float = 0) -> bool:
        return True
