"""End to end: the real openai SDK → a real mitmdump with the addon → a local HTTPS fake of
api.openai.com, with telemetry exported over OTLP/gRPC to a real receiver.

Two proxies run for the whole session (`harness.e2e`, the `world` fixture in conftest.py):
reverse mode (client base URL http://127.0.0.1:PORT/v1) and regular mode (HTTPS_PROXY, client
trusting mitmproxy's CA; mitmdump reaches "api.openai.com:443" through a local CONNECT forwarder
that ends at the fake). Each test uses its own model name, so its metrics can be told apart in
the shared receiver.
"""

import asyncio
import functools
import http.client
import http.cookiejar
import json
import os
import re
import socket
import subprocess
import time
import urllib.request
from typing import Any

import openai
import pytest

from harness.e2e import KEY, SECRET, World, spans_for, tokens, wait_for_tokens
from harness.fake_openai import FIXTURES, ChatScript, load_fixture, raw_scenario
from harness.mitmdump import MITMDUMP, ROOT, Mitmdump
from harness.otlp_receiver import SPAN_KIND_CLIENT, OTLPReceiver

MASKED = f"sk-proj-...{SECRET[-4:]}"
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PRIVATE_PROMPT = "the launch code is swordfish"
PARENT_ID = "b7ad6b7169203331"


def messages(text: str = "Say this is a test") -> list[Any]:
    return [{"role": "user", "content": text}]


# --- reverse mode -------------------------------------------------------------------------


def test_plain_chat_exports_usage_span_and_legacy_counters(world: World):
    response = world.reverse_client().chat.completions.create(model="e2e-plain", messages=messages())
    assert response.usage is not None
    wait_for_tokens(world, "e2e-plain", response.usage.prompt_tokens, response.usage.completion_tokens)

    (span,) = spans_for(world, "e2e-plain")
    assert span.name == "chat e2e-plain" and span.kind == SPAN_KIND_CLIENT
    assert span.resource["service.name"] == "e2e-proxy" and span.resource["service.instance.id"]
    assert span.attributes["gen_ai.response.id"] == response.id
    assert span.attributes["gen_ai.response.model"] == response.model == "e2e-plain-2024-07-18"
    assert span.attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert span.attributes["gen_ai.usage.input_tokens"] == response.usage.prompt_tokens
    assert span.attributes["http.response.status_code"] == 200
    assert span.attributes["openai.api_key.masked"] == MASKED
    assert "gen_ai.request.stream" not in span.attributes

    legacy = world.receiver.wait_for(lambda: world.receiver.latest("tokens_counter", model="e2e-plain"))
    assert [(p.scope, p.unit, p.value, p.attributes) for p in legacy] == [
        ("openai.meter", "1", response.usage.total_tokens, {"model": "e2e-plain", "api_key": MASKED})
    ]
    duration = world.receiver.latest("gen_ai.client.operation.duration", gen_ai__request__model="e2e-plain")
    assert duration[0].count == 1 and duration[0].unit == "s"
    assert world.reverse.wait_for_line(r"genai: (\$\S+ · )?\d+→4 tok · .* · chat e2e-plain-2024-07-18$")


def test_plain_response_reaches_the_client_byte_for_byte(world: World):
    kwargs: dict[str, Any] = {"model": "e2e-bytes", "messages": messages("same bytes please")}
    proxied = world.reverse_client().chat.completions.with_raw_response.create(**kwargs)
    direct = world.direct_client().chat.completions.with_raw_response.create(**kwargs)
    assert proxied.http_response.content == direct.http_response.content
    assert proxied.headers["x-ratelimit-remaining-tokens"] == direct.headers["x-ratelimit-remaining-tokens"]


@pytest.mark.parametrize("encoding", ["identity", "gzip"])
def test_stream_that_did_not_ask_for_usage_is_unchanged_for_the_client_and_still_counted(world: World, encoding: str):
    model = f"e2e-stream-{encoding}"
    kwargs: dict[str, Any] = {
        "model": model,
        "messages": messages("stream it"),
        "stream": True,
        "extra_headers": {"x-fake-encoding": encoding, "x-fake-chunks": "6"},
    }
    with world.reverse_client().chat.completions.with_streaming_response.create(**kwargs) as response:
        proxied = b"".join(response.iter_bytes())
    upstream_saw = json.loads(world.fake.received[-1].body)
    with world.direct_client().chat.completions.with_streaming_response.create(**kwargs) as response:
        direct = b"".join(response.iter_bytes())

    assert upstream_saw["stream_options"] == {"include_usage": True}
    assert proxied.split(b"\n\n") == direct.split(b"\n\n")  # chunk by chunk, as without the proxy
    assert b'"usage"' not in proxied and b'"choices":[]' not in proxied
    assert b'"obfuscation"' in proxied  # the member the real API puts after "usage":null is kept
    expected = ChatScript({"model": model, "messages": messages("stream it")}, chunks=6).usage()
    wait_for_tokens(world, model, expected["prompt_tokens"], expected["completion_tokens"])
    (span,) = spans_for(world, model)
    assert span.attributes["gen_ai.request.stream"] is True
    assert span.attributes["gen_ai.response.time_to_first_chunk"] > 0


def test_the_sdk_sees_no_extra_usage_chunk(world: World):
    stream = world.reverse_client().chat.completions.create(model="e2e-sdk-stream", messages=messages(), stream=True)
    chunks = list(stream)
    assert all(chunk.choices for chunk in chunks), "a chunk with empty choices crashes some clients"
    assert all(chunk.usage is None for chunk in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "This is a test"  # 4 chunks by default
    spans_for(world, "e2e-sdk-stream")


def test_a_client_that_asked_for_usage_gets_it_and_the_request_is_not_rewritten(world: World):
    stream = world.reverse_client().chat.completions.create(
        model="e2e-asked", messages=messages(), stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    sent = world.fake.received[-1]
    assert json.loads(sent.body)["stream_options"] == {"include_usage": True}
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    wait_for_tokens(world, "e2e-asked", chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens)


def test_streamed_chunks_reach_the_client_live(world: World):
    """8 chunks 150 ms apart: the first must arrive long before the upstream finishes."""
    started = time.monotonic()
    stream = world.reverse_client().chat.completions.create(
        model="e2e-live",
        messages=messages(),
        stream=True,
        extra_headers={"x-fake-chunks": "8", "x-fake-chunk-delay-ms": "150"},
    )
    chunks = [(time.monotonic(), chunk) for chunk in stream]
    received_at = [at for at, chunk in chunks if chunk.choices and chunk.choices[0].delta.content]
    log = world.receiver.wait_for(  # this stream's, by its id, once the fake has noted its end
        lambda: next((s for s in world.fake.streams if s.response_id == chunks[0][1].id and s.finished_at), None), 5
    )
    # Before the upstream sent its last chunk (CLOCK_MONOTONIC is one clock for every process), and
    # spread as the upstream paced them (150 ms apart), not all at the end.
    assert received_at[0] < log.sent_at[-1] and received_at[-1] - received_at[0] > 0.7
    assert len(received_at) == 8
    (span,) = spans_for(world, "e2e-live")
    assert 0.1 < span.attributes["gen_ai.response.time_to_first_chunk"] < received_at[0] - started
    per_chunk = world.receiver.wait_for(
        lambda: world.receiver.latest(
            "gen_ai.client.operation.time_per_output_chunk", gen_ai__request__model="e2e-live"
        )
    )
    assert per_chunk[0].count == 7 and 0.1 * 7 < per_chunk[0].value < 0.3 * 7


def test_client_trace_context_becomes_the_parent_span(world: World):
    world.reverse_client().chat.completions.create(
        model="e2e-traced",
        messages=messages(),
        extra_headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"},
    )
    (span,) = spans_for(world, "e2e-traced")
    assert (span.trace_id, span.parent_span_id) == (TRACE_ID, PARENT_ID)


def test_upstream_errors_carry_the_openai_error_code(world: World):
    with pytest.raises(openai.RateLimitError):
        world.reverse_client().chat.completions.create(
            model="e2e-429", messages=messages(), extra_headers={"x-fake-error": "429:rate_limit_exceeded"}
        )
    (span,) = spans_for(world, "e2e-429")
    assert span.status_code == 2 and span.attributes["error.type"] == "rate_limit_exceeded"
    duration = world.receiver.wait_for(
        lambda: world.receiver.latest("gen_ai.client.operation.duration", gen_ai__request__model="e2e-429")
    )
    assert duration[0].attributes["error.type"] == "rate_limit_exceeded"
    assert tokens(world, "e2e-429", "input") == 0


def test_client_abort_mid_stream_is_recorded_with_its_duration(world: World):
    with world.reverse_client().chat.completions.with_streaming_response.create(
        model="e2e-abort",
        messages=messages(),
        stream=True,
        extra_headers={"x-fake-chunks": "20", "x-fake-chunk-delay-ms": "100"},
    ) as response:
        next(response.iter_bytes())
        response.http_response.close()
    (span,) = spans_for(world, "e2e-abort")
    assert span.attributes["error.type"] == "client_aborted"
    assert span.end_time_unix_nano > span.start_time_unix_nano


RECORDED = sorted(p.stem for p in FIXTURES.glob("*.yaml"))


def recorded_usage(name: str) -> tuple[int, int | None] | None:
    """(input, output) tokens of a recording, read with plain string handling; None if it has none."""
    text = load_fixture(name)["response"]["body"]["string"]
    if text.lstrip().startswith("{"):
        usage = json.loads(text).get("usage")
    else:
        found = []
        for line in text.splitlines():
            if line.startswith("data: {"):
                event = json.loads(line[6:])
                found.append(event.get("usage") or (event.get("response") or {}).get("usage"))
        usage = next((u for u in reversed(found) if u), None)
    if not usage:
        return None
    if "input_tokens" in usage:
        return usage["input_tokens"], usage["output_tokens"]
    return usage["prompt_tokens"], usage.get("completion_tokens")


def span_in_trace(world: World, trace_id: str) -> Any:
    return next((s for s in world.receiver.spans() if s.trace_id == trace_id), None)


def has_tokens(world: World, model: str, token_type: str, total: int, instance: str) -> bool:
    return tokens(world, model, token_type, instance) == total


@pytest.mark.parametrize("quiet", [False, True], ids=["calls-shown", "quiet"])
def test_every_recorded_exchange_yields_exactly_its_recorded_usage(world: World, quiet: bool):
    """Each cassette (chat, Responses, embeddings; plain, streamed, failed) is replayed by the
    fake; its span carries exactly the recorded numbers and the metrics add up. Quiet
    (flow_detail=0): the hooks pass the bodies on unparsed and the telemetry process parses them."""
    if not quiet:
        replay_recordings(world, world.reverse.url, first_trace=1)
        return
    with Mitmdump(world.proxy_args("--set", "flow_detail=0"), world.env, world.tmp / "conf-quiet") as proxy:
        replay_recordings(world, proxy.url, first_trace=len(RECORDED) + 1)
    assert not re.search(r"genai: (\$|\d+→|error )", proxy.output)  # no line per call
    table = proxy.output.split("LLM API usage through this proxy:", 1)[1]
    assert "gpt-4o-mini" in table  # the summary comes from the telemetry process


def replay_recordings(world: World, url: str, first_trace: int) -> None:
    http = openai.DefaultHttpxClient(timeout=30)  # the HTTP client the SDK is built on, as it is
    expected_totals: dict[tuple[str, str], int] = {}
    instance = ""
    for number, name in enumerate(RECORDED, first_trace):
        request = load_fixture(name)["request"]
        trace_id = f"{number:032x}"
        response = http.post(
            f"{url}{request['uri'].removeprefix('https://api.openai.com')}",
            content=request["body"],
            headers={
                "authorization": f"Bearer {KEY}",
                "content-type": "application/json",
                "x-fake-fixture": name,
                "traceparent": f"00-{trace_id}-{PARENT_ID}-01",
            },
        )
        assert response.content == load_fixture(name)["response"]["body"]["string"].encode()
        span = world.receiver.wait_for(functools.partial(span_in_trace, world, trace_id))
        instance = span.resource["service.instance.id"]
        recorded = load_fixture(name)["response"]
        if recorded["status"]["code"] >= 400:
            code = json.loads(recorded["body"]["string"])["error"]["code"]
            assert span.attributes["error.type"] == code, name
        usage = recorded_usage(name)
        if usage is None:
            assert "gen_ai.usage.input_tokens" not in span.attributes, name
            continue
        assert span.attributes["gen_ai.usage.input_tokens"] == usage[0], name
        assert span.attributes.get("gen_ai.usage.output_tokens") == usage[1], name
        model = json.loads(request["body"])["model"]
        assert span.attributes["gen_ai.request.model"] == model, name
        for token_type, value in zip(("input", "output"), usage, strict=True):
            if value is not None:
                expected_totals[(model, token_type)] = expected_totals.get((model, token_type), 0) + value
    for (model, token_type), total in expected_totals.items():
        world.receiver.wait_for(functools.partial(has_tokens, world, model, token_type, total, instance))


# --- more APIs ----------------------------------------------------------------------------


def test_responses_api_plain_and_streamed(world: World):
    client = world.reverse_client()
    plain = client.responses.create(model="e2e-responses", input="Say this is a test")
    streamed = list(client.responses.create(model="e2e-responses", input="Say this is a test", stream=True))
    assert plain.usage is not None and streamed[-1].type == "response.completed"
    deltas = [event for event in streamed if event.type == "response.output_text.delta"]
    assert "".join(d.delta for d in deltas) == "This is a test"
    wait_for_tokens(world, "e2e-responses", 2 * plain.usage.input_tokens, 2 * plain.usage.output_tokens)
    spans = spans_for(world, "e2e-responses", count=2)
    assert {s.attributes["openai.api.type"] for s in spans} == {"responses"}
    assert {s.attributes["gen_ai.response.finish_reasons"][0] for s in spans} == {"stop"}
    assert any(s.attributes.get("gen_ai.response.time_to_first_chunk") for s in spans)


def test_a_responses_conversation_and_previous_response_reach_the_span(world: World):
    world.reverse_client().responses.create(
        model="e2e-conversation", input="Again", conversation="conv_e2e1", previous_response_id="resp_e2e0"
    )
    (span,) = spans_for(world, "e2e-conversation")
    assert span.attributes["gen_ai.conversation.id"] == "conv_e2e1"
    assert span.attributes["gen_ai.request.previous_response.id"] == "resp_e2e0"


def test_embeddings(world: World):
    result = world.reverse_client().embeddings.create(
        model="e2e-embed", input=["one two three", "four five"], dimensions=4
    )
    assert len(result.data) == 2 and result.usage.prompt_tokens == 5
    world.receiver.wait_for(lambda: tokens(world, "e2e-embed", "input") == 5)
    assert tokens(world, "e2e-embed", "output") == 0
    (span,) = spans_for(world, "e2e-embed")
    assert span.name == "embeddings e2e-embed"
    assert span.attributes["gen_ai.operation.name"] == "embeddings"
    assert span.attributes["gen_ai.embeddings.dimension.count"] == 4


def test_legacy_completions_stream_is_counted_and_unchanged_for_the_client(world: World):
    kwargs: dict[str, Any] = {"model": "e2e-legacy", "prompt": "Say this is a test", "stream": True}
    with world.reverse_client().completions.with_streaming_response.create(**kwargs) as response:
        proxied = b"".join(response.iter_bytes())
    assert json.loads(world.fake.received[-1].body)["stream_options"] == {"include_usage": True}
    with world.direct_client().completions.with_streaming_response.create(**kwargs) as response:
        direct = b"".join(response.iter_bytes())
    assert proxied == direct
    wait_for_tokens(world, "e2e-legacy", 13, 4)
    (span,) = spans_for(world, "e2e-legacy")
    assert span.attributes["gen_ai.operation.name"] == "text_completion"
    assert span.name == "text_completion e2e-legacy"


def test_cost_is_exported_for_priced_models(world: World):
    world.reverse_client().chat.completions.create(
        model="gpt-4.1-nano", messages=messages(), extra_headers={"x-fake-cached-tokens": "6"}
    )
    # 13 fresh + 6 cached input, 4 output: 13 × $0.10 + 6 × $0.025 + 4 × $0.40, per 1M tokens
    expected = (13 * 0.10 + 6 * 0.025 + 4 * 0.40) / 1e6
    cost = world.receiver.wait_for(
        lambda: world.receiver.latest("gen_ai.client.token.cost", gen_ai__request__model="gpt-4.1-nano")
    )
    assert cost[0].unit == "USD" and cost[0].value == pytest.approx(expected)
    cached = world.receiver.wait_for(
        lambda: world.receiver.latest("gen_ai.client.token.cache_read", gen_ai__request__model="gpt-4.1-nano")
    )
    assert cached[0].value == 6
    (span,) = spans_for(world, "gpt-4.1-nano")
    assert span.attributes["gen_ai.usage.cost_usd"] == pytest.approx(expected)
    assert span.attributes["gen_ai.usage.cache_read.input_tokens"] == 6


def test_rate_limit_headroom_is_exported_as_gauges(world: World):
    world.reverse_client().chat.completions.create(model="e2e-ratelimit", messages=messages())
    remaining = world.receiver.wait_for(
        lambda: world.receiver.latest("openai.ratelimit.remaining_tokens", gen_ai__request__model="e2e-ratelimit")
    )
    assert remaining[0].value == 29999980
    assert remaining[0].attributes["openai.api_key.masked"] == MASKED
    limit = world.receiver.latest("openai.ratelimit.limit_requests", gen_ai__request__model="e2e-ratelimit")
    assert limit and limit[0].value == 10000
    (span,) = spans_for(world, "e2e-ratelimit")
    assert span.attributes["openai.request.id"].startswith("req_")
    assert span.attributes["openai.response.processing_ms"] == 42


# --- upstream faults ----------------------------------------------------------------------

# scenario → (error.type expected on the span, (input, output) tokens expected, complete body expected)
FAULTS = {
    "html_502": ("502", None, True),
    "invalid_json": (None, None, True),
    "no_content_type": (None, (3, 2), True),
    "unknown_encoding": (None, None, True),
    "stacked_encoding": (None, None, True),
    "corrupt_gzip_stream": (None, None, True),
    "corrupt_gzip_json": (None, None, True),
    "comments_and_keepalives": (None, (11, 5), True),
    "non_utf8": (None, (11, 5), True),
    "every_byte_split": (None, (11, 5), True),
    "truncated_stream": ("upstream_aborted", None, False),
    "reset_mid_stream": ("upstream_aborted", None, False),
    "stall": ("client_aborted", None, False),
    "big_body": (None, (7, 3), True),
    "long_stream": (None, (11, 100_000), True),
}


def raw_exchange(port: int, scenario: str, model: str, timeout: float) -> tuple[int, bytes]:
    """POST through the proxy with the stdlib client; the raw body bytes received (not decoded)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    body = json.dumps(
        {"model": model, "messages": messages(), "stream": True, "stream_options": {"include_usage": True}}
    )
    headers = {"content-type": "application/json", "authorization": f"Bearer {KEY}", "x-fake-raw": scenario}
    received = bytearray()
    try:
        connection.request("POST", "/v1/chat/completions", body=body, headers=headers)
        response = connection.getresponse()
        status = response.status
        while piece := response.read1(1 << 20):
            received += piece
    except (http.client.IncompleteRead, ConnectionError, TimeoutError) as error:
        if isinstance(error, http.client.IncompleteRead):
            received += error.partial
    finally:
        connection.close()
    return status, bytes(received)


@pytest.mark.parametrize("scenario", list(FAULTS))
def test_upstream_faults_reach_the_client_unchanged_and_are_recorded(world: World, scenario: str):
    error_type, usage, complete = FAULTS[scenario]
    model = f"e2e-fault-{scenario}"
    expected = b"".join(raw_scenario(scenario).parts)
    status, received = raw_exchange(world.reverse.port, scenario, model, timeout=1.5 if scenario == "stall" else 30)
    assert status == raw_scenario(scenario).status
    if complete:
        assert received == expected
    else:
        assert received and expected.startswith(received)
    (span,) = spans_for(world, model)
    assert span.attributes.get("error.type") == error_type
    if usage is None:
        assert "gen_ai.usage.input_tokens" not in span.attributes
    else:
        assert (span.attributes["gen_ai.usage.input_tokens"], span.attributes["gen_ai.usage.output_tokens"]) == usage
    assert_no_addon_failure(world.reverse.output)


# --- regular mode -------------------------------------------------------------------------


def test_regular_mode_with_https_proxy_and_the_mitmproxy_ca(world: World, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HTTPS_PROXY", world.regular.url)
    monkeypatch.setenv("SSL_CERT_FILE", str(world.regular.ca_cert))
    monkeypatch.delenv("NO_PROXY", raising=False)
    client = openai.OpenAI(api_key=KEY, max_retries=0)  # the real https://api.openai.com/v1
    response = client.chat.completions.create(model="e2e-regular", messages=messages())
    streamed = list(client.chat.completions.create(model="e2e-regular", messages=messages(), stream=True))
    assert "api.openai.com:443" in world.forwarder.tunnels
    assert all(chunk.choices for chunk in streamed)
    assert response.usage is not None
    wait_for_tokens(world, "e2e-regular", 2 * response.usage.prompt_tokens, 2 * response.usage.completion_tokens)
    spans = spans_for(world, "e2e-regular", count=2)
    assert {(s.attributes["server.address"], s.attributes["server.port"]) for s in spans} == {("api.openai.com", 443)}
    assert all(s.attributes["gen_ai.provider.name"] == "openai" for s in spans)


AZURE_KEY = "a3f9c27e5b8d4e61a0c4f7b2d9e8c1f5"


@pytest.mark.parametrize(("api_version", "usage_counted"), [("2024-10-21", True), ("2024-06-01", False)])
def test_azure_openai_through_https_proxy(world: World, monkeypatch: pytest.MonkeyPatch, api_version, usage_counted):
    """Deployment paths, the api-key header, the prompt-filter opening chunk, and no
    include_usage toward api-versions that reject it (the fake answers 400 if it gets one)."""
    monkeypatch.setenv("HTTPS_PROXY", world.regular.url)
    monkeypatch.setenv("SSL_CERT_FILE", str(world.regular.ca_cert))
    monkeypatch.delenv("NO_PROXY", raising=False)
    deployment = f"e2e-azure-{api_version}"
    client = openai.AzureOpenAI(
        azure_endpoint="https://myres.openai.azure.com", api_key=AZURE_KEY, api_version=api_version, max_retries=0
    )
    chunks = list(client.chat.completions.create(model=deployment, messages=messages(), stream=True))
    assert "myres.openai.azure.com:443" in world.forwarder.tunnels
    assert world.fake.received[-1].path.startswith(f"/openai/deployments/{deployment}/chat/completions")
    assert ("stream_options" in json.loads(world.fake.received[-1].body)) is usage_counted
    assert not chunks[0].choices and chunks[0].model_extra  # Azure's opening chunk reached the client
    assert chunks[0].model_extra is not None and "prompt_filter_results" in chunks[0].model_extra
    assert all(chunk.usage is None for chunk in chunks)
    (span,) = spans_for(world, deployment)
    assert span.attributes["gen_ai.provider.name"] == "azure.ai.openai"
    assert span.attributes["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert span.attributes["openai.api_key.masked"] == f"...{AZURE_KEY[-4:]}"
    assert ("gen_ai.usage.input_tokens" in span.attributes) is usage_counted
    assert "error.type" not in span.attributes


def test_compatible_host_is_metered_under_its_provider_without_rewrites(world: World, monkeypatch: pytest.MonkeyPatch):
    """api.groq.com is on the default host list as provider groq, and not known to accept
    include_usage: a stream that did not ask is left alone, one that asked is counted."""
    monkeypatch.setenv("HTTPS_PROXY", world.regular.url)
    monkeypatch.setenv("SSL_CERT_FILE", str(world.regular.ca_cert))
    monkeypatch.delenv("NO_PROXY", raising=False)
    client = openai.OpenAI(base_url="https://api.groq.com/openai/v1", api_key="gsk_" + SECRET, max_retries=0)
    list(client.chat.completions.create(model="e2e-groq", messages=messages(), stream=True))
    assert "stream_options" not in json.loads(world.fake.received[-1].body)
    asked = list(
        client.chat.completions.create(
            model="e2e-groq", messages=messages(), stream=True, stream_options={"include_usage": True}
        )
    )
    usage = asked[-1].usage
    assert usage is not None
    wait_for_tokens(world, "e2e-groq", usage.prompt_tokens, usage.completion_tokens)
    spans = spans_for(world, "e2e-groq", count=2)
    assert {s.attributes["gen_ai.provider.name"] for s in spans} == {"groq"}
    assert {s.attributes["server.address"] for s in spans} == {"api.groq.com"}


def test_content_capture_puts_prompt_and_streamed_answer_on_the_span(world: World):
    with Mitmdump(world.proxy_args("--set", "genai_capture_content=true"), world.env, world.tmp / "conf-cc") as proxy:
        client = world.reverse_client(proxy)
        stream = client.chat.completions.create(
            model="e2e-content",
            messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "capture me"}],
            stream=True,
        )
        answer = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        (span,) = spans_for(world, "e2e-content")
    assert json.loads(span.attributes["gen_ai.system_instructions"]) == [{"type": "text", "content": "Be brief."}]
    assert json.loads(span.attributes["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "capture me"}]}
    ]
    output = json.loads(span.attributes["gen_ai.output.messages"])
    assert output == [{"role": "assistant", "parts": [{"type": "text", "content": answer}], "finish_reason": "stop"}]


# --- clients ------------------------------------------------------------------------------


def test_200_concurrent_streams_add_up_exactly(world: World):
    """Half ask for usage themselves, half get it added; every token is counted once."""

    async def run() -> list[int]:
        client = openai.AsyncOpenAI(base_url=f"{world.reverse.url}/v1", api_key=KEY, max_retries=0)

        async def one(i: int) -> int:
            stream = await client.chat.completions.create(
                model="e2e-concurrent",
                messages=messages(f"request number {i}"),
                stream=True,
                extra_headers={"x-fake-chunks": "10", "x-fake-chunk-delay-ms": "20"},
                extra_body={"stream_options": {"include_usage": True}} if i % 2 else None,
            )
            chunks = [chunk async for chunk in stream]
            assert all(chunk.choices for chunk in chunks) != bool(i % 2)  # only those who asked see usage
            return len(chunks)

        try:
            return await asyncio.gather(*(one(i) for i in range(200)))
        finally:
            await client.close()

    asyncio.run(run())
    expected = ChatScript({"messages": messages("request number 0")}, chunks=10).usage()
    wait_for_tokens(world, "e2e-concurrent", 200 * expected["prompt_tokens"], 200 * expected["completion_tokens"])
    spans_for(world, "e2e-concurrent", count=200)

    def legacy_total() -> float:  # an export may catch a call between its instruments: the next has it
        return sum(point.value for point in world.receiver.latest("tokens_counter", model="e2e-concurrent"))

    world.receiver.wait_for(lambda: legacy_total() >= 200 * expected["total_tokens"])
    assert legacy_total() == 200 * expected["total_tokens"]
    time.sleep(0.5)
    spans = [s for s in world.receiver.spans() if s.attributes.get("gen_ai.request.model") == "e2e-concurrent"]
    assert len(spans) == 200 and len({s.attributes["gen_ai.response.id"] for s in spans}) == 200


def test_keep_alive_reuse_mixes_plain_and_streamed_calls_exactly(world: World):
    client = world.reverse_client()
    expected_in = expected_out = 0
    for i in range(20):
        if i % 2:
            stream = client.chat.completions.create(model="e2e-keepalive", messages=messages(), stream=True)
            assert all(chunk.choices for chunk in stream)
            usage = ChatScript({"messages": messages()}).usage()
            expected_in, expected_out = expected_in + usage["prompt_tokens"], expected_out + usage["completion_tokens"]
        else:
            response = client.chat.completions.create(model="e2e-keepalive", messages=messages())
            assert response.usage is not None
            expected_in += response.usage.prompt_tokens
            expected_out += response.usage.completion_tokens
    wait_for_tokens(world, "e2e-keepalive", expected_in, expected_out)


def test_http2_client(world: World, monkeypatch: pytest.MonkeyPatch):
    """The client speaks HTTP/2 to mitmproxy (offered up front with connection_strategy=lazy,
    since the fake upstream speaks only HTTP/1.1); streams stay intact and are counted."""
    args = ["--mode", f"upstream:http://127.0.0.1:{world.forwarder.port}", "--set", "connection_strategy=lazy"]
    args += ["--set", f"ssl_verify_upstream_trusted_ca={world.pki.ca_cert}"]
    with Mitmdump(args, world.env, world.tmp / "conf-h2") as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("SSL_CERT_FILE", str(proxy.ca_cert))
        monkeypatch.delenv("NO_PROXY", raising=False)
        client = openai.OpenAI(api_key=KEY, max_retries=0, http_client=openai.DefaultHttpxClient(http2=True))
        raw = client.chat.completions.with_raw_response.create(model="e2e-h2", messages=messages())
        assert raw.http_response.http_version == "HTTP/2"
        streamed = list(client.chat.completions.create(model="e2e-h2", messages=messages(), stream=True))
        assert all(chunk.choices for chunk in streamed)
        usage = raw.parse().usage
        assert usage is not None
        wait_for_tokens(world, "e2e-h2", 2 * usage.prompt_tokens, 2 * usage.completion_tokens)
        client.close()
    assert_no_addon_failure(proxy.output)


# --- without a backend: mitmweb, the summary, Prometheus -----------------------------------

WEB_PASSWORD = "e2e-web-password"


class WebAPI:
    """mitmweb's HTTP API with its token (the Authorization header)."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.opener = urllib.request.build_opener()

    def get(self, path: str) -> Any:
        request = urllib.request.Request(self.base + path, headers={"Authorization": f"Bearer {WEB_PASSWORD}"})
        with self.opener.open(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if path.endswith(".json") or path.startswith("/flows") else body

    def command(self, name: str, *arguments: str) -> Any:
        """POST a command; the XSRF check wants the same token as cookie and header (as the UI sends)."""
        xsrf = "0123456789abcdef" * 2
        request = urllib.request.Request(
            f"{self.base}/commands/{name}",
            data=json.dumps({"arguments": list(arguments)}).encode(),
            headers={"Content-Type": "application/json", "X-XSRFToken": xsrf, "Cookie": f"_mitmproxy_xsrf={xsrf}"},
            method="POST",
        )
        request.add_header("Authorization", f"Bearer {WEB_PASSWORD}")
        with self.opener.open(request, timeout=10) as response:
            return json.loads(response.read())["value"]


def test_mitmweb_shows_comments_marks_the_stream_view_and_the_summary(world: World):
    web_port = unused_port()
    args = world.proxy_args("--web-host", "127.0.0.1", "--web-port", str(web_port))
    args += ["--set", f"web_password={WEB_PASSWORD}", "--set", "web_open_browser=false"]
    with Mitmdump(args, world.env, world.tmp / "conf-web", program="mitmweb") as proxy:
        client = world.reverse_client(proxy)
        client.chat.completions.create(model="e2e-web", messages=messages())
        answer = "".join(
            c.choices[0].delta.content or ""
            for c in client.chat.completions.create(model="e2e-web", messages=messages(), stream=True)
            if c.choices
        )
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(
                model="e2e-web", messages=messages(), extra_headers={"x-fake-error": "429:rate_limit_exceeded"}
            )
        client.close()
        web = WebAPI(web_port)
        # Each comment comes from the telemetry process, where the call is parsed and priced, and
        # mitmweb shows it when it arrives (a few ms after the flow).
        flows = world.receiver.wait_for(lambda: (f := web.get("/flows")) and all(x["comment"] for x in f) and f)
        comments = [flow["comment"] for flow in flows]
        assert len(flows) == 3 and all(comment.endswith("chat e2e-web-2024-07-18") for comment in comments[:2])
        assert "first content" in comments[1] and comments[2].startswith("error rate_limit_exceeded (429)")
        assert [bool(flow["marked"]) for flow in flows] == [False, False, True]
        view = web.get(f"/flows/{flows[1]['id']}/response/content/auto.json")
        assert view["view_name"] == "LLM stream"
        assert answer in view["text"] and "usage: " in view["text"]
        # The telemetry process keeps the summary and sends it whenever traffic pauses (~0.15 s).
        table = world.receiver.wait_for(lambda: t if "e2e-web" in (t := web.command("genai.summary")) else None)
        assert "e2e-web-2024-07-18" in table and table.splitlines()[0].startswith("provider")
        web.command("genai.reset")
        assert web.command("genai.summary") == "No LLM API calls observed yet."


def test_mitmdump_prints_the_usage_summary_when_it_exits(world: World):
    env = {**world.env, "OTEL_SERVICE_NAME": "e2e-summary"}
    with Mitmdump(world.proxy_args(), env, world.tmp / "conf-summary") as proxy:
        client = world.reverse_client(proxy)
        for _ in range(3):
            client.chat.completions.create(model="gpt-4o-mini", messages=messages())
        client.close()
        # The telemetry process has recorded the three calls (it runs only on an idle core, and the
        # suite's workers keep the cores busy), and sends its summary within a second of that.
        world.receiver.wait_for(
            lambda: len([s for s in world.receiver.spans() if s.resource.get("service.name") == "e2e-summary"]) >= 3
        )
        time.sleep(1.5)
    table = proxy.output.split("LLM API usage through this proxy:", 1)[1]
    # The model asked for, and once the snapshot that answered.
    row = next(line for line in table.splitlines() if "gpt-4o-mini (gpt-4o-mini-2024-07-18)" in line).split()
    usage = ChatScript({"messages": messages()}).usage()
    assert row[:5] == ["openai", "gpt-4o-mini", "(gpt-4o-mini-2024-07-18)", "3", "0"]
    assert row[5] == str(3 * usage["prompt_tokens"]) and row[8] == str(3 * usage["completion_tokens"])
    expected_cost = 3 * (usage["prompt_tokens"] * 0.15 + usage["completion_tokens"] * 0.60) / 1e6
    assert float(row[10]) == pytest.approx(expected_cost, abs=1e-6)


def test_prometheus_scrape_without_a_collector(world: World):
    port = unused_port()
    env = {**world.env, "OTEL_METRICS_EXPORTER": "prometheus", "OTEL_EXPORTER_PROMETHEUS_PORT": str(port)}
    env["OTEL_TRACES_EXPORTER"] = "none"

    def scrape() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            text: str = response.read().decode()
        return text if 'model="e2e-prom"' in text else ""

    with Mitmdump(world.proxy_args(), env, world.tmp / "conf-prom") as proxy:
        response = world.reverse_client(proxy).chat.completions.create(model="e2e-prom", messages=messages())
        # The telemetry process gets the call within a flush interval (50 ms) of its end.
        text = world.receiver.wait_for(scrape, timeout=30)
    assert response.usage is not None
    lines = [line for line in text.splitlines() if 'gen_ai_request_model="e2e-prom"' in line]
    input_sum = next(
        line
        for line in lines
        if line.startswith("gen_ai_client_token_usage")
        and "_sum" in line.split("{")[0]
        and 'gen_ai_token_type="input"' in line
    )
    assert float(input_sum.rsplit(" ", 1)[1]) == response.usage.prompt_tokens
    assert any(line.startswith("gen_ai_client_operation_duration") for line in lines)
    legacy = next(
        line for line in text.splitlines() if line.startswith("tokens_counter_total{") and 'model="e2e-prom"' in line
    )
    assert f'api_key="{MASKED}"' in legacy and float(legacy.rsplit(" ", 1)[1]) == response.usage.total_tokens


# --- options and lifecycle ----------------------------------------------------------------


def test_with_stream_usage_off_streams_are_timed_but_tokens_never_guessed(world: World):
    with Mitmdump(world.proxy_args("--set", "genai_stream_usage=false"), world.env, world.tmp / "conf-off") as proxy:
        chunks = list(
            world.reverse_client(proxy).chat.completions.create(model="e2e-off", messages=messages(), stream=True)
        )
        assert "stream_options" not in json.loads(world.fake.received[-1].body)
        assert all(chunk.usage is None for chunk in chunks)
        world.receiver.wait_for(
            lambda: world.receiver.latest(
                "gen_ai.client.operation.time_to_first_chunk", gen_ai__request__model="e2e-off"
            )
        )
        assert proxy.wait_for_line(r"genai: usage unavailable · .* · chat e2e-off-2024-07-18$")
    assert tokens(world, "e2e-off", "input") == 0 and tokens(world, "e2e-off", "output") == 0
    assert not world.receiver.latest("tokens_counter", model="e2e-off")


def test_legacy_completion_id_option_and_legacy_off(world: World):
    with Mitmdump(
        world.proxy_args("--set", "genai_legacy_completion_id=true"), world.env, world.tmp / "conf-id"
    ) as proxy:
        response = world.reverse_client(proxy).chat.completions.create(model="e2e-legacy-id", messages=messages())
        points = world.receiver.wait_for(lambda: world.receiver.latest("tokens_counter", model="e2e-legacy-id"))
        assert points[0].attributes["chat_completion_id"] == response.id
    with Mitmdump(world.proxy_args("--set", "genai_legacy_metrics=false"), world.env, world.tmp / "conf-nl") as proxy:
        world.reverse_client(proxy).chat.completions.create(model="e2e-legacy-off", messages=messages())
        spans_for(world, "e2e-legacy-off")
        time.sleep(0.8)  # two more metric export intervals
    assert tokens(world, "e2e-legacy-off", "input") > 0
    assert not world.receiver.latest("tokens_counter", model="e2e-legacy-off")


def test_script_reload_while_a_stream_flows_loses_nothing_and_duplicates_nothing(world: World):
    with Mitmdump(world.proxy_args(), world.env, world.tmp / "conf-reload") as proxy:
        client = world.reverse_client(proxy)
        stream = client.chat.completions.create(
            model="e2e-reload-stream",
            messages=messages(),
            stream=True,
            extra_headers={"x-fake-chunks": "15", "x-fake-chunk-delay-ms": "100"},
        )
        received = [next(stream)]
        os.utime(ROOT / "addon.py")  # what saving the file does: mitmproxy reloads the script
        proxy.wait_for_line(r"Loading script .*addon\.py", timeout=5)
        deadline = time.monotonic() + 5
        while sum("Loading script" in line for line in proxy.lines) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sum("Loading script" in line for line in proxy.lines) == 2, proxy.output
        received += list(stream)
        after = client.chat.completions.create(model="e2e-reload-after", messages=messages())
        assert after.usage is not None
        wait_for_tokens(world, "e2e-reload-after", after.usage.prompt_tokens, after.usage.completion_tokens)
        (streamed_span,) = spans_for(world, "e2e-reload-stream")
        time.sleep(0.5)  # room for a duplicate span or a doubled export to show up
        client.close()
    assert streamed_span.attributes["gen_ai.usage.output_tokens"] == 15
    assert (
        len([s for s in world.receiver.spans() if s.attributes.get("gen_ai.request.model") == "e2e-reload-after"]) == 1
    )
    assert tokens(world, "e2e-reload-after", "input") == after.usage.prompt_tokens  # one set of instruments
    assert_no_addon_failure(proxy.output)
    assert "Over-riding existing option" not in proxy.output  # options keep their --set values


def assert_no_addon_failure(output: str) -> None:
    """No traceback through our modules, no guarded hook failure, no mitmproxy addon error."""
    project = f'File "{ROOT}/'
    assert not any(project in line and "/.venv/" not in line for line in output.splitlines()), output
    assert "hook failed" not in output and "Addon error" not in output, output


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("collector", ["refusing", "blackholed"])
def test_a_dead_collector_costs_one_warning_and_exit_stays_under_3s(world: World, collector: str):
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(16)  # accepts TCP, never answers
    port = blackhole.getsockname()[1] if collector == "blackholed" else unused_port()
    env = {**world.env, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}", "OTEL_EXPORTER_OTLP_TIMEOUT": "1"}
    try:
        with Mitmdump(world.proxy_args(), env, world.tmp / f"conf-{collector}") as proxy:
            client = world.reverse_client(proxy)
            for _ in range(3):
                started = time.monotonic()
                client.chat.completions.create(model="e2e-dead", messages=messages())
                assert time.monotonic() - started < 2
            list(client.chat.completions.create(model="e2e-dead", messages=messages(), stream=True))
            time.sleep(2.5)  # several failed metric exports
        assert proxy.exit_seconds is not None and proxy.exit_seconds < 3, proxy.output
    finally:
        blackhole.close()
    if collector == "refusing":
        warnings = [line for line in proxy.lines if "does not accept metrics" in line]
        assert len(warnings) == 1, proxy.output
    assert "Traceback" not in proxy.output and "Addon error" not in proxy.output


def test_spans_survive_a_collector_restart_and_the_outage_is_one_warning(world: World):
    first = OTLPReceiver().start()
    port = first.port
    # A timeout that leaves room for one retry: the exporter's connection made during the outage
    # is still backing off when the collector returns, and the retry runs on a fresh one.
    env = {**world.env, "OTEL_EXPORTER_OTLP_ENDPOINT": first.endpoint, "OTEL_EXPORTER_OTLP_TIMEOUT": "3"}
    with Mitmdump(world.proxy_args(), env, world.tmp / "conf-restart") as proxy:
        client = world.reverse_client(proxy)

        def call(n: int) -> None:
            for _ in range(n):
                started = time.monotonic()
                client.chat.completions.create(model="e2e-restart", messages=messages())
                assert time.monotonic() - started < 1.5  # traffic is not held up by the outage

        call(2)
        first.wait_for(lambda: len(first.spans()) == 2)
        first.stop(grace=None)
        call(3)  # exported while the collector is down
        proxy.wait_for_line("does not accept spans", timeout=10)
        second = OTLPReceiver(port=port).start()
        try:
            calls = 5
            deadline = time.monotonic() + 15
            # The next batch after the exporter's retry pause carries the waiting spans.
            while len(first.spans()) + len(second.spans()) < calls and time.monotonic() < deadline:
                call(1)
                calls += 1
                time.sleep(0.5)
            second.wait_for(lambda: len(first.spans()) + len(second.spans()) == calls, timeout=30)  # none lost
            proxy.wait_for_line("accepts spans again", timeout=10)
        finally:
            client.close()
            second.stop()
    assert len([line for line in proxy.lines if "does not accept spans" in line]) == 1, proxy.output
    assert_no_addon_failure(proxy.output)


def test_a_slow_collector_does_not_slow_the_traffic(world: World):
    slow = OTLPReceiver(delay=2.0).start()
    env = {**world.env, "OTEL_EXPORTER_OTLP_ENDPOINT": slow.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "50"}
    try:
        with Mitmdump(world.proxy_args(), env, world.tmp / "conf-slow") as proxy:
            client = world.reverse_client(proxy)
            durations = []
            for _ in range(8):
                started = time.monotonic()
                list(client.chat.completions.create(model="e2e-slow", messages=messages(), stream=True))
                durations.append(time.monotonic() - started)
            client.close()
        assert max(durations) < 1.0, durations  # each export takes 2 s; no call waits for one
        assert proxy.exit_seconds is not None and proxy.exit_seconds < 3
    finally:
        slow.stop()


def test_no_secret_anywhere(world: World):
    """Runs last, after every path (plain, streams, errors, Azure api-key, Groq, content capture on):
    no key, nor any 8 characters of one, is anywhere we export or log; nor is a prompt sent with
    content capture off."""
    client = world.reverse_client()
    client.chat.completions.create(model="e2e-secret", messages=messages(PRIVATE_PROMPT))
    list(client.chat.completions.create(model="e2e-secret", messages=messages(), stream=True))
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(
            model="e2e-secret", messages=messages(), extra_headers={"x-fake-error": "401:invalid_api_key"}
        )
    spans_for(world, "e2e-secret", count=3)
    time.sleep(0.5)
    exported = "".join(str(r) for r in world.receiver.metric_requests + world.receiver.trace_requests)
    logs = world.reverse.output + world.regular.output
    assert MASKED in exported
    pieces = {secret[i : i + 8] for secret in (SECRET, AZURE_KEY) for i in range(len(secret) - 7)}
    for text in (exported, logs):
        assert KEY not in text and AZURE_KEY not in text
        assert not [piece for piece in pieces if piece in text]
    assert "Traceback" not in logs and "Addon error" not in logs and "hook failed" not in logs
    assert PRIVATE_PROMPT not in exported and PRIVATE_PROMPT not in logs  # content capture is off by default


def test_an_unsupported_exporter_setting_stops_mitmdump_with_a_clear_message(world: World):
    command = [str(MITMDUMP), "-s", "addon.py", "--listen-host", "127.0.0.1", "--listen-port", "0"]
    command += ["--set", f"confdir={world.tmp / 'conf-bad'}"]
    env = {**os.environ, **world.env, "OTEL_TRACES_EXPORTER": "zipkin"}
    finished = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30, check=False)
    output = finished.stdout + finished.stderr
    assert finished.returncode != 0
    assert "OTEL_TRACES_EXPORTER='zipkin' is not supported; use one of otlp, console, none" in output


# --- what a new user trips over (issue 13) --------------------------------------------------


def reverse_to_the_fake(world: World) -> list[str]:
    """Reverse mode to the fake, with the default `genai_hosts` (a `--set` of it adds to the list)."""
    return [
        "--mode",
        f"reverse:https://127.0.0.1:{world.fake.port}",
        "--set",
        f"ssl_verify_upstream_trusted_ca={world.pki.ca_cert}",
    ]


def test_a_bare_host_entry_gets_no_rewrite_and_a_server_sending_usage_null_keeps_its_bytes(world: World):
    """A host added without `=PROVIDER` (or `;stream_usage=on`) is not known to accept
    `stream_options`: nothing is added upstream, and a server that sends `"usage":null` in every
    chunk unasked reaches the client byte for byte."""
    bare_entry = [*reverse_to_the_fake(world), "--set", f"genai_hosts=127.0.0.1:{world.fake.port}"]
    kwargs: dict[str, Any] = {
        "model": "e2e-bare-entry",
        "messages": messages(),
        "stream": True,
        "extra_headers": {"x-fake-usage-null": "1", "x-fake-chunks": "5"},
    }
    with Mitmdump(bare_entry, world.env, world.tmp / "conf-bare-entry") as proxy:
        with world.reverse_client(proxy).chat.completions.with_streaming_response.create(**kwargs) as response:
            proxied = b"".join(response.iter_bytes())
        assert "stream_options" not in json.loads(world.fake.received[-1].body)
        with world.direct_client().chat.completions.with_streaming_response.create(**kwargs) as response:
            direct = b"".join(response.iter_bytes())
        assert proxied.split(b"\n\n") == direct.split(b"\n\n")
        assert proxied.count(b'"usage":null') == 7  # the opener, 5 chunks and the finish: all kept
        (span,) = spans_for(world, "e2e-bare-entry")
        assert span.attributes["gen_ai.provider.name"] == "openai"
        assert "gen_ai.usage.input_tokens" not in span.attributes  # no usage came: none is guessed


def first_and_last_arrival(proxy: Mitmdump, world: World, model: str) -> tuple[float, float, float]:
    """A paced stream through `proxy`: when its first and last chunk arrived, and when the fake sent its last."""
    started = time.monotonic()
    arrivals: list[float] = []
    received = b""
    with world.reverse_client(proxy).chat.completions.with_streaming_response.create(
        model=model,
        messages=messages(),
        stream=True,
        extra_headers={"x-fake-chunks": "8", "x-fake-chunk-delay-ms": "150"},
    ) as response:
        for piece in response.iter_bytes():
            arrivals.append(time.monotonic() - started)
            received += piece
    # This stream's log in the fake (found by its response id; the fake notes its end just after
    # sending it), not another test's.
    response_id = re.search(rb'"id":\s*"([^"]+)"', received).group(1).decode()  # type: ignore[union-attr]
    log = world.receiver.wait_for(
        lambda: next((s for s in world.fake.streams if s.response_id == response_id and s.finished_at), None), 5
    )
    return arrivals[0], arrivals[-1], log.finished_at - started


def test_streams_the_addon_does_not_meter_are_passed_on_live(world: World):
    """Traffic to hosts that are not metered is streamed too (genai_stream_unmetered, on by
    default); mitmproxy alone holds a text/event-stream response back until it ends."""
    unmetered = reverse_to_the_fake(world)  # 127.0.0.1 is not on the default list
    with Mitmdump(unmetered, world.env, world.tmp / "conf-unmetered") as proxy:
        first, last, finished = first_and_last_arrival(proxy, world, "e2e-unmetered")
        assert first < finished - 0.9 and last - first > 0.9  # chunk by chunk, as they were sent
    held = [*unmetered, "--set", "genai_stream_unmetered=false"]
    with Mitmdump(held, world.env, world.tmp / "conf-unmetered-held") as proxy:
        first, last, finished = first_and_last_arrival(proxy, world, "e2e-unmetered-held")
        assert first > finished - 0.1  # what the option prevents: everything at the end
    assert not spans_for_model_now(world, "e2e-unmetered")


def spans_for_model_now(world: World, model: str) -> list[Any]:
    return [s for s in world.receiver.spans() if s.attributes.get("gen_ai.request.model") == model]


def test_console_exporters_print_spans_and_metrics_to_mitmdumps_output(world: World):
    env = {**world.env, "OTEL_TRACES_EXPORTER": "console", "OTEL_METRICS_EXPORTER": "console"}
    with Mitmdump(world.proxy_args(), env, world.tmp / "conf-console") as proxy:
        world.reverse_client(proxy).chat.completions.create(model="e2e-console", messages=messages())
        proxy.wait_for_line(r'"name": "chat e2e-console"', timeout=10)  # the span, as the SDK prints it
    assert '"name": "gen_ai.client.token.usage"' in proxy.output  # the metrics, flushed at exit
    assert_no_addon_failure(proxy.output)


def test_a_compaction_and_a_cache_write_are_metered_and_priced_to_the_cent(world: World):
    """`responses.compact` (a billed compaction pass) and GPT-5.6's cache writes: the usage is the
    Responses API's, the writes a part of the input priced at their own rate (gpt-5.6-sol, from
    2026-08-21: $4 input, $0.40 cached, $5 written, $20 output per million tokens)."""
    client = world.reverse_client()
    knobs = {"x-fake-cached-tokens": "40000", "x-fake-cache-write": "20000"}
    compacted = client.responses.compact(model="gpt-5.6-sol", input="a long conversation", extra_headers=knobs)
    answer = client.responses.create(model="gpt-5.6-sol", input="go on", extra_headers=knobs)
    spans = spans_for(world, "gpt-5.6-sol", count=2)
    for usage, span in zip(
        (compacted.usage, answer.usage),
        sorted(spans, key=lambda s: s.attributes["openai.api.type"], reverse=True),  # responses.compact first
        strict=True,
    ):
        assert usage is not None
        details = usage.input_tokens_details
        written = getattr(details, "cache_write_tokens", None) or (details.model_extra or {})["cache_write_tokens"]
        uncached = usage.input_tokens - details.cached_tokens - written
        cost = (uncached * 4 + details.cached_tokens * 0.4 + written * 5 + usage.output_tokens * 20) / 1e6
        assert span.attributes["gen_ai.usage.cache_creation.input_tokens"] == written == 20000
        assert span.attributes["gen_ai.usage.input_tokens"] == usage.input_tokens
        assert span.attributes["gen_ai.usage.cost_usd"] == pytest.approx(cost, abs=0.005)  # to the cent
        assert span.attributes["gen_ai.usage.cost_usd"] == pytest.approx(cost, rel=1e-9)
    compaction = next(s for s in spans if s.attributes["openai.api.type"] == "responses.compact")
    assert compaction.attributes["gen_ai.conversation.compacted"] is True
