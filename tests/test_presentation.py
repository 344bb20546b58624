"""How calls are shown: descriptions made in the telemetry process, applied to their flows on
mitmproxy's event loop (comment, mark, log line), whatever thread they arrive on."""

import asyncio
import logging
import threading
from collections.abc import Sequence

from mitmproxy.test import taddons, tflow

from presentation import ShownCalls
from wire.describe import Description


class View:
    """An addon that hears of updated flows, as mitmweb's view does."""

    def __init__(self) -> None:
        self.updated: list[list[object]] = []

    def update(self, flows: list[object]) -> None:
        self.updated.append(list(flows))


def test_a_description_sets_the_comment_the_mark_and_the_log_line(caplog):
    shown = ShownCalls()
    shown.flows_kept = True
    flow = tflow.tflow()
    number = shown.expect(flow)
    with taddons.context(), caplog.at_level(logging.INFO, logger="genai"):
        shown.show([Description(number, "error rate_limit_exceeded (429) · 0.120s · chat gpt-4o", failed=True)])
    assert flow.comment == "error rate_limit_exceeded (429) · 0.120s · chat gpt-4o" and flow.marked == ":warning:"
    assert "genai: error rate_limit_exceeded (429)" in caplog.text


def test_an_operation_of_a_session_counts_the_sessions_calls_and_views_hear_of_it():
    shown = ShownCalls(watching=lambda: True)
    shown.flows_kept = True
    flow = tflow.twebsocketflow()
    number = shown.expect(flow, session_calls=3)
    views = View()
    with taddons.context(views):
        shown.show([Description(number, "$0.01 · 10→5 tok", failed=False)])
    assert flow.comment == "3 calls · last: $0.01 · 10→5 tok" and not flow.marked
    assert views.updated == [[flow]]  # mitmweb's view hears of it, and shows the new comment


def test_quiet_calls_get_a_comment_but_no_log_line(caplog):
    shown = ShownCalls()
    shown.flows_kept, shown.log_lines = True, False
    flow = tflow.tflow()
    with taddons.context(), caplog.at_level(logging.INFO, logger="genai"):
        shown.show([Description(shown.expect(flow), "$0.01", failed=False)])
    assert flow.comment == "$0.01" and "genai:" not in caplog.text


def test_a_description_from_another_thread_is_applied_on_the_loop():
    shown = ShownCalls()
    shown.flows_kept = True
    flow = tflow.tflow()
    applied_on: list[int] = []

    async def main() -> None:
        shown.on_loop(asyncio.get_running_loop())
        number = shown.expect(flow)
        original = shown.show

        def show(descriptions: Sequence[Description]) -> None:
            applied_on.append(threading.get_ident())
            original(descriptions)

        shown.show = show  # type: ignore[method-assign]
        sender = threading.Thread(target=shown.arrived, args=([Description(number, "$0.02", failed=False)],))
        sender.start()
        sender.join()
        assert not flow.comment  # not yet: it waits for the loop
        await asyncio.sleep(0.01)

    with taddons.context():
        asyncio.run(main())
    assert flow.comment == "$0.02" and applied_on == [threading.get_ident()]


def test_unknown_and_forgotten_numbers_are_ignored():
    shown = ShownCalls(max_waiting=2)
    shown.flows_kept = True
    flows = [tflow.tflow() for _ in range(3)]
    numbers = [shown.expect(flow) for flow in flows]  # the first is forgotten: at most 2 wait
    with taddons.context():
        for number in [*numbers, 999]:
            shown.show([Description(number, f"call {number}", failed=False)])
    assert [flow.comment for flow in flows] == ["", f"call {numbers[1]}", f"call {numbers[2]}"]


def test_a_batch_of_descriptions_is_one_update_for_the_views_and_one_log_record(caplog):
    """Both cost mitmproxy per event, not per line: a log record about a tenth of a request."""
    shown = ShownCalls(watching=lambda: True)
    shown.flows_kept = True
    flows = [tflow.tflow() for _ in range(3)]
    batch = [Description(shown.expect(flow), f"call {n}", failed=False) for n, flow in enumerate(flows)]
    views = View()
    with taddons.context(views), caplog.at_level(logging.INFO, logger="genai"):
        shown.show(batch)
    assert views.updated == [flows] and [flow.comment for flow in flows] == ["call 0", "call 1", "call 2"]
    (record,) = caplog.records
    assert record.getMessage().splitlines() == ["genai: call 0", "genai: call 1", "genai: call 2"]


def test_views_that_nobody_watches_are_not_updated():
    """mitmweb with no browser connected: the comment is set (a browser that connects later loads
    it with the flows), without serializing the flow once more for nobody."""
    shown = ShownCalls(watching=lambda: False)
    shown.flows_kept = True
    flow = tflow.tflow()
    views = View()
    with taddons.context(views):
        shown.show([Description(shown.expect(flow), "$0.01", failed=False)])
    assert flow.comment == "$0.01" and views.updated == []


def test_where_flows_are_not_kept_none_waits_and_the_lines_still_come(caplog):
    """mitmdump without a view or -w drops each flow when it is done: holding it until its line
    arrives would only keep it alive (and walked by the garbage collector) for nobody."""
    shown = ShownCalls()
    flows = [tflow.tflow() for _ in range(3)]
    batch = [Description(shown.expect(flow), f"call {n}", failed=n == 1) for n, flow in enumerate(flows)]
    assert shown.waiting == 0
    with taddons.context(), caplog.at_level(logging.INFO, logger="genai"):
        shown.show(batch)
    assert caplog.records[-1].getMessage().splitlines() == ["genai: call 0", "genai: call 1", "genai: call 2"]
    assert not any(flow.comment or flow.marked for flow in flows)
