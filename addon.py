"""mitmproxy addon: LLM API traffic (OpenAI's, Anthropic's, Google's and AWS Bedrock's APIs) →
OpenTelemetry metrics and spans.

Run it with `mitmdump -s addon.py` (or mitmweb). It only observes, with one deliberate,
invisible exception: streamed OpenAI chat completions that did not ask for usage get
`stream_options.include_usage` added upstream, and the extra usage chunk is removed again
before the client sees it (option `genai_stream_usage`).

Layers, one direction: this file is the mitmproxy glue (hooks, options, per-flow bookkeeping);
`wire` reads each wire API into plain records; `telemetry` owns OpenTelemetry and runs in a
child process that `telemetry_process` starts and feeds.
"""

import asyncio
import contextlib
import dataclasses
import functools
import gc
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Optional

from mitmproxy import command, contentviews, ctx, exceptions, http
from mitmproxy.addonmanager import Loader
from mitmproxy.flow import Error as FlowError

import wire
from errors import UnexpectedErrors
from presentation import USAGE_REMOVED, LLMStreamView, ShownCalls
from settings import CAPTURE_CONTENT_VARIABLE, STREAM_STORE_LIMIT, Settings
from summary import NO_CALLS
from telemetry_process import ATTRIBUTIONS, TelemetrySink, TelemetryStartError, telemetry_process
from wire import mcp
from wire.agents import DEFAULT_SESSION_IDLE_S, is_session_header
from wire.call import Call, Endpoint, Origin, SocketRecord, stream_reader
from wire.content import MAX_PART_CHARS, CapturedContent
from wire.headers import MAX_TRACE_HEADER_LENGTH, REQUEST_HEADERS, TRACE_HEADERS, parse_traceparent
from wire.hosts import DEFAULT_HOSTS, HostMatcher
from wire.records import ApiRequest
from wire.secrets import CREDENTIAL_HEADERS
from wire.socket import Operation, SocketSession
from wire.stream import EventStream, FilteredStream, ReceivedStream
from wire.values import LARGE_BODY

log = logging.getLogger("genai")


# The per-flow bookkeeping lives on the flow object itself, not in the addon instance: when
# mitmproxy reloads this script, flows already in flight are finished by the new instance.
# mitmproxy neither serializes nor copies such attributes, so saving flows (-w, mitmweb) is safe.
# (No quoted annotations in this file's dataclasses: mitmproxy loads it outside sys.modules.)
IN_FLIGHT_ATTRIBUTE = "_genai_in_flight"
SOCKET_ATTRIBUTE = "_genai_socket"
# Incremental formats that mitmproxy holds back to the end unless a flow is streamed.
INCREMENTAL_TYPES = ("text/event-stream", "application/x-ndjson", "application/vnd.amazon.eventstream")


@dataclass
class StreamTap:
    """The `flow.response.stream` callable: hands every chunk on at once.

    It keeps each chunk and its time (`received`), for the telemetry process to read. Where the
    addon asked the upstream for usage, the extra it added is taken out of each chunk before the
    client gets it (`filtering`: `WireApi.usage_removed`, which reads as little as it can). A
    stream past LARGE_BODY is read here from then on (`reading`: what was kept first, then each
    chunk as it passes) rather than held whole (`passed_on_unparsed`). Any exception turns the tap
    into a plain pass-through: the client's stream is never broken by the addon.
    """

    started: float  # time.monotonic() when the request went upstream: chunk times count from it
    make_reader: Callable[[], EventStream]  # the stream that reads the body here, past LARGE_BODY
    errors: UnexpectedErrors
    received: ReceivedStream | None  # None once read here
    filtering: FilteredStream | None = None
    reading: EventStream | None = None
    failed: bool = False
    # What the client got, kept for mitmweb up to `store_limit` bytes (None: not kept).
    stored: bytearray | None = None
    store_limit: int = 0

    def __call__(self, chunk: bytes) -> bytes | list[bytes]:
        out = self._forward(chunk)
        if self.stored is not None:
            self.stored += out if isinstance(out, bytes) else b"".join(out)
            if len(self.stored) > self.store_limit:
                self.stored = None
        return out

    def _forward(self, chunk: bytes) -> bytes | list[bytes]:
        if self.failed:
            return chunk
        try:
            if chunk:
                self._read(chunk, time.monotonic() - self.started)
            return self.filtering.filter(chunk) if self.filtering is not None else chunk
        except Exception:
            self.failed = True
            self.errors.report("reading a stream", "the rest of that stream is passed on unread")
            return chunk

    def _read(self, chunk: bytes, at_s: float) -> None:
        if self.reading is not None:
            self.reading.observe(chunk, at_s)
            return
        assert self.received is not None
        self.received.add(chunk, at_s)
        if not passed_on_unparsed(self.received.body):
            self.reading, received, self.received = self.make_reader(), self.received, None
            for kept, kept_at_s in received.chunks():
                self.reading.observe(kept, kept_at_s)

    def hand_over(self, call: Call, now: float) -> None:
        """Give the finished `call` its stream: as received, for the telemetry process to read, or
        as read here."""
        at_s = now - self.started
        if self.reading is not None:
            self.reading.finish(at_s)  # a last unterminated event may still count
            call.take_stream(self.reading.accumulator)
        elif self.received is not None:
            self.received.ended_s = at_s
            call.response_stream = self.received


@dataclass
class InFlight:
    """Bookkeeping for one observed flow between its `request` and `response`/`error` hooks."""

    origin: Origin
    endpoint: Endpoint
    request: ApiRequest | None  # parsed here, or None: `request_body` is for the telemetry process
    request_body: bytes | None
    started: float  # time.monotonic() when the request went upstream
    started_ns: int  # the same moment on the wall clock, for the span
    tap: StreamTap | None = None  # the response streams
    content: CapturedContent | None = None  # the prompt, when content capture is on
    # `picked_headers` of the response, read once in `responseheaders`, and the response they are of.
    response_headers: dict[str, str] | None = None
    response_of_headers: http.Response | None = None


# The header fields the hooks read, by lower-case name; `picked_headers` decodes only these.
RECORDED_REQUEST_HEADERS = (*REQUEST_HEADERS, *wire.REGISTRY.request_headers)
REQUEST_FIELDS = {name.encode(): name for name in ("content-encoding", *CREDENTIAL_HEADERS, *RECORDED_REQUEST_HEADERS)}
RECORDED_REQUEST_NAMES = frozenset(RECORDED_REQUEST_HEADERS)
REQUEST_FIELD_NAMES = frozenset(REQUEST_FIELDS.values())
RESPONSE_FIELDS = {
    name.encode(): name for name in ("content-type", "content-encoding", *wire.REGISTRY.response_headers)
}


MCP_ENDPOINT = Endpoint(mcp.API)


def picked_headers(headers: http.Headers, names: dict[bytes, str], any_session: bool = False) -> dict[str, str]:
    """The fields named in `names`, as a dict with lower-case names (the first of repeated ones wins),
    and with `any_session` every `x-…-session-id` field too (`wire.agents`' generic rule).

    mitmproxy's `Headers.get` lowercases and compares every field on each lookup, about 3 µs on a
    typical response, and a response from OpenAI or Anthropic carries twenty fields or more: the hooks read
    the fields once, and decode only those they use. Most names arrive in lower case already
    (HTTP/2 requires it), so only the others are lowercased.
    """
    picked: dict[str, str] = {}
    for raw_name, value in headers.fields:
        name = names.get(raw_name)
        if name is None:
            lowered = raw_name if raw_name.islower() else raw_name.lower()
            if lowered is not raw_name:
                name = names.get(lowered)
            # The suffix first, in place: most fields are not session fields, and a call costs more.
            if name is None and any_session and lowered.endswith(b"-session-id") and is_session_header(lowered):
                name = lowered.decode("ascii", "replace")
        if name is not None and name not in picked:
            picked[name] = value.decode("utf-8", "surrogateescape")
    return picked


def body_of(message: http.Message, headers: dict[str, str]) -> bytes | None:
    """The decoded body; `Message.get_content` alone would look up content-encoding once more."""
    return message.get_content(strict=False) if "content-encoding" in headers else message.raw_content


def recorded_request_headers(headers: dict[str, str]) -> dict[str, str]:
    """The request headers a call records, of those `picked_headers` found: `RECORDED_REQUEST_HEADERS`,
    and those it found by the generic session rule (the names REQUEST_FIELDS does not list); a
    trace header only if not oversized."""
    return {
        name: value
        for name, value in headers.items()
        if value
        and (name in RECORDED_REQUEST_NAMES or name not in REQUEST_FIELD_NAMES)
        and (name not in TRACE_HEADERS or len(value) <= MAX_TRACE_HEADER_LENGTH)
    }


def masked_key(endpoint: Endpoint, headers: dict[str, str], path: str) -> str:
    """The request's credential as its API's vendor masks it (the path's query may hold a key)."""
    return endpoint.api.vendor.masked_key(headers, path.partition("?")[2], wire.REGISTRY.key_masker)


def passed_on_unparsed(body: bytes | bytearray | None) -> bool:
    """May this body go to the telemetry process as it is? Not a large one: parsing it here reads
    only its edges (`wire.values.LARGE_BODY`), cheaper than copying megabytes down the pipe."""
    return body is None or len(body) <= LARGE_BODY


@dataclass
class OpenSocket:
    """Bookkeeping for one metered WebSocket between `websocket_start` and `websocket_end`."""

    origin: Origin  # the upgrade request's
    # Its operations': the same without the trace context (each names the session's span as parent).
    operation_origin: Origin
    endpoint: Endpoint
    session: SocketSession
    started: float
    started_ns: int
    # The session span's ids, chosen now: its operations are recorded before it, as its children.
    trace_id: int
    span_id: int
    parent_span_id: int | None
    operations: int = 0


def in_flight(flow: http.HTTPFlow) -> InFlight | None:
    """The bookkeeping of an observed flow, also one seen first by a previous load of this script."""
    return getattr(flow, IN_FLIGHT_ATTRIBUTE, None)


def never_raises[F: Callable[..., None]](hook: F) -> F:
    """Telemetry must never break traffic: a failing hook is reported (`errors`) and returns."""

    @functools.wraps(hook)
    def guarded(self: "GenAIMeter", *args: Any, **kwargs: Any) -> None:
        try:
            hook(self, *args, **kwargs)
        except Exception:
            self.errors.report(f"the {hook.__name__} hook", "the flow is unaffected")

    return guarded  # type: ignore[return-value]


def _option(name: str, default: Any) -> Any:
    """An option another addon owns (mitmdump's flow_detail, the proxy's listen_host, ...), which
    may be absent where mitmproxy runs without that addon."""
    return getattr(ctx.options, name, default)


def classify_flow_error(message: str, had_response: bool) -> str:
    """A low-cardinality `error.type` for mitmproxy's `error` hook."""
    text = message.lower()
    if "client" in text or "cancel" in text:
        return "client_aborted"
    if message == FlowError.KILLED_MESSAGE:
        return "killed"
    return "upstream_aborted" if had_response else "connection_error"


class GenAIMeter:
    """The addon: meters the LLM API calls on `genai_hosts` and hands each finished one to telemetry."""

    def __init__(self, telemetry: Callable[[], TelemetrySink] = telemetry_process) -> None:
        """`telemetry`: where finished calls go, asked once in `load` (the process-wide telemetry
        process; an in-process `telemetry.Telemetry` in tests)."""
        self._telemetry_sink = telemetry
        self.settings = Settings()  # the options, parsed in `configure`
        self.hosts = HostMatcher(self.settings.rules)  # the metered host rule of a (host, port)
        self.mcp_hosts = HostMatcher(self.settings.mcp_rules)  # genai_mcp_hosts'
        self.telemetry: TelemetrySink | None = None
        self.errors = UnexpectedErrors(log)
        self.shown = ShownCalls()  # the log line and the flow comment of each call
        # mitmproxy is running (the `running` hook came): a bad option value is refused with an
        # OptionsError that keeps the old value; before, at start, it is one error line and mitmproxy
        # exits (its errorcheck addon), instead of the script loader's traceback.
        self.started = False

    def load(self, loader: Loader) -> None:
        # Help texts are single lines: on a script reload mitmproxy keeps an option's value only
        # if its help is unchanged, and it compares the raw text with a stored, cleaned-up copy.
        loader.add_option(
            "genai_hosts",
            Sequence[str],
            DEFAULT_HOSTS,
            (
                "Hosts whose LLM API traffic is metered, as HOST[:PORT][=PROVIDER]; the path decides the "
                "API (/v1/messages: Anthropic's; /chat/completions and others: OpenAI's; "
                "/models/{model}:generateContent: Google's; /model/{id}/converse and /invoke: Bedrock's). HOST "
                "may be a glob (*.example.com); PROVIDER becomes gen_ai.provider.name (default: openai). "
                "Append ;stream_usage=on or ;stream_usage=off to decide per host whether streamed "
                "requests may get stream_options.include_usage (default: on for openai and for Azure "
                "api-versions that accept it). Setting this replaces the default list; to add hosts, use "
                "genai_extra_hosts."
            ),
        )
        loader.add_option(
            "genai_extra_hosts",
            Sequence[str],
            [],
            (
                "More hosts to meter, in the form of genai_hosts, beside genai_hosts (the default list "
                "unless set): tried first, so an entry may also give a default host another provider."
            ),
        )
        loader.add_option(
            "genai_mcp_hosts",
            Sequence[str],
            [],
            (
                "MCP servers to meter, HOST[:PORT] (a glob: *.example.com): every POST to them is read as MCP "
                "over Streamable HTTP. On a metered LLM host, a request with an Mcp-* header or a JSON-RPC body "
                "is read as MCP without this."
            ),
        )
        loader.add_option(
            "genai_prices",
            Optional[str],  # type: ignore[arg-type]  # noqa: UP045 (mitmproxy's option types are typing forms)
            None,
            (
                "A JSON price file over genai-prices' data, for contract prices and local models: "
                '{"providers": {"PROVIDER": {"MODEL": {"input_mtok": USD, "output_mtok": USD, ...}}}, '
                '"models": {...}}, USD per 1M tokens (see the README\'s Cost section).'
            ),
        )
        loader.add_option(
            "genai_prices_update",
            Optional[str],  # type: ignore[arg-type]  # noqa: UP045
            None,
            (
                "A URL of genai-prices' data (e.g. its GitHub data.json) that the telemetry process "
                "fetches hourly. Off by default: the bundled snapshot is used and nothing goes to the network."
            ),
        )
        loader.add_option(
            "genai_stream_usage",
            bool,
            True,
            (
                "Ask the upstream for usage on streamed chat completions that did not ask for it "
                "(stream_options.include_usage), and remove that extra chunk before the client sees it. "
                "Off: such streams record no token counts."
            ),
        )
        loader.add_option(
            "genai_stream_unmetered",
            bool,
            True,
            (
                "Stream every text/event-stream and application/x-ndjson response that is not metered "
                "(other hosts, other APIs) to the client as it arrives, untouched; mitmproxy otherwise "
                "holds such a response back until it ends. Such bodies are then not kept for inspection "
                "unless store_streamed_bodies is set."
            ),
        )
        loader.add_option(
            "genai_capture_content",
            bool,
            False,
            (
                f"Put prompts and completions on spans (gen_ai.input.messages, gen_ai.output.messages, "
                f"gen_ai.system_instructions), each text part cut at {MAX_PART_CHARS} characters. "
                f"Off: no prompt or completion text leaves the proxy. {CAPTURE_CONTENT_VARIABLE}=true also "
                f"turns it on."
            ),
        )
        loader.add_option(
            "genai_metric_attribution",
            str,
            "none",
            (
                "Who spent it, on the token-usage and cost metrics: client adds genai.client (the "
                "User-Agent's product/major version, at most 500 values); client+key adds the masked "
                "API key too (one series per key and client: mind the cardinality)."
            ),
            choices=ATTRIBUTIONS,
        )
        loader.add_option(
            "genai_session_idle",
            int,
            DEFAULT_SESSION_IDLE_S,
            (
                "Seconds without a call after which an agent session (Claude Code's, Codex's, ...) ends: "
                "its invoke_agent span, over the session's calls, is recorded then, or at exit."
            ),
        )
        loader.add_option(
            "genai_legacy_metrics",
            bool,
            True,
            "Also emit the original product's counters (tokens_counter, prompt_tokens, completion_tokens).",
        )
        loader.add_option(
            "genai_legacy_completion_id",
            bool,
            False,
            (
                "Add the chat_completion_id attribute to the legacy counters, as the original product "
                "did. Creates one time series per request: keep it off unless a dashboard needs it."
            ),
        )
        loader.add_option(
            "genai_stream_store_limit",
            int,
            STREAM_STORE_LIMIT,
            (
                "Keep each streamed response, up to this many bytes, where flows are kept (mitmweb, the "
                "console, -w), so that it can be inspected (0: keep none). mitmproxy's "
                "store_streamed_bodies keeps every streamed body whole instead."
            ),
        )
        loader.add_option(
            "genai_gc_freeze",
            bool,
            True,
            (
                "Once mitmproxy runs, take the objects of its start-up out of the cyclic garbage collector's "
                "reach (gc.freeze()), so that each full collection walks only what came later: mitmdump "
                "serves more requests per second, with or without the addon's work (BENCHMARKS.md)."
            ),
        )
        contentviews.add(LLMStreamView)
        try:
            self.telemetry = self._telemetry_sink()
        except TelemetryStartError as error:
            log.error("genai: telemetry is off: %s", error)
        else:
            self.telemetry.on_description = self.shown.arrived  # also after a script reload

    def _check_flows_are_kept(self) -> None:
        """Do flows outlive their call, so that a comment arriving after it is seen? In mitmweb and
        the console (a view), with -w, and with a HAR dump at exit."""
        self.shown.flows_kept = (
            ctx.master.addons.get("view") is not None
            or bool(_option("save_stream_file", None))
            or bool(_option("hardump", None))
        )

    def running(self) -> None:
        self.started = True
        if self.settings.gc_freeze:
            self._apply_gc_freeze()
        self._check_flows_are_kept()  # every addon is loaded now
        with contextlib.suppress(RuntimeError):  # no loop: tests that call the hooks themselves
            self.shown.on_loop(asyncio.get_running_loop())
        listen_host = _option("listen_host", "127.0.0.1")
        if listen_host in ("", "0.0.0.0", "::") and not _option("proxyauth", None):
            log.warning(
                "genai: mitmproxy listens on all interfaces without proxy authentication: anyone who "
                "can reach it can use it and read the traffic. Use --listen-host 127.0.0.1 or --proxyauth."
            )

    def _apply_gc_freeze(self) -> None:
        """Start-up's objects (mitmproxy's, every addon's) live as long as the process; each full
        collection walked them all, and the hooks' allocations bring collections more often. Turned
        off at run time (only then: another addon may freeze too), what was frozen goes back to the
        collector."""
        if self.settings.gc_freeze:
            gc.collect()
            gc.freeze()
        else:
            gc.unfreeze()

    def done(self) -> None:
        """At exit: flush telemetry, then print the usage summary. On a script reload: neither, the
        telemetry process keeps running, and with it the summary."""
        if not ctx.master.should_exit.is_set():
            return
        if self.telemetry is None:
            return
        self.telemetry.shutdown()  # also brings the telemetry process's final usage summary
        table = self.telemetry.summary_table()
        if table is not None:
            print(f"\nLLM API usage through this proxy:\n{table}\n", flush=True)

    @command.command("genai.summary")
    def summary_table(self) -> str:
        """Per provider and model: calls, errors, tokens, cost, p50/p95 duration and time to first chunk."""
        table = self.telemetry.summary_table() if self.telemetry else None
        return table or NO_CALLS

    @command.command("genai.reset")
    def reset_summary(self) -> None:
        """Start the usage summary anew."""
        if self.telemetry is not None:
            self.telemetry.reset_summary()
        log.info("genai: usage summary reset.")

    def configure(self, updated: set[str]) -> None:
        try:
            self._configure(updated)
        except exceptions.OptionsError as error:
            if self.started:
                raise
            log.error("genai: %s", error)

    def _configure(self, updated: set[str]) -> None:
        settings = self.settings.parse(ctx.options, updated)
        if settings.rules is not self.settings.rules:
            self.hosts = HostMatcher(settings.rules)
        if settings.mcp_rules is not self.settings.mcp_rules:
            self.mcp_hosts = HostMatcher(settings.mcp_rules)
        if settings.prices is not self.settings.prices and self.telemetry is not None:
            self.telemetry.use_prices(settings.prices)
        self.settings = settings
        if "genai_gc_freeze" in updated and self.started:
            self._apply_gc_freeze()
        if "flow_detail" in updated:
            self.shown.log_lines = _option("flow_detail", 1) > 0
        self._check_flows_are_kept()

    @never_raises
    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live or self.telemetry is None:
            return
        req = flow.request
        endpoint = wire.endpoint_for(req.method, req.path)
        host, port = req.host, req.port
        if endpoint is None:  # an MCP server's, if its host is one or the request says so (below)
            if req.method != "POST":
                return
            endpoint = MCP_ENDPOINT
            rule = self.mcp_hosts(host, port) or self.hosts(host, port)
        else:
            rule = self.hosts(host, port)
        if rule is None:
            return
        api = endpoint.api
        headers = picked_headers(req.headers, REQUEST_FIELDS, any_session=True)
        body = body_of(req, headers)
        if api is mcp.API and rule.provider != mcp.MCP.name and not mcp.is_mcp_request(headers, body):
            return
        # Parsed here only if the include_usage rewrite may change it, or if too large to copy.
        may_rewrite = (
            self.settings.stream_usage
            and body is not None
            and b'"stream"' in body
            and "content-encoding" not in headers
            and api.may_request_usage(rule, endpoint)
        )
        parse_here = may_rewrite or not passed_on_unparsed(body)
        api_request = api.parse_request(body) if parse_here else None
        if may_rewrite and body and api_request is not None and api_request.stream and not api_request.include_usage:
            rewritten = api.request_with_usage(body, api_request)
            if rewritten is not None:
                req.content = rewritten
                flow.metadata[USAGE_REMOVED] = True
        state = InFlight(
            origin=Origin(
                rule.provider, host, port, masked_key(endpoint, headers, req.path), recorded_request_headers(headers)
            ),
            endpoint=endpoint,
            request=api_request,
            request_body=None if api_request is not None else body,
            started=time.monotonic(),
            started_ns=time.time_ns(),
            # The prompt: read here with a request parsed here, else with its body (`Call.parse_bodies`).
            content=(api.captured_input(body) if parse_here else CapturedContent())
            if self.settings.capture_content
            else None,
        )
        setattr(flow, IN_FLIGHT_ATTRIBUTE, state)

    @never_raises
    def responseheaders(self, flow: http.HTTPFlow) -> None:
        state = in_flight(flow)
        assert flow.response
        if state is None:
            if self.settings.stream_unmetered and not flow.response.stream:
                content_type = flow.response.headers.get("content-type", "")
                if content_type.lower().startswith(INCREMENTAL_TYPES):
                    flow.response.stream = True
            return
        headers = state.response_headers = picked_headers(flow.response.headers, RESPONSE_FIELDS)
        state.response_of_headers = flow.response
        api = state.endpoint.api
        content_type, content_encoding = headers.get("content-type", "").lower(), headers.get("content-encoding")
        framer = api.stream_framer(content_type, state.endpoint)
        # An error answer is no stream, whatever the route and its content type say (Google answers
        # a bad key on `:streamGenerateContent?alt=sse` with one JSON error): it is read whole.
        if framer is None or flow.response.status_code >= 400:
            return
        # What the include_usage rewrite added comes out (an encoding it cannot undo passes as it is).
        filtering = (
            FilteredStream(content_encoding, api.usage_removed, framer) if flow.metadata.get(USAGE_REMOVED) else None
        )
        make_reader = functools.partial(
            stream_reader, state.endpoint, content_type, content_encoding, state.content is not None
        )
        # A copy of the streamed body, unless mitmproxy keeps it itself (store_streamed_bodies).
        keep_copy = self.shown.flows_kept and not _option("store_streamed_bodies", False)
        store_limit = self.settings.stream_store_limit if keep_copy else 0
        state.tap = StreamTap(
            started=state.started,
            make_reader=make_reader,
            errors=self.errors,
            received=ReceivedStream(content_type, content_encoding),
            filtering=filtering,
            stored=bytearray() if store_limit > 0 else None,
            store_limit=store_limit,
        )
        flow.response.stream = state.tap

    @never_raises
    def response(self, flow: http.HTTPFlow) -> None:
        state = vars(flow).pop(IN_FLIGHT_ATTRIBUTE, None)
        if state is None:
            return
        assert flow.response
        if state.response_headers is not None and state.response_of_headers is flow.response:
            headers = state.response_headers
        else:  # no responseheaders hook for this response (another addon replaced it)
            headers = picked_headers(flow.response.headers, RESPONSE_FIELDS)
        if state.tap is not None and state.tap.stored is not None and flow.response.raw_content is None:
            flow.response.raw_content = bytes(state.tap.stored)  # only what mitmweb shows; already sent
        call = self._call(state, flow.response.status_code, None, headers)
        if state.tap is None:
            call.response_body = body_of(flow.response, headers) or b""
        self._finish(flow, call)

    @never_raises
    def error(self, flow: http.HTTPFlow) -> None:
        state = vars(flow).pop(IN_FLIGHT_ATTRIBUTE, None)
        if state is None:
            return
        assert flow.error
        status = flow.response.status_code if flow.response else None
        headers = picked_headers(flow.response.headers, RESPONSE_FIELDS) if flow.response else {}
        flow_error = classify_flow_error(flow.error.msg, flow.response is not None)
        self._finish(flow, self._call(state, status, flow_error, headers))

    @never_raises
    def websocket_start(self, flow: http.HTTPFlow) -> None:
        if self.telemetry is None:  # telemetry is off (its process failed at start): nothing to record
            return
        found = wire.socket_endpoint_for(flow.request.path)
        if found is None:
            return
        host, port = flow.request.host, flow.request.port
        rule = self.hosts(host, port)
        if rule is None:
            return
        endpoint, model = found
        session = endpoint.api.socket_session(model, self.settings.capture_content)
        if session is None:
            return
        headers = picked_headers(flow.request.headers, REQUEST_FIELDS, any_session=True)
        parent = parse_traceparent(headers.get("traceparent"))
        recorded = recorded_request_headers(headers)
        origin = Origin(rule.provider, host, port, masked_key(endpoint, headers, flow.request.path), recorded)
        untraced = {name: value for name, value in recorded.items() if name not in TRACE_HEADERS}
        setattr(
            flow,
            SOCKET_ATTRIBUTE,
            OpenSocket(
                origin=origin,
                operation_origin=dataclasses.replace(origin, request_headers=untraced),
                endpoint=endpoint,
                session=session,
                started=time.monotonic(),
                started_ns=time.time_ns(),
                trace_id=parent[0] if parent else random.getrandbits(128),
                span_id=random.getrandbits(64),
                parent_span_id=parent[1] if parent else None,
            ),
        )

    @never_raises
    def websocket_message(self, flow: http.HTTPFlow) -> None:
        state: OpenSocket | None = getattr(flow, SOCKET_ATTRIBUTE, None)
        if state is None:
            return
        assert flow.websocket
        message = flow.websocket.messages[-1]
        # Binary frames too: Gemini's Live API writes its JSON messages as binary frames.
        for operation in state.session.message(message.from_client, message.content, time.monotonic(), time.time_ns()):
            self._record_operation(flow, state, operation)

    @never_raises
    def websocket_end(self, flow: http.HTTPFlow) -> None:
        state: OpenSocket | None = vars(flow).pop(SOCKET_ATTRIBUTE, None)
        if state is None:
            return
        for operation in state.session.close(time.monotonic(), time.time_ns()):
            self._record_operation(flow, state, operation)
        assert self.telemetry is not None
        self.telemetry.record_session(
            SocketRecord(
                endpoint=state.endpoint,
                origin=state.origin,
                start_time_ns=state.started_ns,
                duration_s=time.monotonic() - state.started,
                info=state.session.info,
                operations=state.operations,
                trace_id=state.trace_id,
                span_id=state.span_id,
                parent_span_id=state.parent_span_id,
            )
        )

    def _record_operation(self, flow: http.HTTPFlow, state: OpenSocket, operation: Operation) -> None:
        """One finished operation of a session, a call of its own under the session's span."""
        state.operations += 1
        call = Call(
            endpoint=Endpoint(
                operation.api, deployment=state.endpoint.deployment, api_version=state.endpoint.api_version
            ),
            origin=state.operation_origin,
            start_time_ns=operation.started_ns,
            duration_s=operation.duration_s,
            status_code=101,
            request=operation.request,
            result=operation.result,
            time_to_first_chunk_s=operation.time_to_first_chunk_s,
            chunk_intervals_s=operation.chunk_intervals_s,
            content=operation.content,
            session_span=(state.trace_id, state.span_id),
        )
        self._finish(flow, call, session_calls=state.operations)

    def _call(
        self, state: InFlight, status: int | None, flow_error: str | None, response_headers: dict[str, str]
    ) -> Call:
        """The finished call, with its stream if it streamed (`StreamTap.hand_over`); a plain
        response's body is for the caller to add."""
        now = time.monotonic()
        call = Call(
            endpoint=state.endpoint,
            origin=state.origin,
            start_time_ns=state.started_ns,
            duration_s=now - state.started,
            status_code=status,
            flow_error=flow_error,
            request=state.request or ApiRequest(),
            request_body=state.request_body,
            response_headers=response_headers,
            content=state.content,
        )
        if state.tap is not None:
            state.tap.hand_over(call, now)
        return call

    def _finish(self, flow: http.HTTPFlow, call: Call, session_calls: int | None = None) -> None:
        """Hand the call to telemetry, which parses, prices and records it, and describes it back
        if it is shown here (`ShownCalls`). Its bodies are parsed here only when too large to copy
        (`passed_on_unparsed`)."""
        if not passed_on_unparsed(call.response_body):  # the only body that may be too large
            call.parse_bodies()
        if self.shown.wanted:
            call.description_id = self.shown.expect(flow, session_calls)
        assert self.telemetry is not None
        self.telemetry.record_call(call, self.settings.metric_options)


addons = [GenAIMeter()]
