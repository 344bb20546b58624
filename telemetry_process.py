"""The OpenTelemetry SDK in a child process, fed finished calls in batches.

Why a process: in mitmdump's own process the SDK cost about a quarter of the proxy's throughput.
Each measurement costs microseconds of attribute handling, and encoding spans on the exporter
thread holds the GIL that mitmproxy's event loop needs (BENCHMARKS.md has the profile). Here the
hooks only append a finished call (a `protocol.FinishedCall` as a plain tuple; its bodies may still
be unparsed) to a list. Every `FLUSH_INTERVAL_S` (or `MAX_BATCH` messages) the list is pickled once
and written to the child's stdin without blocking. The child (`python telemetry.py`, see
`telemetry.serve`) parses what is left, prices, records, keeps the usage summary and exports, on an
otherwise idle core.

- Never blocks the event loop: the pipe is non-blocking; what does not fit waits in a buffer of
  at most `MAX_BUFFERED_BYTES` and goes out with the next flush. Beyond that, calls are dropped
  and counted (one warning per episode), never queued without bound.
- Survives the child: if it dies, it is started again (at most every `RESTART_INTERVAL_S`) and one
  warning says so. Its cumulative metrics then start from zero under a new start time, which
  metric backends treat as a counter reset.
- The child's log lines (collector outages, ...) come back over its stdout and are logged here,
  so they appear in mitmdump's output and mitmweb's event log like any other line.
- The child ignores SIGINT and exits when its stdin closes, also when mitmdump is killed.
  `shutdown` flushes and waits at most `SHUTDOWN_BUDGET_S` in all.

This module imports no OpenTelemetry: mitmdump's process does not load the SDK at all.
"""

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Protocol

from pricing import PriceTable
from protocol import FinishedCall

log = logging.getLogger("genai.telemetry")

CHILD_SCRIPT = Path(__file__).with_name("telemetry.py")
FLUSH_INTERVAL_S = 0.05
MAX_BATCH = 512
MAX_BUFFERED_BYTES = 16 * 1024 * 1024  # about 40,000 calls waiting for a stalled child
PIPE_SIZE = 1024 * 1024  # Linux's default of 64 KiB fills in a fraction of a second at full load
RESTART_INTERVAL_S = 5.0
START_TIMEOUT_S = 30.0
SHUTDOWN_BUDGET_S = 2.0
# The child's own flush gets this share of the budget; the rest covers writing and exiting.
CHILD_SHUTDOWN_SHARE = 0.8
FRAME_HEADER = struct.Struct(">I")
# A batch is a list of messages: a call ("call", the `FinishedCall` as a plain tuple, which pickles
# in a third of the time, and the two legacy-counter options in force for it), the price table
# ("prices", table), or ("reset",) to start the usage summary anew.
CALL = "call"
Message = tuple[str, tuple[object, ...], bool, bool] | tuple[str, PriceTable] | tuple[str]
READY = "ready"
SUMMARY = "summary"
# The child sends the usage summary when its input pauses this long, or at least this often.
SUMMARY_PAUSE_S = 0.1
SUMMARY_INTERVAL_S = 1.0


class TelemetryStartError(RuntimeError):
    """The telemetry process refused its configuration or did not start."""


class Recorder(Protocol):
    """What the addon needs: `TelemetryProcess`, or an in-process `telemetry.Telemetry` in tests."""

    def record_call(self, call: FinishedCall, *, legacy_metrics: bool, legacy_completion_id: bool) -> None: ...

    def use_prices(self, prices: PriceTable) -> None: ...

    def summary_table(self) -> str | None: ...

    def reset_summary(self) -> None: ...

    def shutdown(self, budget_s: float = SHUTDOWN_BUDGET_S) -> bool: ...


def encode_batch(batch: Sequence[Message]) -> bytes:
    payload = pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
    return FRAME_HEADER.pack(len(payload)) + payload


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    """`size` bytes, fewer only at the end of the input (an unbuffered pipe returns what it has)."""
    data = bytearray()
    while len(data) < size:
        piece = stream.read(size - len(data))
        if not piece:
            break
        data += piece
    return bytes(data)


def read_batch(stream: IO[bytes]) -> list[Message] | None:
    """The next batch from the parent, or None at the end of the input."""
    header = _read_exactly(stream, FRAME_HEADER.size)
    if len(header) < FRAME_HEADER.size:
        return None
    (length,) = FRAME_HEADER.unpack(header)
    payload = _read_exactly(stream, length)
    if len(payload) < length:
        return None
    batch: list[Message] = pickle.loads(payload)  # our own child's pipe: trusted
    return batch


class TelemetryProcess:
    """The parent's side: starts the child, batches submissions, relays its log lines."""

    def __init__(self, command: Sequence[str] | None = None) -> None:
        self.command = list(command or [sys.executable, str(CHILD_SCRIPT)])
        self.dropped = 0  # calls lost to a stalled or dead child
        self._pending: list[Message] = []
        self._prices: PriceTable | None = None  # sent again to a restarted child
        self._summary: str | None = None  # the child's latest usage summary
        # Encoded batches the pipe did not take yet, with their number of calls; the first one
        # may be partly written already.
        self._frames: deque[tuple[bytes, int]] = deque()
        self._sent_of_first = 0
        self._buffered_bytes = 0
        self._flush_scheduled = False
        self._dropping = False
        self._process: subprocess.Popen[bytes] | None = None
        self._stdin_fd = -1
        self._started_at = 0.0
        self._status: list[str] = []
        self._status_read = threading.Event()
        self._relay_thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start the child and wait for it to accept its configuration; raises TelemetryStartError."""
        self._spawn(announce_failure=False)
        if not self._status_read.wait(timeout_s):
            self._kill()
            raise TelemetryStartError(f"the telemetry process did not start within {timeout_s:.0f}s")
        line = self._status[0] if self._status else ""
        if line != READY:
            self._kill()
            raise TelemetryStartError(line.removeprefix("error ") or "it exited at start-up (see the lines above)")

    def _spawn(self, announce_failure: bool) -> None:
        self._status = []
        self._status_read = threading.Event()
        child_budget = f"{SHUTDOWN_BUDGET_S * CHILD_SHUTDOWN_SHARE:.2f}"
        process = subprocess.Popen(
            [*self.command, child_budget], stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True
        )
        assert process.stdin is not None and process.stdout is not None
        self._stdin_fd = process.stdin.fileno()
        os.set_blocking(self._stdin_fd, False)
        set_pipe_size = getattr(fcntl, "F_SETPIPE_SZ", None)  # Linux only
        if set_pipe_size is not None:
            with contextlib.suppress(OSError):  # a smaller pipe only means more waiting in the buffer
                fcntl.fcntl(self._stdin_fd, set_pipe_size, PIPE_SIZE)
        self._process = process
        self._started_at = time.monotonic()
        self._relay_thread = threading.Thread(
            target=self._relay,
            args=(process.stdout, self._status, self._status_read, announce_failure),
            name="genai-telemetry-log",
            daemon=True,
        )
        self._relay_thread.start()

    def _relay(
        self, stdout: IO[bytes], status: list[str], status_read: threading.Event, announce_failure: bool
    ) -> None:
        """Log records ("LEVELNO message"), usage summaries ("summary JSON") and, once, the child's
        status ("ready" or "error REASON")."""
        for raw in stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            kind, _, rest = line.partition(" ")
            if kind.isdigit():
                log.log(int(kind), "%s", rest)
                continue
            if kind == SUMMARY:
                self._summary = json.loads(rest)
                continue
            if not status_read.is_set():
                status.append(line)
                status_read.set()
                if announce_failure and line != READY:
                    log.error("genai: the telemetry process did not start again: %s", line.removeprefix("error "))
        status_read.set()

    def _kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def _restart(self) -> None:
        """The child is gone: start another, at most every RESTART_INTERVAL_S; until then, buffer."""
        assert self._process is not None
        if time.monotonic() - self._started_at < RESTART_INTERVAL_S:
            return
        log.warning(
            "genai: the telemetry process exited (exit code %s); starting it again. Its metrics restart from zero.",
            self._process.poll(),
        )
        self._kill()
        if self._process.stdin:
            self._process.stdin.close()
        if self._sent_of_first:  # the dead child got part of this batch: the new one cannot read the rest
            self.dropped += self._frames.popleft()[1]
            self._sent_of_first = 0
        self._spawn(announce_failure=True)
        if self._prices is not None:
            self._frames.appendleft((encode_batch([("prices", self._prices)]), 0))

    def shutdown(self, budget_s: float = SHUTDOWN_BUDGET_S) -> bool:
        """Send what is pending, close the child's input and wait for it, `budget_s` in all."""
        process = self._process
        if process is None:
            return True
        deadline = time.monotonic() + budget_s
        self._pending_to_frames()
        while self._frames and time.monotonic() < deadline and process.poll() is None:
            select.select([], [self._stdin_fd], [], max(deadline - time.monotonic(), 0))
            if not self._write_frames():
                break
        unsent = sum(count for _, count in self._frames)
        if process.stdin:
            process.stdin.close()
        self._process = None
        try:
            process.wait(max(deadline - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            log.warning("OpenTelemetry export did not finish within %.1fs at exit; the rest is dropped.", budget_s)
            return False
        if self._relay_thread is not None:
            self._relay_thread.join(max(deadline - time.monotonic(), 0.1))  # the child's last log lines
        if unsent:
            log.warning("genai: %d calls could not be handed to the telemetry process at exit.", unsent)
        return process.returncode == 0 and not unsent

    # --- the usage summary and prices, kept in the child ---------------------------------

    def use_prices(self, prices: PriceTable) -> None:
        """The table the child prices calls with (the addon's genai_prices)."""
        self._prices = prices
        self._send(("prices", prices))

    def summary_table(self) -> str | None:
        """The child's usage summary: as of its last pause in traffic, at most a second old."""
        return self._summary

    def reset_summary(self) -> None:
        self._summary = None
        self._send(("reset",))

    # --- the hot path --------------------------------------------------------------------

    def record_call(self, call: FinishedCall, *, legacy_metrics: bool, legacy_completion_id: bool) -> None:
        """Queue one finished call; it reaches the child within `FLUSH_INTERVAL_S`."""
        self._send((CALL, tuple(call), legacy_metrics, legacy_completion_id))

    def _send(self, message: Message) -> None:
        self._pending.append(message)
        if len(self._pending) >= MAX_BATCH:
            self.flush()
        elif not self._flush_scheduled:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no event loop (tests, scripts): send at once
                self.flush()
                return
            self._flush_scheduled = True
            loop.call_later(FLUSH_INTERVAL_S, self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        try:
            self.flush()
        except Exception as error:  # a timer callback must not take mitmproxy's loop down
            log.warning("genai: telemetry flush failed (%s: %s).", type(error).__name__, error)
        if self._frames and not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_later(FLUSH_INTERVAL_S, self._scheduled_flush)

    def flush(self) -> None:
        """Write what is pending to the child, as far as its pipe takes it without blocking."""
        if self._process is None:
            self._pending.clear()
            return
        self._pending_to_frames()
        if not self._write_frames():
            self._restart()

    def _pending_to_frames(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        calls = sum(message[0] == CALL for message in batch)
        over_bound = self._buffered_bytes > MAX_BUFFERED_BYTES
        if over_bound and calls:
            self.dropped += calls
            if not self._dropping:
                self._dropping = True
                log.warning(
                    "genai: the telemetry process is not keeping up; calls are dropped until it does "
                    "(traffic is unaffected)."
                )
            # Prices and summary resets still go: they are few, and losing one would go unnoticed.
            batch, calls = [message for message in batch if message[0] != CALL], 0
            if not batch:
                return
        elif self._dropping and not over_bound:
            self._dropping = False
            log.info("genai: the telemetry process keeps up again; %d calls were dropped so far.", self.dropped)
        frame = encode_batch(batch)
        self._frames.append((frame, calls))
        self._buffered_bytes += len(frame)

    def _write_frames(self) -> bool:
        """Write whole frames while the pipe takes them; False when the child is gone."""
        while self._frames:
            frame = self._frames[0][0]
            try:
                written = os.write(self._stdin_fd, memoryview(frame)[self._sent_of_first :])
            except BlockingIOError:
                return True
            except OSError:  # BrokenPipeError: the child is gone
                return False
            self._sent_of_first += written
            if self._sent_of_first < len(frame):
                return True
            self._frames.popleft()
            self._buffered_bytes -= len(frame)
            self._sent_of_first = 0
        return True


_instance: Recorder | None = None
_instance_lock = threading.Lock()


def get_recorder() -> Recorder:
    """The process-wide telemetry process, started on first use; raises TelemetryStartError.

    Kept here, in a module mitmproxy does not re-import on a script reload, so a reload keeps
    the child and its cumulative metrics. Its owner calls `shutdown()` when mitmdump exits.
    """
    global _instance
    with _instance_lock:
        if _instance is None:
            process = TelemetryProcess()
            process.start()
            _instance = process
        return _instance
