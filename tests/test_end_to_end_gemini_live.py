"""End to end for Gemini's Live API: the real `google-genai` SDK's `client.aio.live.connect` (two text
turns) through a real mitmdump, reverse mode (the client's base URL: the SDK always speaks wss://, so
it trusts the proxy's CA through `SSL_CERT_FILE`) and regular mode (`HTTPS_PROXY`), to a fake
WebSocket upstream that answers with the Live API's messages as binary frames
(`harness/fake_realtime.py`). Each turn is metered once, under the session's span; every frame
passes unchanged."""

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from google import genai
from google.genai import types

from harness.connect_forwarder import ConnectForwarder
from harness.e2e import World
from harness.fake_realtime import FakeSockets, live_answer
from harness.mitmdump import Mitmdump, reverse_args

KEY = "AIzaSyE2eLive7Hq2Lp9Wm4Xn6Rt1Vb3Zc8Yd5Fg0K"


@pytest.fixture(scope="module")
def sockets(world: World) -> Iterator[FakeSockets]:
    with FakeSockets(world.pki.server_cert, world.pki.server_key) as fake:
        yield fake


async def two_turns(client: genai.Client, model: str) -> list[Any]:
    """Two turns of text; every message the SDK received."""
    received: list[Any] = []
    config = types.LiveConnectConfig(response_modalities=[types.Modality.TEXT])
    async with client.aio.live.connect(model=model, config=config) as session:
        for text in ("Say hi", "Say hello again please"):
            await session.send_client_content(
                turns=types.Content(role="user", parts=[types.Part(text=text)]), turn_complete=True
            )
            async for message in session.receive():
                received.append(message)
                if message.server_content and message.server_content.turn_complete:
                    break
    return received


def live_spans(world: World, model: str, count: int) -> list[Any]:
    return world.receiver.wait_for(
        lambda: (
            (found := [s for s in world.receiver.spans() if s.attributes.get("gen_ai.request.model") == model])
            and len(found) >= count
            and found
        )
    )


def test_two_turns_through_a_reverse_proxy(world: World, sockets: FakeSockets, monkeypatch: pytest.MonkeyPatch):
    model = "e2e-gemini-live"
    with Mitmdump(
        reverse_args(sockets.port, world.pki.ca_cert, "gcp.gemini"), world.env, world.tmp / "conf-live"
    ) as proxy:
        monkeypatch.setenv("SSL_CERT_FILE", str(proxy.ca_cert))  # the SDK speaks wss:// to the proxy
        client = genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=proxy.url))
        received = asyncio.run(two_turns(client, model))
        spans = live_spans(world, model, count=3)  # two turns and the session
        time.sleep(0.3)
        logs = proxy.output
    (session_log,) = [s for s in sockets.sessions if "BidiGenerateContent" in s.path]
    turns = sorted(
        (s for s in spans if s.attributes.get("gen_ai.usage.output_tokens")), key=lambda s: s.start_time_unix_nano
    )
    (session,) = [s for s in spans if s not in turns]
    assert [turn.attributes["gen_ai.usage.input_tokens"] for turn in turns] == [
        live_answer(10 + 2)["usage"]["promptTokenCount"],
        live_answer(10 + 4)["usage"]["promptTokenCount"],
    ]
    for turn in turns:
        assert turn.attributes["gen_ai.usage.output_tokens"] == 4
        assert turn.parent_span_id == session.span_id
        assert turn.attributes["gen_ai.provider.name"] == "gcp.gemini"
        assert turn.attributes["gen_ai.response.time_to_first_chunk"] > 0
        assert turn.attributes["gcp.api_key.masked"] == f"AIza...{KEY[-4:]}"
    assert session.attributes["genai.session.operations"] == 2
    texts = [
        m.server_content.model_turn.parts[0].text for m in received if m.server_content and m.server_content.model_turn
    ]
    assert len(texts) == 8 and len(session_log.sent) == 1 + 2 * 5  # every frame reached the client
    assert KEY[4:12] not in logs


def test_a_live_session_through_https_proxy(world: World, sockets: FakeSockets, monkeypatch: pytest.MonkeyPatch):
    model = "e2e-gemini-live-regular"
    with ConnectForwarder(sockets.port) as forwarder:
        args = ["--mode", f"upstream:http://127.0.0.1:{forwarder.port}"]
        args += ["--set", f"ssl_verify_upstream_trusted_ca={world.pki.ca_cert}"]
        with Mitmdump(args, world.env, world.tmp / "conf-live-regular") as regular:
            monkeypatch.setenv("HTTPS_PROXY", regular.url)
            monkeypatch.setenv("SSL_CERT_FILE", str(regular.ca_cert))
            monkeypatch.delenv("NO_PROXY", raising=False)
            client = genai.Client(api_key=KEY)  # wss://generativelanguage.googleapis.com/ws/...
            asyncio.run(two_turns(client, model))
            spans = live_spans(world, model, count=3)
    assert "generativelanguage.googleapis.com:443" in forwarder.tunnels
    assert {span.attributes["server.address"] for span in spans} == {"generativelanguage.googleapis.com"}
