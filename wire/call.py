"""The interface every wire API implements, the routes it declares, the endpoint a request calls,
and the one record of a finished call."""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from wire.content import CapturedContent
from wire.framing import Event, Framer
from wire.framing.sse import SSEFramer
from wire.headers import UpstreamInfo
from wire.hosts import HostRule
from wire.records import NO_HEADERS, ApiRequest, ApiResult, Usage, pickled_by_name, restored
from wire.socket import SessionInfo, SocketSession
from wire.stream import EventStream, ReceivedStream, StreamAccumulator
from wire.values import GENERIC_ERROR

if TYPE_CHECKING:
    from wire.vendor import Vendor


@dataclass(frozen=True)
class Route:
    """Where an API is called: a regular expression that the request's path (without its query)
    must end with, and what else the route says.

    Named groups the registry reads: `model` (percent-decoded: Google's and Bedrock's paths name the
    model), `deployment` (Azure OpenAI's), `azure_v1` (Azure's `/openai/v1/...`).
    """

    pattern: str
    method: str = "POST"
    streamed: bool = False  # the route itself asks for a stream (`:streamGenerateContent`, `/converse-stream`)
    socket: bool = False  # a WebSocket upgrade (`GET`)


def api_named(name: str) -> WireApi:
    """The registered API of this name: how a pickled `WireApi` comes back in the telemetry process."""
    import wire  # the registry imports every API module, which import this one

    return wire.REGISTRY.api(name)


class WireApi:
    """One wire API (OpenAI chat completions, Anthropic messages, ...): how to read it.

    One stateless instance per API, listed once in the registry (`wire.REGISTRY`), which picks it
    for a flow by the request's method and path (`routes`). Every parser takes bytes off the network
    and must never raise on them: a malformed body gives an empty result.
    """

    name: str  # unique; e.g. chat_completions, messages (OpenAI's spans carry it as openai.api.type)
    operation: str  # gen_ai.operation.name: chat | text_completion | embeddings | generate_content ...
    vendor: Vendor  # headers, keys, the namespace of the API's own span attributes and gauges
    routes: tuple[Route, ...] = ()
    # Its plain answers are JSON (not audio, nor a transcript as text): one that is not is unreadable.
    answers_json = True
    # It tells its token usage (an LLM API; not MCP): a call without it is marked.
    reports_usage = True

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        """Pickled by its registry name: the same object after unpickling."""
        return api_named, (self.name,)

    def __repr__(self) -> str:
        return f"<wire API {self.name}>"

    def parse_request(self, body: bytes | None) -> ApiRequest:
        raise NotImplementedError

    def parse_response(self, body: bytes | None, headers: Mapping[str, str] = NO_HEADERS) -> ApiResult:
        """A plain (not streamed) response body, also an error body (`ApiResult.error_type`);
        `headers`: the response's fields its vendor reads (`Vendor.response_headers`)."""
        raise NotImplementedError

    def stream_framer(self, content_type: str, endpoint: Endpoint) -> Framer | None:
        """How a response of this content type (lower case) streams, or None: it is not a stream."""
        return SSEFramer() if content_type.startswith("text/event-stream") else None

    def stream_accumulator(self, started: float, capture_content: bool = False) -> StreamAccumulator:
        raise NotImplementedError

    def socket_session(self, url_model: str | None, capture_content: bool = False) -> SocketSession | None:
        """A WebSocket session of this API (a `Route` with `socket`), or None: it has none."""
        return None

    def captured_input(self, body: bytes | None) -> CapturedContent:
        """System instructions and input messages of a request; bodies over LARGE_BODY give none."""
        raise NotImplementedError

    def captured_output(self, body: bytes | None) -> str | None:
        """The output messages of a plain response; bodies over LARGE_BODY give none."""
        raise NotImplementedError

    def call_label(self, call: Call) -> str:
        """What a call's line (log, flow comment) names after its numbers: operation and model."""
        return f"{call.operation} {call.billed_model or '?'}"

    def may_request_usage(self, rule: HostRule, endpoint: Endpoint) -> bool:
        """May the addon ask this upstream for usage the client's streamed request did not ask for?"""
        return False

    def request_with_usage(self, body: bytes, request: ApiRequest) -> bytes | None:
        """The request body asking for usage, or None when it is unsafe to touch."""
        return None

    def usage_removed(self, event: Event) -> bytes:
        """What the client gets of an event of a stream whose request `request_with_usage`
        changed: the event without what the change added (b"": nothing). On mitmproxy's loop:
        read as little as it can."""
        return event.raw


@dataclass(frozen=True)
class Endpoint:
    """What an observed request calls: the wire API, and what its route says (`Route`)."""

    api: WireApi
    deployment: str | None = None  # Azure /openai/deployments/{deployment}/...
    api_version: str | None = None  # Azure ?api-version=...
    azure_v1: bool = False  # Azure /openai/v1/... (no api-version needed)
    model: str | None = None  # in the path: Google's …/models/{model}:method, Bedrock's /model/{model}/...
    streamed: bool = False  # the route streams: Google's :streamGenerateContent, Bedrock's -stream routes

    @property
    def operation(self) -> str:
        return self.api.operation


@pickled_by_name
@dataclass(frozen=True, slots=True)
class Origin:
    """Where a flow's calls come from and go: the metered host's provider, the server, the masked
    key and the request's recorded header fields (`wire.headers.REQUEST_HEADERS` and its vendor's,
    lower-case names, parsed only where they are recorded). Built once per flow by the proxy, and
    shared by its call, or by a WebSocket session and its operations."""

    provider: str
    server_address: str
    server_port: int
    api_key: str  # already masked
    request_headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class Call:
    """One observed call, finished: everything the telemetry layer records.

    Built by the proxy's hooks and handed to the telemetry process. Its bodies may still be
    unread (`request_body`, `response_body`, `response_stream`): `parse_bodies` is the one place
    they are read, in the telemetry process, off mitmproxy's event loop (in the proxy only the
    edges of a body too large to copy, a request the include_usage rewrite may change, and the
    stream of a request it changed).
    """

    endpoint: Endpoint
    origin: Origin
    start_time_ns: int  # wall clock, for the span
    duration_s: float
    status_code: int | None = None
    flow_error: str | None = None  # the connection's fate: client_aborted, upstream_aborted, ...
    request: ApiRequest = field(default_factory=ApiRequest)
    result: ApiResult = field(default_factory=ApiResult)
    request_body: bytes | None = None  # still to parse into `request`
    response_body: bytes | None = None  # still to parse into `result`
    response_stream: ReceivedStream | None = None  # a streamed body still to read into `result`
    # The response's header fields that its vendor reads (lower-case names), parsed only where they
    # are recorded: the proxy passes them on as they are.
    response_headers: dict[str, str] = field(default_factory=dict)
    time_to_first_chunk_s: float | None = None
    chunk_intervals_s: Sequence[float] = ()
    content: CapturedContent | None = None  # only when content capture is on
    cost_usd: float | None = None
    # An operation of a WebSocket session: (trace id, span id) of the session's span, its parent.
    session_span: tuple[int, int] | None = None
    # A response fetched again whose usage was counted with the call that made it (the telemetry
    # layer decides: it remembers which responses it counted).
    usage_counted_before: bool = False
    # The proxy shows this call (log line, flow comment): the telemetry layer describes it back
    # under this number once it is parsed and priced (`wire.describe.Description`).
    description_id: int | None = None

    def parse_bodies(self) -> Call:
        api = self.endpoint.api
        if self.request_body is not None:
            body, self.request_body = self.request_body, None
            self.request = api.parse_request(body)
            if self.content is not None:
                captured = api.captured_input(body)
                self.content.system_instructions = captured.system_instructions
                self.content.input_messages = captured.input_messages
        if self.response_body is not None:
            body, self.response_body = self.response_body, None
            self.result = api.parse_response(body, self.response_headers)
            if self.content is not None and self.content.output_messages is None:
                self.content.output_messages = api.captured_output(body)
            succeeded = self.status_code is not None and 200 <= self.status_code < 300
            if succeeded and api.answers_json and body.strip() and body.lstrip()[:1] not in (b"{", b"["):
                self.result.unreadable = True
        if self.response_stream is not None:
            received, self.response_stream = self.response_stream, None
            stream = stream_reader(
                self.endpoint, received.content_type, received.content_encoding, self.content is not None
            )
            received.replay(stream)
            self.take_stream(stream.accumulator)
        return self

    def take_stream(self, accumulator: StreamAccumulator) -> None:
        """The result and chunk timings of the call's stream, read to its end."""
        self.result = accumulator.result
        self.time_to_first_chunk_s = accumulator.time_to_first_chunk
        self.chunk_intervals_s = accumulator.chunk_intervals
        if self.content is not None:
            self.content.output_messages = accumulator.output_messages()
        if accumulator.done and self.flow_error == "client_aborted":
            # The stream had ended ([DONE], message_stop, response.completed): clients close the
            # connection as soon as they read that, often before the upstream's last bytes reach
            # mitmproxy. The call succeeded.
            self.flow_error = None

    @property
    def operation(self) -> str:
        return self.endpoint.operation

    @property
    def usage_unavailable(self) -> bool:
        """A call that should have told its usage and did not, with no error to explain it: a
        stream without usage, or a successful answer that could not be read."""
        missing = self.usage is None and self.error_type is None and self.endpoint.api.reports_usage
        return missing and (self.streamed or self.result.unreadable)

    @property
    def usage(self) -> Usage | None:
        return self.result.usage

    @property
    def error_type(self) -> str | None:
        """Why the call failed: the connection, else the API's error (body or stream), else the
        status. An error that names no type (`GENERIC_ERROR`: `{"error": "some text"}`) gives way to
        an HTTP error status, which says more."""
        failed_status = str(self.status_code) if self.status_code is not None and self.status_code >= 400 else None
        if self.flow_error:
            return self.flow_error
        if self.result.error_type == GENERIC_ERROR and failed_status:
            return failed_status
        return self.result.error_type or failed_status

    @property
    def request_model(self) -> str | None:
        """The model asked for; a request may name none (an Azure deployment), then the response's."""
        return self.request.model or self.endpoint.model or self.result.response_model

    @property
    def streamed(self) -> bool:
        """Asked for as a stream: in the body (`"stream": true`) or by the route (Google's)."""
        return self.request.stream or self.endpoint.streamed

    @property
    def billed_model(self) -> str | None:
        """The model that answered and is billed: the response's, else the one asked for."""
        return self.result.response_model or self.request.model or self.endpoint.model

    def upstream(self) -> UpstreamInfo:
        end_s = (self.start_time_ns / 1e9) + self.duration_s
        return self.endpoint.api.vendor.upstream(self.response_headers, end_s)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled by name (`pickled_by_name`), without a request or result whose body is still
        to parse: those placeholders cost three quarters of a call's pickling (3.5 of 5 µs), and
        every call is pickled on mitmproxy's event loop. They are made anew when it is unpickled."""
        unread_response = self.response_body is not None or self.response_stream is not None
        names, values = _CALL_STATE[self.request_body is not None, unread_response]
        return restored, (Call, names, values(self))


def stream_reader(
    endpoint: Endpoint, content_type: str, content_encoding: str | None, capture_content: bool
) -> EventStream:
    """An empty stream of the endpoint's API, for a body of this content type (lower case) and
    encoding, its times counted from the request (0.0)."""
    framer = endpoint.api.stream_framer(content_type, endpoint)
    return EventStream(content_encoding, endpoint.api.stream_accumulator(0.0, capture_content), framer)


def _call_state(without: set[str]) -> tuple[tuple[str, ...], operator.attrgetter[Any]]:
    names = tuple(item.name for item in fields(Call) if item.name not in without)
    return names, operator.attrgetter(*names)


# The fields a call is pickled with, by (request body still to parse, response still to read).
_CALL_STATE = {
    (False, False): _call_state(set()),
    (True, False): _call_state({"request"}),
    (False, True): _call_state({"result"}),
    (True, True): _call_state({"request", "result"}),
}


@pickled_by_name
@dataclass(slots=True, kw_only=True)
class SocketRecord:
    """One WebSocket session, closed: the span its operations (`Call.session_span`) are children
    of. Its ids were chosen by the proxy when the socket opened, so the operations, recorded
    before it, could name it as their parent."""

    endpoint: Endpoint
    origin: Origin  # its request_headers are the upgrade request's
    start_time_ns: int
    duration_s: float
    info: SessionInfo
    operations: int
    trace_id: int
    span_id: int
    parent_span_id: int | None = None  # from the upgrade request's traceparent
