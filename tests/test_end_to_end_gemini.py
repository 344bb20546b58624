"""End to end for Google's generateContent dialect: the real `google-genai` SDK → a real mitmdump
with the addon → the fake upstream answering as the Gemini API and Vertex AI
(`harness.fake_google`), telemetry over OTLP/gRPC to a real receiver.

Reverse mode: a proxy per provider (`genai_extra_hosts=127.0.0.1:PORT=gcp.gemini`, and `=gcp.vertex_ai`),
the SDK's `http_options.base_url` pointing at it. Regular mode: the session's regular proxy
(`HTTPS_PROXY`, and `SSL_CERT_FILE` for the mitmproxy CA, both of which the SDK's HTTP client
honours), generativelanguage.googleapis.com and us-central1-aiplatform.googleapis.com on the
default host list, reached through the CONNECT forwarder.
"""

import json
import ssl
import time
from collections.abc import Iterator

import httpx2
import pytest
from google import genai
from google.genai import errors, types
from google.oauth2.credentials import Credentials

from harness.e2e import World, spans_for, tokens
from harness.fake_google import GenerateScript, array_chunks, prompt_tokens
from harness.mitmdump import Mitmdump, reverse_args
from harness.recordings import GEMINI_NAMES, load_gemini
from otel.sessions import session_trace

SECRET = "Tq4Lm8Zx2Cv6Bn0Kj3Hg7Fd1Sa5Wq9Er"
KEY = f"AIza{SECRET}"  # 39 characters, as Google's API keys are
QUERY_KEY = f"AIza{SECRET[::-1]}"
TOKEN = f"ya29.{SECRET[3:]}{SECRET[:3]}-fake"
PROJECT = "e2e-project"


@pytest.fixture(scope="module")
def gemini_proxy(world: World) -> Iterator[Mitmdump]:
    args = reverse_args(world.fake.port, world.pki.ca_cert, provider="gcp.gemini")
    with Mitmdump(args, world.env, world.tmp / "conf-gemini") as started:
        yield started


@pytest.fixture(scope="module")
def vertex_proxy(world: World) -> Iterator[Mitmdump]:
    args = reverse_args(world.fake.port, world.pki.ca_cert, provider="gcp.vertex_ai")
    with Mitmdump(args, world.env, world.tmp / "conf-vertex") as started:
        yield started


def gemini(proxy: Mitmdump) -> genai.Client:
    return genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=proxy.url))


def vertex(proxy: Mitmdump | None = None) -> genai.Client:
    options = types.HttpOptions(base_url=proxy.url) if proxy else None
    return genai.Client(
        vertexai=True,
        project=PROJECT,
        location="us-central1",
        credentials=Credentials(token=TOKEN),
        http_options=options,
    )


def knobs(**headers: str) -> types.GenerateContentConfig:
    return types.GenerateContentConfig(http_options=types.HttpOptions(headers=headers))


def test_a_plain_call_exports_its_usage_span_and_cost(world: World, gemini_proxy: Mitmdump):
    client = gemini(gemini_proxy)  # kept: the SDK closes its HTTP client when the Client goes
    response = client.models.generate_content(
        model="e2e-gemini-plain", contents="Say hello in one word.", config=knobs(**{"x-fake-thoughts": "5"})
    )
    usage = response.usage_metadata
    assert usage is not None and usage.thoughts_token_count == 5
    expected_output = (usage.candidates_token_count or 0) + 5  # thinking is output
    world.receiver.wait_for(
        lambda: (
            tokens(world, "e2e-gemini-plain", "input") == usage.prompt_token_count
            and tokens(world, "e2e-gemini-plain", "output") == expected_output
        )
    )
    (span,) = spans_for(world, "e2e-gemini-plain")
    assert span.name == "generate_content e2e-gemini-plain"
    attributes = span.attributes
    assert (attributes["gen_ai.provider.name"], attributes["gen_ai.operation.name"]) == (
        "gcp.gemini",
        "generate_content",
    )
    assert attributes["gen_ai.response.id"] == response.response_id
    assert attributes["gen_ai.response.model"] == "e2e-gemini-plain"
    assert attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert attributes["gen_ai.usage.reasoning.output_tokens"] == 5
    assert attributes["gcp.api_key.masked"] == f"AIza...{KEY[-4:]}"
    assert attributes["user_agent.name"] == "google-genai-sdk"
    assert "gen_ai.request.stream" not in attributes


def test_a_stream_reaches_the_client_live_and_is_counted_from_its_last_usage(world: World, gemini_proxy: Mitmdump):
    started = time.monotonic()
    arrivals: list[float] = []
    chunks = []
    client = gemini(gemini_proxy)
    for chunk in client.models.generate_content_stream(
        model="e2e-gemini-stream",
        contents="Say hello.",
        config=knobs(**{"x-fake-chunks": "6", "x-fake-chunk-delay-ms": "250", "x-fake-cached": "3"}),
    ):
        arrivals.append(time.monotonic() - started)
        chunks.append(chunk)
    assert len(chunks) == 6 and "".join(c.text or "" for c in chunks) == "Hello from a fake Gemini."
    assert arrivals[0] < arrivals[-1] - 1.0  # the first chunk came long before the end: live
    final = chunks[-1].usage_metadata
    assert final is not None and final.cached_content_token_count == 3
    world.receiver.wait_for(
        lambda: (
            tokens(world, "e2e-gemini-stream", "input") == final.prompt_token_count
            and tokens(world, "e2e-gemini-stream", "output") == final.candidates_token_count
        )
    )
    (span,) = spans_for(world, "e2e-gemini-stream")
    assert span.attributes["gen_ai.request.stream"] is True
    assert span.attributes["gen_ai.usage.cache_read.input_tokens"] == 3
    assert 0 < span.attributes["gen_ai.response.time_to_first_chunk"] < arrivals[0]  # before the client had it
    cached = world.receiver.latest("gen_ai.client.token.cache_read", gen_ai__request__model="e2e-gemini-stream")
    assert [point.value for point in cached] == [3]


def test_the_json_array_stream_passes_byte_for_byte_and_live_with_the_key_in_the_query(
    world: World, gemini_proxy: Mitmdump
):
    """Without `?alt=sse` the answer is a JSON array; a REST client with the key in the URL."""
    path = f"/v1beta/models/e2e-gemini-array:streamGenerateContent?key={QUERY_KEY}"
    body = {"contents": [{"role": "user", "parts": [{"text": "Count to three"}]}]}
    headers = {"x-fake-chunks": "4", "x-fake-chunk-delay-ms": "300"}
    arrivals: list[float] = []
    pieces: list[bytes] = []
    started = time.monotonic()
    with (
        httpx2.Client(timeout=30) as http,
        http.stream("POST", gemini_proxy.url + path, json=body, headers=headers) as r,
    ):
        assert r.headers["content-type"].startswith("application/json")
        for piece in r.iter_raw():
            pieces.append(piece)
            arrivals.append(time.monotonic() - started)
    script = GenerateScript("e2e-gemini-array", body, chunks=4, number=len(world.fake.received))
    assert b"".join(pieces) == "".join(array_chunks(script.stream_chunks())).encode()  # byte for byte
    assert arrivals[0] < arrivals[-1] - 0.6
    (span,) = spans_for(world, "e2e-gemini-array")
    assert span.attributes["gen_ai.usage.input_tokens"] == prompt_tokens(body)
    assert span.attributes["gen_ai.usage.output_tokens"] == 4
    assert span.attributes["gcp.api_key.masked"] == f"AIza...{QUERY_KEY[-4:]}"
    assert world.fake.received[-1].path == path  # the key still went upstream, unchanged


@pytest.mark.parametrize("name", [n for n in GEMINI_NAMES if "sync]" in n and "logcontent" in n])
def test_recorded_exchanges_replay_byte_for_byte_and_are_counted_exactly(
    world: World, vertex_proxy: Mitmdump, name: str
):
    recording = load_gemini(name)
    streamed = recording.streamed
    method = "streamGenerateContent?alt=sse" if streamed else "generateContent"
    path = f"/v1beta1/projects/{PROJECT}/locations/us-central1/publishers/google/models/e2e-replay-{len(name)}:{method}"
    headers = {"authorization": f"Bearer {TOKEN}", "x-fake-fixture": name, "content-type": "application/json"}
    trusting_the_fake = ssl.create_default_context(cafile=str(world.pki.ca_cert))
    with httpx2.Client(timeout=30) as http, httpx2.Client(timeout=30, verify=trusting_the_fake) as straight:
        proxied = http.post(vertex_proxy.url + path, content=recording.request_body, headers=headers)
        direct = straight.post(
            f"https://127.0.0.1:{world.fake.port}{path}", content=recording.request_body, headers=headers
        )
    assert proxied.status_code == direct.status_code == recording.status
    assert proxied.content == direct.content  # byte for byte what the upstream sent
    if streamed:
        chunks = [
            json.loads(event[6:]) for event in recording.response_body.decode().split("\r\n\r\n") if event.strip()
        ]
        usage = next(c["usageMetadata"] for c in reversed(chunks) if "promptTokenCount" in c["usageMetadata"])
        response_id = chunks[-1]["responseId"]
    else:
        data = json.loads(recording.response_body)
        usage, response_id = data["usageMetadata"], data["responseId"]
    model = f"e2e-replay-{len(name)}"
    spans = world.receiver.wait_for(
        lambda: [
            s
            for s in world.receiver.spans()
            if s.attributes.get("gen_ai.request.model") == model
            and s.attributes.get("gen_ai.response.id") == response_id
        ]
    )
    attributes = spans[-1].attributes
    assert attributes["gen_ai.provider.name"] == "gcp.vertex_ai"
    assert attributes["gen_ai.usage.input_tokens"] == usage["promptTokenCount"]
    assert attributes["gen_ai.usage.output_tokens"] == usage["candidatesTokenCount"] + usage.get(
        "thoughtsTokenCount", 0
    )
    assert attributes["gcp.api_key.masked"] == f"ya29....{TOKEN[-4:]}"


def test_vertex_ai_through_the_sdk_names_its_model_from_the_path(world: World, vertex_proxy: Mitmdump):
    client = vertex(vertex_proxy)
    plain = client.models.generate_content(model="e2e-vertex", contents="Hi")
    streamed = list(client.models.generate_content_stream(model="e2e-vertex", contents="Hi"))
    assert plain.text == "Hello from a fake Gemini." and len(streamed) == 6
    assert world.fake.received[-1].path.startswith(
        f"/v1beta1/projects/{PROJECT}/locations/us-central1/publishers/google/"
    )
    world.receiver.wait_for(lambda: tokens(world, "e2e-vertex", "output") == 12)
    spans = spans_for(world, "e2e-vertex", count=2)
    assert {s.attributes["gen_ai.provider.name"] for s in spans} == {"gcp.vertex_ai"}
    assert all(PROJECT not in str(value) for s in spans for value in s.attributes.values())  # not an attribute


def test_errors_in_a_body_and_in_a_stream_and_a_blocked_prompt(world: World, gemini_proxy: Mitmdump):
    client = gemini(gemini_proxy)
    with pytest.raises(errors.ClientError) as refused:
        client.models.generate_content(
            model="e2e-gemini-429", contents="Hi", config=knobs(**{"x-fake-error": "429:RESOURCE_EXHAUSTED"})
        )
    assert refused.value.code == 429
    with pytest.raises(errors.APIError):
        list(
            client.models.generate_content_stream(
                model="e2e-gemini-broken", contents="Hi", config=knobs(**{"x-fake-stream-error": "INTERNAL"})
            )
        )
    blocked = client.models.generate_content(
        model="e2e-gemini-blocked", contents="Hi", config=knobs(**{"x-fake-blocked": "SAFETY"})
    )
    assert blocked.prompt_feedback is not None
    for model, error_type in (
        ("e2e-gemini-429", "RESOURCE_EXHAUSTED"),
        ("e2e-gemini-broken", "INTERNAL"),
        ("e2e-gemini-blocked", "SAFETY"),
    ):
        (span,) = spans_for(world, model)
        assert span.attributes["error.type"] == error_type, model
    failures = world.receiver.wait_for(
        lambda: world.receiver.latest("gen_ai.client.operation.duration", error__type="RESOURCE_EXHAUSTED")
    )
    assert [point.count for point in failures] == [1]


def test_embeddings_are_metered_and_count_tokens_is_not(world: World, gemini_proxy: Mitmdump):
    client = gemini(gemini_proxy)
    result = client.models.embed_content(model="e2e-gemini-embed", contents="one two")
    sent = json.loads(world.fake.received[-1].body)  # the SDK sends batchEmbedContents
    assert result.embeddings is not None and len(result.embeddings) == len(sent["requests"]) == 1
    counted = client.models.count_tokens(model="e2e-gemini-count", contents="one two three")
    assert counted.total_tokens == 7
    (span,) = spans_for(world, "e2e-gemini-embed")
    assert span.name == "embeddings e2e-gemini-embed" and span.attributes["gen_ai.operation.name"] == "embeddings"
    assert "gen_ai.usage.input_tokens" not in span.attributes  # the API reports none: none invented
    time.sleep(0.5)
    assert not [s for s in world.receiver.spans() if s.attributes.get("gen_ai.request.model") == "e2e-gemini-count"]


def test_regular_mode_with_https_proxy_and_the_mitmproxy_ca(world: World, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HTTPS_PROXY", world.regular.url)
    monkeypatch.setenv("SSL_CERT_FILE", str(world.regular.ca_cert))
    monkeypatch.delenv("NO_PROXY", raising=False)
    api = genai.Client(api_key=KEY)  # the real https://generativelanguage.googleapis.com
    plain = api.models.generate_content(model="e2e-gemini-regular", contents="Hi")
    streamed = list(api.models.generate_content_stream(model="e2e-gemini-regular", contents="Hi"))
    cloud = vertex()  # the real https://us-central1-aiplatform.googleapis.com
    cloud.models.generate_content(model="e2e-vertex-regular", contents="Hi")
    assert plain.text and len(streamed) == 6
    assert {"generativelanguage.googleapis.com:443", "us-central1-aiplatform.googleapis.com:443"} <= set(
        world.forwarder.tunnels
    )
    world.receiver.wait_for(lambda: tokens(world, "e2e-gemini-regular", "output") == 12)
    spans = spans_for(world, "e2e-gemini-regular", count=2)
    assert {(s.attributes["server.address"], s.attributes["gen_ai.provider.name"]) for s in spans} == {
        ("generativelanguage.googleapis.com", "gcp.gemini")
    }
    (cloud_span,) = spans_for(world, "e2e-vertex-regular")
    assert cloud_span.attributes["gen_ai.provider.name"] == "gcp.vertex_ai"
    assert cloud_span.attributes["server.address"] == "us-central1-aiplatform.googleapis.com"


def test_no_google_key_or_token_anywhere(world: World, gemini_proxy: Mitmdump, vertex_proxy: Mitmdump):
    """After every path above: no key (header or query) or token, nor 8 characters of one, is in
    what was exported or in any proxy's log; the query string is in no log line of the addon."""
    client = gemini(gemini_proxy)
    client.models.generate_content(model="e2e-gemini-secret", contents="Hi")
    spans_for(world, "e2e-gemini-secret")
    time.sleep(0.5)
    exported = "".join(str(r) for r in world.receiver.metric_requests + world.receiver.trace_requests)
    addon_lines = "\n".join(
        line
        for proxy in (gemini_proxy, vertex_proxy, world.regular)
        for line in proxy.output.splitlines()
        if "genai" in line
    )
    assert f"AIza...{KEY[-4:]}" in exported and f"ya29....{TOKEN[-4:]}" in exported
    pieces = {secret[i : i + 8] for secret in (KEY[4:], QUERY_KEY[4:], TOKEN[5:]) for i in range(len(secret) - 7)}
    for text in (exported, addon_lines):
        assert not [piece for piece in pieces if piece in text]
    assert "key=" not in addon_lines and "alt=sse" not in exported
    logs = gemini_proxy.output + vertex_proxy.output
    assert "Traceback" not in logs and "hook failed" not in logs


def test_gemini_clis_code_assist_calls_are_metered_in_its_session(world: World):
    """What Gemini CLI sends logged in with Google (its `converter.ts` shape), through the regular
    proxy to cloudcode-pa.googleapis.com: the wrapped usage counted, the body's session its trace."""
    session = "5b1f9c2e-0d3a-4c8e-9f7b-2a6d4e8c1b3f"
    body = {
        "model": "e2e-code-assist",
        "project": "e2e-project",
        "user_prompt_id": f"{session}########1",
        "request": {"contents": [{"role": "user", "parts": [{"text": "hi there"}]}], "session_id": session},
    }
    trusting = ssl.create_default_context(cafile=str(world.regular.ca_cert))
    with httpx2.Client(proxy=world.regular.url, verify=trusting) as client:
        response = client.post(
            "https://cloudcode-pa.googleapis.com/v1internal:streamGenerateContent?alt=sse",
            json=body,
            headers={
                "authorization": "Bearer ya29.e2e-token",
                "user-agent": "GeminiCLI/0.20.0/gemini-2.5-pro (linux; x64)",
            },
        )
    chunks = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
    usage = chunks[-1]["response"]["usageMetadata"]
    (span,) = spans_for(world, "e2e-code-assist")
    assert span.attributes["gen_ai.usage.input_tokens"] == usage["promptTokenCount"]
    assert span.attributes["gen_ai.provider.name"] == "gcp.gemini"
    assert span.attributes["gen_ai.conversation.id"] == session
    assert span.trace_id == f"{session_trace(session)[0]:032x}"
    assert "ya29.e2e-token" not in str(span.attributes)
