"""mitmdump's side of the telemetry process: start it, feed it finished calls, restart it.

Why a process: in mitmdump's own process the OpenTelemetry SDK cost about a quarter of the
proxy's throughput. Each measurement costs microseconds of attribute handling, and encoding
spans on the exporter thread holds the GIL that mitmproxy's event loop needs (BENCHMARKS.md has
the profile). Here the hooks only append a finished call (a `wire.call.Call`, whose bodies may
still be unparsed) to a list. Every `FLUSH_INTERVAL_S` (or `MAX_BATCH` messages) the list is
pickled once and written to the child's stdin without blocking. The child (`telemetry_child.py`)
parses what is left, prices, records, keeps the usage summary and exports, on an otherwise idle core.

- Never blocks the event loop: the pipe is non-blocking; what does not fit waits in a
  `FrameQueue` of at most `MAX_BUFFERED_BYTES` and goes out with the next flush. Beyond that,
  calls are dropped and counted (one warning per episode), never queued without bound.
- Survives the child: if it dies, it is started again (at most every `RESTART_INTERVAL_S`) and one
  warning says so. Its cumulative metrics then start from zero under a new start time, which
  metric backends treat as a counter reset.
- The child's replies (log records, usage summaries, its start-up status, the description of each
  shown call) come back in frames of their own on a pipe of their own: log records are logged here,
  so they appear in mitmdump's output and mitmweb's event log; descriptions go to
  `on_description` (the addon's `presentation.ShownCalls`). Its stdout and stderr are mitmdump's:
  the SDK's console exporters print there.
- Never misreads: mitmproxy reloads `addon.py` but not the modules it imports, so a child started
  later (a restart) may run changed files. The child gets `schema_version()` of mitmdump's
  classes and refuses to start when its own differ (restart mitmdump to load the changed files).
  Records are pickled by field name besides (`wire.records.pickled_by_name`), messages and replies
  are dataclasses (pickled by name too): no value can land in another field.
- The child ignores SIGINT and exits when its stdin closes, also when mitmdump is killed.
  `shutdown` flushes and waits at most `SHUTDOWN_BUDGET_S` in all.

This module imports no OpenTelemetry: mitmdump's process does not load the SDK at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import hashlib
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import IO, Any, Protocol

import wire.call
import wire.content
import wire.describe
import wire.headers
import wire.records
import wire.socket
from errors import UnexpectedErrors
from wire.agents import DEFAULT_SESSION_IDLE_S
from wire.call import Call, SocketRecord
from wire.describe import Description

log = logging.getLogger("genai")

CHILD_SCRIPT = Path(__file__).with_name("telemetry_child.py")
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
# How often the reply thread looks whether mitmproxy's loop may take its pipe over.
HANDOVER_CHECK_S = 0.05
READ_SIZE = 1 << 16
# The child sends the usage summary when its input pauses this long, or at least this often.
SUMMARY_PAUSE_S = 0.1
SUMMARY_INTERVAL_S = 1.0


# --- the pipe protocol: batches of messages down, reply lines up ---------------------------


# genai_metric_attribution: the client label on the token-usage and cost metrics, and the masked key too.
ATTRIBUTIONS = ("none", "client", "client+key")

# The messages down the pipe. A finished `Call` is a message of its own: one is pickled per call on
# mitmproxy's event loop, and a wrapper around it cost as much again. The options it is recorded
# with (`MetricOptions`) come before it.


@dataclass(frozen=True)
class MetricOptions:
    """Record the following calls with these options (the addon's genai_legacy_*,
    genai_metric_attribution and genai_session_idle)."""

    legacy_metrics: bool = True
    legacy_completion_id: bool = False
    attribution: str = "none"  # one of ATTRIBUTIONS: what the token-usage and cost metrics also carry
    session_idle_s: float = DEFAULT_SESSION_IDLE_S  # an agent session ends after this long without a call


@dataclass(frozen=True)
class UsePrices:
    """Price calls with these prices from now on: the user's price file over genai-prices' data,
    and where to fetch updates of that data (the addon's genai_prices and genai_prices_update).
    Paths, not a table: mitmdump's process never imports genai-prices for itself (its classes are
    some 11,000 objects that every full garbage collection there would walk; BENCHMARKS.md)."""

    user_file: str | None = None
    update_url: str | None = None


@dataclass(frozen=True)
class ResetSummary:
    """Start the usage summary anew."""


Message = Call | SocketRecord | MetricOptions | UsePrices | ResetSummary


def schema_version(modules: Sequence[ModuleType] | None = None) -> str:
    """A fingerprint of the fields of every record class the pipe carries, as this process has
    them loaded (`modules`: where they are defined; default: the wire records and this module)."""
    shapes = []
    own = (wire.records, wire.call, wire.content, wire.describe, wire.headers, wire.socket, sys.modules[__name__])
    for module in modules or own:
        for name, value in sorted(vars(module).items()):
            if not isinstance(value, type) or value.__module__ != module.__name__:
                continue
            if not dataclasses.is_dataclass(value):
                continue
            members = [f"{member.name}:{member.type}" for member in dataclasses.fields(value)]
            shapes.append(f"{module.__name__}.{name}({','.join(members)})")
    return hashlib.sha256("\n".join(shapes).encode()).hexdigest()[:16]


def encode_batch(batch: Sequence[Message] | Sequence[Reply]) -> bytes:
    """One frame of messages (down) or replies (up): their pickle, after its length."""
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


def read_batch(stream: IO[bytes]) -> list[Any] | None:
    """The next frame's messages or replies, or None at the end of the input."""
    header = _read_exactly(stream, FRAME_HEADER.size)
    if len(header) < FRAME_HEADER.size:
        return None
    (length,) = FRAME_HEADER.unpack(header)
    payload = _read_exactly(stream, length)
    if len(payload) < length:
        return None
    batch: list[Any] = pickle.loads(payload)  # our own process's pipe: trusted
    return batch


class FrameReader:
    """Frames cut from a byte stream as it arrives in pieces (a non-blocking pipe)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[list[Any]]:
        """The batches of the frames `data` completes."""
        self._buffer += data
        batches, start = [], 0
        while len(self._buffer) - start >= FRAME_HEADER.size:
            (length,) = FRAME_HEADER.unpack_from(self._buffer, start)
            end = start + FRAME_HEADER.size + length
            if len(self._buffer) < end:
                break
            batches.append(pickle.loads(self._buffer[start + FRAME_HEADER.size : end]))  # our own child: trusted
            start = end
        del self._buffer[:start]
        return batches


# The replies up the reply pipe, in frames as the messages: typed values, no text to parse.


@dataclass(frozen=True)
class LogReply:
    """A log record of the child's, for mitmdump's log."""

    level: int
    message: str


@dataclass(frozen=True)
class SummaryReply:
    """The child's usage summary (None: no calls yet)."""

    table: str | None


@dataclass(frozen=True)
class StatusReply:
    """Sent once at start-up: ready, or the reason the child refuses its configuration."""

    error: str | None = None


@dataclass(frozen=True)
class DescriptionReply:
    """Shown calls, parsed and priced: for their flows' comments and marks and the log lines. One
    reply per batch of calls: each reply wakes mitmproxy's event loop once."""

    descriptions: tuple[Description, ...]


Reply = LogReply | SummaryReply | StatusReply | DescriptionReply


class FrameQueue:
    """Encoded batches the pipe did not take yet, with their number of calls and their byte count.

    The first frame may be partly written already; only `drop_partial` may remove it then.
    """

    def __init__(self) -> None:
        self._frames: deque[tuple[bytes, int]] = deque()
        self._written_of_first = 0
        self.bytes = 0

    def __bool__(self) -> bool:
        return bool(self._frames)

    @property
    def frames(self) -> tuple[tuple[bytes, int], ...]:
        """The frames waiting, each with its number of calls."""
        return tuple(self._frames)

    @property
    def partly_written(self) -> bool:
        """Has the pipe taken part of the first frame?"""
        return self._written_of_first > 0

    def calls(self) -> int:
        return sum(calls for _, calls in self._frames)

    def append(self, frame: bytes, calls: int) -> None:
        self._frames.append((frame, calls))
        self.bytes += len(frame)

    def prepend(self, frame: bytes, calls: int) -> None:
        """Put a frame first (the settings a restarted child is sent again); nothing may be partly written."""
        assert not self._written_of_first
        self._frames.appendleft((frame, calls))
        self.bytes += len(frame)

    def drop_partial(self) -> int:
        """Forget a partly written first frame (its reader died: a new one cannot read the rest);
        returns its number of calls."""
        if not self._written_of_first:
            return 0
        frame, calls = self._frames.popleft()
        self.bytes -= len(frame)
        self._written_of_first = 0
        return calls

    def write_to(self, fd: int) -> bool:
        """Write whole frames while `fd` takes them without blocking; False when its reader is gone."""
        while self._frames:
            frame = self._frames[0][0]
            try:
                written = os.write(fd, memoryview(frame)[self._written_of_first :])
            except BlockingIOError:
                return True
            except OSError:  # BrokenPipeError: the child is gone
                return False
            self._written_of_first += written
            if self._written_of_first < len(frame):
                return True
            self._frames.popleft()
            self.bytes -= len(frame)
            self._written_of_first = 0
        return True


# --- the parent's side ---------------------------------------------------------------------


class TelemetryStartError(RuntimeError):
    """The telemetry process refused its configuration or did not start."""


class TelemetrySink(Protocol):
    """Where the addon's finished calls go: a `TelemetryProcess`, or an in-process
    `telemetry.Telemetry` in tests."""

    def record_call(self, call: Call, options: MetricOptions) -> None: ...

    def record_session(self, record: SocketRecord) -> None: ...

    def use_prices(self, prices: UsePrices) -> None: ...

    def summary_table(self) -> str | None: ...

    def reset_summary(self) -> None: ...

    def shutdown(self, budget_s: float = SHUTDOWN_BUDGET_S) -> bool: ...

    # Where descriptions of shown calls (`Call.description_id`) go, possibly from another thread.
    on_description: Callable[[Sequence[Description]], None] | None


class TelemetryProcess:
    """The parent's side: starts the child, batches messages, relays its replies."""

    def __init__(
        self,
        command: Sequence[str] | None = None,
        schema: str | None = None,
        *,
        max_batch: int = MAX_BATCH,
        max_buffered_bytes: int = MAX_BUFFERED_BYTES,
        restart_interval_s: float = RESTART_INTERVAL_S,
        flush_interval_s: float = FLUSH_INTERVAL_S,
    ) -> None:
        """`schema`: the records' `schema_version()` the child must have (default: this process's).
        The limits are the module's constants unless given (tests; the benchmark's part 7, which
        flushes less often under valgrind to hand over batches as large as at full speed)."""
        self.command = list(command or [sys.executable, str(CHILD_SCRIPT)])
        self.schema = schema or schema_version()
        self.max_batch = max_batch
        self.flush_interval_s = flush_interval_s
        self.max_buffered_bytes = max_buffered_bytes
        self.restart_interval_s = restart_interval_s
        self.dropped = 0  # calls lost to a stalled or dead child
        self.unencodable = 0  # messages that could not be pickled, each dropped alone
        self.errors = UnexpectedErrors(log)
        self._pending: list[Message] = []
        self._prices: UsePrices | None = None  # sent again to a restarted child
        self._options: MetricOptions | None = None  # the ones the child has, as last sent
        self._summary: str | None = None  # the child's latest usage summary
        # Where the child's descriptions of shown calls go: called on the reply thread until
        # mitmproxy's loop reads the replies (`_relay`), then on the loop.
        self.on_description: Callable[[Sequence[Description]], None] | None = None
        self.queue = FrameQueue()
        self._flush_scheduled = False
        self._dropping = False
        self._process: subprocess.Popen[bytes] | None = None
        self._stdin_fd = -1
        self._started_at = 0.0
        self._status: list[StatusReply] = []
        self._status_read = threading.Event()
        self._relay_thread: threading.Thread | None = None
        # mitmproxy's loop, once a message was queued on it: the replies are read there from then on.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_reads: tuple[int, FrameReader] | None = None  # the reply pipe the loop reads

    @property
    def pending(self) -> tuple[Message, ...]:
        """The messages waiting for the next flush."""
        return tuple(self._pending)

    @property
    def pid(self) -> int | None:
        """The running child's process id (None before the first start and after shutdown)."""
        return self._process.pid if self._process is not None else None

    # --- lifecycle -----------------------------------------------------------------------

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start the child and wait for it to accept its configuration; raises TelemetryStartError."""
        self._spawn(announce_failure=False)
        if not self._status_read.wait(timeout_s):
            self._kill()
            raise TelemetryStartError(f"the telemetry process did not start within {timeout_s:.0f}s")
        status = self._status[0] if self._status else StatusReply("it exited at start-up (see the lines above)")
        if status.error is not None:
            self._kill()
            raise TelemetryStartError(status.error)

    def _spawn(self, announce_failure: bool) -> None:
        self._status = []
        self._status_read = threading.Event()
        child_budget = f"{SHUTDOWN_BUDGET_S * CHILD_SHUTDOWN_SHARE:.2f}"
        replies_read, replies_write = os.pipe()
        try:
            process = subprocess.Popen(
                [*self.command, str(replies_write), child_budget, self.schema],
                stdin=subprocess.PIPE,
                close_fds=True,
                pass_fds=(replies_write,),
            )
        finally:
            os.close(replies_write)  # the child holds its copy: the pipe ends when the child does
        assert process.stdin is not None
        self._stdin_fd = process.stdin.fileno()
        os.set_blocking(self._stdin_fd, False)
        set_pipe_size = getattr(fcntl, "F_SETPIPE_SZ", None)  # Linux only
        if set_pipe_size is not None:
            with contextlib.suppress(OSError):  # a smaller pipe only means more waiting in the queue
                fcntl.fcntl(self._stdin_fd, set_pipe_size, PIPE_SIZE)
        self._process = process
        self._started_at = time.monotonic()
        self._start_relay(replies_read, FrameReader(), announce_failure)

    def _start_relay(self, fd: int, frames: FrameReader, announce_failure: bool) -> None:
        self._relay_thread = threading.Thread(
            target=self._relay,
            args=(fd, frames, self._status, self._status_read, announce_failure),
            name="genai-telemetry-replies",
            daemon=True,
        )
        self._relay_thread.start()

    def _relay(
        self,
        fd: int,
        frames: FrameReader,
        status: list[StatusReply],
        status_read: threading.Event,
        announce_failure: bool,
    ) -> None:
        """Read the child's replies on a thread of their own: its start-up status, and all of them
        where no event loop runs (tests, scripts). Once the child has started and messages are
        queued on mitmproxy's loop, the loop reads the pipe instead (`_read_on_loop`): this thread,
        woken by each reply, cost mitmdump a third more CPU per request where calls are shown,
        though its own work was microseconds (BENCHMARKS.md)."""
        while True:
            loop = self._loop
            if loop is not None and status_read.is_set() and not loop.is_closed():
                self._loop_reads = fd, frames  # from here on the loop's, or taken back by `shutdown`
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: `shutdown` reads it
                    loop.call_soon_threadsafe(self._read_on_loop, fd, frames, status, status_read)
                return
            if not select.select([fd], [], [], HANDOVER_CHECK_S)[0]:
                continue
            data = os.read(fd, READ_SIZE)
            if not data:
                break
            for batch in frames.feed(data):
                self._dispatch(batch, status, status_read, announce_failure)
        os.close(fd)
        status_read.set()

    def _read_on_loop(
        self, fd: int, frames: FrameReader, status: list[StatusReply], status_read: threading.Event
    ) -> None:
        if self._loop is None or self._loop_reads is None or self._loop_reads[0] != fd:
            return  # `shutdown` took it back first
        os.set_blocking(fd, False)
        self._loop.add_reader(fd, self._readable, fd, frames, status, status_read)

    def _readable(self, fd: int, frames: FrameReader, status: list[StatusReply], status_read: threading.Event) -> None:
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return
        if not data:
            self._stop_reading_on_loop(fd)
            return
        try:
            for batch in frames.feed(data):
                self._dispatch(batch, status, status_read, announce_failure=True)
        except Exception:  # a reader callback must not take mitmproxy's loop down
            self.errors.report("reading the telemetry process's replies", "the rest are read on")

    def _stop_reading_on_loop(self, fd: int) -> None:
        if self._loop is not None:
            self._loop.remove_reader(fd)  # a closed loop has no readers left: nothing to do
        os.close(fd)
        if self._loop_reads is not None and self._loop_reads[0] == fd:
            self._loop_reads = None

    def _read_on_a_thread_again(self) -> None:
        """`shutdown` blocks the loop that reads the replies, while the child may still write
        some (its last log lines, the summary): a thread reads them to the end instead."""
        loop, self._loop = self._loop, None
        reading, self._loop_reads = self._loop_reads, None
        if reading is None:
            return
        fd, frames = reading
        if loop is not None:
            loop.remove_reader(fd)
        os.set_blocking(fd, True)
        self._start_relay(fd, frames, announce_failure=False)

    def _dispatch(
        self, batch: list[Any], status: list[StatusReply], status_read: threading.Event, announce_failure: bool
    ) -> None:
        for reply in batch:
            match reply:
                case LogReply(level, message):
                    log.log(level, "genai: %s", message)  # the one prefix of the addon's lines
                case SummaryReply(table):
                    self._summary = table
                case DescriptionReply(descriptions) if self.on_description is not None:
                    self.on_description(descriptions)
                case StatusReply() if not status_read.is_set():
                    status.append(reply)
                    status_read.set()
                    if announce_failure and reply.error is not None:
                        log.error("genai: the telemetry process did not start again: %s", reply.error)

    def _kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def _restart(self) -> None:
        """The child is gone: start another, at most every RESTART_INTERVAL_S; until then, queue."""
        assert self._process is not None
        if time.monotonic() - self._started_at < self.restart_interval_s:
            return
        log.warning(
            "genai: the telemetry process exited (exit code %s); starting it again. Its metrics restart from zero.",
            self._process.poll(),
        )
        self._kill()
        if self._process.stdin:
            self._process.stdin.close()
        self.dropped += self.queue.drop_partial()
        self._spawn(announce_failure=True)
        settings: list[Message] = [self._prices] if self._prices is not None else []
        if self._options is not None:
            settings.append(self._options)
        if settings:
            self.queue.prepend(encode_batch(settings), 0)

    def shutdown(self, budget_s: float = SHUTDOWN_BUDGET_S) -> bool:
        """Send what is pending, close the child's input and wait for it, `budget_s` in all."""
        process = self._process
        if process is None:
            return True
        deadline = time.monotonic() + budget_s
        self._read_on_a_thread_again()
        self._pending_to_frames()
        while self.queue and time.monotonic() < deadline and process.poll() is None:
            select.select([], [self._stdin_fd], [], max(deadline - time.monotonic(), 0))
            if not self.queue.write_to(self._stdin_fd):
                break
        unsent = self.queue.calls()
        if process.stdin:
            process.stdin.close()
        self._process = None
        try:
            process.wait(max(deadline - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            log.warning(
                "genai: OpenTelemetry export did not finish within %.1fs at exit; the rest is dropped.", budget_s
            )
            return False
        if self._relay_thread is not None:
            self._relay_thread.join(max(deadline - time.monotonic(), 0.1))  # the child's last log lines
        if unsent:
            log.warning("genai: %d calls could not be handed to the telemetry process at exit.", unsent)
        return process.returncode == 0 and not unsent

    # --- the usage summary and prices, kept in the child ---------------------------------

    def use_prices(self, prices: UsePrices) -> None:
        """The prices the child prices calls with (the addon's genai_prices and _update)."""
        self._prices = prices
        self._send(prices)

    def summary_table(self) -> str | None:
        """The child's usage summary: as of its last pause in traffic, at most a second old."""
        return self._summary

    def reset_summary(self) -> None:
        self._summary = None
        self._send(ResetSummary())

    # --- the hot path --------------------------------------------------------------------

    def record_session(self, record: SocketRecord) -> None:
        """Queue one closed WebSocket session (its span); after its operations, as it closed last."""
        self._send(record)

    def record_call(self, call: Call, options: MetricOptions) -> None:
        """Queue one finished call; it reaches the child within `flush_interval_s`."""
        if options is not self._options and options != self._options:
            self._options = options
            self._send(options)
        self._send(call)

    def _send(self, message: Message) -> None:
        self._pending.append(message)
        if len(self._pending) >= self.max_batch:
            self.flush()
        elif not self._flush_scheduled:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no event loop (tests, scripts): send at once
                self.flush()
                return
            self._loop = loop  # mitmproxy's: the child's replies are read on it from now on (`_relay`)
            self._flush_scheduled = True
            loop.call_later(self.flush_interval_s, self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        try:
            self.flush()
        except Exception:  # a timer callback must not take mitmproxy's loop down
            self.errors.report("a flush to the telemetry process", "its calls wait for the next one")
        if self.queue and not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_later(self.flush_interval_s, self._scheduled_flush)

    def flush(self) -> None:
        """Write what is pending to the child, as far as its pipe takes it without blocking."""
        if self._process is None:
            self._pending.clear()
            return
        self._pending_to_frames()
        if not self.queue.write_to(self._stdin_fd):
            self._restart()

    def _pending_to_frames(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        calls = sum(isinstance(message, Call) for message in batch)
        over_bound = self.queue.bytes > self.max_buffered_bytes
        if over_bound and calls:
            self.dropped += calls
            if not self._dropping:
                self._dropping = True
                log.warning(
                    "genai: the telemetry process is not keeping up; calls are dropped until it does "
                    "(traffic is unaffected)."
                )
            # Options, prices and summary resets still go: they are few, and losing one would go unnoticed.
            batch, calls = [message for message in batch if not isinstance(message, Call)], 0
            if not batch:
                return
        elif self._dropping and not over_bound:
            self._dropping = False
            log.info("genai: the telemetry process keeps up again; %d calls were dropped so far.", self.dropped)
        try:
            frame = encode_batch(batch)
        except Exception:
            batch = self._encodable(batch)
            frame, calls = encode_batch(batch), sum(isinstance(message, Call) for message in batch)
        self.queue.append(frame, calls)

    def _encodable(self, batch: list[Message]) -> list[Message]:
        """The batch without the messages that cannot be pickled (a bug in a record, not in the
        traffic): each is left out alone and counted."""
        encodable: list[Message] = []
        for message in batch:
            try:
                pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception:
                self.unencodable += 1
                self.errors.report(
                    f"sending a {type(message).__name__} to the telemetry process",
                    "it is dropped, the rest of its batch is sent",
                )
            else:
                encodable.append(message)
        return encodable


def started_process() -> TelemetrySink:
    process = TelemetryProcess()
    process.start()
    return process


class ProcessWideTelemetry:
    """The process-wide telemetry sink, started on first use (`start`; raises TelemetryStartError).

    The one instance (`telemetry_process`) lives here, in a module mitmproxy does not re-import
    on a script reload, so a reload keeps the child and its cumulative metrics. Its owner calls
    `shutdown()` when mitmdump exits.
    """

    def __init__(self, start: Callable[[], TelemetrySink] = started_process) -> None:
        self._start = start
        self._sink: TelemetrySink | None = None
        self._lock = threading.Lock()

    def __call__(self) -> TelemetrySink:
        with self._lock:
            if self._sink is None:
                self._sink = self._start()
            return self._sink


telemetry_process = ProcessWideTelemetry()
