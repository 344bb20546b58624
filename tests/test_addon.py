"""The mitmproxy glue, driven through mitmproxy's own test helpers (taddons, tflow)."""

import gc
import importlib.util
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from mitmproxy import contentviews, exceptions, http
from mitmproxy.addons.proxyauth import ProxyAuth
from mitmproxy.addons.savehar import SaveHar
from mitmproxy.addons.view import View
from mitmproxy.test import taddons, tflow, tutils
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import addon as addon_module
import presentation
import telemetry
import telemetry_process
from harness.fake_anthropic import claude_code_request
from harness.fake_google import GenerateScript, array_chunks
from harness.fake_openai import ChatScript, ResponsesScript, compact, encode_whole, load_fixture
from harness.recordings import load_anthropic
from telemetry_process import MetricOptions
from wire.call import Call
from wire.hosts import match_host
from wire.openai_common import OPENAI
from wire.records import ApiRequest
from wire.values import LARGE_BODY

KEY = "sk-proj-Zq8xKp3mW7vR2tY9nL4bH6cJ1dF5gS0a"
CHAT_REQUEST = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say this is a test"}]}


class Sink:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.reader = InMemoryMetricReader()
        self.telemetry = telemetry.Telemetry(span_exporters=[self.spans], metric_readers=[self.reader])

    def metric_sum(self, name: str, **match: Any) -> float:
        total = 0.0
        data = self.reader.get_metrics_data()
        for rm in data.resource_metrics if data else []:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name != name:
                        continue
                    for point in metric.data.data_points:
                        attributes = point.attributes or {}
                        if all(attributes.get(k.replace("__", ".")) == v for k, v in match.items()):
                            total += getattr(point, "sum", None) or getattr(point, "value", 0) or 0
        return total

    def finished_spans(self) -> list[Any]:
        self.telemetry.tracer_provider.force_flush()
        return list(self.spans.get_finished_spans())


@pytest.fixture
def sink() -> Iterator[Sink]:
    instance = Sink()
    yield instance
    instance.telemetry.shutdown(1)


def metering_into(sink: Sink) -> addon_module.GenAIMeter:
    """The addon, its calls recorded by `sink` in this process."""
    return addon_module.GenAIMeter(telemetry=lambda: sink.telemetry)


@pytest.fixture
def context(sink: Sink) -> Iterator[tuple[addon_module.GenAIMeter, Any]]:
    """The addon with a flow view loaded before it, as in mitmweb: flows are kept, and get comments."""
    metering = metering_into(sink)
    with taddons.context(View(), metering) as tctx:
        tctx.configure(metering, genai_gc_freeze=False)  # a full collection per test adds up
        metering.running()  # options set from now on are set at run time (mitmweb's editor, `set`)
        yield metering, tctx


@pytest.fixture
def mitmdump_context(sink: Sink) -> Iterator[tuple[addon_module.GenAIMeter, Any]]:
    """The addon as in mitmdump without -w: no flow view, flows end with their call."""
    metering = metering_into(sink)
    with taddons.context(metering) as tctx:
        tctx.configure(metering, genai_gc_freeze=False)
        metering.running()
        yield metering, tctx


def chat_flow(
    body: dict[str, Any] | bytes = CHAT_REQUEST, host: str = "api.openai.com", path: str = "/v1/chat/completions"
) -> http.HTTPFlow:
    content = body if isinstance(body, bytes) else compact(body).encode()
    request = tutils.treq(
        host=host,
        port=443,
        scheme=b"https",
        method=b"POST",
        path=path.encode(),
        headers=http.Headers(authorization=f"Bearer {KEY}", content_type="application/json"),
        content=content,
    )
    return tflow.tflow(req=request)


def json_response(body: dict[str, Any], status: int = 200) -> http.Response:
    return http.Response.make(status, compact(body).encode(), {"content-type": "application/json"})


def stream_through(metering: addon_module.GenAIMeter, flow: http.HTTPFlow, upstream: bytes, piece: int) -> bytes:
    """Run the response hooks as mitmproxy does for a streamed body; return what the client got."""
    metering.responseheaders(flow)
    assert flow.response is not None and callable(flow.response.stream)
    sent: list[bytes] = []
    for position in range(0, len(upstream), piece):
        out = flow.response.stream(upstream[position : position + piece])
        sent.extend([out] if isinstance(out, bytes) else out)
    out = flow.response.stream(b"")
    sent.extend([out] if isinstance(out, bytes) else out)
    metering.response(flow)
    return b"".join(sent)


def sse_response(encoding: str | None = None) -> http.Response:
    headers = {"content-type": "text/event-stream; charset=utf-8"}
    if encoding:
        headers["content-encoding"] = encoding
    response = http.Response.make(200, b"", headers)
    return response


def test_plain_completion_is_recorded_and_summarized(context, sink):
    metering, _ = context
    flow = chat_flow()
    metering.request(flow)
    recorded = json.loads(load_fixture("test_chat_completion_with_content")["response"]["body"]["string"])
    flow.response = json_response(recorded)
    metering.responseheaders(flow)
    assert flow.response.stream is False  # plain JSON is left to mitmproxy
    metering.response(flow)
    usage = recorded["usage"]
    assert sink.metric_sum("gen_ai.client.token.usage", gen_ai__token__type="input") == usage["prompt_tokens"]
    assert sink.metric_sum("gen_ai.client.token.usage", gen_ai__token__type="output") == usage["completion_tokens"]
    assert sink.metric_sum("tokens_counter", api_key="sk-proj-...gS0a") == usage["total_tokens"]
    assert (
        flow.comment.startswith("$") and f"· {usage['prompt_tokens']}→{usage['completion_tokens']} tok" in flow.comment
    )
    assert flow.comment.endswith(f"chat {recorded['model']}")
    assert not flow.marked
    assert addon_module.in_flight(flow) is None


def test_other_hosts_and_paths_are_not_touched(context, sink):
    metering, _ = context
    for flow in [chat_flow(host="example.com"), chat_flow(path="/v1/models")]:
        before = flow.request.content
        metering.request(flow)
        flow.response = json_response({"usage": {"prompt_tokens": 1, "completion_tokens": 1}})
        metering.response(flow)
        assert flow.request.content == before and not flow.comment
    assert addon_module.in_flight(flow) is None
    assert sink.finished_spans() == []


def test_configured_hosts_with_globs_and_providers(context, sink):
    metering, tctx = context
    tctx.configure(metering, genai_hosts=["*.example.com=vllm"])
    flow = chat_flow(host="llm.example.com")
    metering.request(flow)
    flow.response = json_response({"model": "m", "usage": {"prompt_tokens": 2, "completion_tokens": 3}})
    metering.response(flow)
    (span,) = sink.finished_spans()
    assert span.attributes["gen_ai.provider.name"] == "vllm"
    assert span.attributes["server.address"] == "llm.example.com"


def test_host_decisions_are_forgotten_on_reconfigure(context, sink):
    metering, tctx = context
    tctx.configure(metering, genai_hosts=["*.example.com=vllm"])
    metering.request(metered := chat_flow(host="llm.example.com"))
    assert addon_module.in_flight(metered) is not None and len(metering.hosts) == 1
    tctx.configure(metering, genai_hosts=["other.example.org=vllm"])
    metering.request(flow := chat_flow(host="llm.example.com"))
    assert addon_module.in_flight(flow) is None  # no longer a configured host


def test_bad_host_entries_are_refused(context):
    metering, tctx = context
    with pytest.raises(exceptions.OptionsError, match="Invalid genai_hosts entry 'a:99999'"):
        tctx.configure(metering, genai_hosts=["a:99999"])
    with pytest.raises(exceptions.OptionsError, match=r"a URL is not a host entry.*'api\.openai\.com'"):
        tctx.configure(metering, genai_extra_hosts=["https://api.openai.com/v1"])
    with pytest.raises(exceptions.OptionsError, match="HOST\\[:PORT\\]"):
        tctx.configure(metering, genai_hosts=[":::"])


def test_extra_hosts_keep_the_defaults_and_replacing_them_warns(context, sink, caplog):
    metering, tctx = context
    tctx.configure(metering, genai_extra_hosts=["llm.example.com=vllm"])
    for host in ("llm.example.com", "api.openai.com"):
        flow = chat_flow(host=host)
        metering.request(flow)
        assert addon_module.in_flight(flow) is not None, host
    assert "replaces the default host list" not in caplog.text
    with caplog.at_level(logging.WARNING, logger="genai"):
        tctx.configure(metering, genai_hosts=["api.openai.com=openai"])
    assert re.search(r"genai_hosts replaces the default host list: \d+ default hosts are not metered now", caplog.text)
    assert "genai_extra_hosts" in caplog.text
    flow = chat_flow(host="api.anthropic.com")
    metering.request(flow)
    assert addon_module.in_flight(flow) is None


def test_stream_without_usage_gets_include_usage_upstream_and_the_client_does_not_see_it(context, sink):
    metering, _ = context
    client_body = {**CHAT_REQUEST, "stream": True}
    flow = chat_flow(client_body)
    metering.request(flow)
    upstream_request = json.loads(flow.request.content or b"")
    assert upstream_request["stream_options"] == {"include_usage": True}
    assert flow.request.headers["content-length"] == str(len(flow.request.content or b""))

    upstream = "".join(ChatScript(upstream_request).stream_events()).encode()
    flow.response = sse_response()
    received = stream_through(metering, flow, upstream, piece=13)
    assert received == "".join(ChatScript(client_body).stream_events()).encode()
    usage = ChatScript(client_body).usage()
    assert sink.metric_sum("gen_ai.client.token.usage", gen_ai__token__type="input") == usage["prompt_tokens"]
    assert sink.metric_sum("gen_ai.client.operation.time_to_first_chunk") > 0


@pytest.mark.parametrize("encoding", ["gzip", "br", "zstd", "deflate"])
def test_compressed_stream_is_stripped_and_stays_compressed(context, encoding):
    metering, _ = context
    client_body = {**CHAT_REQUEST, "stream": True}
    flow = chat_flow(client_body)
    metering.request(flow)
    upstream = "".join(ChatScript(json.loads(flow.request.content or b"")).stream_events()).encode()
    flow.response = sse_response(encoding)
    received = stream_through(metering, flow, encode_whole(upstream, encoding), piece=50)
    as_received = http.Response.make(200, b"", {"content-encoding": encoding})
    as_received.raw_content = received
    assert received != as_received.get_content()
    decoded = as_received.get_content()
    assert decoded == "".join(ChatScript(client_body).stream_events()).encode()


def test_a_client_that_asked_for_usage_gets_the_stream_untouched(context, sink):
    metering, _ = context
    body = compact({**CHAT_REQUEST, "stream": True, "stream_options": {"include_usage": True}}).encode()
    flow = chat_flow(body)
    metering.request(flow)
    assert flow.request.content == body
    upstream = "".join(ChatScript(json.loads(body)).stream_events()).encode()
    flow.response = sse_response()
    assert stream_through(metering, flow, upstream, piece=7) == upstream
    assert sink.metric_sum("tokens_counter") == ChatScript(json.loads(body)).usage()["total_tokens"]


def test_with_stream_usage_off_nothing_is_rewritten_and_no_tokens_are_guessed(context, sink):
    metering, tctx = context
    tctx.configure(metering, genai_stream_usage=False)
    body = compact({**CHAT_REQUEST, "stream": True}).encode()
    flow = chat_flow(body)
    metering.request(flow)
    assert flow.request.content == body
    upstream = "".join(ChatScript(json.loads(body)).stream_events()).encode()
    flow.response = sse_response()
    assert stream_through(metering, flow, upstream, piece=64) == upstream
    assert sink.metric_sum("gen_ai.client.token.usage") == 0
    assert sink.metric_sum("gen_ai.client.operation.duration") > 0
    assert sink.metric_sum("gen_ai.client.operation.time_to_first_chunk") > 0
    assert "usage unavailable" in flow.comment


@pytest.mark.parametrize(
    "body",
    [b'{"model":"m","stream":"yes"}', b"{not json", b'{"model":"m","stream":true,"stream_options":[1]}'],
)
def test_requests_that_cannot_be_rewritten_safely_pass_untouched(context, body):
    metering, _ = context
    flow = chat_flow(body)
    metering.request(flow)
    assert flow.request.content == body


def test_compressed_request_bodies_are_not_rewritten(context):
    metering, _ = context
    flow = chat_flow({**CHAT_REQUEST, "stream": True})
    flow.request.encode("gzip")
    raw = flow.request.raw_content
    metering.request(flow)
    assert flow.request.raw_content == raw
    state = addon_module.in_flight(flow)
    assert state is not None and state.request is None  # not to be rewritten: not read here
    assert state.request_body == compact({**CHAT_REQUEST, "stream": True}).encode()  # decoded for the child


def test_http_errors_record_the_openai_error_code(context, sink):
    metering, _ = context
    flow = chat_flow()
    metering.request(flow)
    body = load_fixture("test_chat_completion_404")["response"]["body"]["string"]
    flow.response = http.Response.make(404, body.encode(), {"content-type": "application/json"})
    metering.response(flow)
    (span,) = sink.finished_spans()
    assert span.attributes["error.type"] == "model_not_found"
    assert span.attributes["http.response.status_code"] == 404
    assert flow.marked and "error model_not_found (404)" in flow.comment


@pytest.mark.parametrize(
    ("message", "had_response", "expected"),
    [
        ("Client disconnected.", True, "client_aborted"),
        ("Connection killed.", False, "killed"),
        ("Connect call failed", False, "connection_error"),
        ("peer closed connection", True, "upstream_aborted"),
    ],
)
def test_error_hook_records_the_failure_with_its_duration(context, sink, message, had_response, expected):
    metering, _ = context
    flow = chat_flow({**CHAT_REQUEST, "stream": True})
    metering.request(flow)
    if had_response:
        flow.response = sse_response()
        metering.responseheaders(flow)
    flow.error = tflow.terr(message)
    metering.error(flow)
    (span,) = sink.finished_spans()
    assert span.attributes["error.type"] == expected
    assert sink.metric_sum("gen_ai.client.operation.duration", error__type=expected) > 0
    assert addon_module.in_flight(flow) is None


@pytest.mark.parametrize(
    ("upstream", "path"),
    [
        (  # as the upstream answers the include_usage the addon adds
            "".join(
                ChatScript({**CHAT_REQUEST, "stream": True, "stream_options": {"include_usage": True}}).stream_events()
            ).encode(),
            "/v1/chat/completions",
        ),
        (load_anthropic("test_sync_messages_create_streaming").response_body, "/v1/messages"),
    ],
    ids=["chat", "anthropic"],
)
def test_a_client_that_leaves_right_after_the_end_of_the_stream_did_not_abort(context, sink, upstream, path):
    """SDKs close the connection as soon as they read [DONE] (or message_stop), often before
    the upstream's last bytes reach mitmproxy, which then reports a client disconnect."""
    metering, _ = context
    flow = chat_flow({**CHAT_REQUEST, "stream": True}, path=path)
    metering.request(flow)
    flow.response = sse_response()
    metering.responseheaders(flow)
    assert callable(flow.response.stream)
    flow.response.stream(upstream)
    flow.error = tflow.terr("Client disconnected.")
    metering.error(flow)
    (span,) = sink.finished_spans()
    assert "error.type" not in span.attributes
    assert span.attributes["gen_ai.usage.output_tokens"] > 0
    half = chat_flow({**CHAT_REQUEST, "stream": True}, path=path)
    metering.request(half)
    half.response = sse_response()
    metering.responseheaders(half)
    assert callable(half.response.stream)
    half.response.stream(upstream[: len(upstream) // 2])  # left mid-stream: aborted
    half.error = tflow.terr("Client disconnected.")
    metering.error(half)
    assert sink.finished_spans()[-1].attributes["error.type"] == "client_aborted"


def test_traceparent_from_the_client_becomes_the_parent(context, sink):
    metering, _ = context
    flow = chat_flow()
    flow.request.headers["traceparent"] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    metering.request(flow)
    flow.response = json_response({"model": "m", "usage": {"prompt_tokens": 1, "completion_tokens": 1}})
    metering.response(flow)
    (span,) = sink.finished_spans()
    assert format(span.parent.span_id, "016x") == "00f067aa0ba902b7"


def test_a_bug_in_a_hook_never_reaches_mitmproxy(context, caplog, monkeypatch):
    metering, _ = context
    flow = chat_flow()
    metering.request(flow)

    def explode(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(addon_module, "Call", explode)
    flow.response = json_response({})
    metering.response(flow)  # must not raise
    (first,) = [record for record in caplog.records if "the response hook failed" in record.getMessage()]
    assert first.getMessage() == "genai: the response hook failed; the flow is unaffected."
    assert first.exc_info is not None and "RuntimeError: boom" in caplog.text  # its traceback
    caplog.clear()
    again = chat_flow()
    metering.request(again)
    again.response = json_response({})
    metering.response(again)
    assert "response hook failed" not in caplog.text  # counted, told in the next summary line
    assert metering.errors.count("the response hook") == 2


def test_a_failing_parser_turns_the_tap_into_a_pass_through(context, monkeypatch):
    metering, _ = context
    flow = chat_flow({**CHAT_REQUEST, "stream": True})  # include_usage added: filtered, to take it out again
    metering.request(flow)
    flow.response = sse_response()
    metering.responseheaders(flow)
    tap = flow.response.stream
    assert isinstance(tap, addon_module.StreamTap) and tap.filtering is not None
    monkeypatch.setattr(tap.filtering, "filter", lambda *a: 1 / 0)
    assert tap(b"data: x\n\n") == b"data: x\n\n"
    assert tap(b"data: y\n\n") == b"data: y\n\n"
    assert metering.errors.count("reading a stream") == 1


ASKED_FOR_USAGE = {**CHAT_REQUEST, "stream": True, "stream_options": {"include_usage": True}}


def usage_stream_flow(metering: addon_module.GenAIMeter) -> http.HTTPFlow:
    """A streamed chat call that asked for usage itself, past its request hook, its response begun."""
    flow = chat_flow(ASKED_FOR_USAGE)
    metering.request(flow)
    flow.response = sse_response()
    return flow


def test_a_stream_the_addon_does_not_change_is_kept_as_it_passes_and_read_by_telemetry(context, sink):
    metering, _ = context
    body = ASKED_FOR_USAGE
    flow = usage_stream_flow(metering)
    metering.responseheaders(flow)
    assert flow.response is not None
    tap = flow.response.stream
    assert isinstance(tap, addon_module.StreamTap)
    upstream = "".join(ChatScript(body).stream_events()).encode()
    for position in range(0, len(upstream), 50):
        tap(upstream[position : position + 50])
    # No reader was made: nothing was read on the loop, every byte was kept.
    assert tap.reading is None and tap.received is not None and bytes(tap.received.body) == upstream
    metering.response(flow)  # the sink (the telemetry process's pipeline) reads it
    assert sink.metric_sum("tokens_counter") == ChatScript(body).usage()["total_tokens"]
    assert sink.metric_sum("gen_ai.client.operation.time_to_first_chunk") > 0


def test_a_stream_past_the_large_body_size_is_read_as_it_passes_from_then_on(context, sink):
    metering, _ = context
    body = ASKED_FOR_USAGE
    flow = usage_stream_flow(metering)
    events = ChatScript(body).stream_events()
    padding = f": {'x' * 4096}\n\n".encode()  # SSE comments: bytes that carry no event
    upstream = events[0].encode() + padding * (LARGE_BODY // len(padding) + 1) + "".join(events[1:]).encode()
    assert stream_through(metering, flow, upstream, piece=64 * 1024) == upstream
    assert flow.response is not None
    tap = flow.response.stream
    assert isinstance(tap, addon_module.StreamTap) and tap.received is None and tap.reading is not None
    assert sink.metric_sum("tokens_counter") == ChatScript(body).usage()["total_tokens"]


def test_keys_never_appear_unmasked_in_comments_logs_or_spans(context, sink, caplog):
    metering, _ = context
    flow = chat_flow()
    metering.request(flow)
    flow.response = json_response({"model": "m", "usage": {"prompt_tokens": 1, "completion_tokens": 1}})
    metering.response(flow)
    secret = KEY.removeprefix("sk-proj-")
    pieces = {secret[i : i + 8] for i in range(len(secret) - 7)}
    exported = str([dict(span.attributes) for span in sink.finished_spans()]) + str(sink.reader.get_metrics_data())
    for text in (flow.comment, caplog.text, exported):
        assert not any(piece in text for piece in pieces)


def test_script_reload_keeps_the_providers_and_finishes_flows_in_flight(context, sink, monkeypatch):
    """mitmproxy re-executes addon.py on reload; the sibling telemetry module stays imported, and
    with it the process-wide telemetry process (here the sink) that the reloaded addon finds."""
    metering, _ = context
    shared = telemetry_process.ProcessWideTelemetry(start=lambda: sink.telemetry)
    monkeypatch.setattr(telemetry_process, "telemetry_process", shared)  # what the reloaded addon imports
    started_before = chat_flow({**CHAT_REQUEST, "stream": True})
    metering.request(started_before)
    started_before.response = sse_response()
    metering.responseheaders(started_before)
    metering.done()  # a reload calls done() on the old instance; the process is not exiting
    spec = importlib.util.spec_from_file_location("addon_reloaded", addon_module.__file__)
    assert spec and spec.loader
    reloaded_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reloaded_module)
    (reloaded,) = reloaded_module.addons
    with taddons.context(reloaded):
        assert reloaded.telemetry is metering.telemetry is sink.telemetry
        upstream = "".join(ChatScript(json.loads(started_before.request.content or b"")).stream_events()).encode()
        assert callable(started_before.response.stream)
        started_before.response.stream(upstream)
        started_before.response.stream(b"")
        reloaded.response(started_before)  # finished by the new instance
        flow = chat_flow()
        reloaded.request(flow)
        flow.response = json_response({"model": "m", "usage": {"prompt_tokens": 1, "completion_tokens": 1}})
        reloaded.response(flow)
    spans = sink.finished_spans()
    assert len(spans) == 2
    assert spans[0].attributes["gen_ai.usage.output_tokens"] == 4


def test_compressed_json_responses_are_read(context, sink):
    metering, _ = context
    flow = chat_flow()
    metering.request(flow)
    flow.response = json_response({"model": "m", "usage": {"prompt_tokens": 11, "completion_tokens": 7}})
    flow.response.encode("gzip")
    assert flow.response.raw_content != flow.response.get_content()
    metering.response(flow)
    assert sink.metric_sum("gen_ai.client.token.usage", gen_ai__token__type="input") == 11


AZURE_PATH = "/openai/deployments/prod-gpt/chat/completions?api-version={}"


@pytest.mark.parametrize(("api_version", "rewritten"), [("2024-10-21", True), ("2024-06-01", False)])
def test_azure_streams_get_include_usage_only_on_api_versions_that_accept_it(context, api_version, rewritten):
    metering, _ = context
    body = {"messages": CHAT_REQUEST["messages"], "stream": True}
    flow = chat_flow(body, host="myres.openai.azure.com", path=AZURE_PATH.format(api_version))
    del flow.request.headers["authorization"]
    flow.request.headers["api-key"] = "0123456789abcdef0123456789abcdef"
    metering.request(flow)
    assert ("stream_options" in json.loads(flow.request.content or b"")) is rewritten
    state = addon_module.in_flight(flow)
    assert state is not None
    assert state.origin.provider == "azure.ai.openai"
    assert state.endpoint.deployment == "prod-gpt"
    assert state.origin.api_key == "...cdef"


def test_azure_stream_without_usage_is_timed_and_named_by_the_response_model(context, sink):
    metering, _ = context
    body = {"messages": CHAT_REQUEST["messages"], "stream": True}
    flow = chat_flow(body, host="myres.openai.azure.com", path=AZURE_PATH.format("2024-06-01"))
    metering.request(flow)
    upstream = "".join(ChatScript(body, azure=True).stream_events()).encode()
    flow.response = sse_response()
    assert stream_through(metering, flow, upstream, piece=40) == upstream
    (span,) = sink.finished_spans()
    assert span.name == "chat gpt-4o-mini-2024-07-18"
    assert "gen_ai.usage.input_tokens" not in span.attributes
    assert "usage unavailable" in flow.comment


def test_responses_api_stream_passes_untouched_and_is_counted(context, sink):
    metering, _ = context
    request = {"model": "gpt-4o-mini", "input": "Say this is a test", "stream": True}
    flow = chat_flow(request, path="/v1/responses")
    metering.request(flow)
    assert json.loads(flow.request.content or b"") == request  # the Responses API always reports usage
    answer = ResponsesScript(request)
    upstream = "".join(answer.stream_events()).encode()
    flow.response = sse_response()
    assert stream_through(metering, flow, upstream, piece=33) == upstream
    (span,) = sink.finished_spans()
    assert span.attributes["openai.api.type"] == "responses"
    assert span.attributes["gen_ai.usage.input_tokens"] == answer.response()["usage"]["input_tokens"]
    assert span.attributes["gen_ai.response.time_to_first_chunk"] > 0


def test_cost_is_computed_from_the_response_model_and_shown(context, sink):
    metering, _ = context
    flow = chat_flow()
    metering.request(flow)
    flow.response = json_response(
        {"model": "gpt-4o-mini-2024-07-18", "usage": {"prompt_tokens": 1000, "completion_tokens": 500}}
    )
    metering.response(flow)
    assert sink.metric_sum("gen_ai.client.token.cost") == pytest.approx(0.00045)
    assert "$0.000450" in flow.comment


def test_an_unknown_model_is_named_once_and_gets_no_cost(context, sink, caplog):
    metering, _ = context
    caplog.set_level(logging.INFO, logger="genai")
    for _ in range(3):
        flow = chat_flow()
        metering.request(flow)
        flow.response = json_response({"model": "my-llama", "usage": {"prompt_tokens": 1, "completion_tokens": 1}})
        metering.response(flow)
    assert caplog.text.count("no price for model 'my-llama'") == 1
    assert sink.metric_sum("gen_ai.client.token.cost") == 0


def test_a_user_price_file_is_used_and_a_bad_one_refused(context, sink, tmp_path):
    metering, tctx = context
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"models": {"my-llama": {"input": 1.0, "output": 3.0}}}))
    tctx.configure(metering, genai_prices=str(prices))
    flow = chat_flow()
    metering.request(flow)
    flow.response = json_response({"model": "my-llama", "usage": {"prompt_tokens": 1000, "completion_tokens": 1000}})
    metering.response(flow)
    assert sink.metric_sum("gen_ai.client.token.cost") == pytest.approx(0.004)
    prices.write_text("{oops")
    with pytest.raises(exceptions.OptionsError, match="Invalid genai_prices: cannot read price file"):
        tctx.configure(metering, genai_prices=str(prices))
    tctx.configure(metering, genai_prices=None)
    with pytest.raises(exceptions.OptionsError, match="Invalid genai_prices_update: 'ftp://x' is not an http"):
        tctx.configure(metering, genai_prices_update="ftp://x")


def test_default_hosts_name_the_known_providers(context):
    metering, _ = context
    expected = {
        "api.groq.com": "groq",
        "api.deepseek.com": "deepseek",
        "api.mistral.ai": "mistral_ai",
        "api.x.ai": "x_ai",
        "api.perplexity.ai": "perplexity",
        "openrouter.ai": "openrouter",
        "eastus.openai.azure.com": "azure.ai.openai",
        "generativelanguage.googleapis.com": "gcp.gemini",
        "aiplatform.googleapis.com": "gcp.vertex_ai",
        "europe-west4-aiplatform.googleapis.com": "gcp.vertex_ai",
        "api.together.xyz": "together",
        "api.fireworks.ai": "fireworks",
        "api.cerebras.ai": "cerebras",
        "api.moonshot.ai": "moonshot_ai",
    }
    for host, provider in expected.items():
        rule = match_host(metering.settings.rules, host, 443)
        assert rule is not None and rule.provider == provider
    assert match_host(metering.settings.rules, "storage.googleapis.com", 443) is None  # not every Google API


@pytest.mark.parametrize(
    ("host", "path", "vendor", "operation", "provider"),
    [
        ("api.fireworks.ai", "/inference/v1/chat/completions", "openai", "chat", "fireworks"),
        ("api.moonshot.ai", "/anthropic/v1/messages", "anthropic", "chat", "moonshot_ai"),  # Anthropic-compatible
        ("generativelanguage.googleapis.com", "/v1beta/openai/chat/completions", "openai", "chat", "gcp.gemini"),
        (
            "generativelanguage.googleapis.com",
            "/v1beta/models/g:generateContent",
            "gcp",
            "generate_content",
            "gcp.gemini",
        ),
    ],
)
def test_compatible_hosts_speak_the_dialect_their_route_says(context, sink, host, path, vendor, operation, provider):
    metering, _ = context
    flow = chat_flow({"model": "m", "messages": [], "max_tokens": 5}, host=host, path=path)
    metering.request(flow)
    flow.response = json_response({"error": {"code": 400, "status": "INVALID_ARGUMENT", "type": "invalid"}}, 400)
    metering.response(flow)
    (span,) = sink.finished_spans()
    assert span.attributes[f"{vendor}.api_key.masked"] == f"sk-proj-...{KEY[-4:]}"  # the wire API's own namespace
    assert (span.attributes["gen_ai.operation.name"], span.attributes["gen_ai.provider.name"]) == (operation, provider)


def test_a_key_in_the_query_is_masked_and_the_query_is_shown_nowhere(context, sink, caplog):
    metering, _ = context
    metering.shown.flows_kept = True
    key = "AIzaSyQ1w2E3r4T5y6U7i8O9p0AsDfGhJkLzXcV"
    path = f"/v1beta/models/gemini-2.5-flash:generateContent?key={key}&alt=json"
    flow = chat_flow({"contents": [{"parts": [{"text": "hi"}]}]}, host="generativelanguage.googleapis.com", path=path)
    flow.request.headers.pop("authorization")
    metering.request(flow)
    answer = {
        "candidates": [{"finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2},
    }
    flow.response = json_response(answer)
    caplog.set_level(logging.INFO, logger="genai")
    metering.response(flow)
    (span,) = sink.finished_spans()
    assert span.attributes["gcp.api_key.masked"] == f"AIza...{key[-4:]}"
    assert flow.request.path == path  # forwarded unchanged
    shown = flow.comment + caplog.text + repr(dict(span.attributes))
    assert "3→2 tok" in flow.comment and key[4:12] not in shown and "key=" not in shown


def test_content_is_captured_only_when_asked(context, sink, monkeypatch):
    metering, tctx = context
    secret_prompt = "my very private prompt"
    body = {"model": "m", "messages": [{"role": "user", "content": secret_prompt}]}
    answer = {
        "model": "m",
        "choices": [{"index": 0, "message": {"content": "private answer"}, "finish_reason": "stop"}],
    }

    def call() -> Any:
        flow = chat_flow(body)
        metering.request(flow)
        flow.response = json_response(answer)
        metering.response(flow)
        return sink.finished_spans()[-1]

    span = call()
    assert not [k for k in span.attributes if k.startswith("gen_ai.") and "messages" in k]
    assert secret_prompt not in str(dict(span.attributes))

    tctx.configure(metering, genai_capture_content=True)
    span = call()
    assert json.loads(span.attributes["gen_ai.input.messages"])[0]["parts"][0]["content"] == secret_prompt
    assert json.loads(span.attributes["gen_ai.output.messages"])[0]["parts"][0]["content"] == "private answer"

    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")  # read at configure, as at start
    tctx.configure(metering, genai_capture_content=False)
    assert "gen_ai.input.messages" in call().attributes


@pytest.mark.parametrize(
    ("listen_host", "proxyauth", "warned"),
    [("", None, True), ("0.0.0.0", None, True), ("127.0.0.1", None, False), ("", "user:pass", False)],
)
def test_a_warning_when_listening_on_all_interfaces_without_auth(sink, caplog, listen_host, proxyauth, warned):
    metering = metering_into(sink)
    with taddons.context(metering, ProxyAuth()) as tctx:
        tctx.configure(metering, listen_host=listen_host, proxyauth=proxyauth)
        metering.running()
    assert ("listens on all interfaces without proxy authentication" in caplog.text) is warned


def streamed_and_kept(metering: addon_module.GenAIMeter, upstream: bytes, body: dict[str, Any]) -> bytes | None:
    flow = chat_flow(body)
    metering.request(flow)
    flow.response = sse_response()
    flow.response.raw_content = None  # as after a real streamed response
    stream_through(metering, flow, upstream, piece=50)
    return flow.response.raw_content


def test_streamed_bodies_are_kept_for_mitmweb_up_to_the_limit(sink):
    body = {**CHAT_REQUEST, "stream": True, "stream_options": {"include_usage": True}}
    upstream = "".join(ChatScript(body).stream_events()).encode()
    metering = metering_into(sink)
    with taddons.context(View(), metering) as tctx:  # a flow view, loaded before scripts as in mitmweb
        metering.running()  # as mitmproxy calls it once every addon is loaded
        assert streamed_and_kept(metering, upstream, body) == upstream
        tctx.configure(metering, genai_stream_store_limit=len(upstream) - 1)
        assert streamed_and_kept(metering, upstream, body) is None  # over the limit: nothing kept, nothing half


@pytest.mark.parametrize("keeps_flows", [False, True], ids=["mitmdump", "mitmdump with a HAR dump"])
def test_mitmdump_keeps_a_flow_for_its_comment_only_where_flows_outlive_the_call(sink, tmp_path, keeps_flows):
    """Without a view, -w or a HAR dump mitmdump drops each flow when it is done: the log line is
    all that is shown, and no flow waits for its comment."""
    metering = metering_into(sink)
    with taddons.context(SaveHar(), metering) as tctx:
        if keeps_flows:
            tctx.configure(metering, hardump=str(tmp_path / "flows.har"))
        metering.running()
        flow = chat_flow()
        metering.request(flow)
        flow.response = json_response({"model": "m", "usage": {"prompt_tokens": 1, "completion_tokens": 1}})
        metering.response(flow)
    assert metering.shown.waiting == 0
    assert bool(flow.comment) is keeps_flows


@pytest.mark.parametrize("freeze", [True, False])
def test_start_ups_objects_leave_the_garbage_collectors_reach_once_mitmproxy_runs(sink, freeze):
    metering = metering_into(sink)
    gc.unfreeze()
    with taddons.context(metering) as tctx:
        tctx.configure(metering, genai_gc_freeze=freeze)
        assert gc.get_freeze_count() == 0
        metering.running()
        assert (gc.get_freeze_count() > 0) is freeze
        tctx.configure(metering, genai_gc_freeze=not freeze)  # at run time (`set`, mitmweb's options)
        assert (gc.get_freeze_count() > 0) is not freeze


def test_mitmdump_keeps_no_streamed_bodies(mitmdump_context):
    metering, _ = mitmdump_context
    body = {**CHAT_REQUEST, "stream": True, "stream_options": {"include_usage": True}}
    upstream = "".join(ChatScript(body).stream_events()).encode()
    assert streamed_and_kept(metering, upstream, body) is None


def test_the_contentview_shows_the_reassembled_stream(context):  # the context runs load()
    body = load_fixture("test_chat_completion_streaming")["response"]["body"]["string"].encode()
    flow = chat_flow({**CHAT_REQUEST, "stream": True})
    flow.response = http.Response.make(200, body, {"content-type": "text/event-stream"})
    view = presentation.LLMStreamView()
    metadata = contentviews.Metadata(flow=flow, content_type="text/event-stream", http_message=flow.response)
    assert view.render_priority(body, metadata) > 1
    text = view.prettify(body, metadata)
    assert '"This is a test."' in text and "usage: 12 input" in text
    flow.comment = "chat gpt-4 · 12 in / 5 out"
    assert view.prettify(body, metadata).startswith("metered: chat gpt-4 · 12 in / 5 out\n")
    other = chat_flow(path="/v1/models")
    other_metadata = contentviews.Metadata(flow=other, content_type="text/event-stream", http_message=other.response)
    assert view.render_priority(body, other_metadata) == 0
    assert "llm stream" in contentviews.registry  # registered by load()


def test_the_contentview_shows_a_gemini_json_array_stream_and_not_a_plain_answer(context):
    chunks = GenerateScript("gemini-2.5-flash", {}).stream_chunks()
    body = "".join(array_chunks(chunks)).encode()
    view = presentation.LLMStreamView()
    host = "generativelanguage.googleapis.com"
    streamed = chat_flow(host=host, path="/v1beta/models/gemini-2.5-flash:streamGenerateContent")
    plain = chat_flow(host=host, path="/v1beta/models/gemini-2.5-flash:generateContent")
    for flow in (streamed, plain):
        flow.response = http.Response.make(200, body, {"content-type": "application/json"})
    array = contentviews.Metadata(flow=streamed, content_type="application/json", http_message=streamed.response)
    assert view.render_priority(body, array) > 1
    assert "Hello from a fake Gemini." in view.prettify(body, array)
    answer = contentviews.Metadata(flow=plain, content_type="application/json", http_message=plain.response)
    assert view.render_priority(body, answer) == 0  # a plain JSON answer keeps mitmproxy's JSON view


def test_summary_commands(context):
    metering, tctx = context
    flow = chat_flow()
    metering.request(flow)
    flow.response = json_response({"model": "gpt-4o-mini", "usage": {"prompt_tokens": 1000, "completion_tokens": 10}})
    metering.response(flow)
    table = tctx.master.commands.execute("genai.summary")
    assert "gpt-4o-mini" in table and "1,000" in table
    tctx.master.commands.execute("genai.reset")
    assert tctx.master.commands.execute("genai.summary") == "No LLM API calls observed yet."


@pytest.mark.parametrize("shown", [False, True], ids=["quiet", "shown"])
def test_the_hooks_leave_bodies_unparsed_for_the_telemetry_process(request, sink, monkeypatch, shown):
    """Whether calls are shown (a log line, a flow comment in mitmweb) or not (mitmdump -q): the hooks
    keep the bodies unparsed; the recorder parses and prices them, and describes back the calls shown."""
    metering, _ = request.getfixturevalue("context" if shown else "mitmdump_context")
    metering.shown.log_lines = shown
    seen: list[Call] = []
    record_call = sink.telemetry.record_call

    def spy(call: Call, options: MetricOptions) -> None:
        seen.append(call)
        assert call.request_body is not None and call.response_body is not None  # not parsed yet
        record_call(call, options)

    monkeypatch.setattr(sink.telemetry, "record_call", spy)
    recorded = json.loads(load_fixture("test_chat_completion_with_content")["response"]["body"]["string"])
    flow = chat_flow()
    metering.request(flow)
    flow.response = json_response(recorded)
    metering.responseheaders(flow)
    metering.response(flow)
    failed = chat_flow()
    metering.request(failed)
    failed.response = json_response({"error": {"code": "model_not_found", "type": "invalid_request_error"}}, 404)
    metering.response(failed)
    assert len(seen) == 2
    if shown:  # the telemetry side's line, with its price
        assert flow.comment.startswith("$") and "12→5 tok" in flow.comment and failed.marked
        assert failed.comment.startswith("error model_not_found (404)")
    else:
        assert not flow.comment and not failed.comment and not failed.marked  # nothing shown, nothing described
    (span, error_span) = sorted(sink.finished_spans(), key=lambda s: s.attributes.get("http.response.status_code"))
    usage = recorded["usage"]
    assert span.attributes["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert span.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert span.attributes["gen_ai.usage.cost_usd"] > 0
    assert error_span.attributes["error.type"] == "model_not_found"
    assert sink.metric_sum("gen_ai.client.token.usage", gen_ai__token__type="input") == usage["prompt_tokens"]
    table = sink.telemetry.summary_table()
    assert table is not None and recorded["model"] in table


def test_streamed_requests_are_parsed_in_the_hook_even_when_calls_are_not_shown(context):
    metering, _ = context
    metering.shown.log_lines = False
    flow = chat_flow({**CHAT_REQUEST, "stream": True})
    metering.request(flow)
    state = addon_module.in_flight(flow)
    assert state is not None and isinstance(state.request, ApiRequest) and flow.metadata[presentation.USAGE_REMOVED]


def test_large_bodies_are_read_at_their_edges_here_not_copied_down_the_pipe(context, sink, monkeypatch):
    metering, _ = context
    metering.shown.log_lines = False
    big = {**CHAT_REQUEST, "messages": [{"role": "user", "content": "x" * (LARGE_BODY + 1)}]}
    flow = chat_flow(big)
    metering.request(flow)
    state = addon_module.in_flight(flow)
    assert state is not None and isinstance(state.request, ApiRequest)
    seen: list[Call] = []
    monkeypatch.setattr(sink.telemetry, "record_call", lambda call, options: seen.append(call))
    recorded = json.loads(load_fixture("test_chat_completion_with_content")["response"]["body"]["string"])
    flow.response = json_response({**recorded, "padding": "y" * (LARGE_BODY + 1)})
    metering.responseheaders(flow)
    metering.response(flow)
    (call,) = seen
    assert call.response_body is None and call.result.usage is not None
    assert call.result.usage.input_tokens == recorded["usage"]["prompt_tokens"]


def test_picked_headers_reads_only_the_named_fields_in_any_case_first_one_wins():
    headers = http.Headers(
        [
            (b"Content-Type", b"application/json"),
            (b"X-RateLimit-Remaining-Tokens", b"149984"),
            (b"set-cookie", b"secret=1"),
            (b"x-ratelimit-remaining-tokens", b"1"),
            (b"x-request-id", "req_\u00e9".encode()),
        ]
    )
    picked = addon_module.picked_headers(headers, addon_module.RESPONSE_FIELDS)
    assert picked == {
        "content-type": "application/json",
        "x-ratelimit-remaining-tokens": "149984",
        "x-request-id": "req_\u00e9",
    }
    assert addon_module.picked_headers(headers, addon_module.REQUEST_FIELDS) == {}


def test_a_requests_fields_include_any_x_session_id_for_the_generic_session_rule():
    headers = http.Headers([(b"X-Lore-Session-Id", b"lore-1"), (b"x-other", b"no"), (b"x-session-ids", b"no")])
    assert addon_module.picked_headers(headers, addon_module.REQUEST_FIELDS, any_session=True) == {
        "x-lore-session-id": "lore-1"
    }
    assert addon_module.picked_headers(headers, addon_module.REQUEST_FIELDS) == {}


def test_the_response_fields_the_hooks_pick_are_all_the_upstream_parser_reads():
    recorded = load_fixture("test_chat_completion_streaming")["response"]["headers"]
    fields = [
        (name.encode(), (value[0] if isinstance(value, list) else value).encode()) for name, value in recorded.items()
    ]
    azure = [(name, b"" if name.lower() == b"x-request-id" else value) for name, value in fields]
    for headers in (http.Headers(fields), http.Headers([*azure, (b"apim-request-id", b"3f2c1a")])):
        picked = addon_module.picked_headers(headers, addon_module.RESPONSE_FIELDS)
        everything = {name.lower(): value for name, value in headers.items()}
        assert len(picked) < len(everything)
        assert OPENAI.upstream(picked, 0) == OPENAI.upstream(everything, 0)
        assert OPENAI.upstream(picked, 0).rate_limits.known()


# --- Anthropic's Messages API -------------------------------------------------------------

ANTHROPIC_KEY = "sk-ant-api03-Zq8xKp3mW7vR2tY9nL4bH6cJ1dF5gS0a-Xw9Qm2Lk7Rt4Vb8Np3Hs6Jd1Fg5Zc0Ya"
CLAUDE_CODE_BETAS = (
    "claude-code-20250219,oauth-2025-04-20,interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14,"
    "context-1m-2025-08-07,context-management-2025-06-27,prompt-caching-scope-2026-01-05,effort-2025-11-24,"
    "tool-search-2025-10-19"
)


def anthropic_flow(
    body: bytes, method: str = "POST", path: str = "/v1/messages?beta=true", host: str = "api.anthropic.com", **headers
) -> http.HTTPFlow:
    request = tutils.treq(
        host=host,
        port=443,
        scheme=b"https",
        method=method.encode(),
        path=path.encode(),
        headers=http.Headers(
            **{
                "x-api-key": ANTHROPIC_KEY,
                "anthropic-version": "2023-06-01",
                "content_type": "application/json",
                "user_agent": "claude-cli/2.1.197 (external, sdk-cli)",
                **headers,
            }
        ),
        content=body,
    )
    return tflow.tflow(req=request)


def claude_code_body(model: str = "claude-sonnet-4-5-20250929") -> bytes:
    return compact(claude_code_request(model)).encode()


def test_a_claude_code_session_meters_exactly_its_streamed_message(context, sink):
    """What Claude Code 2.1 sends, headless through the proxy: two GETs that are not inference, then
    one streamed POST /v1/messages?beta=true with nine betas, cache_control blocks and nine tools."""
    metering, _ = context
    for path in ("/api/claude_code/policy_limits", "/api/claude_code/settings"):
        flow = anthropic_flow(b"", method="GET", path=path)
        metering.request(flow)
        assert addon_module.in_flight(flow) is None
    upstream = load_anthropic("test_sync_messages_create_streaming").response_body
    flow = anthropic_flow(claude_code_body(), **{"anthropic-beta": CLAUDE_CODE_BETAS})
    before = flow.request.content
    metering.request(flow)
    assert flow.request.content == before  # Anthropic always sends usage: never rewritten
    flow.response = sse_response()
    assert stream_through(metering, flow, upstream, 17) == upstream
    (span,) = sink.finished_spans()
    attributes = dict(span.attributes)
    assert span.name == "chat claude-sonnet-4-5-20250929"
    assert (attributes["gen_ai.provider.name"], attributes["gen_ai.operation.name"]) == ("anthropic", "chat")
    assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == (13, 5)
    assert attributes["gen_ai.response.finish_reasons"] == ("end_turn",)
    assert attributes["gen_ai.response.id"] == "msg_01VY8H3oPFs4WWVnJXFDxNhU"
    assert len(attributes["anthropic.beta"]) == 9 and attributes["anthropic.version"] == "2023-06-01"
    assert attributes["anthropic.request.thinking.budget_tokens"] == 31999
    assert attributes["anthropic.api_key.masked"] == f"sk-ant-api03-...{ANTHROPIC_KEY[-4:]}"
    assert "gen_ai.response.time_to_first_chunk" in attributes
    assert sink.metric_sum("gen_ai.client.token.usage", gen_ai__provider__name="anthropic") == 18
    assert sink.metric_sum("tokens_counter", api_key=f"sk-ant-api03-...{ANTHROPIC_KEY[-4:]}") == 18
    assert flow.comment.startswith("$") and " · 13→5 tok · " in flow.comment and " · first content " in flow.comment
    assert flow.comment.endswith(" · chat claude-sonnet-4-20250514")


@pytest.mark.parametrize("path", ["/v1/messages/count_tokens", "/v1/messages/batches", "/v1/messages/batches/b_1"])
def test_token_counting_and_batches_are_not_metered_as_calls(context, sink, path):
    metering, _ = context
    flow = anthropic_flow(claude_code_body(), path=path)
    metering.request(flow)
    assert addon_module.in_flight(flow) is None


def test_an_anthropic_error_body_gives_its_error_type_and_a_bearer_token_is_masked(context, sink):
    metering, _ = context
    token = "sk-ant-oat01-" + "Q" * 60 + "wxyz"
    flow = anthropic_flow(claude_code_body(), authorization=f"Bearer {token}")
    flow.request.headers.pop("x-api-key")
    metering.request(flow)
    body = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    flow.response = json_response(body, 529)
    metering.responseheaders(flow)
    metering.response(flow)
    (span,) = sink.finished_spans()
    assert span.attributes["error.type"] == "overloaded_error" and flow.marked
    assert span.attributes["anthropic.api_key.masked"] == "sk-ant-oat01-...wxyz"
    assert "Q" * 8 not in str(dict(span.attributes)) + flow.comment


def test_an_anthropic_compatible_path_on_an_openai_compatible_host_is_read_as_anthropic(context, sink):
    """DeepSeek serves both dialects: the route decides, the host names the provider."""
    metering, _ = context
    recorded = load_anthropic("test_sync_messages_create_basic")
    flow = anthropic_flow(recorded.request_body, path="/anthropic/v1/messages", host="api.deepseek.com")
    metering.request(flow)
    flow.response = http.Response.make(200, recorded.response_body, {"content-type": "application/json"})
    metering.responseheaders(flow)
    metering.response(flow)
    (span,) = sink.finished_spans()
    data = json.loads(recorded.response_body)
    assert span.attributes["gen_ai.provider.name"] == "deepseek"
    assert span.attributes["gen_ai.usage.output_tokens"] == data["usage"]["output_tokens"]
    assert span.attributes["gen_ai.response.finish_reasons"] == (data["stop_reason"],)


@pytest.mark.parametrize(
    ("content_type", "option", "streamed"),
    [
        ("text/event-stream; charset=utf-8", True, True),
        ("application/x-ndjson", True, True),
        ("application/json", True, False),
        ("text/event-stream", False, False),
    ],
)
def test_unmetered_incremental_responses_are_streamed_untouched(context, content_type, option, streamed):
    metering, tctx = context
    tctx.configure(metering, genai_stream_unmetered=option)
    flow = chat_flow(host="example.com")  # not a metered host
    metering.request(flow)
    flow.response = http.Response.make(200, b"", {"content-type": content_type})
    metering.responseheaders(flow)
    assert flow.response.stream is streamed  # True: mitmproxy passes it on as it comes, unchanged
    assert addon_module.in_flight(flow) is None


def test_the_stream_view_says_when_the_proxy_removed_the_usage_it_asked_for(context):
    metering, _ = context
    flow = chat_flow({**CHAT_REQUEST, "stream": True})
    metering.request(flow)
    assert flow.metadata[presentation.USAGE_REMOVED] is True
    upstream = "".join(
        ChatScript({**CHAT_REQUEST, "stream": True, "stream_options": {"include_usage": True}}).stream_events()
    ).encode()
    flow.response = sse_response()
    client_got = stream_through(metering, flow, upstream, 50)
    assert b'"usage"' not in client_got
    flow.response.content = client_got
    metadata = contentviews.Metadata(flow=flow, content_type="text/event-stream", http_message=flow.response)
    text = presentation.LLMStreamView().prettify(client_got, metadata)
    assert "usage: requested by the proxy and removed from the client's stream" in text
    assert text.startswith("metered: ") and " tok" in text.splitlines()[0]
    asked = chat_flow({**CHAT_REQUEST, "stream": True, "stream_options": {"include_usage": True}})
    metering.request(asked)
    assert presentation.USAGE_REMOVED not in asked.metadata


def test_metric_attribution_is_an_option_with_choices(context, sink):
    metering, tctx = context
    tctx.configure(metering, genai_metric_attribution="client")
    flow = chat_flow()
    flow.request.headers["user-agent"] = "OpenAI/Python 1.99.0"
    metering.request(flow)
    flow.response = json_response({"model": "gpt-4o-mini", "usage": {"prompt_tokens": 5, "completion_tokens": 1}})
    metering.response(flow)
    assert sink.metric_sum("gen_ai.client.token.usage", genai__client="openai-python/1") == 6
    with pytest.raises(exceptions.OptionsError, match="use one of none, client, client\\+key"):
        tctx.configure(metering, genai_metric_attribution="everything")


@pytest.mark.parametrize(
    ("host", "path", "body", "expected"),
    [
        (
            "generativelanguage.googleapis.com",
            "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
            {"error": {"code": 400, "message": "API key not valid.", "status": "INVALID_ARGUMENT"}},
            "INVALID_ARGUMENT",
        ),
        (
            "api.anthropic.com",
            "/v1/messages",
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            "overloaded_error",
        ),
        (
            "api.openai.com",
            "/v1/chat/completions",
            {"error": {"message": "bad", "type": "invalid_request_error", "code": "model_not_found"}},
            "model_not_found",
        ),
    ],
)
def test_an_error_answer_to_a_streamed_request_is_read_as_an_error_body(context, sink, host, path, body, expected):
    """Whatever the route and the content type: an error answer is no stream (found replaying
    Google's answer to a bad key on `:streamGenerateContent`, labelled as a stream)."""
    metering, _ = context
    flow = chat_flow({**CHAT_REQUEST, "stream": True}, host=host, path=path)
    metering.request(flow)
    flow.response = http.Response.make(400, compact(body).encode(), {"content-type": "text/event-stream"})
    metering.responseheaders(flow)
    assert not callable(flow.response.stream)
    metering.response(flow)
    (span,) = sink.finished_spans()
    assert span.attributes["error.type"] == expected


def test_a_successful_answer_that_cannot_be_read_says_usage_unavailable(context, sink):
    """A 200 whose body is not the API's JSON (an HTML page of a gateway): the missing numbers are
    shown (comment and span), never silent; an answer that is not JSON by design (speech) is not."""
    metering, _ = context
    flow = chat_flow()
    metering.request(flow)
    flow.response = http.Response.make(
        200, b"<html>Service temporarily unavailable</html>", {"content-type": "text/html"}
    )
    metering.response(flow)
    assert "usage unavailable" in flow.comment
    speech = chat_flow({"model": "tts-1", "voice": "alloy", "input": "Hi"}, path="/v1/audio/speech")
    metering.request(speech)
    speech.response = http.Response.make(200, b"ID3\x04audio", {"content-type": "audio/mpeg"})
    metering.response(speech)
    assert "usage unavailable" not in speech.comment
    unreadable, audio = sink.finished_spans()
    assert unreadable.attributes["genai.usage.unavailable"] is True
    assert "genai.usage.unavailable" not in audio.attributes


def test_an_agent_session_idle_time_must_be_positive(context):
    metering, tctx = context
    tctx.configure(metering, genai_session_idle=60)
    assert metering.settings.metric_options.session_idle_s == 60
    with pytest.raises(exceptions.OptionsError, match="Invalid genai_session_idle 0"):
        tctx.configure(metering, genai_session_idle=0)
    assert metering.settings.metric_options.session_idle_s == 60


def test_a_bad_option_at_start_is_one_error_line_and_at_run_time_an_options_error(sink, caplog):
    """At start mitmproxy's script loader would print a traceback around the reason; one error line
    is enough, and mitmproxy exits on it (errorcheck). At run time the value is refused, the old kept."""
    metering = metering_into(sink)
    with taddons.context(metering) as tctx, caplog.at_level(logging.ERROR, logger="genai"):
        tctx.configure(metering, genai_hosts=["https://api.openai.com/v1"])
        assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
            "genai: Invalid genai_hosts entry 'https://api.openai.com/v1': a URL is not a host entry: use the form "
            "HOST[:PORT][=PROVIDER], here 'api.openai.com'"
        ]
        metering.running()
        with pytest.raises(exceptions.OptionsError):
            tctx.configure(metering, genai_hosts=[":::"])


def test_websocket_hooks_with_telemetry_off_do_nothing_and_log_nothing(context, caplog):
    """With the telemetry process failed at start, every WebSocket operation and close logged an
    AssertionError."""
    metering, _ = context
    metering.telemetry = None
    flow = tflow.twebsocketflow()
    flow.request.host, flow.request.path = "api.openai.com", "/v1/realtime?model=gpt-realtime"
    with caplog.at_level(logging.WARNING, logger="genai"):
        metering.websocket_start(flow)
        metering.websocket_message(flow)
        metering.websocket_end(flow)
    assert caplog.records == []


MCP_CALL = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "search", "arguments": {}}}


def test_mcp_servers_named_in_genai_mcp_hosts_are_metered_by_the_mcp_conventions(context, sink):
    metering, tctx = context
    tctx.configure(metering, genai_mcp_hosts=["mcp.example.com"])
    flow = chat_flow(MCP_CALL, host="mcp.example.com", path="/mcp")
    metering.request(flow)
    flow.response = json_response({"jsonrpc": "2.0", "id": 3, "result": {"content": [], "isError": True}})
    metering.response(flow)
    (span,) = sink.finished_spans()
    assert span.name == "tools/call search" and span.attributes["error.type"] == "tool_error"
    assert span.attributes["mcp.method.name"] == "tools/call" and span.attributes["jsonrpc.request.id"] == "3"
    assert span.attributes["server.address"] == "mcp.example.com"
    assert KEY not in str(dict(span.attributes))
    assert sink.metric_sum("mcp.client.operation.duration", gen_ai__tool__name="search") > 0
    assert sink.metric_sum("gen_ai.client.operation.duration") == 0  # not an LLM call
    assert "MCP tools/call search" in flow.comment


def test_on_an_llm_host_only_requests_that_say_they_are_mcp_are_read_as_mcp(context, sink):
    metering, _ = context
    mcp_flow = chat_flow(MCP_CALL, host="api.openai.com", path="/v1/mcp")
    other = chat_flow({"file": "x"}, host="api.openai.com", path="/v1/files")
    for flow in (mcp_flow, other):
        metering.request(flow)
    assert addon_module.in_flight(mcp_flow) is not None and addon_module.in_flight(other) is None
    unmetered = chat_flow(MCP_CALL, host="example.com", path="/mcp")  # no rule names it
    metering.request(unmetered)
    assert addon_module.in_flight(unmetered) is None


def test_bad_mcp_host_entries_are_refused(context):
    metering, tctx = context
    with pytest.raises(exceptions.OptionsError, match="Invalid genai_mcp_hosts entry 'a=b'"):
        tctx.configure(metering, genai_mcp_hosts=["a=b"])
