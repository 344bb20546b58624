"""The façade of the OpenTelemetry side: the providers, and `record_call`, the one pipeline of a
finished call (parse, price, summary, metrics and span, the description of a shown call). Its parts
are in `otel/`: exporter configuration, a call's attributes, the instruments.

This runs in the telemetry process (`telemetry_child.py`, started by `telemetry_process`), so
neither the SDK's per-measurement work nor span encoding competes with mitmproxy's event loop
for the GIL. Exports run on the SDK's background threads; `record` only updates in-memory state.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from genai_prices import UpdatePrices
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    set_span_in_context,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

import telemetry_process
from otel import export
from otel.attributes import CLIENT_ATTRIBUTE, BoundedValues, mcp_attributes, metric_attributes, span_attributes
from otel.conventions import V0_1_0, V1_41, Instruments, latest_experimental_opted_in
from otel.export import DEFAULT_SPAN_QUEUE, GuardedSpanExporter, build_resource, quiet_exporter_logs
from otel.sessions import OpenSession, ResponseChains, Sessions
from otel.tools import PendingTools, ToolRun
from pricing import Prices
from summary import UsageSummary
from telemetry_process import MetricOptions, UsePrices
from wire import mcp
from wire.call import Call, SocketRecord
from wire.describe import Description
from wire.headers import RateLimits, RequestInfo, UpstreamInfo, parse_request_headers

log = logging.getLogger("genai")

SCOPE_NAME = "mitmproxy-genai"
LEGACY_SCOPE_NAME = "openai.meter"
# A bounded shutdown: flush what is pending, then close the exporters.
SHUTDOWN_BUDGET_S = telemetry_process.SHUTDOWN_BUDGET_S

# `gen_ai.operation.name` of a response fetched again, and how many response ids are remembered
# so that its usage is counted once.
FETCH_RESPONSE = "fetch_response"
MAX_COUNTED_RESPONSES = 10_000


def _tool_scope(call: Call, headers: RequestInfo) -> str:
    """Where a tool call's result is looked for: its agent session and sub-agent, else the requests
    with the same key to the same server (an app's own loop)."""
    if headers.session is not None:
        return f"session {headers.session.session_id} {headers.session.subagent_id or ''}"
    origin = call.origin
    return f"key {origin.provider} {origin.server_address}:{origin.server_port} {origin.api_key}"


def _sampled(trace_id: int, span_id: int) -> SpanContext:
    """The (local, sampled) span with these ids."""
    return SpanContext(trace_id, span_id, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))


def _parent(trace_id: int, span_id: int) -> Context:
    """A context whose current span is the (local, sampled) span with these ids."""
    return set_span_in_context(NonRecordingSpan(_sampled(trace_id, span_id)))


class PresetIds(RandomIdGenerator):
    """Random ids, except for a WebSocket session's span: it gets the ids the proxy gave its
    operations as their parent when the socket opened (they were recorded before it closed)."""

    def __init__(self) -> None:
        self.next_ids: tuple[int, int] | None = None  # (trace id, span id) of the next span started

    def generate_trace_id(self) -> int:
        return self.next_ids[0] if self.next_ids else super().generate_trace_id()

    def generate_span_id(self) -> int:
        if self.next_ids is None:
            return super().generate_span_id()
        span_id, self.next_ids = self.next_ids[1], None
        return span_id


class Telemetry:
    """The process's providers and instruments."""

    def __init__(
        self,
        span_exporters: Sequence[SpanExporter] | None = None,
        metric_readers: Sequence[MetricReader] | None = None,
    ) -> None:
        """Exporters and readers come from the standard OTEL_* variables unless given."""
        resource = build_resource()
        span_exporters = export.span_exporters() if span_exporters is None else span_exporters
        metric_readers = export.metric_readers() if metric_readers is None else metric_readers
        quiet_exporter_logs()
        self._ids = PresetIds()
        self.tracer_provider = TracerProvider(resource=resource, id_generator=self._ids, shutdown_on_exit=False)
        queue_size = None if "OTEL_BSP_MAX_QUEUE_SIZE" in os.environ else DEFAULT_SPAN_QUEUE
        self._span_exporters = list(span_exporters)
        for exporter in span_exporters:
            self.tracer_provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=queue_size))
        self.meter_provider = MeterProvider(resource=resource, metric_readers=metric_readers, shutdown_on_exit=False)
        # Each signal declares the conventions it follows: a backend tells v1.41 from v0.1.0 names.
        conventions = V0_1_0 if latest_experimental_opted_in() else V1_41
        self._tracer = self.tracer_provider.get_tracer(SCOPE_NAME, schema_url=conventions.schema_url)
        self._propagator = TraceContextTextMapPropagator()
        self.bounded = BoundedValues()
        # Every call is priced here, with the prices the addon names (`use_prices`: a file, an update URL).
        self.prices = Prices()
        self._price_updates: UpdatePrices | None = None
        self.summary = UsageSummary()
        self.sessions = Sessions()  # the agent sessions open, their calls' traces (`otel.sessions`)
        self.tools = PendingTools()  # the tool calls waiting for their results (`otel.tools`)
        self.chains = ResponseChains()  # Responses calls chained by previous_response_id, as sessions
        # Where descriptions of shown calls go (in batches): the reply pipe in the telemetry process.
        self.on_description: Callable[[Sequence[Description]], None] | None = None
        # The response ids whose usage was counted (bounded): a response fetched again is not counted twice.
        self._counted_responses: OrderedDict[str, None] = OrderedDict()

        meter = self.meter_provider.get_meter(SCOPE_NAME, schema_url=conventions.schema_url)
        self.instruments = Instruments(meter, self.meter_provider.get_meter(LEGACY_SCOPE_NAME), conventions)

    def record_call(self, call: Call, options: MetricOptions) -> None:
        """The one pipeline of a finished call: parse what the proxy passed on unparsed, price,
        record (summary, metrics, span; see `record`; an MCP call by its own conventions), and
        describe it back if the proxy shows it."""
        call.parse_bodies()
        if call.endpoint.api is mcp.API:
            self._record_mcp(call)
        else:
            self._record_llm_call(call, options)
        if call.description_id is not None and self.on_description is not None:
            self.on_description((Description.of(call),))

    def _record_llm_call(self, call: Call, options: MetricOptions) -> None:
        self._count_usage_once(call)
        call.cost_usd = self.prices.cost_of(call)
        self.record(call, options)

    def _record_mcp(self, call: Call) -> None:
        """An MCP call by the MCP conventions: a CLIENT span `{mcp.method.name} {target}` and the
        `mcp.client.operation.duration` histogram; no tokens, no cost, not in the usage summary. A
        `tools/call` made for a tool an agent's model asked for (`PendingTools.running`) names that
        call's id and links the span it was asked under; that tool's span will link this one."""
        attributes = mcp_attributes(call, self.bounded)
        metric = {
            name: value
            for name, value in attributes.items()
            if name in ("mcp.method.name", "gen_ai.tool.name", "error.type", "mcp.protocol.version")
        }
        self.instruments.mcp_duration.record(call.duration_s, metric)
        traced = "traceparent" in call.origin.request_headers
        served = None
        tool = call.request.attributes.get("gen_ai.tool.name")  # of a `tools/call` only (`wire.mcp`)
        if isinstance(tool, str):
            served = self.tools.running(tool, call.start_time_ns)
        links = []
        if served is not None:  # the tool call of an agent session it serves: named, and linked
            asked, asked_under, _ = served
            attributes["gen_ai.tool.call.id"] = asked.call_id
            links.append(Link(_sampled(*asked_under)))
        span = self._tracer.start_span(
            mcp.span_name(call.request),
            context=self._propagator.extract(carrier=call.origin.request_headers) if traced else None,
            kind=SpanKind.CLIENT,
            attributes=attributes,
            links=links,
            start_time=call.start_time_ns,
        )
        if served is not None:
            context = span.get_span_context()
            served[2].append((context.trace_id, context.span_id))
        if (error_type := attributes.get("error.type")) is not None:
            span.set_status(Status(StatusCode.ERROR, str(error_type)))
        span.end(end_time=call.start_time_ns + int(call.duration_s * 1e9))

    def _count_usage_once(self, call: Call) -> None:
        """A response fetched again (`fetch_response`: a stored or background Gemini interaction)
        carries the usage of the call that made it: the usage of a response id is counted once (in
        this process; a background interaction's usage comes only with its first fetch). A repeated
        fetch keeps its span, without the usage, marked `genai.usage.counted_before`."""
        response_id = call.result.response_id
        if call.usage is None or not response_id:
            return
        counted = self._counted_responses
        if call.operation == FETCH_RESPONSE and response_id in counted:
            call.result.usage = None
            call.usage_counted_before = True
            return
        counted[response_id] = None
        if len(counted) > MAX_COUNTED_RESPONSES:
            counted.popitem(last=False)

    def record(self, call: Call, options: MetricOptions) -> None:
        """Record one finished, parsed call as metrics, a span and a summary row, and the runs of the
        tools its request answers (`otel.tools`). No I/O happens here."""
        chained_from = call.request.previous_response_id
        if chained_from and call.request.agent_session is None:
            call.request.agent_session = self.chains.session_of(chained_from)
        headers = parse_request_headers(call.origin.request_headers, call.request.agent_session)
        agent_session = (headers.client.name, headers.session.session_id) if headers.session else None
        if chained_from and headers.session is not None and call.result.response_id:
            self.chains.extend(call.result.response_id, headers.session.session_id)
        tool_scope = _tool_scope(call, headers)
        self.tools.expire_s = options.session_idle_s
        runs = self.tools.answered(tool_scope, call.request.tool_results, call.start_time_ns)
        tool_time_s = max((run.duration_s for run in runs), default=0.0)  # parallel calls share one gap
        self.summary.add(call, headers.client.label, agent_session, tool_time_s)
        attributes = metric_attributes(call, self.bounded)
        spend = attributes | self._attribution(call, headers, options.attribution)
        self.instruments.conventions.record(call, attributes, spend)
        usage = call.usage
        if usage is not None:
            # Zeros add nothing to these sums; skipping them saves measurements per call.
            for histogram, part in (
                (self.instruments.cache_read_tokens, usage.cache_read_tokens),
                (self.instruments.cache_write_tokens, usage.cache_write_tokens),
                (self.instruments.reasoning_tokens, usage.reasoning_tokens),
            ):
                if part:
                    histogram.record(part, attributes)
            if options.legacy_metrics:
                self._record_legacy(call, options.legacy_completion_id)
        if call.cost_usd is not None:
            self.instruments.token_cost.record(call.cost_usd, spend)
        upstream = call.upstream()
        self._record_rate_limits(call, upstream.rate_limits)
        session = None
        marks: dict[str, Any] = {}
        if headers.session is not None:
            self.sessions.idle_s = options.session_idle_s
            session = self.sessions.add(call, headers.client.name, headers.session.session_id, tool_time_s)
            marks = self._cache_break_marks(call, session, headers, attributes)
        for run in runs:
            self._record_tool_run(run, headers)
        span_ids = self._record_span(call, upstream, headers, attributes, session, marks)
        if call.result.tool_calls:
            parent = (session.trace_id, session.span_id) if session is not None else span_ids
            end_ns = call.start_time_ns + int(call.duration_s * 1e9)
            self.tools.asked(tool_scope, call.result.tool_calls, end_ns, parent)
        self.end_idle_sessions()

    def _cache_break_marks(
        self, call: Call, session: OpenSession, headers: RequestInfo, attributes: Mapping[str, Any]
    ) -> dict[str, Any]:
        """If `call` broke its session's prompt cache (`otel.sessions.cache_broke`): count it, and
        the attributes that mark its span."""
        assert headers.session is not None
        previous_read = session.cache_break(call, headers.session.subagent_id)
        if previous_read is None:
            return {}
        counted = {
            "gen_ai.agent.name": headers.client.name,
            "gen_ai.provider.name": call.origin.provider,
            "gen_ai.request.model": attributes.get("gen_ai.request.model", "unknown"),
        }
        self.instruments.cache_breaks.add(1, counted)
        return {"genai.cache.break": True, "genai.cache.previous_read_tokens": previous_read}

    def _record_tool_run(self, run: ToolRun, headers: RequestInfo) -> None:
        """`execute_tool {tool}`: a client tool's run between two calls, and its duration metric."""
        error_type = "tool_error" if run.error else None
        agent = headers.client.name if headers.session else None
        tool_name = self.bounded("gen_ai.tool.name", run.call.name)
        metric: dict[str, Any] = {"gen_ai.tool.name": tool_name, "gen_ai.tool.type": run.call.tool_type}
        if agent is not None:
            metric["gen_ai.agent.name"] = agent
        if error_type is not None:
            metric["error.type"] = error_type
        self.instruments.tool_duration.record(run.duration_s, metric)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": run.call.name,
            "gen_ai.tool.call.id": run.call.call_id,
            "gen_ai.tool.type": run.call.tool_type,
        }
        if headers.session is not None:
            attributes["gen_ai.conversation.id"] = headers.session.session_id
        if agent is not None:
            attributes["gen_ai.agent.name"] = agent
        if error_type is not None:
            attributes["error.type"] = error_type
        span = self._tracer.start_span(
            f"execute_tool {run.call.name}",
            context=_parent(*run.parent),
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            links=[Link(_sampled(*ids)) for ids in run.mcp_calls],  # the MCP calls made for it
            start_time=run.start_ns,
        )
        if error_type is not None:
            span.set_status(Status(StatusCode.ERROR, error_type))
        span.end(end_time=max(run.end_ns, run.start_ns))

    def end_idle_sessions(self) -> None:
        """Record the span of each agent session that has been idle long enough."""
        for session in self.sessions.ended():
            self._record_agent_span(session)

    def _record_agent_span(self, session: OpenSession) -> None:
        """`invoke_agent {agent}`: the session's span, with the ids its calls named as their parent."""
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.provider.name": session.provider,
            "gen_ai.agent.name": session.agent,
            "gen_ai.conversation.id": session.session_id,
            "gen_ai.usage.input_tokens": session.input_tokens,
            "gen_ai.usage.output_tokens": session.output_tokens,
            "genai.session.calls": session.calls,
            "genai.session.errors": session.errors,
            "genai.session.model_time_s": round(session.model_time_s, 6),
            "genai.session.tool_time_s": round(session.tool_time_s, 6),
            "genai.session.cache_breaks": session.cache_breaks,
        }
        if session.cost_usd is not None:
            attributes["gen_ai.usage.cost_usd"] = session.cost_usd
        self._ids.next_ids = (session.trace_id, session.span_id)
        try:
            span = self._tracer.start_span(
                f"invoke_agent {session.agent}",
                kind=SpanKind.INTERNAL,
                attributes=attributes,
                start_time=session.start_ns,
            )
        finally:
            self._ids.next_ids = None
        span.end(end_time=session.end_ns)

    def _attribution(self, call: Call, headers: RequestInfo, attribution: str) -> dict[str, str]:
        """Who spent it, as attributes of the token-usage and cost metrics (genai_metric_attribution):
        the client label, and the masked key; each bounded like every client-chosen value."""
        if attribution == "none":
            return {}
        labels = {CLIENT_ATTRIBUTE: self.bounded(CLIENT_ATTRIBUTE, headers.client.label)}
        if attribution == "client+key":
            labels[f"{call.endpoint.api.vendor.name}.api_key.masked"] = self.bounded(
                "api_key.masked", call.origin.api_key
            )
        return labels

    def _record_rate_limits(self, call: Call, limits: RateLimits) -> None:
        if not limits.known():
            return
        vendor = call.endpoint.api.vendor.name
        attributes = (
            ("gen_ai.request.model", self.bounded("gen_ai.request.model", call.request_model or "unknown")),
            ("gen_ai.provider.name", call.origin.provider),
            ("server.address", self.bounded("server.address", call.origin.server_address)),
            ("server.port", call.origin.server_port),
            (f"{vendor}.api_key.masked", self.bounded("api_key.masked", call.origin.api_key)),
        )
        self.instruments.rate_limits.set(vendor, attributes, limits)

    def _record_legacy(self, call: Call, with_completion_id: bool) -> None:
        usage = call.usage
        assert usage is not None
        attributes: tuple[tuple[str, str], ...] = (
            ("model", self.bounded("gen_ai.request.model", call.request_model or "unknown")),
            ("api_key", self.bounded("api_key.masked", call.origin.api_key)),
        )
        if with_completion_id and call.result.response_id:
            attributes += (("chat_completion_id", call.result.response_id),)
        self.instruments.legacy.add("tokens_counter", attributes, usage.total_tokens)
        if usage.input_tokens is not None:
            self.instruments.legacy.add("prompt_tokens", attributes, usage.input_tokens)
        if usage.output_tokens is not None:
            self.instruments.legacy.add("completion_tokens", attributes, usage.output_tokens)

    def _record_span(
        self,
        call: Call,
        upstream: UpstreamInfo,
        headers: RequestInfo,
        metric_attributes: Mapping[str, Any],
        session: OpenSession | None,
        marks: dict[str, Any],
    ) -> tuple[int, int]:
        """The call's span: the child of its WebSocket session's span, else of the client's own
        trace context, else of its agent session's span (`otel.sessions`); `marks` are added to its
        attributes (a cache break). Returns its (trace id, span id)."""
        parent: Context | None = None
        if call.session_span is not None:  # an operation of a WebSocket session: its child
            parent = _parent(*call.session_span)
        elif "traceparent" in call.origin.request_headers:
            parent = self._propagator.extract(carrier=call.origin.request_headers)
        elif session is not None:
            parent = _parent(session.trace_id, session.span_id)
        model = call.request_model
        span = self._tracer.start_span(
            f"{call.operation} {model}" if model else call.operation,
            context=parent,
            kind=SpanKind.CLIENT,
            attributes=span_attributes(
                call, upstream, headers, metric_attributes, self.instruments.conventions.cache_write_attribute
            )
            | marks,
            start_time=call.start_time_ns,
        )
        if (error_type := call.error_type) is not None:
            span.set_status(Status(StatusCode.ERROR, error_type))
        span.end(end_time=call.start_time_ns + int(call.duration_s * 1e9))
        context = span.get_span_context()
        return context.trace_id, context.span_id

    def record_session(self, record: SocketRecord) -> None:
        """A closed WebSocket session's span, with the ids its operations named as their parent."""
        parent = self._propagator.extract(carrier=record.origin.request_headers) if record.parent_span_id else None
        vendor, info = record.endpoint.api.vendor.name, record.info
        candidates: dict[str, Any] = {
            "gen_ai.provider.name": record.origin.provider,
            "gen_ai.request.model": info.model,
            "gen_ai.response.model": info.response_model,
            "gen_ai.conversation.id": info.session_id,
            "server.address": record.origin.server_address,
            "server.port": record.origin.server_port,
            f"{vendor}.api.type": record.endpoint.api.name,
            f"{vendor}.api_key.masked": record.origin.api_key,
            f"{vendor}.realtime.voice": info.voice,
            f"{vendor}.realtime.output_modalities": info.output_modalities or None,
            f"{vendor}.realtime.transcription_model": info.transcription_model,
            "genai.session.operations": record.operations,
            "error.type": info.error_type,
        }
        self._ids.next_ids = (record.trace_id, record.span_id)
        try:
            span = self._tracer.start_span(
                f"{record.endpoint.api.name} {info.model}" if info.model else record.endpoint.api.name,
                context=parent,
                kind=SpanKind.CLIENT,
                attributes={key: value for key, value in candidates.items() if value is not None},
                start_time=record.start_time_ns,
            )
        finally:
            self._ids.next_ids = None
        if info.error_type is not None:
            span.set_status(Status(StatusCode.ERROR, info.error_type))
        span.end(end_time=record.start_time_ns + int(record.duration_s * 1e9))

    def use_prices(self, source: UsePrices) -> None:
        """Price calls with the prices `source` names, fetching updates (if it has a URL) instead
        of the last's. The proxy checked the file when the option was set; if it is unreadable now,
        the prices before stay."""
        try:
            prices = Prices.load(Path(source.user_file) if source.user_file else None, source.update_url)
        except ValueError as error:
            log.warning("%s; the prices before stay.", error)
            return
        if self._price_updates is not None:
            self._price_updates.stop()  # type: ignore[no-untyped-call]
        self.prices = prices
        self._price_updates = prices.updates()
        if self._price_updates is not None:
            self._price_updates.start()

    def summary_table(self) -> str | None:
        """The usage summary, or None before the first call."""
        return self.summary.table() if self.summary.rows else None

    def reset_summary(self) -> None:
        self.summary.reset()

    def shutdown(self, budget_s: float = SHUTDOWN_BUDGET_S) -> bool:
        """Flush and close within `budget_s`, even if the collector never answers.

        Runs on a daemon thread so a hung export cannot keep the process alive; returns
        whether everything finished in time.
        """
        budget_ms = int(budget_s * 1000)
        for session in self.sessions.close():  # the sessions still open: their spans are not lost
            self._record_agent_span(session)

        def close() -> None:
            self.tracer_provider.force_flush(budget_ms // 2)
            self.meter_provider.force_flush(budget_ms // 2)
            self.tracer_provider.shutdown()
            self.meter_provider.shutdown(timeout_millis=budget_ms // 2)

        closer = threading.Thread(target=close, name="genai-telemetry-shutdown", daemon=True)
        closer.start()
        closer.join(budget_s)
        finished = not closer.is_alive()
        if not finished:
            log.warning("OpenTelemetry export did not finish within %.1fs at exit; the rest is dropped.", budget_s)
        # If the exit budget ran out, the spans still waiting are lost as well.
        guards = [e for e in self._span_exporters if isinstance(e, GuardedSpanExporter)]
        dropped = sum(guard.dropped + (0 if finished else guard.waiting) for guard in guards)
        if dropped:
            log.warning(
                "%d spans were dropped while the collector did not accept them (OTEL_BSP_MAX_QUEUE_SIZE sets how "
                "many may wait).",
                dropped,
            )
        return finished
