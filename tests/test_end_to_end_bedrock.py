"""End to end for AWS Bedrock and Claude on Vertex AI: the real `boto3` (`bedrock-runtime`) and the
real `anthropic` SDK's `AnthropicBedrock` and `AnthropicVertex` → a real mitmdump with the addon →
the fake upstream answering as bedrock-runtime.us-east-1.amazonaws.com (`harness.fake_bedrock`:
AWS's binary event stream, paced, with its errors) or as Vertex AI's Claude endpoints, telemetry
over OTLP/gRPC to a real receiver.

Reverse mode: proxies of their own (`genai_extra_hosts=127.0.0.1:PORT=aws.bedrock`, `…=gcp.vertex_ai`),
the clients' endpoint or base URL pointing at them. Regular mode: the session's regular proxy
through `HTTPS_PROXY` (boto3 trusts the mitmproxy CA through `AWS_CA_BUNDLE`), Bedrock and Vertex
on the default host list, reached through the CONNECT forwarder.
"""

import json
import ssl
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import anthropic
import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EventStreamError
from genai_prices import Usage as PricedUsage
from genai_prices import calc_price

from harness.e2e import World, export_mark, exported_since, spans_for, tokens
from harness.fake_anthropic import prompt_tokens as claude_prompt_tokens
from harness.fake_bedrock import prompt_tokens
from harness.mitmdump import Mitmdump, reverse_args

ACCESS_KEY = "AKIAZ7QW2MHX4LJ9RT5N"
SECRET_KEY = "wJalrXUtnFEMI7K7MDENGbPxRfiCYz3kQ8vT2sLm"
SESSION_TOKEN = "IQoJb3JpZ2luX2VjENr7e2Fmb3JhbmRvbXNlc3Npb250b2tlbmZvcnRlc3Rz"
TEMPORARY_KEY = "ASIAQ4PX8NVK2HD6WE3B"
VERTEX_TOKEN = "ya29.a0AfB_byC9xQm2Lk7Rt4Vb8Np3Hs6Jd1Fg5Zc0YaWq"
REGION = "us-east-1"
# Priced by genai-prices: a regional (us.) inference profile of Claude Sonnet 4.5 on Bedrock.
SONNET = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"


@pytest.fixture(scope="module")
def module_start(world: World) -> tuple[tuple[int, int], int]:
    """Where this module's exports and upstream requests begin."""
    return export_mark(world), len(world.fake.received)


@pytest.fixture(scope="module")
def bedrock_proxy(world: World, module_start: tuple[tuple[int, int], int]) -> Iterator[Mitmdump]:
    args = reverse_args(world.fake.port, world.pki.ca_cert, provider="aws.bedrock")
    with Mitmdump(args, world.env, world.tmp / "conf-bedrock") as started:
        yield started


@pytest.fixture(scope="module")
def vertex_proxy(world: World) -> Iterator[Mitmdump]:
    args = reverse_args(world.fake.port, world.pki.ca_cert, provider="gcp.vertex_ai")
    with Mitmdump(args, world.env, world.tmp / "conf-vertex-claude") as started:
        yield started


def runtime(endpoint_url: str | None = None, headers: dict[str, str] | None = None, temporary: bool = False) -> Any:
    """boto3's bedrock-runtime client; `headers`: the fake's knobs, added before signing."""
    client = boto3.client(
        "bedrock-runtime",
        region_name=REGION,
        endpoint_url=endpoint_url,
        aws_access_key_id=TEMPORARY_KEY if temporary else ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        aws_session_token=SESSION_TOKEN if temporary else None,
        config=Config(retries={"total_max_attempts": 1}, read_timeout=30),
    )

    def add_knobs(request: Any, **_: Any) -> None:
        for name, value in (headers or {}).items():
            request.headers[name] = value

    client.meta.events.register("before-sign.bedrock-runtime.*", add_knobs)
    return client


def ask(text: str = "Say hello in one word.") -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"text": text}]}]


def ask_claude() -> list[Any]:
    return [{"role": "user", "content": "Hi"}]


def expected_input(text: str = "Say hello in one word.") -> int:
    return prompt_tokens({"messages": ask(text)})


def test_converse_exports_exact_usage_a_span_and_the_bedrock_price(world: World, bedrock_proxy: Mitmdump):
    headers = {"x-fake-cache-read": "1000", "x-fake-cache-write-1h": "300"}
    answer = runtime(bedrock_proxy.url, headers).converse(modelId=SONNET, messages=ask())
    usage = answer["usage"]
    assert usage["inputTokens"] == expected_input()
    total_input = usage["inputTokens"] + 1000 + 300
    world.receiver.wait_for(
        lambda: (
            tokens(world, SONNET, "input") == total_input and tokens(world, SONNET, "output") == usage["outputTokens"]
        )
    )
    (span,) = spans_for(world, SONNET)
    attributes = span.attributes
    assert span.name == f"chat {SONNET}"
    assert (attributes["gen_ai.provider.name"], attributes["gen_ai.operation.name"]) == ("aws.bedrock", "chat")
    assert (
        attributes["gen_ai.usage.cache_read.input_tokens"],
        attributes["gen_ai.usage.cache_creation.input_tokens"],
    ) == (
        1000,
        300,
    )
    assert attributes["gen_ai.response.finish_reasons"] == ["end_turn"]
    assert attributes["aws.bedrock.api.type"] == "converse"
    assert attributes["aws.bedrock.api_key.masked"] == f"AKIA...{ACCESS_KEY[-4:]}"
    assert attributes["aws.bedrock.request.id"] == answer["ResponseMetadata"]["RequestId"]
    assert attributes["aws.bedrock.response.latency_ms"] == answer["metrics"]["latencyMs"]
    priced = calc_price(
        PricedUsage(
            input_tokens=total_input,
            cache_read_tokens=1000,
            cache_write_tokens=300,
            cache_write_1h_tokens=300,  # all of it: the 1 h rate
            output_tokens=usage["outputTokens"],
        ),
        model_ref=SONNET,
        provider_id="aws",
        genai_request_timestamp=datetime.now(UTC),
    )
    assert attributes["gen_ai.usage.cost_usd"] == pytest.approx(float(priced.total_price), rel=1e-6)


def test_converse_stream_is_live_byte_identical_and_counted_from_its_metadata(world: World, bedrock_proxy: Mitmdump):
    model = "e2e-bedrock-converse-stream"
    started = time.monotonic()
    arrivals: list[float] = []
    answer = runtime(bedrock_proxy.url, {"x-fake-chunks": "6", "x-fake-chunk-delay-ms": "250"}).converse_stream(
        modelId=model, messages=ask()
    )
    usage = None
    for event in answer["stream"]:
        if "contentBlockDelta" in event:
            arrivals.append(time.monotonic() - started)
        usage = event.get("metadata", {}).get("usage", usage)
    assert len(arrivals) == 6 and usage is not None
    # Each message left the fake 250 ms after the previous one and reached the client at once.
    assert arrivals[-1] - arrivals[0] > 1.0
    world.receiver.wait_for(
        lambda: tokens(world, model, "input") == expected_input() and tokens(world, model, "output") == 6
    )
    (span,) = spans_for(world, model)
    assert span.attributes["gen_ai.request.stream"] is True
    assert 0.2 < span.attributes["gen_ai.response.time_to_first_chunk"] < arrivals[0]
    # The bytes through the proxy are the upstream's bytes.
    path = f"/model/{model}-bytes/converse-stream"
    body = json.dumps({"messages": ask()}).encode()
    trusting_the_fake = ssl.create_default_context(cafile=str(world.pki.ca_cert))
    with anthropic.DefaultHttpxClient(verify=trusting_the_fake, trust_env=False, timeout=30) as http:
        through = http.post(bedrock_proxy.url + path, content=body).content
        direct = http.post(f"https://127.0.0.1:{world.fake.port}{path}", content=body).content
    assert through == direct and through.startswith(b"\x00\x00")


def test_invoke_model_with_anthropics_body_plain_and_streamed(world: World, bedrock_proxy: Mitmdump):
    model = "anthropic.e2e-claude-invoke-v1:0"
    client = runtime(bedrock_proxy.url)
    body = {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Hi"}],
    }
    plain = json.loads(client.invoke_model(modelId=model, body=json.dumps(body))["body"].read())
    streamed = client.invoke_model_with_response_stream(modelId=model, body=json.dumps(body))
    events = [json.loads(part["chunk"]["bytes"]) for part in streamed["body"]]
    assert events[-1]["type"] == "message_stop" and "amazon-bedrock-invocationMetrics" in events[-1]
    expected_in = claude_prompt_tokens(body)
    assert plain["usage"]["input_tokens"] == expected_in
    world.receiver.wait_for(
        lambda: (
            tokens(world, model, "input") == 2 * expected_in
            and tokens(world, model, "output") == plain["usage"]["output_tokens"] * 2
        )
    )
    spans = spans_for(world, model, count=2)
    assert {span.attributes["aws.bedrock.api.type"] for span in spans} == {"invoke_model"}
    streamed_span = next(span for span in spans if span.attributes.get("gen_ai.request.stream"))
    assert streamed_span.attributes["aws.bedrock.response.first_byte_latency_ms"] == 90
    plain_span = next(span for span in spans if not span.attributes.get("gen_ai.request.stream"))
    assert plain_span.attributes["aws.bedrock.response.processing_ms"] == 230.0  # x-amzn-bedrock-invocation-latency


def test_throttling_validation_and_an_exception_mid_stream_are_the_calls_errors(world: World, bedrock_proxy: Mitmdump):
    model = "e2e-bedrock-errors"
    with pytest.raises(ClientError) as throttled:
        runtime(bedrock_proxy.url, {"x-fake-error": "429:ThrottlingException"}).converse(modelId=model, messages=ask())
    assert throttled.value.response["Error"]["Code"] == "ThrottlingException"
    with pytest.raises(ClientError):
        runtime(bedrock_proxy.url, {"x-fake-error": "400:ValidationException"}).converse_stream(
            modelId=model, messages=ask()
        )
    broken = runtime(bedrock_proxy.url, {"x-fake-stream-error": "modelStreamErrorException"}).converse_stream(
        modelId=model, messages=ask()
    )
    with pytest.raises(EventStreamError):
        list(broken["stream"])
    spans = spans_for(world, model, count=3)
    assert sorted(span.attributes["error.type"] for span in spans) == [
        "ThrottlingException",
        "ValidationException",
        "modelStreamErrorException",
    ]


def test_the_anthropic_sdks_bedrock_client_is_metered(world: World, bedrock_proxy: Mitmdump):
    model = "anthropic.e2e-claude-sdk-v1:0"
    client = anthropic.AnthropicBedrock(
        aws_access_key=TEMPORARY_KEY,
        aws_secret_key=SECRET_KEY,
        aws_session_token=SESSION_TOKEN,
        aws_region=REGION,
        base_url=bedrock_proxy.url,
        max_retries=0,
    )
    message = client.messages.create(model=model, max_tokens=32, messages=[{"role": "user", "content": "Hi"}])
    with client.messages.stream(model=model, max_tokens=32, messages=[{"role": "user", "content": "Hi"}]) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(texts) == stream.get_final_text()
    world.receiver.wait_for(
        lambda: (
            tokens(world, model, "input") == message.usage.input_tokens + final.usage.input_tokens
            and tokens(world, model, "output") == message.usage.output_tokens + final.usage.output_tokens
        )
    )
    spans = spans_for(world, model, count=2)
    assert {span.attributes["aws.bedrock.api_key.masked"] for span in spans} == {f"ASIA...{TEMPORARY_KEY[-4:]}"}


def test_the_anthropic_sdks_vertex_client_is_metered_as_claude_on_vertex(world: World, vertex_proxy: Mitmdump):
    model = "claude-sonnet-4-5@20250929"
    client = anthropic.AnthropicVertex(
        region="us-east5", project_id="e2e-project", access_token=VERTEX_TOKEN, base_url=f"{vertex_proxy.url}/v1"
    )
    message = client.messages.create(model=model, max_tokens=32, messages=[{"role": "user", "content": "Hi vertex"}])
    with client.messages.stream(
        model=model,
        max_tokens=32,
        messages=[{"role": "user", "content": "Hi vertex"}],
        extra_headers={"x-fake-chunk-delay-ms": "200"},
    ) as stream:
        started = time.monotonic()
        arrivals = [time.monotonic() - started for _ in stream.text_stream]
        final = stream.get_final_message()
    assert len(arrivals) > 2 and arrivals[0] < arrivals[-1] - 0.3  # deltas 200 ms apart, each as it was sent
    paths = [r.path for r in world.fake.received if "publishers/anthropic" in r.path][-2:]
    assert paths[0].endswith(f"{model}:rawPredict") and paths[1].endswith(f"{model}:streamRawPredict")
    world.receiver.wait_for(
        lambda: tokens(world, model, "output") == message.usage.output_tokens + final.usage.output_tokens
    )
    spans = spans_for(world, model, count=2)
    assert {span.attributes["gen_ai.provider.name"] for span in spans} == {"gcp.vertex_ai"}
    assert {span.attributes["anthropic.api_key.masked"] for span in spans} == {f"ya29....{VERTEX_TOKEN[-4:]}"}
    # Priced as Claude Sonnet 4.5 on Vertex: $3 / $15 per million tokens.
    plain = next(span for span in spans if not span.attributes.get("gen_ai.request.stream"))
    usage = message.usage
    assert plain.attributes["gen_ai.usage.cost_usd"] == pytest.approx(
        usage.input_tokens * 3e-6 + usage.output_tokens * 15e-6, rel=1e-9
    )


def test_regular_mode_through_https_proxy_with_aws_ca_bundle(world: World, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HTTPS_PROXY", world.regular.url)
    monkeypatch.setenv("AWS_CA_BUNDLE", str(world.regular.ca_cert))
    monkeypatch.setenv("SSL_CERT_FILE", str(world.regular.ca_cert))
    monkeypatch.delenv("NO_PROXY", raising=False)
    model = "e2e-bedrock-regular"
    client = runtime(temporary=True)  # the real https://bedrock-runtime.us-east-1.amazonaws.com
    plain = client.converse(modelId=model, messages=ask())
    streamed = [event for event in client.converse_stream(modelId=model, messages=ask())["stream"]]
    assert f"bedrock-runtime.{REGION}.amazonaws.com:443" in world.forwarder.tunnels
    output = plain["usage"]["outputTokens"] + streamed[-1]["metadata"]["usage"]["outputTokens"]
    world.receiver.wait_for(lambda: tokens(world, model, "output") == output)
    spans = spans_for(world, model, count=2)
    assert {span.attributes["server.address"] for span in spans} == {f"bedrock-runtime.{REGION}.amazonaws.com"}
    assert {span.attributes["aws.bedrock.api_key.masked"] for span in spans} == {f"ASIA...{TEMPORARY_KEY[-4:]}"}
    # The anthropic SDK's clients take the same proxy (HTTPS_PROXY) and CA (SSL_CERT_FILE).
    bedrock = anthropic.AnthropicBedrock(
        aws_access_key=ACCESS_KEY, aws_secret_key=SECRET_KEY, aws_region=REGION, max_retries=0
    )
    on_bedrock = bedrock.messages.create(model="anthropic.e2e-regular-v1:0", max_tokens=16, messages=ask_claude())
    vertex = anthropic.AnthropicVertex(region="us-east5", project_id="e2e-project", access_token=VERTEX_TOKEN)
    on_vertex = vertex.messages.create(model="claude-e2e-regular@20250929", max_tokens=16, messages=ask_claude())
    assert "us-east5-aiplatform.googleapis.com:443" in world.forwarder.tunnels
    for claude, provider in ((on_bedrock, "aws.bedrock"), (on_vertex, "gcp.vertex_ai")):
        (span,) = spans_for(world, claude.model)
        assert span.attributes["gen_ai.provider.name"] == provider
        assert span.attributes["gen_ai.usage.output_tokens"] == claude.usage.output_tokens


def test_no_credential_anywhere(
    world: World, bedrock_proxy: Mitmdump, vertex_proxy: Mitmdump, module_start: tuple[tuple[int, int], int]
):
    """After every path above: no 8 characters of an access key id, a secret, a signature, a
    session token or a Vertex token are in what was exported or logged."""
    runtime(bedrock_proxy.url, temporary=True).converse(modelId="e2e-bedrock-secret", messages=ask())
    spans_for(world, "e2e-bedrock-secret")
    time.sleep(0.5)
    signatures = [
        r.headers["authorization"].rpartition("Signature=")[2]
        for r in world.fake.received[module_start[1] :]
        if r.headers.get("authorization", "").startswith("AWS4-HMAC-SHA256")
    ]
    assert signatures and all(len(signature) == 64 for signature in signatures)
    secrets = [ACCESS_KEY[4:], TEMPORARY_KEY[4:], SECRET_KEY, SESSION_TOKEN, VERTEX_TOKEN[5:], *signatures]
    pieces = {secret[i : i + 8] for secret in secrets for i in range(len(secret) - 7)}
    exported = exported_since(world, module_start[0])
    logs = bedrock_proxy.output + vertex_proxy.output + world.regular.output
    for text in (exported, logs):
        assert not [piece for piece in pieces if piece in text]
    assert "Traceback" not in logs and "hook failed" not in logs
