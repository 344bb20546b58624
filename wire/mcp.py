"""MCP over Streamable HTTP (facts: tests/fixtures/agents/wire-formats-mcp.md): every JSON-RPC
message a `POST` of its own to one endpoint, answered with one JSON-RPC response
(`application/json`) or an SSE stream whose events are JSON-RPC messages, the response to the
request among them. Both the stateful revisions (2025-06-18, 2025-11-25: an `Mcp-Session-Id`
after `initialize`) and the stateless 2026-07-28 one (`Mcp-Method` and `Mcp-Name` headers on every
request, no session).

An MCP server has no route of its own (its endpoint is anywhere: `/mcp`, `/`): the proxy
recognises its traffic by host (`genai_mcp_hosts`) or by what a request says (`is_mcp_request`).
A call is recorded by the MCP conventions, not as an LLM call: `mcp.method.name`, the tool, the
JSON-RPC id, `error.type` (`tool_error` for a result with `isError`, the JSON-RPC error code
otherwise).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from wire.call import Call, WireApi
from wire.content import CapturedContent
from wire.framing import Event
from wire.records import NO_HEADERS, ApiRequest, ApiResult, AttributeValue
from wire.stream import StreamAccumulator
from wire.values import label, load_json_object, obj
from wire.vendor import Vendor

SESSION_HEADER = "mcp-session-id"
VERSION_HEADER = "mcp-protocol-version"
METHOD_HEADER = "mcp-method"
# A request with any of these is MCP's, on a host the proxy meters.
MCP_HEADERS = (SESSION_HEADER, VERSION_HEADER, METHOD_HEADER)
TOOL_ERROR = "tool_error"
# How far into a body its JSON-RPC opening is looked for, and the member it has: a quoted name
# followed by a colon cannot be inside a JSON string (its quotes would be escaped).
_OPENING = 64
_JSONRPC_MEMBER = re.compile(rb'"jsonrpc"\s*:')


class McpVendor(Vendor):
    request_headers = MCP_HEADERS
    response_headers = (SESSION_HEADER,)  # the session an `initialize` answer opens

    def request_attributes(self, headers: Mapping[str, str]) -> dict[str, AttributeValue]:
        """The protocol version and session the request names."""
        attributes: dict[str, AttributeValue] = {}
        if version := label(headers.get(VERSION_HEADER)):
            attributes["mcp.protocol.version"] = version
        if session := label(headers.get(SESSION_HEADER)):
            attributes["mcp.session.id"] = session
        return attributes

    def exchange_attributes(
        self, request_headers: Mapping[str, str], response_headers: Mapping[str, str]
    ) -> dict[str, AttributeValue]:
        """The request's (`request_attributes`), and the session an `initialize` answer opens
        (its response header, whether the answer is JSON or a stream)."""
        attributes = self.request_attributes(request_headers)
        if "mcp.session.id" not in attributes and (session := label(response_headers.get(SESSION_HEADER))):
            attributes["mcp.session.id"] = session
        return attributes


MCP = McpVendor("mcp")


def is_mcp_request(headers: Mapping[str, str], body: bytes | None) -> bool:
    """A request MCP's Streamable HTTP sends: with an MCP header (lower-case names), or a JSON-RPC
    body (`{"jsonrpc": "2.0", ...}`)."""
    if any(name in headers for name in MCP_HEADERS):
        return True
    opening = (body or b"")[:_OPENING].lstrip()
    return opening.startswith(b"{") and _JSONRPC_MEMBER.search(opening) is not None


def span_name(request: ApiRequest) -> str:
    """`{mcp.method.name} {target}` (`tools/call get_weather`), the conventions' span name."""
    attributes = request.attributes
    method = attributes.get("mcp.method.name", "unknown")
    target = attributes.get("gen_ai.tool.name") or attributes.get("gen_ai.prompt.name")
    return f"{method} {target}" if target else str(method)


def _request_id(value: Any) -> str | None:
    return label(str(value)) if isinstance(value, (str, int)) and not isinstance(value, bool) else None


def _fold(message: dict[str, Any], result: ApiResult) -> bool:
    """Fold a JSON-RPC response into `result`; False for anything else (a notification, a request)."""
    if "result" not in message and "error" not in message:
        return False
    result.response_id = _request_id(message.get("id"))
    error = message.get("error")
    if isinstance(error, dict):
        code = error.get("code")
        result.error_type = str(code) if isinstance(code, int) and not isinstance(code, bool) else "error"
        if isinstance(code, int):
            result.attributes["rpc.response.status_code"] = str(code)
    elif obj(message.get("result")).get("isError") is True:
        result.error_type = TOOL_ERROR
    return True


class McpStreamAccumulator(StreamAccumulator):
    """An SSE stream of JSON-RPC messages: server notifications and requests, then the response."""

    def consume(self, event: Event, now: float) -> None:
        message = obj(load_json_object(event.data)) if event.data else {}
        if message and not self.done and _fold(message, self.result):
            self.output_chunk(now)
            self.done = True

    def output_messages(self) -> str | None:
        return None


class McpApi(WireApi):
    name = "mcp"
    operation = "execute_tool"  # of `tools/call`; its spans name the method each call used
    vendor = MCP
    routes = ()  # recognised by host or by the request (see the module's text)
    reports_usage = False

    def parse_request(self, body: bytes | None) -> ApiRequest:
        """The method, the tool (or prompt, or resource) and the id of a JSON-RPC request."""
        data = _message(body)
        if data is None:
            return ApiRequest()
        method = label(data.get("method"))
        params = obj(data.get("params"))
        attributes: dict[str, AttributeValue] = {}
        for name, value in (
            ("mcp.method.name", method),
            ("jsonrpc.request.id", _request_id(data.get("id"))),
            ("gen_ai.tool.name", label(params.get("name")) if method == "tools/call" else None),
            ("gen_ai.prompt.name", label(params.get("name")) if method == "prompts/get" else None),
            ("mcp.resource.uri", label(params.get("uri")) if method and method.startswith("resources/") else None),
        ):
            if value is not None:
                attributes[name] = value
        return ApiRequest(attributes=attributes)

    def parse_response(self, body: bytes | None, headers: Mapping[str, str] = NO_HEADERS) -> ApiResult:
        result = ApiResult()
        if (data := _message(body)) is not None:
            _fold(data, result)
        return result

    def stream_accumulator(self, started: float, capture_content: bool = False) -> StreamAccumulator:
        return McpStreamAccumulator(started, capture_content)

    def call_label(self, call: Call) -> str:
        return f"MCP {span_name(call.request)}"

    def captured_input(self, body: bytes | None) -> CapturedContent:
        return CapturedContent()

    def captured_output(self, body: bytes | None) -> str | None:
        return None


def _message(body: bytes | None) -> dict[str, Any] | None:
    """The JSON-RPC message of a body: the object, or the first of a batch (2025-03-26)."""
    if not body or body.lstrip()[:1] != b"[":
        return load_json_object(body)
    try:
        batch = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return next((item for item in batch if isinstance(item, dict)), None) if isinstance(batch, list) else None


API = McpApi()
