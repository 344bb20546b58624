"""The telemetry process: a real `python telemetry_child.py`, fed through its pipe, exporting
over OTLP/gRPC to a real receiver; and the pipe protocol and frame queue it is fed through."""

import asyncio
import dataclasses
import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import telemetry_process
from harness.otlp_receiver import OTLPReceiver
from telemetry_process import (
    DescriptionReply,
    FrameQueue,
    LogReply,
    MetricOptions,
    ResetSummary,
    StatusReply,
    SummaryReply,
    TelemetryProcess,
    TelemetryStartError,
    UsePrices,
)
from tests.test_telemetry import make_call
from wire.call import Call
from wire.content import CapturedContent
from wire.describe import Description
from wire.records import ApiRequest, ApiResult, Usage

pytestmark = pytest.mark.end_to_end


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    instance = OTLPReceiver().start()
    yield instance
    instance.stop()


@pytest.fixture
def collector_env(monkeypatch: pytest.MonkeyPatch, receiver: OTLPReceiver) -> OTLPReceiver:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "60000")  # only the final flush exports metrics
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_SEMCONV_STABILITY_OPT_IN"):
        monkeypatch.delenv(name, raising=False)
    return receiver


@pytest.fixture
def start_child(collector_env: OTLPReceiver) -> Iterator[Callable[..., TelemetryProcess]]:
    """Start a telemetry process with these limits (`TelemetryProcess`'s keywords); shut down after."""
    started: list[TelemetryProcess] = []

    def start(**limits: Any) -> TelemetryProcess:
        process = TelemetryProcess(**limits)
        process.start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.shutdown()


@pytest.fixture
def child(start_child: Callable[..., TelemetryProcess]) -> TelemetryProcess:
    return start_child()


def child_pid(child: TelemetryProcess) -> int:
    assert child.pid is not None
    return child.pid


def thread_state(task: Path) -> str:
    try:
        return (task / "stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return "gone"


def kill(pid: int) -> None:
    """SIGKILL, and wait until all its threads are gone (a zombie until the parent's next poll
    reaps it; its main thread is one while the others still exit and hold its pipes open)."""
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(thread_state(task) not in ("Z", "gone") for task in Path(f"/proc/{pid}/task").iterdir()):
        assert time.monotonic() < deadline, f"process {pid} did not die"
        time.sleep(0.01)


def record_calls(process: TelemetryProcess, count: int, model: str = "gpt-4o-mini") -> None:
    for number in range(count):
        call = make_call()
        call.request.model = model
        call.result.response_id = f"chatcmpl-{number}"
        process.record_call(call, MetricOptions())


def input_tokens(receiver: OTLPReceiver, model: str) -> float:
    return sum(
        point.value
        for point in receiver.latest("gen_ai.client.token.usage", gen_ai__token__type="input")
        if point.attributes.get("gen_ai.request.model") == model
    )


def test_calls_reach_the_collector_exactly_once(child: TelemetryProcess, collector_env: OTLPReceiver):
    record_calls(child, 300)
    # The child reads at SCHED_IDLE until its input closes: on cores the other workers keep busy,
    # 300 calls may take longer than the 2 s mitmdump waits at exit (tested on its own).
    assert child.shutdown(budget_s=30) is True
    spans = collector_env.spans()
    assert sorted(span.attributes["gen_ai.response.id"] for span in spans) == sorted(
        f"chatcmpl-{n}" for n in range(300)
    )
    assert input_tokens(collector_env, "gpt-4o-mini") == 300 * 100
    legacy = collector_env.latest("prompt_tokens", model="gpt-4o-mini")
    assert [point.value for point in legacy] == [300 * 100]
    assert child.dropped == 0


def test_a_call_that_cannot_be_pickled_is_dropped_alone_and_counted(
    child: TelemetryProcess, collector_env: OTLPReceiver, caplog: pytest.LogCaptureFixture
):
    calls = [make_call() for _ in range(3)]
    for number, call in enumerate(calls):
        call.result.response_id = f"chatcmpl-batch-{number}"
    calls[1].result.attributes["unpicklable"] = threading.Lock()  # type: ignore[assignment]

    async def one_batch() -> None:  # inside a loop the hooks queue, and a flush sends one batch
        for call in calls:
            child.record_call(call, MetricOptions())
        assert not child.queue  # nothing framed yet: the three go in one frame
        child.flush()

    with caplog.at_level(logging.WARNING, logger="genai"):
        asyncio.run(one_batch())
    assert child.shutdown() is True
    assert sorted(span.attributes["gen_ai.response.id"] for span in collector_env.spans()) == [
        "chatcmpl-batch-0",
        "chatcmpl-batch-2",
    ]
    assert child.unencodable == 1 and child.dropped == 0
    (warning,) = [record for record in caplog.records if "to the telemetry process failed" in record.getMessage()]
    assert "sending a Call to the telemetry process failed" in warning.getMessage() and warning.exc_info


def test_the_legacy_options_in_force_for_each_call_reach_the_child(
    child: TelemetryProcess, collector_env: OTLPReceiver
):
    record_calls(child, 2, model="legacy-switch")  # legacy_metrics=True
    for _ in range(3):
        call = make_call()
        call.request.model = "legacy-switch"
        child.record_call(call, MetricOptions(legacy_metrics=False))
    assert child.shutdown() is True
    assert [point.value for point in collector_env.latest("prompt_tokens", model="legacy-switch")] == [2 * 100]
    assert input_tokens(collector_env, "legacy-switch") == 5 * 100


def test_a_bad_configuration_is_refused_with_the_childs_reason(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    with pytest.raises(TelemetryStartError, match="OTEL_TRACES_EXPORTER='zipkin' is not supported"):
        TelemetryProcess().start()


def test_a_child_whose_records_differ_from_mitmdumps_refuses_to_start(collector_env: OTLPReceiver):
    with pytest.raises(TelemetryStartError, match=r"files changed since mitmdump loaded them.*restart mitmdump"):
        TelemetryProcess(schema="0123456789abcdef").start()
    matching = TelemetryProcess()  # the default: this process's own records, as the child loads them
    matching.start()
    assert matching.shutdown() is True


def records_module(*fields: str) -> types.ModuleType:
    module = types.ModuleType("records_under_test")
    record = dataclasses.make_dataclass("Record", [(name, int) for name in fields])
    record.__module__ = module.__name__
    module.Record = record  # type: ignore[attr-defined]
    return module


def test_the_schema_version_changes_with_any_records_fields():
    version = telemetry_process.schema_version
    assert version([records_module("input_tokens", "output_tokens")]) == version(
        [records_module("input_tokens", "output_tokens")]
    )
    assert version([records_module("input_tokens", "output_tokens")]) != version(
        [records_module("output_tokens", "input_tokens")]  # the order of the fields counts too
    )
    assert version([records_module("input_tokens")]) != version([records_module("input_tokens", "output_tokens")])
    assert len(telemetry_process.schema_version()) == 16


def test_a_child_that_cannot_start_is_an_error_not_a_hang():
    process = TelemetryProcess([sys.executable, "-c", "import sys; sys.exit(3)"])
    with pytest.raises(TelemetryStartError, match="exited at start-up"):
        process.start()


def test_the_childs_log_records_are_logged_here(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    process = TelemetryProcess()
    process.start()
    with caplog.at_level(logging.INFO, logger="genai"):
        record_calls(process, 3)
        process.shutdown()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "does not accept spans" in r.message]
    assert len(warnings) == 1
    assert warnings[0].message.startswith("genai: OpenTelemetry collector at http://127.0.0.1:9 does not accept spans")


def test_the_hooks_queue_and_a_timer_sends_one_batch(child: TelemetryProcess, collector_env: OTLPReceiver):
    async def traffic() -> tuple[int, int]:
        record_calls(child, 5)
        queued = sum(isinstance(message, Call) for message in child.pending)
        await asyncio.sleep(telemetry_process.FLUSH_INTERVAL_S * 4)
        return queued, len(child.pending)

    queued, left = asyncio.run(traffic())
    assert (queued, left) == (5, 0)
    child.shutdown()
    assert len(collector_env.spans()) == 5


def test_the_timer_waits_the_flush_interval_given(
    start_child: Callable[..., TelemetryProcess], collector_env: OTLPReceiver
):
    process = start_child(flush_interval_s=0.6)

    async def traffic() -> tuple[int, int]:
        record_calls(process, 3)
        await asyncio.sleep(0.3)
        waiting = sum(isinstance(message, Call) for message in process.pending)
        await asyncio.sleep(0.6)
        return waiting, len(process.pending)

    assert asyncio.run(traffic()) == (3, 0)
    process.shutdown()
    assert len(collector_env.spans()) == 3


def test_a_stalled_child_never_blocks_and_buffers_only_up_to_the_bound(
    start_child: Callable[..., TelemetryProcess], collector_env: OTLPReceiver
):
    """SIGSTOP the child: its pipe fills, record() keeps returning, memory stays bounded, and
    what was not dropped arrives once it runs again. (A blocking write would hang this test.)"""
    child = start_child(max_buffered_bytes=256 * 1024, max_batch=50)
    pid = child_pid(child)
    os.kill(pid, signal.SIGSTOP)
    try:
        record_calls(child, 20_000)
        assert child.dropped > 0
        assert child.queue.bytes <= 256 * 1024 + 64 * 1024  # the bound plus one batch
        child.reset_summary()  # a control message is never dropped with the calls
        child.flush()
        assert child.queue and child.queue.frames[-1][1] == 0
        assert telemetry_process.read_batch(io.BytesIO(child.queue.frames[-1][0])) == [ResetSummary()]
    finally:
        os.kill(pid, signal.SIGCONT)
    assert child.shutdown(budget_s=30) is True
    assert len(collector_env.spans()) == 20_000 - child.dropped


def test_a_dead_child_is_started_again(
    start_child: Callable[..., TelemetryProcess],
    collector_env: OTLPReceiver,
    caplog: pytest.LogCaptureFixture,
):
    child = start_child(restart_interval_s=0.0)
    first = child_pid(child)
    kill(first)
    with caplog.at_level(logging.WARNING, logger="genai"):
        record_calls(child, 1, model="lost-or-not")  # finds the child gone and starts another
        record_calls(child, 10, model="after-restart")
    assert child_pid(child) != first
    assert child.shutdown() is True
    assert input_tokens(collector_env, "after-restart") == 10 * 100
    assert any("exited" in r.message and "starting it again" in r.message for r in caplog.records)


def test_the_child_runs_only_on_an_otherwise_idle_core_once_it_is_ready(child: TelemetryProcess):
    def policies() -> set[int]:  # of every thread: the exporters' too
        return {os.sched_getscheduler(int(thread)) for thread in os.listdir(f"/proc/{child_pid(child)}/task")}

    deadline = time.monotonic() + 10
    while policies() != {os.SCHED_IDLE} and time.monotonic() < deadline:
        time.sleep(0.05)
    assert policies() == {os.SCHED_IDLE} and len(os.listdir(f"/proc/{child_pid(child)}/task")) > 1


def test_the_child_starts_while_every_core_is_busy(start_child: Callable[..., TelemetryProcess]):
    """mitmdump waits for the child before it listens: an idle-only child would never answer."""
    spin = "import time\nend = time.monotonic() + 30\nwhile time.monotonic() < end: pass"
    busy = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(os.cpu_count() or 1)]
    try:
        time.sleep(1)  # they are all spinning
        started = time.monotonic()
        child = start_child()
        assert child.pid is not None and time.monotonic() - started < 12  # 15 s and more when it started idle-only
    finally:
        for process in busy:
            process.kill()
            process.wait()


def test_ctrl_c_in_the_terminal_does_not_stop_the_child(child: TelemetryProcess, collector_env: OTLPReceiver):
    """SIGINT reaches the whole process group; the child waits for its input to close."""
    os.kill(child_pid(child), signal.SIGINT)
    record_calls(child, 7)
    assert child.shutdown() is True
    assert len(collector_env.spans()) == 7


def test_the_child_keeps_the_usage_summary_and_sends_it_when_traffic_pauses(
    child: TelemetryProcess, collector_env: OTLPReceiver
):
    assert child.summary_table() is None
    record_calls(child, 4, model="summarized")
    table = collector_env.wait_for(child.summary_table, timeout=30)
    row = next(line for line in table.splitlines() if line.startswith("openai") and "gpt-4o-mini-2024" in line)
    assert row.split()[3] == "4"  # calls (after the model asked for and, once, the one that answered)
    child.reset_summary()
    assert child.summary_table() is None
    record_calls(child, 1)
    assert child.shutdown() is True  # the final summary arrives before shutdown returns
    final = child.summary_table()
    assert (
        final is not None and next(line for line in final.splitlines() if "gpt-4o-mini-2024" in line).split()[3] == "1"
    )


def reply_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "genai-telemetry-replies"]


def test_once_calls_are_queued_on_a_loop_the_loop_reads_the_replies(
    child: TelemetryProcess, collector_env: OTLPReceiver
):
    """A thread woken by each reply cost mitmdump a third more CPU per request where calls are
    shown: the loop reads them itself, and no thread is left. Shutdown still gets the last ones."""
    arrived_on: list[int] = []
    described: list[Description] = []

    def on_description(descriptions: Sequence[Description]) -> None:
        arrived_on.append(threading.get_ident())
        described.extend(descriptions)

    child.on_description = on_description

    async def traffic() -> int:
        for number in range(1, 4):
            call = make_call()
            call.description_id = number
            child.record_call(call, MetricOptions())
        deadline = time.monotonic() + 30
        while len(described) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert [description.call_id for description in described] == [1, 2, 3]
        assert set(arrived_on) == {threading.get_ident()} and not reply_threads()  # the loop's own
        record_calls(child, 2, model="after-the-handover")
        assert child.shutdown() is True  # on the loop, as mitmdump's done() calls it
        return threading.get_ident()

    asyncio.run(traffic())
    table = child.summary_table()  # the child's last reply, read while the loop waited
    assert table is not None
    assert next(line for line in table.splitlines() if line.startswith("sk-proj-")).split()[1] == "5"  # calls
    assert len(collector_env.spans()) == 5 and not reply_threads()


def deferred_call(model: str) -> Call:
    """A call as the hooks pass it on when nothing is shown: bodies unparsed, no cost yet."""
    usage = {"prompt_tokens": 1_000_000, "completion_tokens": 0, "total_tokens": 1_000_000}
    return make_call(
        request=ApiRequest(),
        result=ApiResult(),
        request_body=json.dumps({"model": model, "messages": []}).encode(),
        response_body=json.dumps({"id": "x", "model": model, "usage": usage}).encode(),
    )


def test_the_child_prices_deferred_calls_with_the_table_it_was_sent(
    start_child: Callable[..., TelemetryProcess], collector_env: OTLPReceiver, tmp_path
):
    child = start_child(restart_interval_s=0.0)
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"models": {"house-model": {"input": 2.5, "output": 10}}}))
    child.use_prices(UsePrices(str(prices)))
    child.record_call(deferred_call("house-model"), MetricOptions(legacy_metrics=False))
    kill(child_pid(child))  # a new child must get the table again
    child.record_call(deferred_call("house-model"), MetricOptions(legacy_metrics=False))
    child.record_call(deferred_call("house-model"), MetricOptions(legacy_metrics=False))
    assert child.shutdown() is True
    costs = [span.attributes.get("gen_ai.usage.cost_usd") for span in collector_env.spans()]
    assert len(costs) >= 2 and all(cost == pytest.approx(2.5) for cost in costs)  # 1M input tokens at $2.5


def test_the_process_wide_recorder_is_started_once(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    shared = telemetry_process.ProcessWideTelemetry()
    first = shared()
    try:
        assert isinstance(first, TelemetryProcess)
        assert shared() is first
    finally:
        first.shutdown()


def test_calls_survive_the_pipe_unchanged():
    result = ApiResult(response_id="r", usage=Usage(input_tokens=1, output_tokens=2, reasoning_tokens=1))
    call = make_call(request=ApiRequest(model="m"), result=result, chunk_intervals_s=[0.01, 0.02])
    message = call
    frame = telemetry_process.encode_batch([message])

    class Pipe:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def read(self, size: int) -> bytes:
            piece, self.data = self.data[:size], self.data[size:]
            return piece

    pipe = Pipe(frame + frame[:7])  # a whole batch, then a cut-off one
    assert telemetry_process.read_batch(pipe) == [message]  # type: ignore[arg-type]
    assert telemetry_process.read_batch(pipe) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "reply",
    [
        LogReply(30, "a warning"),
        LogReply(30, "recording a Call failed; the others go on.\nTraceback (most recent call last):\n  ..."),
        SummaryReply("provider  model\n---"),
        SummaryReply(None),
        StatusReply(),
        StatusReply("no"),
        DescriptionReply((Description(7, "$0.0011 · 67→64 tok · 0.912s · chat gpt-4o-mini", failed=False),)),
    ],
)
def test_replies_come_back_as_the_values_they_were(reply):
    frame = telemetry_process.encode_batch([reply])
    assert telemetry_process.read_batch(io.BytesIO(frame)) == [reply]


def test_the_frame_queue_counts_its_bytes_through_partial_writes_and_drops():
    queue = FrameQueue()
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    try:
        big = b"x" * (4 * 1024 * 1024)  # larger than any pipe: written in part
        queue.append(big, 3)
        queue.append(b"small", 1)
        assert queue.bytes == len(big) + 5 and queue.calls() == 4
        assert queue.write_to(write_end) is True  # the pipe is full: the rest waits
        assert queue and queue.bytes == len(big) + 5  # nothing whole was written yet
        assert queue.drop_partial() == 3  # its reader died mid-frame
        assert queue.bytes == 5 and queue.calls() == 1
        queue.prepend(b"prices", 0)
        assert queue.bytes == 11
        os.close(read_end)
        assert queue.write_to(write_end) is False  # the reader is gone
    finally:
        os.close(write_end)


def test_children_killed_mid_frame_lose_only_that_frame_and_the_byte_count_returns_to_zero(
    start_child: Callable[..., TelemetryProcess], collector_env: OTLPReceiver
):
    """The restart bug: a frame half-written to a child that then died was dropped without its
    bytes leaving the count (and the price table re-sent without adding its bytes), so after a
    few deaths the count stayed over the bound and every later call was dropped. Here the child
    is stopped, handed a frame larger than its pipe (written in part), killed, and the next
    flush starts another, three times over."""
    child = start_child(restart_interval_s=0.0, max_buffered_bytes=3 * 1024 * 1024)
    child.use_prices(UsePrices())  # re-sent to every new child, its bytes counted
    for death in range(3):
        dead = child_pid(child)
        os.kill(dead, signal.SIGSTOP)
        doomed = make_call(content=CapturedContent(input_messages="x" * 2_500_000))  # > the 1 MiB pipe
        doomed.request.model = f"doomed-{death}"
        child.record_call(doomed, MetricOptions(legacy_metrics=False))
        assert child.queue.partly_written, "the pipe should have taken part of the frame"
        kill(dead)
        record_calls(child, 1, model=f"between-{death}")  # finds the child gone: starts another
        assert child_pid(child) != dead
    assert child.dropped == 3  # the three half-written frames, nothing else
    record_calls(child, 50, model="after")
    deadline = time.monotonic() + 30
    while child.queue and time.monotonic() < deadline:
        time.sleep(0.01)
        child.flush()
    assert not child.queue and child.queue.bytes == 0
    assert child.shutdown(budget_s=30) is True
    spans = collector_env.spans()
    after = sorted(
        span.attributes["gen_ai.response.id"] for span in spans if span.attributes["gen_ai.request.model"] == "after"
    )
    assert after == sorted(f"chatcmpl-{n}" for n in range(50))
    assert not any(span.attributes["gen_ai.request.model"].startswith("doomed") for span in spans)


def test_console_exporters_print_to_mitmdumps_terminal(monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture):
    """The child's stdout is the parent's: the SDK's console exporters print a span and metrics there."""
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "console")
    process = TelemetryProcess()
    process.start()
    record_calls(process, 1, model="printed-model")
    assert process.shutdown(budget_s=10) is True
    out = capfd.readouterr().out
    assert '"name": "chat printed-model"' in out  # the span, as ConsoleSpanExporter prints it
    assert '"name": "gen_ai.client.token.usage"' in out  # and the metrics


def test_an_otel_value_the_sdk_cannot_read_is_named_in_one_line(monkeypatch: pytest.MonkeyPatch):
    """`OTEL_EXPORTER_OTLP_TIMEOUT=abc` made the SDK raise a bare ValueError: the child died with a
    traceback the user rarely saw, and mitmdump said only "it exited at start-up"."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "abc")
    with pytest.raises(TelemetryStartError) as refused:
        TelemetryProcess().start()
    message = str(refused.value)
    assert "could not convert string to float: 'abc'" in message
    assert "OTEL_EXPORTER_OTLP_TIMEOUT='abc'" in message and "\n" not in message
