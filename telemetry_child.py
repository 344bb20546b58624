"""The telemetry process's main loop: `python telemetry_child.py REPLY_FD [SHUTDOWN_BUDGET_S [SCHEMA]]`.

Started and fed by `telemetry_process.TelemetryProcess`: frames of messages on stdin, frames of
replies (`telemetry_process.Reply`) on the pipe REPLY_FD. Its stdout and stderr are mitmdump's,
so the SDK's console exporters print to mitmdump's terminal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Mapping
from typing import IO

import telemetry_process
from errors import UnexpectedErrors
from otel.export import ConfigurationError, quiet_exporter_logs
from telemetry import Telemetry
from telemetry_process import (
    DescriptionReply,
    LogReply,
    MetricOptions,
    Reply,
    ResetSummary,
    StatusReply,
    SummaryReply,
    UsePrices,
    encode_batch,
    read_batch,
)
from wire.call import Call, SocketRecord
from wire.describe import Description

log = logging.getLogger("genai")


class Replies:
    """The reply pipe to the parent, shared by the main loop and the SDK's export threads."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, reply: Reply) -> None:
        with self._lock, contextlib.suppress(OSError, ValueError):  # the parent is gone: nobody to tell
            self._stream.write(encode_batch([reply]))
            self._stream.flush()


class _ReplyHandler(logging.Handler):
    """The child's log records, each a `LogReply` for the parent to log."""

    def __init__(self, replies: Replies) -> None:
        super().__init__()
        self._replies = replies
        # The message alone: `logging.basicConfig` would give a handler without a formatter its
        # "LEVEL:name:message" format, and mitmdump's log adds the level itself.
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        # At most a warning: mitmdump exits on an error logged at start-up, and nothing that
        # goes wrong here (an export, a price update) may stop the proxy.
        self._replies.send(LogReply(min(record.levelno, logging.WARNING), self.format(record)))


def _run_only_when_idle() -> None:
    """Export is background work: the proxy (and the apps beside it) must never wait for it.

    SCHED_IDLE runs this process only on a core that is otherwise idle, and any other process
    preempts it at once. Nice 19 alone still took scheduler slices from the proxy's clients and
    upstreams: +2.8 ms at the p99 of calls one at a time, against +0.4 ms with SCHED_IDLE.
    """
    try:
        _schedule_every_thread(os.SCHED_IDLE)
    except (AttributeError, OSError):  # not Linux
        os.nice(19)


def _finish_at_normal_priority() -> None:
    """At exit mitmdump no longer serves, and what is left to export must go within the exit
    budget: on busy cores an idle-only process would not get to run. Leaving SCHED_IDLE needs
    CAP_SYS_NICE (root, as in many containers); without it the exit waits for an idle core."""
    with contextlib.suppress(AttributeError, OSError):
        _schedule_every_thread(os.SCHED_OTHER)


def _schedule_every_thread(policy: int) -> None:
    """Linux schedules threads, not processes: the exporters' threads, started before, too."""
    for thread in os.listdir("/proc/self/task"):
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            os.sched_setscheduler(int(thread), policy, os.sched_param(0))


def start_error(error: Exception, environment: Mapping[str, str]) -> str:
    """One line for an error the OpenTelemetry SDK raised while reading its configuration, naming
    the `OTEL_*` variable whose value is in the message (`could not convert string to float: 'abc'`)."""
    text = str(error)
    suspects = sorted(
        f"{name}={value!r}"
        for name, value in environment.items()
        if name.startswith("OTEL_") and value and repr(value) in text
    )
    named = f" (check {', '.join(suspects)})" if suspects else " (check the OTEL_* environment variables)"
    return f"OpenTelemetry could not be configured: {type(error).__name__}: {text}{named}"


def serve(
    batches: IO[bytes],
    replies: Replies,
    shutdown_budget_s: float = telemetry_process.SHUTDOWN_BUDGET_S,
    schema: str | None = None,
) -> int:
    """Reply ready, or the reason for refusing the configuration or the parent's records'
    `schema` (and exit 2). Then record every call from `batches`, apply the other messages, and
    send the usage summary back whenever it changed and the input has paused, or at least once a
    second. When the parent closes `batches`, send the final summary and shut down within
    `shutdown_budget_s`. SIGINT is ignored: Ctrl-C in a terminal reaches the whole process group,
    and the parent decides when to stop.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, handlers=[_ReplyHandler(replies)], force=True)
    quiet_exporter_logs()
    if schema is not None and schema != telemetry_process.schema_version():
        replies.send(
            StatusReply(
                "the addon's files changed since mitmdump loaded them (its records differ from this "
                "telemetry process's); restart mitmdump to load them"
            )
        )
        return 2
    try:
        instance = Telemetry()
    except ConfigurationError as error:
        replies.send(StatusReply(str(error)))
        return 2
    except Exception as error:  # the SDK's own parsing of the environment: name what it choked on
        log.debug("the telemetry process could not start", exc_info=True)
        replies.send(StatusReply(start_error(error, os.environ)))
        return 2
    replies.send(StatusReply())
    # Only now: mitmdump waits for the reply above before it listens, and on a machine whose
    # cores are busy an idle-only process would never send it (mitmdump then ran without telemetry).
    _run_only_when_idle()
    described: list[Description] = []  # the shown calls of the batch being recorded
    instance.on_description = described.extend

    options = MetricOptions()  # the options' defaults
    errors = UnexpectedErrors(log, prefix="")
    changed_since = 0.0  # when the summary changed first since it was last sent (0: it did not)
    while True:
        paused = not select.select([batches], [], [], telemetry_process.SUMMARY_PAUSE_S)[0]
        if changed_since and (paused or time.monotonic() - changed_since > telemetry_process.SUMMARY_INTERVAL_S):
            replies.send(SummaryReply(instance.summary_table()))
            changed_since = 0.0
        if paused:
            instance.end_idle_sessions()  # a session that ends while no call comes
            continue
        batch = read_batch(batches)
        if batch is None:
            break
        for message in batch:
            try:
                match message:
                    case Call() as call:
                        instance.record_call(call, options)
                        changed_since = changed_since or time.monotonic()
                    case SocketRecord() as record:
                        instance.record_session(record)
                    case MetricOptions() as sent:
                        options = sent
                    case UsePrices() as prices:
                        instance.use_prices(prices)
                    case ResetSummary():
                        instance.reset_summary()
                        changed_since = changed_since or time.monotonic()  # a summary sent before is stale
            except Exception:  # one bad call must not end the process
                errors.report(f"recording a {type(message).__name__}", "the others go on")
        if described:
            replies.send(DescriptionReply(tuple(described)))
            described.clear()
    _finish_at_normal_priority()
    replies.send(SummaryReply(instance.summary_table()))
    return 0 if instance.shutdown(shutdown_budget_s) else 1


if __name__ == "__main__":
    reply_fd = int(sys.argv[1])
    budget = float(sys.argv[2]) if len(sys.argv) > 2 else telemetry_process.SHUTDOWN_BUDGET_S
    parent_schema = sys.argv[3] if len(sys.argv) > 3 else None
    # Unbuffered: `serve` waits for input with select(), which cannot see a read-ahead buffer.
    reply_stream = open(reply_fd, "wb")  # noqa: SIM115 (closed below, whatever happens)
    try:
        with open(sys.stdin.fileno(), "rb", buffering=0, closefd=False) as parent_input:
            status = serve(parent_input, Replies(reply_stream), budget, parent_schema)
    finally:
        with contextlib.suppress(OSError):  # the parent is gone: nobody to tell
            reply_stream.close()
    sys.exit(status)
