"""End to end for OpenAI's WebSocket APIs: the real `openai` SDK (`realtime.connect`,
`responses.connect`, both on `websockets`) → a real mitmdump with the addon → a fake WebSocket
upstream with the real event shapes and pacing (`harness/fake_realtime.py`), telemetry to a
real OTLP receiver.

Reverse mode: a mitmdump of its own toward the fake (`genai_extra_hosts=127.0.0.1:PORT=openai`), the
SDK's base URL pointing at it (the SDK turns http into ws). Regular mode: `HTTPS_PROXY` and
`SSL_CERT_FILE`, which `websockets` honours, through a CONNECT forwarder that ends every tunnel at
the fake: the SDK connects to wss://api.openai.com.
"""

import base64
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from harness.connect_forwarder import ConnectForwarder
from harness.e2e import KEY, World, spans_where, tokens
from harness.fake_openai import ResponsesScript
from harness.fake_realtime import TRANSCRIPTION_MODEL, FakeSockets, RealtimeAnswer, transcription_usage
from harness.mitmdump import Mitmdump, reverse_args

TRACEPARENT_TRACE = "5af7183fb1d4cf5f6d0d1b5a2a4c7e91"


@pytest.fixture(scope="module")
def sockets(world: World) -> Iterator[FakeSockets]:
    with FakeSockets(world.pki.server_cert, world.pki.server_key) as fake:
        yield fake


@pytest.fixture(scope="module")
def proxy(world: World, sockets: FakeSockets) -> Iterator[Mitmdump]:
    with Mitmdump(reverse_args(sockets.port, world.pki.ca_cert), world.env, world.tmp / "conf-realtime") as started:
        yield started


def client(proxy: Mitmdump) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{proxy.url}/v1", api_key=KEY, max_retries=0)


def until(
    connection: Any, kind: str, frames: list[bytes] | None = None, arrivals: list[float] | None = None
) -> list[Any]:
    """The events up to the first of `kind`; their frames as received go to `frames`, the
    `time.monotonic()` of each arrival to `arrivals`."""
    events = []
    while True:
        raw = connection.recv_bytes()
        if arrivals is not None:
            arrivals.append(time.monotonic())
        if frames is not None:
            frames.append(raw)
        event = connection.parse_event(raw)
        events.append(event)
        if event.type == kind:
            return events


def test_a_realtime_session_with_a_text_and_an_audio_response_and_a_transcription(
    world: World, sockets: FakeSockets, proxy: Mitmdump
):
    sdk = client(proxy)
    headers = {"traceparent": f"00-{TRACEPARENT_TRACE}-00f067aa0ba902b7-01"}
    received: list[bytes] = []
    with sdk.realtime.connect(model="e2e-realtime", extra_headers=headers) as connection:
        created = until(connection, "session.created", received)[-1]
        session_id = created.session.id
        started = time.monotonic()
        connection.response.create(
            response={"output_modalities": ["text"], "metadata": {"chunks": "5", "delay_ms": "200"}}
        )
        arrived_at: list[float] = []
        text_events = until(connection, "response.done", received, arrived_at)
        arrivals = time.monotonic() - started
        connection.input_audio_buffer.append(audio=base64.b64encode(bytes(3200)).decode())
        connection.input_audio_buffer.commit()
        until(connection, "conversation.item.input_audio_transcription.completed", received)
        connection.response.create(response={"metadata": {"chunks": "3", "cached": "8"}})
        audio_events = until(connection, "response.done", received)
    deltas = [e for e in text_events if e.type == "response.output_text.delta"]
    assert len(deltas) == 5 and arrivals > 0.8
    first_delta_seen = arrived_at[text_events.index(deltas[0])] - started  # by the client, after the proxy
    log = sockets.sessions[-1]
    assert received == [text.encode() for text in log.sent]  # every frame byte for byte, none merged or split
    text_usage = text_events[-1].response.usage
    audio_usage = audio_events[-1].response.usage
    spans = spans_where(world, lambda s: s.attributes.get("gen_ai.request.model") == "e2e-realtime", count=3)
    by_name = {s.name: s for s in spans}
    session = by_name["realtime e2e-realtime"]
    responses = [s for s in spans if s.attributes.get("gen_ai.response.id")]
    assert len(responses) == 2
    assert {s.parent_span_id for s in responses} == {session.span_id}  # children of the session
    assert session.trace_id == TRACEPARENT_TRACE  # the upgrade request's traceparent
    assert session.attributes["gen_ai.conversation.id"] == session_id
    assert session.attributes["openai.realtime.voice"] == "alloy"
    assert session.attributes["genai.session.operations"] == 3
    text, audio = sorted(responses, key=lambda s: s.start_time_unix_nano)
    assert text.attributes["gen_ai.usage.input_tokens"] == text_usage.input_tokens
    assert text.attributes["gen_ai.usage.output_tokens"] == text_usage.output_tokens
    # The first of five deltas 200 ms apart: the proxy saw it after the fake's 200 ms wait, and before
    # the client did (CLOCK_MONOTONIC is one clock for every process); a later delta would be past that.
    assert 0.19 <= text.attributes["gen_ai.response.time_to_first_chunk"] <= first_delta_seen
    assert audio.attributes["gen_ai.usage.audio.output_tokens"] == audio_usage.output_token_details.audio_tokens
    assert audio.attributes["gen_ai.usage.text.cache_read.input_tokens"] == 8
    expected = RealtimeAnswer(0, audio=True, chunks=3, cached=8)
    assert (
        audio.attributes["gen_ai.usage.audio.input_tokens"] == expected.usage()["input_token_details"]["audio_tokens"]
    )
    (transcription,) = spans_where(world, lambda s: s.parent_span_id == session.span_id and s.name.startswith("tr"))
    assert transcription.name == f"transcription {TRANSCRIPTION_MODEL}"
    number = int(audio_events[-1].response.id.removeprefix("resp_fake")) - 1
    assert transcription.attributes["gen_ai.usage.input_tokens"] == transcription_usage(number)["input_tokens"]
    total = text_usage.output_tokens + audio_usage.output_tokens
    world.receiver.wait_for(lambda: tokens(world, "e2e-realtime", "output") == total)


def test_responses_over_a_websocket_two_calls(world: World, sockets: FakeSockets, proxy: Mitmdump):
    sdk = client(proxy)
    with sdk.responses.connect() as connection:
        completed = []
        for number in range(2):
            connection.response.create(
                model="e2e-responses-ws", input=f"Say it {number}", metadata={"chunks": "3", "cached": "2"}
            )
            completed.append(until(connection, "response.completed")[-1])
    assert sockets.sessions[-1].path == "/v1/responses"

    def is_call(span: Any) -> bool:
        return (
            span.attributes.get("gen_ai.request.model") == "e2e-responses-ws"
            and "gen_ai.response.id" in span.attributes
        )

    calls = spans_where(world, is_call, 2)
    assert {s.attributes["gen_ai.response.id"] for s in calls} == {event.response.id for event in completed}
    for span, event in zip(sorted(calls, key=lambda s: s.start_time_unix_nano), completed, strict=True):
        assert span.attributes["gen_ai.usage.input_tokens"] == event.response.usage.input_tokens
        assert span.attributes["gen_ai.usage.cache_read.input_tokens"] == 2
        assert span.attributes["openai.api.type"] == "responses"
    (session,) = spans_where(world, lambda s: s.name == "responses e2e-responses-ws")
    assert {s.parent_span_id for s in calls} == {session.span_id}
    expected = ResponsesScript(
        {"model": "e2e-responses-ws", "input": "Say it 0", "metadata": {"chunks": "3", "cached": "2"}}, 3, 2
    )
    assert completed[0].response.usage.output_tokens == expected.response()["usage"]["output_tokens"]


def test_regular_mode_realtime_through_https_proxy(world: World, sockets: FakeSockets, monkeypatch: pytest.MonkeyPatch):
    with ConnectForwarder(sockets.port) as forwarder:
        args = ["--mode", f"upstream:http://127.0.0.1:{forwarder.port}"]
        args += ["--set", f"ssl_verify_upstream_trusted_ca={world.pki.ca_cert}"]
        with Mitmdump(args, world.env, world.tmp / "conf-realtime-regular") as regular:
            monkeypatch.setenv("HTTPS_PROXY", regular.url)
            monkeypatch.setenv("SSL_CERT_FILE", str(regular.ca_cert))
            monkeypatch.delenv("NO_PROXY", raising=False)
            sdk = openai.OpenAI(api_key=KEY, max_retries=0)  # wss://api.openai.com/v1/realtime
            with sdk.realtime.connect(model="e2e-realtime-regular") as connection:
                until(connection, "session.created")
                connection.response.create(response={"output_modalities": ["text"]})
                done = until(connection, "response.done")[-1]
            assert "api.openai.com:443" in forwarder.tunnels
            (span,) = spans_where(
                world,
                lambda s: (
                    s.attributes.get("gen_ai.request.model") == "e2e-realtime-regular"
                    and s.attributes.get("gen_ai.response.id")
                ),
            )
            assert span.attributes["server.address"] == "api.openai.com"
            assert span.attributes["gen_ai.usage.output_tokens"] == done.response.usage.output_tokens
            assert span.attributes["openai.api_key.masked"] == f"sk-proj-...{KEY[-4:]}"


def test_no_key_in_what_the_sockets_exported_or_logged(world: World, proxy: Mitmdump):
    time.sleep(0.5)
    exported = "".join(str(r) for r in world.receiver.trace_requests + world.receiver.metric_requests)
    assert KEY[8:20] not in exported and KEY[8:20] not in proxy.output
    assert "hook failed" not in proxy.output and "Traceback" not in proxy.output
