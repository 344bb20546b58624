"""End to end for Google's Interactions API: the real `google-genai` SDK's `client.interactions`
(create, plain and streamed; a background create fetched as a stream, then fetched again) through a
real mitmdump, reverse mode (the client's base URL) and regular mode (`HTTPS_PROXY`,
generativelanguage.googleapis.com on the default host list), to the fake upstream
(`harness/fake_interactions.py`)."""

import ssl
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from google import genai
from google.genai import types

from harness.e2e import World, spans_for, tokens
from harness.fake_interactions import THOUGHT
from harness.mitmdump import Mitmdump, reverse_args

KEY = "AIzaSyQ7w9Kp2Lx4Mz8Rv3Tn6Bc1Hd5Fg0Js2WqX"


@pytest.fixture(scope="module")
def proxy(world: World) -> Iterator[Mitmdump]:
    args = reverse_args(world.fake.port, world.pki.ca_cert, provider="gcp.gemini")
    with Mitmdump(args, world.env, world.tmp / "conf-interactions") as started:
        yield started


def client(proxy: Mitmdump | None = None) -> genai.Client:
    options = types.HttpOptions(base_url=proxy.url) if proxy else None
    return genai.Client(api_key=KEY, http_options=options)


def test_a_create_plain_and_streamed_counts_thought_tokens_as_output(world: World, proxy: Mitmdump):
    model = "e2e-interactions-model"
    api = client(proxy)
    plain: Any = api.interactions.create(model=model, input="Say hi")  # an Interaction (the SDK's union type)
    events = list(api.interactions.create(model=model, input="Say hi", stream=True))
    assert plain.usage is not None and events
    expected_output = 2 * (plain.usage.total_output_tokens + THOUGHT)
    world.receiver.wait_for(
        lambda: (
            tokens(world, model, "output") == expected_output
            and tokens(world, model, "input") == 2 * plain.usage.total_input_tokens
        )
    )
    spans = spans_for(world, model, count=2)
    for span in spans:
        assert (span.attributes["gen_ai.provider.name"], span.attributes["gen_ai.operation.name"]) == (
            "gcp.gemini",
            "chat",
        )
        assert span.attributes["gen_ai.usage.reasoning.output_tokens"] == THOUGHT
        assert span.attributes["gcp.api.type"] == "interactions"
    streamed = next(span for span in spans if span.attributes.get("gen_ai.request.stream"))
    assert streamed.attributes["gen_ai.response.time_to_first_chunk"] > 0


def test_a_background_interaction_is_counted_when_first_fetched_and_never_twice(world: World, proxy: Mitmdump):
    model = "e2e-interactions-background"
    api = client(proxy)
    started: Any = api.interactions.create(model=model, input="Write a guide", background=True)
    assert started.status == "in_progress"
    first = list(api.interactions.get(started.id, stream=True))
    second: Any = api.interactions.get(started.id)
    assert first and second.usage is not None
    output = second.usage.total_output_tokens + THOUGHT
    spans = spans_for(world, model, count=3)
    time.sleep(0.5)
    world.receiver.wait_for(lambda: tokens(world, model, "output") == output)
    operations = sorted(span.attributes["gen_ai.operation.name"] for span in spans)
    assert operations == ["chat", "fetch_response", "fetch_response"]
    again = [span for span in spans if span.attributes.get("genai.usage.counted_before")]
    assert len(again) == 1 and "gen_ai.usage.output_tokens" not in again[0].attributes
    assert tokens(world, model, "output") == output  # counted once
    # The stream a fetch gets through the proxy is the upstream's, byte for byte.
    path = f"/v1beta/interactions/{started.id}?stream=true"
    trusting_the_fake = ssl.create_default_context(cafile=str(world.pki.ca_cert))
    with anthropic.DefaultHttpxClient(verify=trusting_the_fake, trust_env=False, timeout=30) as http:
        through = http.get(proxy.url + path, headers={"x-goog-api-key": KEY}).content
        direct = http.get(f"https://127.0.0.1:{world.fake.port}{path}", headers={"x-goog-api-key": KEY}).content
    assert through == direct and b"interaction.completed" in through


def test_no_interactions_key_anywhere(world: World, proxy: Mitmdump):
    time.sleep(0.5)
    exported = "".join(str(r) for r in world.receiver.metric_requests + world.receiver.trace_requests)
    pieces = {KEY[4:][i : i + 8] for i in range(len(KEY) - 11)}
    for text in (exported, proxy.output, world.regular.output):
        assert not [piece for piece in pieces if piece in text]


def test_interactions_through_https_proxy(world: World, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HTTPS_PROXY", world.regular.url)
    monkeypatch.setenv("SSL_CERT_FILE", str(world.regular.ca_cert))
    monkeypatch.delenv("NO_PROXY", raising=False)
    model = "e2e-interactions-regular"
    api = client()  # the real generativelanguage.googleapis.com; kept: the SDK closes its HTTP client with it
    answer: Any = api.interactions.create(model=model, input="hi")
    assert answer.usage is not None
    (span,) = spans_for(world, model)
    assert span.attributes["server.address"] == "generativelanguage.googleapis.com"
    assert span.attributes["gen_ai.usage.input_tokens"] == answer.usage.total_input_tokens
    assert span.attributes["gcp.api_key.masked"] == f"AIza...{KEY[-4:]}"
